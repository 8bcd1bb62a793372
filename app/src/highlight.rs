//! Syntax highlighting of code blocks: a small lexer that knows comments, strings, numbers
//! and the keywords of the languages agents write most (Rust, JS/TS, Python, Go, shell, and
//! C-like ones). Unknown languages stay plain.

/// A token's kind (its CSS class is `tok-<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything else.
    Plain,
    /// A keyword.
    Keyword,
    /// A string literal.
    String,
    /// A comment.
    Comment,
    /// A number.
    Number,
}

impl Kind {
    /// The CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Kind::Plain => "tok",
            Kind::Keyword => "tok tok-kw",
            Kind::String => "tok tok-str",
            Kind::Comment => "tok tok-com",
            Kind::Number => "tok tok-num",
        }
    }
}

struct Lang {
    keywords: &'static [&'static str],
    line_comment: &'static [&'static str],
    block_comment: bool,
}

const RUST: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "else", "enum", "false", "fn",
    "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "return", "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe",
    "use", "where", "while", "dyn",
];
const JS: &[&str] = &[
    "async",
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "default",
    "else",
    "export",
    "extends",
    "false",
    "for",
    "from",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "interface",
    "let",
    "new",
    "null",
    "of",
    "return",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "type",
    "typeof",
    "undefined",
    "var",
    "while",
];
const PYTHON: &[&str] = &[
    "and", "as", "async", "await", "break", "class", "continue", "def", "elif", "else", "except",
    "False", "finally", "for", "from", "if", "import", "in", "is", "lambda", "None", "not", "or",
    "pass", "raise", "return", "True", "try", "while", "with", "yield",
];
const GO: &[&str] = &[
    "break",
    "case",
    "chan",
    "const",
    "continue",
    "default",
    "defer",
    "else",
    "false",
    "for",
    "func",
    "go",
    "if",
    "import",
    "interface",
    "map",
    "nil",
    "package",
    "range",
    "return",
    "select",
    "struct",
    "switch",
    "true",
    "type",
    "var",
];
const SHELL: &[&str] = &[
    "case", "do", "done", "echo", "elif", "else", "esac", "exit", "export", "fi", "for",
    "function", "if", "in", "local", "return", "then", "while",
];
const C_LIKE: &[&str] = &[
    "break", "case", "class", "const", "continue", "default", "else", "enum", "false", "for", "if",
    "int", "new", "null", "private", "public", "return", "static", "struct", "switch", "this",
    "true", "void", "while",
];

fn lang(name: &str) -> Option<Lang> {
    let l = |keywords, line_comment, block_comment| {
        Some(Lang {
            keywords,
            line_comment,
            block_comment,
        })
    };
    match name.to_ascii_lowercase().as_str() {
        "rust" | "rs" => l(RUST, &["//"], true),
        "js" | "javascript" | "ts" | "typescript" | "jsx" | "tsx" => l(JS, &["//"], true),
        "python" | "py" => l(PYTHON, &["#"], false),
        "go" | "golang" => l(GO, &["//"], true),
        "sh" | "bash" | "shell" | "zsh" | "console" => l(SHELL, &["#"], false),
        "c" | "cpp" | "c++" | "java" | "kotlin" | "swift" | "cs" | "csharp" => {
            l(C_LIKE, &["//"], true)
        }
        "json" | "yaml" | "yml" | "toml" => l(&["true", "false", "null"], &["#"], false),
        _ => None,
    }
}

/// Splits `code` into highlighted tokens (concatenated, they are `code` again).
pub fn highlight<'a>(language: &str, code: &'a str) -> Vec<(Kind, &'a str)> {
    let Some(lang) = lang(language) else {
        return vec![(Kind::Plain, code)];
    };
    let mut out: Vec<(Kind, &str)> = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    let mut plain_start = 0;
    let emit = |out: &mut Vec<(Kind, &'a str)>, kind, from: usize, to: usize| {
        if to > from {
            out.push((kind, &code[from..to]));
        }
    };
    while i < bytes.len() {
        let rest = &code[i..];
        let token_end = if let Some(c) = lang.line_comment.iter().find(|c| rest.starts_with(**c)) {
            let _ = c;
            Some((Kind::Comment, i + rest.find('\n').unwrap_or(rest.len())))
        } else if lang.block_comment && rest.starts_with("/*") {
            Some((
                Kind::Comment,
                i + rest.find("*/").map_or(rest.len(), |e| e + 2),
            ))
        } else if matches!(bytes[i], b'"' | b'\'' | b'`') {
            let quote = bytes[i];
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != quote && bytes[j] != b'\n' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            // Rust lifetimes ('a) are not strings.
            if quote == b'\'' && (j >= bytes.len() || bytes[j] != quote) {
                None
            } else {
                Some((Kind::String, (j + 1).min(bytes.len())))
            }
        } else if bytes[i].is_ascii_digit() && (i == 0 || !is_ident(bytes[i - 1])) {
            let mut j = i;
            while j < bytes.len()
                && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'.' || bytes[j] == b'_')
            {
                j += 1;
            }
            Some((Kind::Number, j))
        } else if is_ident(bytes[i]) && (i == 0 || !is_ident(bytes[i - 1])) {
            let mut j = i;
            while j < bytes.len() && is_ident(bytes[j]) {
                j += 1;
            }
            lang.keywords
                .contains(&&code[i..j])
                .then_some((Kind::Keyword, j))
        } else {
            None
        };
        match token_end {
            Some((kind, end)) => {
                emit(&mut out, Kind::Plain, plain_start, i);
                emit(&mut out, kind, i, end);
                i = end;
                plain_start = end;
            }
            None => {
                i += rest.chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    emit(&mut out, Kind::Plain, plain_start, code.len());
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_tokens() {
        let toks = highlight("rust", "let x = \"hi\"; // note\nfn f<'a>() -> u32 { 42 }");
        assert_eq!(
            toks.iter().map(|t| t.1).collect::<String>(),
            "let x = \"hi\"; // note\nfn f<'a>() -> u32 { 42 }"
        );
        assert!(toks.contains(&(Kind::Keyword, "let")));
        assert!(toks.contains(&(Kind::String, "\"hi\"")));
        assert!(toks.contains(&(Kind::Comment, "// note")));
        assert!(toks.contains(&(Kind::Number, "42")));
        assert!(
            !toks
                .iter()
                .any(|t| t.0 == Kind::String && t.1.starts_with('\''))
        );
    }

    #[test]
    fn unknown_languages_and_odd_input_stay_whole() {
        assert_eq!(highlight("brainfuck", "+[>]"), vec![(Kind::Plain, "+[>]")]);
        for s in ["\"", "/*", "'", "é\"ü", "x\\"] {
            assert_eq!(
                highlight("js", s).iter().map(|t| t.1).collect::<String>(),
                s
            );
        }
    }
}
