//! How each transcript entry looks.
//!
//! An entry is static once shown (it is re-rendered whole when its version changes), and
//! what is interactive in it (collapsed thinking, tool input and long output) is native
//! `<details>`. So each entry is one element whose attributes are set from Rust and whose
//! content is escaped HTML written by [`render`]: a session of a thousand events renders
//! quickly, and the browser bundle carries a string writer rather than a view tree per
//! kind of entry. Every piece of text goes through [`html::escape_into`].

use leptos::prelude::*;
use model::protocol::LogLevel;
use serde_json::Value;

use crate::html::{self, escape_into};
use crate::transcript::{Entry, EntryKind};

/// Lines of a tool's output shown before "show all".
const PREVIEW_LINES: usize = 40;

/// One transcript entry.
#[component]
pub fn EntryView(entry: Entry) -> impl IntoView {
    let r = render(&entry);
    view! {
        <div class=r.class data-seq=entry.seq data-tool=r.tool data-status=r.status data-code=r.code
            role=r.role inner_html=r.body></div>
    }
}

/// An entry's root attributes and inner HTML.
#[derive(Debug, Default, PartialEq)]
pub struct Rendered {
    /// CSS classes: `entry <kind> ...`.
    pub class: String,
    /// A tool call's tool name.
    pub tool: Option<String>,
    /// A tool call's state: `running`, `done` or `failed`.
    pub status: Option<&'static str>,
    /// An error's code.
    pub code: Option<String>,
    /// ARIA role (errors are alerts).
    pub role: Option<&'static str>,
    /// Escaped inner HTML.
    pub body: String,
}

impl Rendered {
    fn new(class: impl Into<String>) -> Self {
        Rendered {
            class: class.into(),
            ..Default::default()
        }
    }

    fn text(mut self, text: &str) -> Self {
        escape_into(&mut self.body, text);
        self
    }

    fn raw(mut self, markup: &str) -> Self {
        self.body.push_str(markup);
        self
    }
}

/// Dollars with four decimals, without the float formatting machinery.
fn usd(cost: f64) -> String {
    let hundredths_of_cents = (cost * 10_000.0).round().max(0.0) as u64;
    format!(
        "${}.{:04}",
        hundredths_of_cents / 10_000,
        hundredths_of_cents % 10_000
    )
}

/// The HTML of one entry.
pub fn render(entry: &Entry) -> Rendered {
    match &entry.kind {
        EntryKind::User { text, sender } => Rendered::new("entry user")
            .raw("<header>")
            .text(sender)
            .raw("</header><div class=\"text\">")
            .text(text)
            .raw("</div>"),
        EntryKind::Agent {
            text, streaming, ..
        } => {
            let class = if *streaming {
                "entry agent streaming"
            } else {
                "entry agent"
            };
            Rendered::new(class)
                .raw("<div class=\"md\">")
                .raw(&html::markdown(text))
                .raw("</div>")
        }
        EntryKind::Thinking { text } => Rendered::new("entry thinking")
            .raw("<details><summary>Thinking</summary><div class=\"text\">")
            .text(text)
            .raw("</div></details>"),
        EntryKind::Tool {
            name,
            input,
            result,
            ..
        } => tool(name, input, result.as_ref()),
        EntryKind::Log(l) => {
            let class = match l.level {
                LogLevel::Debug => "entry log log-debug",
                LogLevel::Info => "entry log log-info",
                LogLevel::Warn => "entry log log-warn",
                LogLevel::Error => "entry log log-error",
            };
            Rendered::new(class).text(&l.message)
        }
        EntryKind::Error(e) => Rendered {
            code: Some(e.code.clone().unwrap_or_default()),
            role: Some("alert"),
            ..Rendered::new("entry error")
        }
        .text(&e.message),
        EntryKind::Phase { phase, message } => {
            let r = Rendered::new("entry phase")
                .raw("Phase <strong>")
                .text(phase.as_str())
                .raw("</strong>");
            match message {
                Some(m) => r
                    .raw("<span class=\"phase-message\"> — ")
                    .text(m)
                    .raw("</span>"),
                None => r,
            }
        }
        EntryKind::Turn(t) => Rendered::new("entry turn muted").text(&format!(
            "Turn {}: {} model calls, {} in / {} out tokens, {}",
            if t.is_error { "ended" } else { "finished" },
            t.num_turns,
            t.usage.input_tokens
                + t.usage.cache_read_input_tokens
                + t.usage.cache_creation_input_tokens,
            t.usage.output_tokens,
            usd(t.usage.cost_usd)
        )),
        EntryKind::Result(r) => {
            let (class, title) = if r.is_error {
                ("entry result result-error", "Run failed")
            } else {
                ("entry result", "Run finished")
            };
            let tokens = format!(
                "{} in / {} out",
                r.usage.input_tokens
                    + r.usage.cache_read_input_tokens
                    + r.usage.cache_creation_input_tokens,
                r.usage.output_tokens
            );
            let rows = [
                ("Turns", r.num_turns.to_string()),
                ("Tokens", tokens),
                ("Cost", usd(r.usage.cost_usd)),
                ("Duration", crate::time::duration(r.duration_ms as i64)),
                ("Exit code", r.exit_code.to_string()),
            ];
            let mut out = Rendered::new(class)
                .raw("<header>")
                .raw(title)
                .raw("</header><dl>");
            for (term, value) in rows {
                out = out
                    .raw("<dt>")
                    .raw(term)
                    .raw("</dt><dd>")
                    .text(&value)
                    .raw("</dd>");
            }
            out.raw("</dl>")
        }
        EntryKind::Ask { ask, answer } if ask.tool != model::protocol::ASK_USER_QUESTION => {
            let mut r = Rendered::new("entry ask approval")
                .raw("<header>The agent asks to use <strong>")
                .text(&ask.tool)
                .raw("</strong></header><pre>")
                .text(&crate::transcript::ask_summary(ask))
                .raw("</pre>");
            // An edit shows the change it asks to make.
            if let Some(diff) = edit_diff(&ask.tool, &ask.input) {
                r = r.raw(&diff);
            }
            match answer {
                Some(a) if a.deny => r
                    .raw("<p class=\"answered denied\">")
                    .text(&format!(
                        "Denied by {}{}",
                        a.sender,
                        a.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ))
                    .raw("</p>"),
                Some(a) => r
                    .raw("<p class=\"answered\">")
                    .text(&format!(
                        "Allowed by {}{}",
                        a.sender,
                        if a.always { " for this session" } else { "" }
                    ))
                    .raw("</p>"),
                None => r.raw("<p class=\"waiting muted\">Waiting for approval</p>"),
            }
        }
        EntryKind::Ask { ask, answer } => {
            let mut r = Rendered::new("entry ask").raw("<header>The agent asks</header>");
            for q in ask.input["questions"].as_array().into_iter().flatten() {
                r = r
                    .raw("<p class=\"question\">")
                    .text(q["question"].as_str().unwrap_or_default())
                    .raw("</p><ul class=\"options\">");
                for o in q["options"].as_array().into_iter().flatten() {
                    r = r
                        .raw("<li><strong>")
                        .text(o["label"].as_str().unwrap_or_default())
                        .raw("</strong> <span class=\"muted\">")
                        .text(o["description"].as_str().unwrap_or_default())
                        .raw("</span></li>");
                }
                r = r.raw("</ul>");
            }
            match answer {
                Some(a) if a.answers.is_empty() => r
                    .raw("<p class=\"answered muted\">")
                    .text(&format!("{} declined to answer", a.sender))
                    .raw("</p>"),
                Some(a) => {
                    let said: Vec<String> = a.answers.values().cloned().collect();
                    r.raw("<p class=\"answered\">")
                        .text(&format!("{} answered: {}", a.sender, said.join("; ")))
                        .raw("</p>")
                }
                None => r.raw("<p class=\"waiting muted\">Waiting for an answer</p>"),
            }
        }
        EntryKind::Control { what, sender } => {
            Rendered::new("entry control muted").text(&format!("{sender} asked to {what}"))
        }
        EntryKind::Push(p) => Rendered::new("entry git")
            .raw("Pushed <strong>")
            .text(&p.repo)
            .raw("</strong> to branch <code>")
            .text(&p.branch)
            .raw("</code> <span class=\"muted\">")
            .text(&p.commit.chars().take(10).collect::<String>())
            .raw("</span>"),
        EntryKind::PullRequest(p) => {
            let r = Rendered::new("entry git pr")
                .text(&format!("Pull request #{} for ", p.number))
                .raw("<strong>")
                .text(&p.repo)
                .raw("</strong>: ");
            // Only web addresses become links.
            if p.url.starts_with("https://") || p.url.starts_with("http://") {
                r.raw("<a href=\"")
                    .text(&p.url)
                    .raw("\" target=\"_blank\" rel=\"noopener noreferrer\">")
                    .text(&p.url)
                    .raw("</a>")
            } else {
                r.text(&p.url)
            }
        }
    }
}

/// The change an edit tool's call makes, as diff HTML (`None` for other tools): what a
/// tool card shows, and what an approval card shows before the edit is allowed.
pub(crate) fn edit_diff(tool: &str, input: &Value) -> Option<String> {
    match tool {
        "Write" => Some(html::diff("", field(input, "content"))),
        "Edit" => Some(html::diff(
            field(input, "old_string"),
            field(input, "new_string"),
        )),
        "MultiEdit" => Some(
            input
                .get("edits")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|e| html::diff(field(e, "old_string"), field(e, "new_string")))
                .collect(),
        ),
        _ => None,
    }
}

fn field<'a>(input: &'a Value, key: &str) -> &'a str {
    input.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A tool call with its input and, once known, its result.
fn tool(name: &str, input: &Value, result: Option<&model::protocol::ToolResult>) -> Rendered {
    let (status, is_error) = match result {
        None => ("running", false),
        Some(r) if r.is_error => ("failed", true),
        Some(_) => ("done", false),
    };
    let target = match name {
        "Write" | "Edit" | "MultiEdit" | "Read" | "NotebookEdit" => field(input, "file_path"),
        "Glob" | "Grep" => field(input, "pattern"),
        "WebFetch" => field(input, "url"),
        _ => "",
    };
    let class = if is_error {
        "entry tool tool-error"
    } else {
        "entry tool"
    };
    let mut r = Rendered {
        tool: Some(name.to_owned()),
        status: Some(status),
        ..Rendered::new(class)
    }
    .raw("<header><span class=\"tool-name\">")
    .text(name)
    .raw("</span> <code class=\"tool-target\">")
    .text(target)
    .raw("</code><span class=\"tool-status status-")
    .raw(status)
    .raw("\">")
    .raw(status)
    .raw("</span></header>");
    if let Some(diff) = edit_diff(name, input) {
        r = r.raw(&diff);
    }
    match name {
        "Write" | "Edit" | "MultiEdit" => {}
        "Bash" => {
            r = r
                .raw("<pre class=\"command\"><span class=\"prompt\">$ </span>")
                .text(field(input, "command"))
                .raw("</pre>")
        }
        "Read" | "Glob" | "Grep" | "WebFetch" => {}
        _ => {
            r = r
                .raw("<details class=\"tool-input\"><summary>Input</summary><pre>")
                .text(&serde_json::to_string_pretty(input).unwrap_or_default())
                .raw("</pre></details>")
        }
    }
    // Edits show their change; their tool output says little. Others show their output.
    let shows_output = !matches!(name, "Write" | "Edit" | "MultiEdit") || is_error;
    match result.filter(|_| shows_output) {
        Some(res) => output(r, &res.content),
        None => r,
    }
}

/// A tool's output: the first lines, the rest on request.
fn output(r: Rendered, text: &str) -> Rendered {
    let lines = text.lines().count();
    if lines <= PREVIEW_LINES {
        return r
            .raw("<pre class=\"tool-result\">")
            .text(text)
            .raw("</pre>");
    }
    let preview = text
        .lines()
        .take(PREVIEW_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    r.raw("<details class=\"tool-result-more\"><summary><pre class=\"tool-result\">")
        .text(&preview)
        .raw("</pre><span class=\"muted\">")
        .text(&format!("show all {lines} lines"))
        .raw("</span></summary><pre class=\"tool-result\">")
        .text(text)
        .raw("</pre></details>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::protocol::{ErrorEvent, ToolResult};
    use serde_json::json;

    fn entry(kind: EntryKind) -> Entry {
        Entry {
            seq: 7,
            ts: 0,
            version: 0,
            kind,
        }
    }

    #[test]
    fn an_edit_asked_for_approval_shows_its_change_escaped() {
        let ask = model::protocol::Ask {
            id: "r1".into(),
            tool: "Edit".into(),
            input: json!({"file_path": "src/a.rs", "old_string": "let a = 1;", "new_string": "let a = <b>2</b>;"}),
        };
        let r = render(&entry(EntryKind::Ask {
            ask: ask.clone(),
            answer: None,
        }));
        assert!(r.body.contains("diff-line removed"), "{}", r.body);
        assert!(r.body.contains("let a = 1;"), "{}", r.body);
        assert!(
            r.body.contains("let a = &lt;b&gt;2&lt;/b&gt;;"),
            "{}",
            r.body
        );
        // A command shows no diff.
        let bash = model::protocol::Ask {
            tool: "Bash".into(),
            input: json!({"command": "ls"}),
            ..ask
        };
        let r = render(&entry(EntryKind::Ask {
            ask: bash,
            answer: None,
        }));
        assert!(!r.body.contains("class=\"diff\""), "{}", r.body);
    }

    #[test]
    fn costs_have_four_decimals() {
        assert_eq!(usd(0.0), "$0.0000");
        assert_eq!(usd(1.23456), "$1.2346");
        assert_eq!(usd(12.5), "$12.5000");
        assert_eq!(usd(-1.0), "$0.0000");
    }

    #[test]
    fn user_text_and_tool_fields_are_escaped() {
        let r = render(&entry(EntryKind::User {
            text: "<img src=x onerror=alert(1)>".into(),
            sender: "<b>me</b>".into(),
        }));
        assert_eq!(
            r.body,
            "<header>&lt;b&gt;me&lt;/b&gt;</header><div class=\"text\">&lt;img src=x onerror=alert(1)&gt;</div>"
        );
        let r = render(&entry(EntryKind::Tool {
            id: "t".into(),
            name: "Bash".into(),
            input: json!({"command": "echo '<hi>'"}),
            result: Some(ToolResult {
                tool_use_id: "t".into(),
                content: "<hi>".into(),
                is_error: false,
            }),
        }));
        assert_eq!(r.tool.as_deref(), Some("Bash"));
        assert_eq!(r.status, Some("done"));
        assert!(
            r.body
                .contains("<span class=\"prompt\">$ </span>echo &#39;&lt;hi&gt;&#39;</pre>")
        );
        assert!(
            r.body
                .contains("<pre class=\"tool-result\">&lt;hi&gt;</pre>")
        );
    }

    #[test]
    fn writes_show_a_diff_not_their_output_and_long_output_folds() {
        let r = render(&entry(EntryKind::Tool {
            id: "t".into(),
            name: "Write".into(),
            input: json!({"file_path": "a.txt", "content": "x\n"}),
            result: Some(ToolResult {
                tool_use_id: "t".into(),
                content: "File created".into(),
                is_error: false,
            }),
        }));
        assert!(
            r.body
                .contains("<div class=\"diff-line added\"><span class=\"mark\">+</span>x</div>")
        );
        assert!(!r.body.contains("File created"));
        let long = (1..=50)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let r = output(Rendered::new("entry tool"), &long);
        assert!(r.body.starts_with("<details class=\"tool-result-more\">"));
        assert!(r.body.contains("show all 50 lines"));
    }

    #[test]
    fn errors_are_alerts_and_pull_requests_link_only_to_the_web() {
        let r = render(&entry(EntryKind::Error(ErrorEvent {
            code: Some("no_credentials".into()),
            message: "No model credentials".into(),
        })));
        assert_eq!(
            (r.role, r.code.as_deref()),
            (Some("alert"), Some("no_credentials"))
        );
        let pr = |url: &str| {
            render(&entry(EntryKind::PullRequest(
                model::protocol::PullRequest {
                    repo: "r".into(),
                    number: 3,
                    url: url.into(),
                },
            )))
            .body
        };
        assert!(pr("https://h/p/3").contains("<a href=\"https://h/p/3\""));
        assert!(!pr("javascript:alert(1)").contains("<a "));
    }
}
