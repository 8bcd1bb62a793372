//! How each transcript entry looks.

use leptos::prelude::*;
use serde_json::Value;

use crate::diff::{self, Line};
use crate::highlight::highlight;
use crate::markdown::{self, Block, Inline};
use crate::transcript::{Entry, EntryKind};

/// Lines of a tool's output shown before "show all".
const PREVIEW_LINES: usize = 40;

/// One transcript entry.
#[component]
pub fn EntryView(entry: Entry) -> impl IntoView {
    let seq = entry.seq;
    match entry.kind {
        EntryKind::User { text, sender } => view! {
            <article class="entry user" data-seq=seq>
                <header>{sender}</header>
                <div class="text">{text}</div>
            </article>
        }
        .into_any(),
        EntryKind::Agent { text, streaming, .. } => view! {
            <article class="entry agent" class:streaming=streaming data-seq=seq>
                <Markdown text/>
            </article>
        }
        .into_any(),
        EntryKind::Thinking { text } => view! {
            <details class="entry thinking" data-seq=seq>
                <summary>"Thinking"</summary>
                <div class="text">{text}</div>
            </details>
        }
        .into_any(),
        EntryKind::Tool { name, input, result, .. } => view! { <ToolCard seq name input result/> }.into_any(),
        EntryKind::Log(l) => view! { <p class=format!("entry log log-{:?}", l.level).to_lowercase() data-seq=seq>{l.message}</p> }.into_any(),
        EntryKind::Error(e) => view! {
            <div class="entry error" role="alert" data-seq=seq data-code=e.code.clone().unwrap_or_default()>{e.message}</div>
        }
        .into_any(),
        EntryKind::Phase { phase, message } => view! {
            <p class="entry phase" data-seq=seq>
                "Phase " <strong>{phase.as_str()}</strong>
                {message.map(|m| view! { <span class="phase-message">{format!(" — {m}")}</span> })}
            </p>
        }
        .into_any(),
        EntryKind::Turn(t) => view! {
            <p class="entry turn muted" data-seq=seq>
                {format!(
                    "Turn {}: {} model calls, {} in / {} out tokens, ${:.4}",
                    if t.is_error { "ended" } else { "finished" },
                    t.num_turns, t.usage.input_tokens + t.usage.cache_read_input_tokens + t.usage.cache_creation_input_tokens,
                    t.usage.output_tokens, t.usage.cost_usd
                )}
            </p>
        }
        .into_any(),
        EntryKind::Result(r) => view! {
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
        }
        .into_any(),
        EntryKind::Control { what, sender } => view! {
            <p class="entry control muted" data-seq=seq>{format!("{sender} asked to {what}")}</p>
        }
        .into_any(),
        EntryKind::Push(p) => view! {
            <p class="entry git" data-seq=seq>
                "Pushed " <strong>{p.repo}</strong> " to branch " <code>{p.branch}</code> " "
                <span class="muted">{p.commit.chars().take(10).collect::<String>()}</span>
            </p>
        }
        .into_any(),
        EntryKind::PullRequest(p) => view! {
            <p class="entry git pr" data-seq=seq>
                {format!("Pull request #{} for ", p.number)} <strong>{p.repo}</strong> ": "
                <a href=p.url.clone() target="_blank" rel="noopener noreferrer">{p.url.clone()}</a>
            </p>
        }
        .into_any(),
    }
}

/// Markdown, rendered as views (never raw HTML).
#[component]
pub fn Markdown(text: String) -> impl IntoView {
    markdown::parse(&text).into_iter().map(block).collect_view()
}

fn block(b: Block) -> AnyView {
    match b {
        Block::Heading(level, content) => {
            let inner = inlines(content);
            match level {
                1 => view! { <h3>{inner}</h3> }.into_any(),
                2 => view! { <h4>{inner}</h4> }.into_any(),
                _ => view! { <h5>{inner}</h5> }.into_any(),
            }
        }
        Block::Paragraph(content) => view! { <p>{inlines(content)}</p> }.into_any(),
        Block::Code { lang, text } => view! { <CodeBlock lang text/> }.into_any(),
        Block::List { ordered: true, items } => {
            view! { <ol>{items.into_iter().map(|i| view! { <li>{inlines(i)}</li> }).collect_view()}</ol> }.into_any()
        }
        Block::List { ordered: false, items } => {
            view! { <ul>{items.into_iter().map(|i| view! { <li>{inlines(i)}</li> }).collect_view()}</ul> }.into_any()
        }
        Block::Quote(content) => view! { <blockquote>{inlines(content)}</blockquote> }.into_any(),
        Block::Rule => view! { <hr/> }.into_any(),
        Block::Table(head, rows) => view! {
            <table class="md-table">
                <thead><tr>{head.into_iter().map(|c| view! { <th>{inlines(c)}</th> }).collect_view()}</tr></thead>
                <tbody>
                    {rows.into_iter().map(|r| view! {
                        <tr>{r.into_iter().map(|c| view! { <td>{inlines(c)}</td> }).collect_view()}</tr>
                    }).collect_view()}
                </tbody>
            </table>
        }
        .into_any(),
    }
}

fn inlines(items: Vec<Inline>) -> AnyView {
    items
        .into_iter()
        .map(|i| match i {
            Inline::Text(t) => t.into_any(),
            Inline::Code(c) => view! { <code>{c}</code> }.into_any(),
            Inline::Strong(c) => view! { <strong>{inlines(c)}</strong> }.into_any(),
            Inline::Emphasis(c) => view! { <em>{inlines(c)}</em> }.into_any(),
            Inline::Link(c, href) => {
                view! { <a href=href target="_blank" rel="noopener noreferrer">{inlines(c)}</a> }
                    .into_any()
            }
        })
        .collect_view()
        .into_any()
}

/// A code block with syntax highlighting.
#[component]
fn CodeBlock(lang: String, text: String) -> impl IntoView {
    let tokens: Vec<(&'static str, String)> = highlight(&lang, &text)
        .into_iter()
        .map(|(k, s)| (k.class(), s.to_owned()))
        .collect();
    view! {
        <pre class="code" data-lang=lang.clone()>
            <code>{tokens.into_iter().map(|(class, s)| view! { <span class=class>{s}</span> }).collect_view()}</code>
        </pre>
    }
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
    let body = match name.as_str() {
        "Write" => view! { <Diff old=String::new() new=field(&input, "content").to_owned()/> }.into_any(),
        "Edit" => view! { <Diff old=field(&input, "old_string").to_owned() new=field(&input, "new_string").to_owned()/> }.into_any(),
        "MultiEdit" => input
            .get("edits")
            .and_then(Value::as_array)
            .map(|edits| {
                edits
                    .iter()
                    .map(|e| view! { <Diff old=field(e, "old_string").to_owned() new=field(e, "new_string").to_owned()/> })
                    .collect_view()
                    .into_any()
            })
            .unwrap_or_else(|| ().into_any()),
        "Bash" => view! { <pre class="command"><span class="prompt">"$ "</span>{field(&input, "command").to_owned()}</pre> }.into_any(),
        "Read" | "Glob" | "Grep" | "WebFetch" => ().into_any(),
        _ => view! {
            <details class="tool-input">
                <summary>"Input"</summary>
                <pre>{serde_json::to_string_pretty(&input).unwrap_or_default()}</pre>
            </details>
        }
        .into_any(),
    };
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
            {body}
            {output}
        </article>
    }
}

/// A tool's output: the first lines, the rest on request.
#[component]
fn Output(text: String) -> impl IntoView {
    let lines = text.lines().count();
    if lines <= PREVIEW_LINES {
        return view! { <pre class="tool-result">{text}</pre> }.into_any();
    }
    let preview: String = text
        .lines()
        .take(PREVIEW_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    view! {
        <details class="tool-result-more">
            <summary>
                <pre class="tool-result">{preview}</pre>
                <span class="muted">{format!("show all {lines} lines")}</span>
            </summary>
            <pre class="tool-result">{text}</pre>
        </details>
    }
    .into_any()
}

/// A line diff.
#[component]
fn Diff(old: String, new: String) -> impl IntoView {
    let rows = diff::lines(&old, &new)
        .into_iter()
        .map(|l| {
            let (class, mark, text) = match l {
                Line::Same(t) => ("same", " ", t),
                Line::Added(t) => ("added", "+", t),
                Line::Removed(t) => ("removed", "-", t),
            };
            view! { <div class=format!("diff-line {class}")><span class="mark">{mark}</span>{text.to_owned()}</div> }
        })
        .collect_view();
    view! { <div class="diff">{rows}</div> }
}
