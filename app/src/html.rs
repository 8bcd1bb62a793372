//! Markup for the transcript's rich text (Markdown, highlighted code, diffs) and the session's
//! MCP servers, written as one HTML string per entry and set with `inner_html`.
//!
//! Why strings rather than views: these trees are static once rendered, and building them as
//! Leptos views instantiated render, hydrate and update code for every element shape (and a
//! type-erased view per Markdown node), which was the largest part of the browser bundle.
//! The string is built from our own parse tree, never from the agent's markup: every piece of
//! text and every attribute value is escaped, and only `http(s)`/`mailto` links exist (the
//! parser drops other targets), so nothing in a message can inject markup or script.

use std::fmt::Write as _;

use crate::diff::{self, Line};
use crate::highlight::highlight;
use crate::markdown::{self, Block, Inline};

/// The MCP servers' states: each server's name, state (`connected`, `failed` ...) and the
/// number of its tools (their names in its title). What `claude` reports of a server comes
/// from the server itself, so all of it is escaped.
pub fn mcp_servers(m: &model::protocol::McpStatus) -> String {
    let mut out = String::new();
    if m.servers.is_empty() {
        return out;
    }
    out.push_str("<span class=\"muted\">MCP</span>");
    for s in &m.servers {
        let prefix = format!("mcp__{}__", s.name);
        let tools: Vec<&str> = s
            .tools
            .iter()
            .map(|t| t.strip_prefix(&prefix).unwrap_or(t))
            .collect();
        // The state names a CSS class only when it is one `claude` uses.
        let class = match s.status.as_str() {
            known @ ("connected" | "failed" | "needs-auth" | "pending") => known,
            _ => "other",
        };
        let _ = write!(out, "<span class=\"mcp-server mcp-{class}\" data-mcp=\"");
        escape_into(&mut out, &s.name);
        out.push_str("\" title=\"");
        escape_into(&mut out, &tools.join(", "));
        out.push_str("\">");
        escape_into(&mut out, &s.name);
        out.push_str(" <b>");
        escape_into(&mut out, &s.status);
        let _ = match tools.len() {
            1 => write!(out, "</b> · 1 tool</span>"),
            n => write!(out, "</b> · {n} tools</span>"),
        };
    }
    out
}

/// The session's workflow, by name (its description as the title).
pub fn workflow_name(w: &model::workflow::WorkflowState) -> String {
    let mut out = String::from("<span class=\"workflow-name\" title=\"");
    escape_into(&mut out, &w.description);
    out.push_str("\">Workflow: ");
    escape_into(&mut out, &w.name);
    out.push_str("</span>");
    out
}

/// The workflow's commands offered in the composer: a button per command (its name in
/// `data-command`), its name and description. A workflow is any repository, so all of it
/// is escaped.
pub fn slash_commands(commands: &[model::workflow::WorkflowCommand]) -> String {
    let mut out = String::new();
    for c in commands {
        out.push_str("<li><button type=\"button\" class=\"slash-command\" data-command=\"");
        escape_into(&mut out, &c.name);
        out.push_str("\"><code>/");
        escape_into(&mut out, &c.name);
        out.push_str("</code> <span class=\"muted\">");
        escape_into(&mut out, &c.description);
        out.push_str("</span></button></li>");
    }
    out
}

/// Appends `text` with `&`, `<`, `>`, `"` and `'` escaped (safe in text and quoted attributes).
pub fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// An agent's Markdown as HTML.
pub fn markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for b in markdown::parse(text) {
        block(&mut out, b);
    }
    out
}

fn block(out: &mut String, b: Block) {
    match b {
        Block::Heading(level, content) => {
            // Message headings sit under the page's own: h3 and below.
            let tag = ["h3", "h4", "h5"][usize::from(level.clamp(1, 3)) - 1];
            tagged(out, tag, content);
        }
        Block::Paragraph(content) => tagged(out, "p", content),
        Block::Code { lang, text } => code_into(out, &lang, &text),
        Block::List { ordered, items } => {
            let tag = if ordered { "ol" } else { "ul" };
            let _ = write!(out, "<{tag}>");
            for item in items {
                tagged(out, "li", item);
            }
            let _ = write!(out, "</{tag}>");
        }
        Block::Quote(content) => tagged(out, "blockquote", content),
        Block::Rule => out.push_str("<hr>"),
        Block::Table(head, rows) => {
            out.push_str("<table class=\"md-table\"><thead><tr>");
            for cell in head {
                tagged(out, "th", cell);
            }
            out.push_str("</tr></thead><tbody>");
            for row in rows {
                out.push_str("<tr>");
                for cell in row {
                    tagged(out, "td", cell);
                }
                out.push_str("</tr>");
            }
            out.push_str("</tbody></table>");
        }
    }
}

fn tagged(out: &mut String, tag: &str, content: Vec<Inline>) {
    let _ = write!(out, "<{tag}>");
    inlines(out, content);
    let _ = write!(out, "</{tag}>");
}

fn inlines(out: &mut String, items: Vec<Inline>) {
    for i in items {
        match i {
            Inline::Text(t) => escape_into(out, &t),
            Inline::Code(c) => {
                out.push_str("<code>");
                escape_into(out, &c);
                out.push_str("</code>");
            }
            Inline::Strong(c) => tagged(out, "strong", c),
            Inline::Emphasis(c) => tagged(out, "em", c),
            Inline::Link(c, href) => {
                out.push_str("<a href=\"");
                escape_into(out, &href);
                out.push_str("\" target=\"_blank\" rel=\"noopener noreferrer\">");
                inlines(out, c);
                out.push_str("</a>");
            }
        }
    }
}

/// A code block with its tokens highlighted.
fn code_into(out: &mut String, lang: &str, text: &str) {
    out.push_str("<pre class=\"code\" data-lang=\"");
    escape_into(out, lang);
    out.push_str("\"><code>");
    for (kind, s) in highlight(lang, text) {
        let _ = write!(out, "<span class=\"{}\">", kind.class());
        escape_into(out, s);
        out.push_str("</span>");
    }
    out.push_str("</code></pre>");
}

/// Code (a file's text) with its tokens highlighted as `lang`.
pub fn code(lang: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    code_into(&mut out, lang, text);
    out
}

/// A unified diff (`git diff`'s text): added and removed lines marked, hunk headers muted.
pub fn unified_diff(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    out.push_str("<div class=\"diff\">");
    for line in text.lines() {
        let class = match line.as_bytes().first() {
            _ if line.starts_with("+++") || line.starts_with("---") => "head",
            Some(b'+') => "added",
            Some(b'-') => "removed",
            Some(b'@') => "hunk",
            Some(b' ') | None => "same",
            _ => "head",
        };
        let _ = write!(out, "<div class=\"diff-line {class}\">");
        escape_into(&mut out, line);
        out.push_str("</div>");
    }
    out.push_str("</div>");
    out
}

/// A line diff from `old` to `new`.
pub fn diff(old: &str, new: &str) -> String {
    let mut out = String::with_capacity(old.len() + new.len() + 64);
    out.push_str("<div class=\"diff\">");
    for l in diff::lines(old, new) {
        let (class, mark, text) = match l {
            Line::Same(t) => ("same", " ", t),
            Line::Added(t) => ("added", "+", t),
            Line::Removed(t) => ("removed", "-", t),
        };
        let _ = write!(
            out,
            "<div class=\"diff-line {class}\"><span class=\"mark\">{mark}</span>"
        );
        escape_into(&mut out, text);
        out.push_str("</div>");
    }
    out.push_str("</div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_everywhere() {
        let html = markdown(
            "<script>alert('x')</script> & **<b>** `<i>`\n\n```html\n<img onerror=\"x\">\n```",
        );
        assert!(!html.contains("<script>") && !html.contains("<b>") && !html.contains("<img"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; "));
        assert!(html.contains("<strong>&lt;b&gt;</strong>"));
        assert!(html.contains("<code>&lt;i&gt;</code>"));
        assert!(html.contains("&lt;img onerror=&quot;x&quot;&gt;"));
    }

    /// A hostile MCP server names itself and its tools with markup: shown as text.
    #[test]
    fn slash_commands_are_text_whatever_the_workflow_says() {
        use model::workflow::WorkflowCommand;
        let html = slash_commands(&[WorkflowCommand {
            name: "rfe:create".into(),
            description: "<img src=x onerror=alert(1)> \"quoted\"".into(),
        }]);
        assert_eq!(
            html,
            "<li><button type=\"button\" class=\"slash-command\" data-command=\"rfe:create\">\
             <code>/rfe:create</code> <span class=\"muted\">&lt;img src=x onerror=alert(1)&gt; \
             &quot;quoted&quot;</span></button></li>"
        );
        assert_eq!(slash_commands(&[]), "");
        let w = model::workflow::WorkflowState {
            name: "<b>Bug</b>".into(),
            description: "\" onclick=\"x".into(),
            ..Default::default()
        };
        assert_eq!(
            workflow_name(&w),
            "<span class=\"workflow-name\" title=\"&quot; onclick=&quot;x\">Workflow: &lt;b&gt;Bug&lt;/b&gt;</span>"
        );
    }

    #[test]
    fn mcp_servers_are_text_whatever_they_report() {
        use model::protocol::{McpServerState, McpStatus};
        let m = McpStatus {
            servers: vec![
                McpServerState {
                    name: "tiny".into(),
                    status: "connected".into(),
                    tools: vec!["mcp__tiny__add".into()],
                },
                McpServerState {
                    name: "x\"><img src=x onerror=alert(1)>".into(),
                    status: "<b>owned</b>".into(),
                    tools: vec!["\" onmouseover=\"alert(1)".into(), "b".into()],
                },
            ],
        };
        let html = mcp_servers(&m);
        assert!(html.contains(
            r#"<span class="mcp-server mcp-connected" data-mcp="tiny" title="add">tiny <b>connected</b> · 1 tool</span>"#
        ), "{html}");
        assert!(
            !html.contains("<img")
                && !html.contains("<b>owned")
                && !html.contains("\" onmouseover"),
            "{html}"
        );
        assert!(
            html.contains("mcp-other") && html.contains("· 2 tools"),
            "{html}"
        );
        assert_eq!(mcp_servers(&McpStatus::default()), "");
    }

    #[test]
    fn only_web_links_become_anchors_and_their_quotes_are_escaped() {
        let html = markdown("[a](https://x.io/?q=\"><script>) [b](javascript:alert(1))");
        assert_eq!(html.matches("<a ").count(), 1, "{html}");
        assert!(
            html.contains("href=\"https://x.io/?q=&quot;&gt;&lt;script&gt;\""),
            "{html}"
        );
        assert!(!html.contains("href=\"javascript"), "{html}");
    }

    #[test]
    fn blocks_render_as_their_elements() {
        let html = markdown(
            "# T\n\n- a\n- b\n\n1. x\n\n> q\n\n---\n| h |\n|---|\n| c |\n\n```rust\nfn f() {}\n```",
        );
        for piece in [
            "<h3>T</h3>",
            "<ul><li>a</li><li>b</li></ul>",
            "<ol><li>x</li></ol>",
            "<blockquote>q</blockquote>",
            "<hr>",
            "<table class=\"md-table\"><thead><tr><th>h</th></tr></thead><tbody><tr><td>c</td></tr></tbody></table>",
            "<pre class=\"code\" data-lang=\"rust\"><code><span class=\"tok tok-kw\">fn</span>",
        ] {
            assert!(html.contains(piece), "{piece} missing from {html}");
        }
    }

    #[test]
    fn diffs_mark_lines_and_escape_them() {
        let html = diff("a\n<b>\n", "a\nc\n");
        assert_eq!(
            html,
            "<div class=\"diff\">\
             <div class=\"diff-line same\"><span class=\"mark\"> </span>a</div>\
             <div class=\"diff-line removed\"><span class=\"mark\">-</span>&lt;b&gt;</div>\
             <div class=\"diff-line added\"><span class=\"mark\">+</span>c</div>\
             </div>"
        );
    }

    #[test]
    fn unified_diffs_mark_their_lines_and_escape_them() {
        let html = unified_diff("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-<old>\n+new\n same");
        assert_eq!(
            html,
            "<div class=\"diff\">\
             <div class=\"diff-line head\">--- a/x</div>\
             <div class=\"diff-line head\">+++ b/x</div>\
             <div class=\"diff-line hunk\">@@ -1 +1 @@</div>\
             <div class=\"diff-line removed\">-&lt;old&gt;</div>\
             <div class=\"diff-line added\">+new</div>\
             <div class=\"diff-line same\"> same</div>\
             </div>"
        );
    }

    #[test]
    fn code_escapes_its_language_attribute() {
        let html = markdown("```\"><x\ny\n```");
        assert!(
            html.starts_with("<pre class=\"code\" data-lang=\"&quot;&gt;&lt;x\">"),
            "{html}"
        );
    }
}
