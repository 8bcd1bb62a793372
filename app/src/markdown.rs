//! The Markdown agents write, parsed into a small tree (rendered by [`crate::html`], which
//! escapes all text, so nothing in a message can inject markup): headings, paragraphs, fenced code,
//! lists, quotes, rules, pipe tables; inline code, strong, emphasis and http(s) links.
//!
//! Hand-written rather than a CommonMark crate: it covers what agents emit at a fraction of
//! the browser download.

/// A block of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// `#`…`######` heading.
    Heading(u8, Vec<Inline>),
    /// A paragraph.
    Paragraph(Vec<Inline>),
    /// A fenced code block with its language.
    Code {
        /// Language tag after the fence.
        lang: String,
        /// The code.
        text: String,
    },
    /// A bullet (`ordered == false`) or numbered list.
    List {
        /// Numbered.
        ordered: bool,
        /// Items.
        items: Vec<Vec<Inline>>,
    },
    /// A block quote.
    Quote(Vec<Inline>),
    /// A horizontal rule.
    Rule,
    /// A pipe table: header cells, then rows.
    Table(Vec<Vec<Inline>>, Vec<Vec<Vec<Inline>>>),
}

/// Inline content.
#[derive(Debug, Clone, PartialEq)]
pub enum Inline {
    /// Plain text.
    Text(String),
    /// `code`.
    Code(String),
    /// **strong**.
    Strong(Vec<Inline>),
    /// *emphasis*.
    Emphasis(Vec<Inline>),
    /// [text](http…) — only http(s) and mailto targets become links.
    Link(Vec<Inline>, String),
}

fn fence(line: &str) -> Option<(&str, &str)> {
    let t = line.trim_start();
    ["```", "~~~"]
        .into_iter()
        .find_map(|f| t.strip_prefix(f).map(|rest| (f, rest.trim())))
}

fn list_item(line: &str) -> Option<(bool, &str)> {
    let t = line.trim_start();
    for marker in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(marker) {
            return Some((false, rest));
        }
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits) {
        let rest = &t[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some((true, rest));
        }
    }
    None
}

fn is_rule(line: &str) -> bool {
    let t: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    t.len() >= 3
        && (t.chars().all(|c| c == '-')
            || t.chars().all(|c| c == '*')
            || t.chars().all(|c| c == '_'))
}

fn cells(line: &str) -> Vec<&str> {
    let t = line.trim().trim_start_matches('|').trim_end_matches('|');
    t.split('|').map(str::trim).collect()
}

fn is_table_separator(line: &str) -> bool {
    let c = cells(line);
    !c.is_empty()
        && c.iter()
            .all(|cell| !cell.is_empty() && cell.chars().all(|ch| matches!(ch, '-' | ':')))
}

/// Parses a document.
pub fn parse(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |p: &mut Vec<&str>, blocks: &mut Vec<Block>| {
        if !p.is_empty() {
            blocks.push(Block::Paragraph(inline(&p.join(" "))));
            p.clear();
        }
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        if let Some((marker, lang)) = fence(line) {
            flush(&mut paragraph, &mut blocks);
            let mut code = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with(marker) {
                code.push(lines[i]);
                i += 1;
            }
            blocks.push(Block::Code {
                lang: lang.to_owned(),
                text: code.join("\n"),
            });
            i += 1;
            continue;
        }
        if trimmed.is_empty() {
            flush(&mut paragraph, &mut blocks);
        } else if let Some(rest) = trimmed.strip_prefix('#').map(|_| trimmed)
            && let level = rest.bytes().take_while(|b| *b == b'#').count()
            && level <= 6
            && rest[level..].starts_with(' ')
        {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Heading(level as u8, inline(rest[level..].trim())));
        } else if is_rule(trimmed) && paragraph.is_empty() {
            blocks.push(Block::Rule);
        } else if trimmed.starts_with('>') {
            flush(&mut paragraph, &mut blocks);
            let mut quote = Vec::new();
            while i < lines.len() && lines[i].trim_start().starts_with('>') {
                quote.push(lines[i].trim_start()[1..].trim());
                i += 1;
            }
            blocks.push(Block::Quote(inline(&quote.join(" "))));
            continue;
        } else if trimmed.starts_with('|')
            && i + 1 < lines.len()
            && is_table_separator(lines[i + 1])
        {
            flush(&mut paragraph, &mut blocks);
            let header = cells(trimmed).into_iter().map(inline).collect();
            let mut rows = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].trim().starts_with('|') {
                rows.push(cells(lines[i]).into_iter().map(inline).collect());
                i += 1;
            }
            blocks.push(Block::Table(header, rows));
            continue;
        } else if let Some((ordered, first)) = list_item(line) {
            flush(&mut paragraph, &mut blocks);
            let mut items = vec![first.to_owned()];
            i += 1;
            while i < lines.len() {
                let l = lines[i];
                match list_item(l) {
                    Some((o, rest)) if o == ordered => items.push(rest.to_owned()),
                    // An indented line continues the item.
                    None if !l.trim().is_empty() && l.starts_with("  ") => {
                        if let Some(last) = items.last_mut() {
                            last.push(' ');
                            last.push_str(l.trim());
                        }
                    }
                    _ => break,
                }
                i += 1;
            }
            blocks.push(Block::List {
                ordered,
                items: items.iter().map(|t| inline(t)).collect(),
            });
            continue;
        } else {
            paragraph.push(trimmed);
        }
        i += 1;
    }
    flush(&mut paragraph, &mut blocks);
    blocks
}

/// Nesting deeper than this is shown as text: agents never write it, and a hostile text
/// must not make the parser recurse without bound.
const MAX_DEPTH: usize = 6;

/// Parses inline content, in time linear in its length (times the small nesting depth).
pub fn inline(text: &str) -> Vec<Inline> {
    inline_at(text, 0)
}

/// The next occurrence of a needle at or after a position, remembered. The positions asked
/// for only grow, so a remembered answer stays right until the position passes it: each
/// needle is searched for once per occurrence, not once per opening marker (which made
/// `[[[[…` quadratic).
struct Next<'a> {
    text: &'a str,
    needle: &'static str,
    /// The last answer, and the position it was asked for.
    last: Option<(usize, Option<usize>)>,
}

impl<'a> Next<'a> {
    fn new(text: &'a str, needle: &'static str) -> Self {
        Next {
            text,
            needle,
            last: None,
        }
    }

    fn at(&mut self, pos: usize) -> Option<usize> {
        match self.last {
            Some((from, found)) if from <= pos && found.is_none_or(|q| q >= pos) => found,
            _ => {
                let rest = self.text.get(pos..).unwrap_or_default();
                let found = rest.find(self.needle);
                #[cfg(test)]
                SCANNED.with(|s| s.set(s.get() + found.unwrap_or(rest.len())));
                let found = found.map(|i| pos + i);
                self.last = Some((pos, found));
                found
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes searched by [`Next`], for the test that the parser is linear.
    static SCANNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn inline_at(text: &str, depth: usize) -> Vec<Inline> {
    if depth > MAX_DEPTH {
        return vec![Inline::Text(text.to_owned())];
    }
    let mut out = Vec::new();
    let mut plain = String::new();
    let push_plain = |plain: &mut String, out: &mut Vec<Inline>| {
        if !plain.is_empty() {
            out.push(Inline::Text(std::mem::take(plain)));
        }
    };
    let mut tick = Next::new(text, "`");
    let mut stars = Next::new(text, "**");
    let mut unders = Next::new(text, "__");
    let mut star = Next::new(text, "*");
    let mut under = Next::new(text, "_");
    let mut link = Next::new(text, "](");
    let mut paren = Next::new(text, ")");
    let mut p = 0;
    while let Some(c) = text[p..].chars().next() {
        // `code`
        if c == '`'
            && let Some(end) = tick.at(p + 1)
        {
            push_plain(&mut plain, &mut out);
            out.push(Inline::Code(text[p + 1..end].to_owned()));
            p = end + 1;
            continue;
        }
        // **strong** or __strong__
        let strong = [("**", &mut stars), ("__", &mut unders)]
            .into_iter()
            .find_map(|(m, next)| {
                text[p..]
                    .starts_with(m)
                    .then(|| next.at(p + 2).filter(|e| *e > p + 2))
                    .flatten()
            });
        if let Some(end) = strong {
            push_plain(&mut plain, &mut out);
            out.push(Inline::Strong(inline_at(&text[p + 2..end], depth + 1)));
            p = end + 2;
            continue;
        }
        // *emphasis* or _emphasis_ (not inside words for _)
        let emphasis = match c {
            '*' => Some(&mut star),
            '_' if !plain.ends_with(|p: char| p.is_alphanumeric()) => Some(&mut under),
            _ => None,
        };
        if let Some(next) = emphasis
            && !text[p + 1..].starts_with(' ')
            && let Some(end) = next.at(p + 1).filter(|e| *e > p + 1)
        {
            push_plain(&mut plain, &mut out);
            out.push(Inline::Emphasis(inline_at(&text[p + 1..end], depth + 1)));
            p = end + 1;
            continue;
        }
        // [text](target)
        if c == '['
            && let Some(close) = link.at(p)
            && let Some(end) = paren.at(close)
        {
            let target = text[close + 2..end].trim();
            if target.starts_with("https://")
                || target.starts_with("http://")
                || target.starts_with("mailto:")
            {
                push_plain(&mut plain, &mut out);
                out.push(Inline::Link(
                    inline_at(&text[p + 1..close], depth + 1),
                    target.to_owned(),
                ));
                p = end + 1;
                continue;
            }
        }
        plain.push(c);
        p += c.len_utf8();
    }
    push_plain(&mut plain, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Inline {
        Inline::Text(s.into())
    }

    #[test]
    fn blocks() {
        let doc = parse(
            "# Title\n\nSome *nice* text\ncontinued.\n\n```rust\nfn main() {}\n```\n- a\n- b\n  more\n\n1. one\n2. two\n\n> quoted\n\n---\n| a | b |\n|---|:-:|\n| 1 | 2 |",
        );
        assert_eq!(doc[0], Block::Heading(1, vec![t("Title")]));
        assert_eq!(
            doc[1],
            Block::Paragraph(vec![
                t("Some "),
                Inline::Emphasis(vec![t("nice")]),
                t(" text continued.")
            ])
        );
        assert_eq!(
            doc[2],
            Block::Code {
                lang: "rust".into(),
                text: "fn main() {}".into()
            }
        );
        assert_eq!(
            doc[3],
            Block::List {
                ordered: false,
                items: vec![vec![t("a")], vec![t("b more")]]
            }
        );
        assert_eq!(
            doc[4],
            Block::List {
                ordered: true,
                items: vec![vec![t("one")], vec![t("two")]]
            }
        );
        assert_eq!(doc[5], Block::Quote(vec![t("quoted")]));
        assert_eq!(doc[6], Block::Rule);
        assert_eq!(
            doc[7],
            Block::Table(
                vec![vec![t("a")], vec![t("b")]],
                vec![vec![vec![t("1")], vec![t("2")]]]
            )
        );
    }

    #[test]
    fn inlines() {
        assert_eq!(
            inline("run `cargo test` **now**"),
            vec![
                t("run "),
                Inline::Code("cargo test".into()),
                t(" "),
                Inline::Strong(vec![t("now")])
            ]
        );
        assert_eq!(
            inline("see [docs](https://x.io/a)"),
            vec![
                t("see "),
                Inline::Link(vec![t("docs")], "https://x.io/a".into())
            ]
        );
        // Scripts are not links; snake_case is not emphasis; unclosed markers are text.
        assert_eq!(
            inline("[x](javascript:alert(1))"),
            vec![t("[x](javascript:alert(1))")]
        );
        assert_eq!(inline("my_var_name"), vec![t("my_var_name")]);
        assert_eq!(inline("2 * 3 and `x"), vec![t("2 * 3 and `x")]);
        assert_eq!(
            inline("**a****b**"),
            vec![Inline::Strong(vec![t("a")]), Inline::Strong(vec![t("b")])]
        );
    }

    /// Counts the bytes the parser searches on hostile input: the work must grow linearly
    /// (a count, not a timing, so the test cannot flake). 100 KB of `[` searched 5 GB
    /// (seconds of CPU on every render) when each `[` looked for its `](` afresh.
    #[test]
    fn hostile_markers_parse_in_linear_time() {
        for unit in [
            "[",
            "[a](",
            "*a",
            "**",
            "`",
            "_ ",
            "[x](http://a",
            "](",
            "*[_`",
            "**_*",
            "[**",
        ] {
            let text = unit.repeat(100_000 / unit.len());
            SCANNED.with(|s| s.set(0));
            let parsed = inline(&text);
            let scanned = SCANNED.with(|s| s.get());
            assert!(
                scanned <= 8 * (MAX_DEPTH + 1) * text.len(),
                "{unit:?}: searched {scanned} bytes of a {} byte text",
                text.len()
            );
            let len: usize = parsed.iter().map(text_len).sum();
            assert!(len <= text.len(), "{unit:?}");
        }
    }

    fn text_len(i: &Inline) -> usize {
        match i {
            Inline::Text(t) | Inline::Code(t) => t.len(),
            Inline::Strong(c) | Inline::Emphasis(c) | Inline::Link(c, _) => {
                c.iter().map(text_len).sum()
            }
        }
    }

    #[test]
    fn an_unclosed_fence_takes_the_rest() {
        assert_eq!(
            parse("```\nlet x = 1;"),
            vec![Block::Code {
                lang: String::new(),
                text: "let x = 1;".into()
            }]
        );
    }

    #[test]
    fn arbitrary_text_never_panics() {
        for s in [
            "",
            "*",
            "**",
            "`",
            "[",
            "[]()",
            "# ",
            "#",
            "|",
            "|\n|-|",
            "1.",
            "> ",
            "_a_b_",
            "é*ü*",
            "**é",
            "[é](https://é)",
        ] {
            let _ = parse(s);
        }
    }
}
