//! Input validation shared by the server (authoritative) and the UI (early feedback).
//!
//! Every check returns a [`Invalid`] naming the field and saying what is wrong in words a
//! user can act on.

use crate::protocol::MAX_MESSAGE_TEXT;

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field, as named in the request body (`initialPrompt`, `repos[0].url` ...).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Invalid {
    /// A validation failure of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

/// Longest display name accepted.
pub const MAX_DISPLAY_NAME: usize = 200;
/// Longest project description, in bytes.
pub const MAX_DESCRIPTION: usize = 2000;
/// Longest credential value of a project, in bytes.
pub const MAX_SECRET: usize = 8 * 1024;
/// Prefixes of project names kept for the platform and the cluster.
pub const RESERVED_PROJECT_PREFIXES: &[&str] = &["kube-", "openshift-", "ambient-code"];

/// Whether `name` is one of the cluster's own users or groups (`system:authenticated` is
/// every identity the cluster knows, `system:masters` its administrators): no project role
/// is given to one, however asked (the Sharing page, a project's `groupAccess`), except to a
/// ServiceAccount's user (`system:serviceaccount:<namespace>:<name>`), which the Sharing page
/// checks apart.
pub fn is_system_subject(name: &str) -> bool {
    name.trim_start().starts_with("system:")
}

/// A Kubernetes DNS-1123 label: what project (namespace) and session names must be.
pub fn dns1123_label(field: &str, name: &str) -> Result<(), Invalid> {
    let fail = |m: &str| Err(Invalid::new(field, m));
    if name.is_empty() {
        return fail("must not be empty");
    }
    if name.len() > 63 {
        return fail("must be at most 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail("may contain only lowercase letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return fail("must start and end with a letter or digit");
    }
    Ok(())
}

/// A prompt or follow-up message: not blank, at most [`MAX_MESSAGE_TEXT`] bytes.
pub fn message_text(field: &str, text: &str) -> Result<(), Invalid> {
    if text.trim().is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if text.len() > MAX_MESSAGE_TEXT {
        return Err(Invalid::new(
            field,
            format!("is {} bytes; the limit is {MAX_MESSAGE_TEXT}", text.len()),
        ));
    }
    Ok(())
}

/// A display name: at most [`MAX_DISPLAY_NAME`] characters, no control characters.
pub fn display_name(field: &str, name: &str) -> Result<(), Invalid> {
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Err(Invalid::new(
            field,
            format!("must be at most {MAX_DISPLAY_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(())
}

/// A git remote: `https://host/path`, `ssh://[user@]host/path`, `user@host:path` or
/// `file:///absolute/path`. Credentials inside the URL are refused: they would end up in logs
/// and in the workspace's git config; tokens belong in the project's credentials.
pub fn repo_url(field: &str, url: &str) -> Result<(), Invalid> {
    let fail = |m: &str| Err(Invalid::new(field, m));
    if url.is_empty() {
        return fail("must not be empty");
    }
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return fail("must be a URL without spaces or control characters");
    }
    // git would take it for an option (`--upload-pack=...`).
    if url.starts_with('-') {
        return fail("must not start with '-'");
    }
    if let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@') {
            return fail("must not contain credentials; set a git token in the project settings");
        }
        if authority.is_empty() || rest.len() <= authority.len() + 1 {
            return fail("must name a host and a repository path");
        }
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains(':')
            && authority
                .rsplit(':')
                .next()
                .is_some_and(|p| p.parse::<u16>().is_err())
        {
            return fail("has an invalid port");
        }
        if authority.is_empty() || rest.len() <= authority.len() + 1 {
            return fail("must name a host and a repository path");
        }
        return Ok(());
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return fail("file URLs must hold an absolute path (file:///path/to/repo)");
        }
        return Ok(());
    }
    // scp-like syntax: user@host:path
    if let Some((user_host, path)) = url.split_once(':')
        && let Some((user, host)) = user_host.split_once('@')
        && !user.is_empty()
        && !host.is_empty()
        && !path.is_empty()
        && !host.contains('/')
    {
        return Ok(());
    }
    fail("must be an https, ssh (user@host:path or ssh://) or file:// URL")
}

/// A branch name git accepts (the rules of `git check-ref-format --branch`).
pub fn branch_name(field: &str, name: &str) -> Result<(), Invalid> {
    let fail = |m: &str| Err(Invalid::new(field, m));
    if name.is_empty() {
        return fail("must not be empty");
    }
    if name.len() > 255 {
        return fail("must be at most 255 characters");
    }
    if name.starts_with('-') {
        return fail("must not start with '-'");
    }
    if name == "@" || name.contains("@{") {
        return fail("must not be '@' or contain '@{'");
    }
    if name.contains("..") || name.contains("//") {
        return fail("must not contain '..' or '//'");
    }
    if name.starts_with('/') || name.ends_with('/') || name.ends_with('.') {
        return fail("must not start or end with '/' or end with '.'");
    }
    if name
        .chars()
        .any(|c| c.is_control() || " ~^:?*[\\".contains(c))
    {
        return fail("must not contain spaces, control characters or any of ~ ^ : ? * [ \\");
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return fail("no part may start with '.' or end with '.lock'");
    }
    Ok(())
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, not reserved by the platform
/// (see [`crate::runner_env::is_reserved`]).
pub fn env_var_name(field: &str, name: &str) -> Result<(), Invalid> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 256;
    if !valid {
        return Err(Invalid::new(
            field,
            format!(
                "'{name}' is not a valid variable name (letters, digits and '_', not starting with a digit)"
            ),
        ));
    }
    if crate::runner_env::is_reserved(name) {
        return Err(Invalid::new(
            field,
            format!("'{name}' is reserved by the platform and cannot be set for a session"),
        ));
    }
    Ok(())
}

/// A model id from the configured list.
pub fn model(field: &str, model: &str, allowed: &[String]) -> Result<(), Invalid> {
    if allowed.iter().any(|m| m == model) {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!("unknown model '{model}'; available: {}", allowed.join(", ")),
        ))
    }
}

const SECONDS: &str = "must be a whole number of seconds, zero or more";

/// Longest timeout of any kind: 30 days.
pub const MAX_SECONDS: i64 = 30 * 24 * 3600;

/// A duration in seconds (`timeout`, `inactivityTimeout`): zero to [`MAX_SECONDS`].
pub fn seconds(field: &str, value: Option<i64>) -> Result<(), Invalid> {
    match value {
        Some(v) if v < 0 => Err(Invalid::new(field, SECONDS)),
        Some(v) if v > MAX_SECONDS => Err(Invalid::new(
            field,
            format!("must be at most {MAX_SECONDS} seconds (30 days)"),
        )),
        _ => Ok(()),
    }
}

/// Largest `offset` of a list: far beyond any real list, and safe to add to.
pub const MAX_OFFSET: u64 = 1_000_000_000;

/// A list's `offset`.
pub fn offset(value: u64) -> Result<(), Invalid> {
    if value > MAX_OFFSET {
        return Err(Invalid::new(
            "offset",
            format!("must be at most {MAX_OFFSET}"),
        ));
    }
    Ok(())
}

/// Longest search text of a list.
pub const MAX_SEARCH: usize = 200;

/// A list's search text.
pub fn search(value: &str) -> Result<(), Invalid> {
    if value.chars().count() > MAX_SEARCH {
        return Err(Invalid::new(
            "search",
            format!("must be at most {MAX_SEARCH} characters"),
        ));
    }
    Ok(())
}

/// Reads an optional whole number written as an integer or as a number with no fraction
/// (`906706.0`: JSON does not tell them apart, and JavaScript clients send either).
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
    }
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(Number::Int(i)) => Ok(Some(i)),
        // Beyond i64 saturates: validation then says the value is too large.
        Some(Number::Float(f)) if f.fract() == 0.0 => Ok(Some(f as i64)),
        Some(Number::Float(f)) => Err(D::Error::custom(format!("{f} is not a whole number"))),
    }
}

/// [`whole_number`] that must fit a `u32` (a count, a turn's number).
pub fn whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    match whole_number(d)? {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{n} is out of range"))),
    }
}

/// [`whole_u32`] for a field that must be given.
pub fn required_whole_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    whole_u32(d)?.ok_or_else(|| D::Error::custom("a whole number is required"))
}

/// A duration in seconds as typed in a form: blank for none, else what [`seconds`] accepts.
pub fn seconds_text(field: &str, text: &str) -> Result<Option<i64>, Invalid> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value = text.parse().map_err(|_| Invalid::new(field, SECONDS))?;
    seconds(field, Some(value))?;
    Ok(Some(value))
}

/// Most repositories a session may clone.
pub const MAX_REPOS: usize = 20;
/// Longest value of a session's environment variable.
pub const MAX_ENV_VALUE: usize = 32 * 1024;

/// A whole session-creation request: the rules the server enforces and the form checks as the
/// user types. `models` are the models a session may choose.
pub fn create_session(
    req: &crate::api::CreateSessionRequest,
    models: &[String],
) -> Result<(), Invalid> {
    message_text("initialPrompt", &req.initial_prompt)?;
    if let Some(d) = &req.display_name {
        display_name("displayName", d)?;
    }
    if let Some(m) = req.llm_settings.as_ref().and_then(|l| l.model.as_deref()) {
        model("llmSettings.model", m, models)?;
    }
    seconds("timeout", req.timeout)?;
    seconds("inactivityTimeout", req.inactivity_timeout)?;
    if req.repos.len() > MAX_REPOS {
        return Err(Invalid::new(
            "repos",
            format!("at most {MAX_REPOS} repositories"),
        ));
    }
    for (i, repo) in req.repos.iter().enumerate() {
        repo_url(&format!("repos[{i}].url"), &repo.url)?;
        if let Some(branch) = &repo.branch {
            branch_name(&format!("repos[{i}].branch"), branch)?;
        }
    }
    if let Some(wf) = &req.active_workflow {
        active_workflow("activeWorkflow", wf)?;
    }
    for (k, v) in &req.environment_variables {
        env_var(k, v)?;
    }
    if let Some(mcp) = &req.mcp_servers {
        mcp_servers("mcpServers", mcp, false)?;
    }
    Ok(())
}

/// A fork's request: its first message, its name, its turn.
pub fn fork_session(req: &crate::api::ForkSessionRequest) -> Result<(), Invalid> {
    message_text("prompt", &req.prompt)?;
    if let Some(d) = &req.display_name {
        display_name("displayName", d)?;
    }
    if req.turn == Some(0) {
        return Err(Invalid::new(
            "turn",
            "must be 1 or more (turns count from 1)",
        ));
    }
    Ok(())
}

/// A workflow (`field` names it): its repository's URL, its branch, its folder.
pub fn active_workflow(field: &str, wf: &crate::session::ActiveWorkflow) -> Result<(), Invalid> {
    repo_url(&format!("{field}.gitUrl"), &wf.git_url)?;
    if let Some(branch) = &wf.branch {
        branch_name(&format!("{field}.branch"), branch)?;
    }
    if let Some(path) = &wf.path {
        crate::workflow::check_path(path).map_err(|m| Invalid::new(format!("{field}.path"), m))?;
    }
    Ok(())
}

/// Most MCP servers of one configuration.
pub const MAX_MCP_SERVERS: usize = 20;
/// Largest configuration of one MCP server (its JSON), in bytes.
pub const MAX_MCP_CONFIG: usize = 32 * 1024;

/// An MCP server name: 1 to 64 letters, digits, `_` and `-`.
pub fn mcp_server_name(field: &str, name: &str) -> Result<(), Invalid> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!("'{name}' is not a server name (1 to 64 letters, digits, '_' and '-')"),
        ))
    }
}

/// An MCP configuration: named servers, each a JSON object of at most [`MAX_MCP_CONFIG`]
/// bytes and a transport `claude` knows ([`crate::mcp::check_server`]), at most
/// [`MAX_MCP_SERVERS`] of them, and server names to disable. `credentials`: whether the
/// servers may reference MCP credentials (the project's may, a session's may not).
pub fn mcp_servers(
    field: &str,
    mcp: &crate::session::McpServers,
    credentials: bool,
) -> Result<(), Invalid> {
    if mcp.custom.len() > MAX_MCP_SERVERS || mcp.disabled.len() > MAX_MCP_SERVERS {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_MCP_SERVERS} servers"),
        ));
    }
    for (name, config) in &mcp.custom {
        let at = format!("{field}.custom.{name}");
        mcp_server_name(&at, name)?;
        if !config.is_object() {
            return Err(Invalid::new(
                at,
                "must be an object (a Claude Code MCP server config)",
            ));
        }
        if config.to_string().len() > MAX_MCP_CONFIG {
            return Err(Invalid::new(at, "is larger than 32 KiB"));
        }
        crate::mcp::check_server(&at, config, credentials)?;
    }
    for name in &mcp.disabled {
        mcp_server_name(&format!("{field}.disabled"), name)?;
    }
    Ok(())
}

/// One of a session's environment variables: a valid, unreserved name and a bounded value.
pub fn env_var(name: &str, value: &str) -> Result<(), Invalid> {
    let field = format!("environmentVariables.{name}");
    env_var_name(&field, name)?;
    if value.len() > MAX_ENV_VALUE {
        return Err(Invalid::new(field, "value is longer than 32 KiB"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_whole_numbers_written_as_floats_and_nothing_else() {
        let fork = |body: &str| serde_json::from_str::<crate::api::ForkSessionRequest>(body);
        assert_eq!(
            fork(r#"{"prompt": "x", "turn": 232.0}"#).unwrap().turn,
            Some(232)
        );
        assert_eq!(fork(r#"{"prompt": "x", "turn": 2}"#).unwrap().turn, Some(2));
        assert_eq!(fork(r#"{"prompt": "x"}"#).unwrap().turn, None);
        for bad in ["2.5", "-1", "5000000000", "\"2\""] {
            assert!(
                fork(&format!(r#"{{"prompt": "x", "turn": {bad}}}"#)).is_err(),
                "{bad}"
            );
        }
        let attempts = |body: &str| serde_json::from_str::<crate::api::CreateAttemptsRequest>(body);
        let session = r#""session": {"initialPrompt": "x"}"#;
        assert_eq!(
            attempts(&format!(r#"{{"attempts": 3.0, {session}}}"#))
                .unwrap()
                .attempts,
            3
        );
        assert!(attempts(&format!(r#"{{{session}}}"#)).is_err());
        assert!(attempts(&format!(r#"{{"attempts": null, {session}}}"#)).is_err());
    }

    #[test]
    fn the_clusters_own_users_and_groups_are_system_subjects() {
        for name in [
            "system:authenticated",
            "system:masters",
            "system:serviceaccounts",
            " system:unauthenticated",
            "system:serviceaccount:ci:bot",
        ] {
            assert!(is_system_subject(name), "{name}");
        }
        for name in ["team-x", "System-Admins", "ops:system:", ""] {
            assert!(!is_system_subject(name), "{name}");
        }
    }

    /// The settings a project's admin writes (REST and the UI's server function share this
    /// body) carry no `groupAccess`: who gets a role is the Sharing page's, which refuses the
    /// cluster's own groups.
    #[test]
    fn project_settings_take_no_group_access() {
        let body = serde_json::json!({
            "groupAccess": [{"groupName": "system:authenticated", "role": "admin"}]
        });
        assert!(serde_json::from_value::<crate::api::ProjectSettingsBody>(body).is_err());
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let read = |json: &str| {
            serde_json::from_str::<crate::api::UpdateSessionRequest>(json).map(|r| r.timeout)
        };
        assert_eq!(read(r#"{"timeout": 906706.0}"#).unwrap(), Some(906_706));
        assert_eq!(read(r#"{"timeout": 42}"#).unwrap(), Some(42));
        assert_eq!(read(r#"{"timeout": null}"#).unwrap(), None);
        assert_eq!(read("{}").unwrap(), None);
        assert_eq!(read(r#"{"timeout": 1e300}"#).unwrap(), Some(i64::MAX));
        assert!(read(r#"{"timeout": 1.5}"#).is_err());
        assert!(read(r#"{"timeout": "1"}"#).is_err());
    }

    #[test]
    fn seconds_as_typed() {
        assert_eq!(seconds_text("t", " "), Ok(None));
        assert!(seconds("t", Some(MAX_SECONDS)).is_ok());
        for huge in [MAX_SECONDS + 1, i64::MAX] {
            assert!(
                seconds("t", Some(huge))
                    .unwrap_err()
                    .message
                    .contains("30 days")
            );
        }
        assert_eq!(seconds_text("t", "600"), Ok(Some(600)));
        for bad in ["-5", "ten", "1.5"] {
            assert_eq!(
                seconds_text("t", bad).unwrap_err().message,
                SECONDS,
                "{bad}"
            );
        }
    }

    #[test]
    fn create_requests_are_checked_field_by_field() {
        use crate::api::CreateSessionRequest;
        use crate::session::SessionRepo;
        let models = vec!["claude-sonnet-4-6".to_owned()];
        let ok = CreateSessionRequest {
            initial_prompt: "do it".into(),
            timeout: Some(0),
            ..Default::default()
        };
        assert_eq!(create_session(&ok, &models), Ok(()));
        let field = |req: CreateSessionRequest| create_session(&req, &models).unwrap_err().field;
        assert_eq!(
            field(CreateSessionRequest {
                timeout: Some(-1),
                ..ok.clone()
            }),
            "timeout"
        );
        assert_eq!(
            field(CreateSessionRequest {
                inactivity_timeout: Some(-5),
                ..ok.clone()
            }),
            "inactivityTimeout"
        );
        assert_eq!(
            field(CreateSessionRequest {
                repos: vec![SessionRepo {
                    url: "nope".into(),
                    branch: None,
                    auto_push: None,
                    provider: None,
                }],
                ..ok.clone()
            }),
            "repos[0].url"
        );
        assert_eq!(
            field(CreateSessionRequest {
                environment_variables: [("AMBIENT_X".to_owned(), "1".to_owned())].into(),
                ..ok.clone()
            }),
            "environmentVariables.AMBIENT_X"
        );
        assert_eq!(
            field(CreateSessionRequest {
                initial_prompt: " ".into(),
                ..ok
            }),
            "initialPrompt"
        );
    }

    #[test]
    fn dns1123_labels() {
        for ok in ["a", "my-project", "p1", &"a".repeat(63)] {
            assert!(dns1123_label("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "ä", &"a".repeat(64)] {
            assert!(dns1123_label("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prompts() {
        assert!(message_text("p", "do it").is_ok());
        assert_eq!(
            message_text("p", "  \n").unwrap_err().message,
            "must not be empty"
        );
        assert!(message_text("p", &"x".repeat(MAX_MESSAGE_TEXT + 1)).is_err());
    }

    #[test]
    fn repo_urls() {
        for ok in [
            "https://github.com/ambient-code/platform.git",
            "https://gitlab.example.com:8443/group/sub/repo",
            "git@github.com:org/repo.git",
            "ssh://git@host:2222/org/repo.git",
            "file:///tmp/repos/app.git",
        ] {
            assert!(repo_url("url", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "github.com/org/repo",
            "https://user:token@github.com/org/repo",
            "https://github.com",
            "ftp://host/repo",
            "file://relative/path",
            "https://github.com/org/re po",
            "ssh://host:notaport/x",
            "--upload-pack=touch${IFS}x@host:path",
            "-u@host:path",
        ] {
            assert!(repo_url("url", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn branch_names() {
        for ok in ["main", "feature/x", "ambient/session-1", "v1.2"] {
            assert!(branch_name("b", ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-x", "a..b", "a b", "a~1", "x.lock", ".hidden", "a/", "a//b", "@", "a@{1}", "a:b",
        ] {
            assert!(branch_name("b", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        assert!(env_var_name("e", "DEBUG_LEVEL").is_ok());
        assert!(env_var_name("e", "_x1").is_ok());
        for bad in [
            "",
            "1A",
            "A-B",
            "A B",
            "AMBIENT_RUNNER_TOKEN",
            "WORKSPACE_PATH",
            "LD_PRELOAD",
        ] {
            assert!(env_var_name("e", bad).is_err(), "{bad}");
        }
        assert!(
            env_var_name("e", "PATH")
                .unwrap_err()
                .message
                .contains("'PATH' is reserved")
        );
    }

    #[test]
    fn models_come_from_the_list() {
        let allowed = vec!["claude-sonnet-4-6".to_owned()];
        assert!(model("m", "claude-sonnet-4-6", &allowed).is_ok());
        assert!(
            model("m", "gpt-5", &allowed)
                .unwrap_err()
                .message
                .contains("claude-sonnet-4-6")
        );
    }
}
