//! Workflows: a git repository (or a folder of one) that directs a session, as in the
//! original platform. Its `.ambient/ambient.json` names it and may add to the agent's
//! system prompt (`systemPrompt`) and start its conversation (`startupPrompt`); its
//! `.claude/commands/*.md` are slash commands the agent's `claude` loads (the agent starts
//! in the workflow's folder) and the composer offers.
//!
//! A workflow is hostile input like any repository: what is read of it is bounded here and
//! read by the runner through no link ([`WorkflowState`] is all the platform keeps).

use serde::{Deserialize, Serialize};

/// The workflow's description of itself, relative to its folder.
pub const AMBIENT_JSON: &str = ".ambient/ambient.json";
/// Its slash commands, relative to its folder (`<name>.md`, folders giving `a:b` names).
pub const COMMANDS_DIR: &str = ".claude/commands";
/// Largest `ambient.json` read, in bytes.
pub const MAX_AMBIENT_JSON: u64 = 64 * 1024;
/// Largest `systemPrompt` or `startupPrompt`, in bytes.
pub const MAX_PROMPT: usize = 16 * 1024;
/// Longest name, in characters.
pub const MAX_NAME: usize = 100;
/// Longest description (of the workflow or of a command), in characters.
pub const MAX_DESCRIPTION: usize = 500;
/// Most slash commands listed.
pub const MAX_COMMANDS: usize = 100;
/// Longest command name (`a:b:c`), in bytes.
pub const MAX_COMMAND_NAME: usize = 64;
/// Deepest folder nesting of commands (`a/b/c.md` is 2).
pub const MAX_COMMAND_DEPTH: usize = 3;
/// Largest command file read for its description, in bytes.
pub const MAX_COMMAND_FILE: u64 = 64 * 1024;
/// Longest workflow path (`activeWorkflow.path`), in characters.
pub const MAX_PATH: usize = 512;
/// [`check_path`] as a regular expression (ECMA 262 and Python alike), for the OpenAPI
/// document.
pub const PATH_PATTERN: &str = r"^(?:(?!\.{1,2}(?:/|$))[^/\x00-\x1f\x7f-\x9f]+(?:/|$))*$";

/// `.ambient/ambient.json`: what the platform uses of it (other keys are ignored).
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AmbientJson {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// One paragraph on what it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Appended to the agent's system prompt.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Sent to the agent when its conversation starts in this workflow (before the
    /// session's own first message, if any).
    #[serde(default)]
    pub startup_prompt: Option<String>,
    /// Whether a catalogue offers it (absent: yes).
    #[serde(default)]
    pub enabled: Option<bool>,
}

impl AmbientJson {
    /// Parses `ambient.json`; names and descriptions are cut to their bounds, a prompt over
    /// [`MAX_PROMPT`] is refused (cutting an instruction would change its meaning).
    pub fn parse(bytes: &[u8]) -> Result<AmbientJson, String> {
        if bytes.len() as u64 > MAX_AMBIENT_JSON {
            return Err(format!(
                "{AMBIENT_JSON} is larger than {} KiB",
                MAX_AMBIENT_JSON / 1024
            ));
        }
        let mut a: AmbientJson = serde_json::from_slice(bytes)
            .map_err(|e| format!("{AMBIENT_JSON} is not valid: {e}"))?;
        for (what, p) in [
            ("systemPrompt", &a.system_prompt),
            ("startupPrompt", &a.startup_prompt),
        ] {
            if p.as_ref().is_some_and(|p| p.len() > MAX_PROMPT) {
                return Err(format!(
                    "{AMBIENT_JSON}: {what} is longer than {} KiB",
                    MAX_PROMPT / 1024
                ));
            }
        }
        a.name = a
            .name
            .map(|n| one_line(&n, MAX_NAME))
            .filter(|n| !n.is_empty());
        a.description = a
            .description
            .map(|d| cut(d.trim(), MAX_DESCRIPTION))
            .filter(|d| !d.is_empty());
        a.system_prompt = a.system_prompt.filter(|p| !p.trim().is_empty());
        a.startup_prompt = a.startup_prompt.filter(|p| !p.trim().is_empty());
        Ok(a)
    }
}

/// A slash command of a workflow.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowCommand {
    /// As typed after `/` (`review`, `rfe:create`).
    pub name: String,
    /// Its `description:` front matter, else its first line of text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl WorkflowCommand {
    /// The command of the file at `parts` below [`COMMANDS_DIR`] (`["rfe", "create.md"]`
    /// is `rfe:create`), `text` its beginning; `None` for what `claude` would not take as
    /// a command (not `.md`, an odd name).
    pub fn from_file(parts: &[&str], text: &str) -> Option<WorkflowCommand> {
        let (last, dirs) = parts.split_last()?;
        let stem = last.strip_suffix(".md")?;
        if dirs.len() > MAX_COMMAND_DEPTH {
            return None;
        }
        let name = dirs
            .iter()
            .copied()
            .chain(std::iter::once(stem))
            .collect::<Vec<_>>()
            .join(":");
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !s.starts_with('.')
        };
        if name.len() > MAX_COMMAND_NAME || !dirs.iter().copied().chain([stem]).all(plain) {
            return None;
        }
        Some(WorkflowCommand {
            name,
            description: command_description(text),
        })
    }
}

/// A command file's description: `description:` in its YAML front matter, else its first
/// line of text (headings unmarked).
fn command_description(text: &str) -> String {
    let mut lines = text.lines();
    let mut body_start = text;
    if text.starts_with("---") {
        lines.next();
        let mut consumed = text.find('\n').map_or(text.len(), |i| i + 1);
        for line in lines.by_ref() {
            consumed += line.len() + 1;
            if line.trim_end() == "---" {
                body_start = text.get(consumed.min(text.len())..).unwrap_or_default();
                break;
            }
            if let Some(d) = line.strip_prefix("description:") {
                let d = d.trim().trim_matches(|c| c == '"' || c == '\'');
                if !d.is_empty() {
                    return one_line(d, MAX_DESCRIPTION);
                }
            }
        }
    }
    body_start
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty())
        .map(|l| one_line(l, MAX_DESCRIPTION))
        .unwrap_or_default()
}

/// What the platform knows of a session's workflow, as its runner found it (an event at
/// each run whose workflow differs from the last one reported).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowState {
    /// The repository.
    pub git_url: String,
    /// Its branch.
    pub branch: String,
    /// The workflow's folder in it (empty: its root).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Its name (`ambient.json`, else the folder's or repository's name).
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its slash commands, by name.
    #[serde(default)]
    pub commands: Vec<WorkflowCommand>,
    /// Whether it added to the agent's system prompt.
    #[serde(default)]
    pub system_prompt: bool,
    /// Whether its startup prompt was sent to the agent with this run.
    #[serde(default)]
    pub started: bool,
    /// What was wrong with it (an unreadable `ambient.json`): the session goes on without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A workflow a catalogue offers (`GET /api/workflows/ootb`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogueWorkflow {
    /// Its folder's name in the catalogue (stable).
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The catalogue repository.
    pub git_url: String,
    /// Its branch.
    pub branch: String,
    /// The workflow's folder in it.
    pub path: String,
}

/// The catalogue's workflows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Catalogue {
    /// The workflows, by name.
    pub workflows: Vec<CatalogueWorkflow>,
    /// Why the catalogue could not be read (the list is then what was read last, or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `activeWorkflow.path`: a relative path of plain components, perhaps ending in `/` (the
/// OpenAPI document's [`PATH_PATTERN`]).
pub fn check_path(path: &str) -> Result<(), String> {
    if path.chars().count() > MAX_PATH {
        return Err(format!("must be at most {MAX_PATH} characters"));
    }
    if path.starts_with('/') {
        return Err("must be relative to the repository's root".into());
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(());
    }
    for c in trimmed.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err("must be a plain folder path (no '.', '..' or '//')".into());
        }
        if c.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
    }
    Ok(())
}

/// `s` on one line, trimmed, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let joined: String = s
        .split(|c: char| c.is_control())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    cut(joined.trim(), max)
}

/// `s` cut to at most `max` characters.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambient_json_is_read_with_its_bounds() {
        let a = AmbientJson::parse(
            br#"{"name":"Bug\nfix","description":"  Fixes bugs. ","systemPrompt":"Be careful.",
                 "startupPrompt":"  ","results":{"x":"y"}}"#,
        )
        .unwrap();
        assert_eq!(a.name.as_deref(), Some("Bug fix"));
        assert_eq!(a.description.as_deref(), Some("Fixes bugs."));
        assert_eq!(a.system_prompt.as_deref(), Some("Be careful."));
        assert_eq!(a.startup_prompt, None, "a blank prompt is none");
        let long = format!(r#"{{"systemPrompt":"{}"}}"#, "x".repeat(MAX_PROMPT + 1));
        assert!(
            AmbientJson::parse(long.as_bytes())
                .unwrap_err()
                .contains("systemPrompt is longer")
        );
        assert!(
            AmbientJson::parse(b"[1]")
                .unwrap_err()
                .contains("not valid")
        );
        let huge = vec![b' '; MAX_AMBIENT_JSON as usize + 1];
        assert!(AmbientJson::parse(&huge).unwrap_err().contains("larger"));
        let n = AmbientJson::parse(format!(r#"{{"name":"{}"}}"#, "é".repeat(300)).as_bytes())
            .unwrap()
            .name
            .unwrap();
        assert_eq!(n.chars().count(), MAX_NAME + 1, "cut, with an ellipsis");
    }

    #[test]
    fn commands_are_named_as_claude_names_them_and_described() {
        let c = WorkflowCommand::from_file(
            &["rfe", "create.md"],
            "---\nallowed-tools: Bash\ndescription: \"Write an RFE\"\n---\n# Body\n",
        )
        .unwrap();
        assert_eq!(
            (c.name.as_str(), c.description.as_str()),
            ("rfe:create", "Write an RFE")
        );
        let c =
            WorkflowCommand::from_file(&["review.md"], "\n\n## Review the change\nmore").unwrap();
        assert_eq!(c.description, "Review the change");
        let c = WorkflowCommand::from_file(&["x.md"], "---\nmodel: a\n---\nDo x.\n").unwrap();
        assert_eq!(c.description, "Do x.");
        for bad in [
            &["notes.txt"][..],
            &[".hidden.md"],
            &["a b.md"],
            &["a", "b", "c", "d", "e.md"],
            &["<script>.md"],
        ] {
            assert_eq!(WorkflowCommand::from_file(bad, ""), None, "{bad:?}");
        }
        let long = format!("{}.md", "a".repeat(MAX_COMMAND_NAME + 1));
        assert_eq!(WorkflowCommand::from_file(&[&long], ""), None);
    }

    #[test]
    fn workflow_paths_are_plain_and_relative() {
        for ok in ["", "workflows/bugfix", "a/b/"] {
            assert!(check_path(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "/etc", "../x", "a/../b", "a//b", "./a", "a/\u{7}", "a//", "/",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&"a/".repeat(300)).is_err());
    }
}
