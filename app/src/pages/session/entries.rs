//! How each transcript entry looks.

use leptos::either::{Either, EitherOf12};
use leptos::prelude::*;
use serde_json::Value;

use crate::html;
use crate::transcript::{Entry, EntryKind};

/// Lines of a tool's output shown before "show all".
const PREVIEW_LINES: usize = 40;

/// One transcript entry.
#[component]
pub fn EntryView(entry: Entry) -> impl IntoView {
    let seq = entry.seq;
    match entry.kind {
        EntryKind::User { text, sender } => EitherOf12::A(view! {
            <article class="entry user" data-seq=seq>
                <header>{sender}</header>
                <div class="text">{text}</div>
            </article>
        }),
        EntryKind::Agent {
            text, streaming, ..
        } => EitherOf12::B(view! {
            <article class="entry agent" class:streaming=streaming data-seq=seq>
                <Markdown text/>
            </article>
        }),
        EntryKind::Thinking { text } => EitherOf12::C(view! {
            <details class="entry thinking" data-seq=seq>
                <summary>"Thinking"</summary>
                <div class="text">{text}</div>
            </details>
        }),
        EntryKind::Tool {
            name,
            input,
            result,
            ..
        } => EitherOf12::D(view! { <ToolCard seq name input result/> }),
        EntryKind::Log(l) => EitherOf12::E(
            view! { <p class=format!("entry log log-{:?}", l.level).to_lowercase() data-seq=seq>{l.message}</p> },
        ),
        EntryKind::Error(e) => EitherOf12::F(view! {
            <div class="entry error" role="alert" data-seq=seq data-code=e.code.clone().unwrap_or_default()>{e.message}</div>
        }),
        EntryKind::Phase { phase, message } => EitherOf12::G(view! {
            <p class="entry phase" data-seq=seq>
                "Phase " <strong>{phase.as_str()}</strong>
                {message.map(|m| view! { <span class="phase-message">{format!(" — {m}")}</span> })}
            </p>
        }),
        EntryKind::Turn(t) => EitherOf12::H(view! {
            <p class="entry turn muted" data-seq=seq>
                {format!(
                    "Turn {}: {} model calls, {} in / {} out tokens, ${:.4}",
                    if t.is_error { "ended" } else { "finished" },
                    t.num_turns, t.usage.input_tokens + t.usage.cache_read_input_tokens + t.usage.cache_creation_input_tokens,
                    t.usage.output_tokens, t.usage.cost_usd
                )}
            </p>
        }),
        EntryKind::Result(r) => EitherOf12::I(view! {
            <article class="entry result" class:result-error=r.is_error data-seq=seq>
                <header>{if r.is_error { "Run failed" } else { "Run finished" }}</header>
                <dl>
                    <dt>"Turns"</dt><dd>{r.num_turns}</dd>
                    <dt>"Tokens"</dt>
                    <dd>{format!("{} in / {} out", r.usage.input_tokens + r.usage.cache_read_input_tokens + r.usage.cache_creation_input_tokens, r.usage.output_tokens)}</dd>
                    <dt>"Cost"</dt><dd>{format!("${:.4}", r.usage.cost_usd)}</dd>
                    <dt>"Duration"</dt><dd>{crate::time::duration(r.duration_ms as i64)}</dd>
                    <dt>"Exit code"</dt><dd>{r.exit_code}</dd>
                </dl>
            </article>
        }),
        EntryKind::Control { what, sender } => EitherOf12::J(view! {
            <p class="entry control muted" data-seq=seq>{format!("{sender} asked to {what}")}</p>
        }),
        EntryKind::Push(p) => EitherOf12::K(view! {
            <p class="entry git" data-seq=seq>
                "Pushed " <strong>{p.repo}</strong> " to branch " <code>{p.branch}</code> " "
                <span class="muted">{p.commit.chars().take(10).collect::<String>()}</span>
            </p>
        }),
        EntryKind::PullRequest(p) => EitherOf12::L(view! {
            <p class="entry git pr" data-seq=seq>
                {format!("Pull request #{} for ", p.number)} <strong>{p.repo}</strong> ": "
                <a href=p.url.clone() target="_blank" rel="noopener noreferrer">{p.url.clone()}</a>
            </p>
        }),
    }
}

/// Markdown, as escaped HTML built from our own parse tree (see [`crate::html`]).
#[component]
pub fn Markdown(text: String) -> impl IntoView {
    view! { <div class="md" inner_html=html::markdown(&text)></div> }
}

fn field<'a>(input: &'a Value, key: &str) -> &'a str {
    input.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A tool call with its input and, once known, its result.
#[component]
fn ToolCard(
    seq: u64,
    name: String,
    input: Value,
    result: Option<model::protocol::ToolResult>,
) -> impl IntoView {
    let (status, is_error) = match &result {
        None => ("running", false),
        Some(r) if r.is_error => ("failed", true),
        Some(_) => ("done", false),
    };
    let header = match name.as_str() {
        "Write" | "Edit" | "MultiEdit" | "Read" | "NotebookEdit" => {
            field(&input, "file_path").to_owned()
        }
        "Bash" => String::new(),
        "Glob" | "Grep" => field(&input, "pattern").to_owned(),
        "WebFetch" => field(&input, "url").to_owned(),
        _ => String::new(),
    };
    let diff = match name.as_str() {
        "Write" => Some(html::diff("", field(&input, "content"))),
        "Edit" => Some(html::diff(
            field(&input, "old_string"),
            field(&input, "new_string"),
        )),
        "MultiEdit" => input.get("edits").and_then(Value::as_array).map(|edits| {
            edits
                .iter()
                .map(|e| html::diff(field(e, "old_string"), field(e, "new_string")))
                .collect::<String>()
        }),
        _ => None,
    };
    let command = (name == "Bash").then(|| field(&input, "command").to_owned());
    let raw_input = (diff.is_none()
        && !matches!(
            name.as_str(),
            "Bash" | "Read" | "Glob" | "Grep" | "WebFetch"
        ))
    .then(|| serde_json::to_string_pretty(&input).unwrap_or_default());
    // Edits show their change; their tool output says little. Others show their output.
    let shows_output = !matches!(name.as_str(), "Write" | "Edit" | "MultiEdit") || is_error;
    let output = result
        .filter(|_| shows_output)
        .map(|r| view! { <Output text=r.content/> });
    view! {
        <article class="entry tool" class:tool-error=is_error data-seq=seq data-tool=name.clone() data-status=status>
            <header>
                <span class="tool-name">{name.clone()}</span>
                " " <code class="tool-target">{header}</code>
                <span class=format!("tool-status status-{status}")>{status}</span>
            </header>
            {diff.map(|h| view! { <div class="diff-wrap" inner_html=h></div> })}
            {command.map(|c| view! { <pre class="command"><span class="prompt">"$ "</span>{c}</pre> })}
            {raw_input.map(|i| view! {
                <details class="tool-input">
                    <summary>"Input"</summary>
                    <pre>{i}</pre>
                </details>
            })}
            {output}
        </article>
    }
}

/// A tool's output: the first lines, the rest on request.
#[component]
fn Output(text: String) -> impl IntoView {
    let lines = text.lines().count();
    if lines <= PREVIEW_LINES {
        return Either::Left(view! { <pre class="tool-result">{text}</pre> });
    }
    let preview: String = text
        .lines()
        .take(PREVIEW_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    Either::Right(view! {
        <details class="tool-result-more">
            <summary>
                <pre class="tool-result">{preview}</pre>
                <span class="muted">{format!("show all {lines} lines")}</span>
            </summary>
            <pre class="tool-result">{text}</pre>
        </details>
    })
}
