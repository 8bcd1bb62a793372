//! MCP servers of sessions: the transports a configuration names, the project credentials
//! an HTTP server's headers may reference, and how the project's and the session's servers
//! merge.
//!
//! A credential is referenced as `${MCP_NAME}` in a header value of one of the **project's**
//! HTTP (or SSE) servers. The value never reaches the agent: the agent's `claude` talks to
//! the runner's proxy (`/mcp/<server>`), which adds the headers with the credential in them
//! and relays to the server's address (`runner::proxy`). A session's own servers (set by
//! whoever creates the session) may not reference credentials: the project's admins bind a
//! credential to its server, and a write that changes where a credential goes clears it
//! ([`destinations`]), as [`crate::runner_env::Credentials::whole`] does for git tokens.
//!
//! A stdio server runs beside the agent, in its sandbox, where the agent could read its
//! environment: it takes no credential reference.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::session::McpServers;
use crate::validate::Invalid;

/// The prefix of a project credential meant for MCP servers.
pub const CREDENTIAL_PREFIX: &str = "MCP_";
/// Longest credential name.
pub const MAX_CREDENTIAL_NAME: usize = 64;
/// Most MCP credentials of one project.
pub const MAX_CREDENTIALS: usize = 50;
/// Most headers of one server.
pub const MAX_HEADERS: usize = 20;

/// Whether `key` names an MCP credential: `MCP_` then capitals, digits and `_`.
pub fn is_credential_key(key: &str) -> bool {
    key.len() <= MAX_CREDENTIAL_NAME
        && key.strip_prefix(CREDENTIAL_PREFIX).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// How `claude` reaches a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A process `claude` starts, in the agent's sandbox.
    Stdio,
    /// Streamable HTTP at `url`, with these headers.
    Http {
        /// The server's address.
        url: String,
        /// Headers sent with every request (values may reference credentials).
        headers: BTreeMap<String, String>,
    },
    /// The older HTTP+SSE transport at `url`.
    Sse {
        /// The server's address.
        url: String,
        /// Headers sent with every request.
        headers: BTreeMap<String, String>,
    },
}

/// Longest `command` of a stdio server, in characters.
pub const MAX_COMMAND: usize = 256;
/// Most `args` of a stdio server.
pub const MAX_ARGS: usize = 12;
/// Longest argument, in characters (a JSON option, a short inline script).
pub const MAX_ARG: usize = 1024;
/// Most `env` variables of a stdio server.
pub const MAX_ENV: usize = 16;
/// Longest `env` value, in characters.
pub const MAX_ENV_VALUE: usize = 128;
/// Longest header name.
pub const MAX_HEADER_NAME: usize = 64;
/// Longest header value, in characters (a credential goes in as a reference).
pub const MAX_HEADER_VALUE: usize = 256;
/// Longest `url`, in characters.
pub const MAX_URL: usize = 1024;

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// The transport of a server configuration (`type`: `stdio`, the default; `http`; `sse`),
/// its keys and their bounds checked (those of the API's schema); `Err` says what is wrong.
pub fn transport(config: &Value) -> Result<Transport, String> {
    let map = config
        .as_object()
        .ok_or("must be an object (a Claude Code MCP server config)")?;
    let kind = match config.get("type") {
        None => "stdio",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err("'type' must be a string".into()),
    };
    let known: &[&str] = match kind {
        "stdio" => &["type", "command", "args", "env"],
        "http" | "sse" => &["type", "url", "headers"],
        other => return Err(format!("unknown type '{other}' (stdio, http or sse)")),
    };
    if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "unknown key '{key}' (a {kind} server has: {})",
            known.join(", ")
        ));
    }
    let url_headers = || -> Result<(String, BTreeMap<String, String>), String> {
        let url = config
            .get("url")
            .and_then(Value::as_str)
            .ok_or("an HTTP server needs a 'url'")?;
        let authority = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default())
            .filter(|a| !a.is_empty())
            .ok_or("'url' must be an http or https URL")?;
        if chars(url) > MAX_URL || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "'url' must be one word of at most {MAX_URL} characters"
            ));
        }
        if authority.contains('@') {
            return Err("'url' must not carry credentials; use a header".into());
        }
        if url.contains('$') {
            return Err("'url' may not contain '$' (a credential goes in a header)".into());
        }
        let mut headers = BTreeMap::new();
        match config.get("headers") {
            None => {}
            Some(Value::Object(map)) => {
                if map.len() > MAX_HEADERS {
                    return Err(format!("at most {MAX_HEADERS} headers"));
                }
                for (name, value) in map {
                    let value = value
                        .as_str()
                        .ok_or_else(|| format!("header '{name}' must be a string"))?;
                    header_name(name)?;
                    if has_control(value) || chars(value) > MAX_HEADER_VALUE {
                        return Err(format!(
                            "header '{name}' must be one line of at most {MAX_HEADER_VALUE} characters"
                        ));
                    }
                    headers.insert(name.clone(), value.to_owned());
                }
            }
            Some(_) => return Err("'headers' must be an object".into()),
        }
        Ok((url.to_owned(), headers))
    };
    match kind {
        "stdio" => {
            match config.get("command") {
                Some(Value::String(c))
                    if !c.trim().is_empty() && !has_control(c) && chars(c) <= MAX_COMMAND => {}
                _ => {
                    return Err(format!(
                        "a stdio server needs a 'command': one line of at most {MAX_COMMAND} characters"
                    ));
                }
            }
            if let Some(args) = config.get("args") {
                let args = args.as_array().ok_or("'args' must be a list of strings")?;
                if args.len() > MAX_ARGS
                    || !args
                        .iter()
                        .all(|a| a.as_str().is_some_and(|a| chars(a) <= MAX_ARG))
                {
                    return Err(format!(
                        "'args' must be at most {MAX_ARGS} strings of at most {MAX_ARG} characters"
                    ));
                }
            }
            if let Some(env) = config.get("env") {
                let env = env.as_object().ok_or("'env' must be an object")?;
                if env.len() > MAX_ENV {
                    return Err(format!("at most {MAX_ENV} env variables"));
                }
                for (name, value) in env {
                    let valid_name = !name.is_empty()
                        && name.len() <= 64
                        && name.bytes().enumerate().all(|(i, b)| {
                            b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit())
                        });
                    if !valid_name {
                        return Err(format!("'{name}' is not an environment variable name"));
                    }
                    let value = value
                        .as_str()
                        .ok_or_else(|| format!("env '{name}' must be a string"))?;
                    if has_control(value) || chars(value) > MAX_ENV_VALUE {
                        return Err(format!(
                            "env '{name}' must be one line of at most {MAX_ENV_VALUE} characters"
                        ));
                    }
                    if value.contains("${") {
                        return Err(format!(
                            "env '{name}' may not contain '${{' (no credential reference): a stdio \
                             server runs in the agent's sandbox, where the agent could read it; \
                             use an HTTP server, whose headers the runner's proxy adds"
                        ));
                    }
                }
            }
            Ok(Transport::Stdio)
        }
        "http" => url_headers().map(|(url, headers)| Transport::Http { url, headers }),
        _ => url_headers().map(|(url, headers)| Transport::Sse { url, headers }),
    }
}

fn header_name(name: &str) -> Result<(), String> {
    let token = !name.is_empty()
        && name.len() <= MAX_HEADER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let reserved = matches!(
        name.to_ascii_lowercase().as_str(),
        "host" | "content-length" | "transfer-encoding" | "connection" | "x-ambient-proxy-token"
    );
    if !token {
        Err(format!("'{name}' is not a header name"))
    } else if reserved {
        Err(format!("header '{name}' is set by the platform"))
    } else {
        Ok(())
    }
}

/// Where `${` appears in `text` other than as an MCP credential reference
/// (`${MCP_NAME}`): the rest of the text from there.
fn stray_reference(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) if is_credential_key(&after[..end]) => rest = &after[end + 1..],
            _ => return Some(&rest[at..]),
        }
    }
    None
}

/// The `${NAME}` references in `text`, in order (`NAME` being any run of capitals, digits
/// and `_`; whether it is an MCP credential is checked by the caller).
pub fn references_in(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                {
                    out.push(name);
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// `text` with each `${NAME}` of an MCP credential replaced by `value(NAME)`; `Err` names
/// a credential that is not set.
pub fn expand(text: &str, value: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) if is_credential_key(&after[..end]) => {
                let name = &after[..end];
                out.push_str(&value(name).ok_or_else(|| name.to_owned())?);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks one server's configuration; `credentials` says whether its headers may reference
/// MCP credentials (the project's servers) or not (a session's).
pub fn check_server(field: &str, config: &Value, credentials: bool) -> Result<(), Invalid> {
    let transport = transport(config).map_err(|e| Invalid::new(field, e))?;
    let (headers, sse) = match &transport {
        Transport::Stdio => return Ok(()),
        Transport::Http { headers, .. } => (headers, false),
        Transport::Sse { headers, .. } => (headers, true),
    };
    for (name, value) in headers {
        if !value.contains("${") {
            continue;
        }
        let at = format!("{field}.headers.{name}");
        if sse {
            return Err(Invalid::new(
                at,
                "an SSE server takes no credential: `claude` reaches it directly; use the \
                 streamable HTTP transport (type 'http'), which the runner's proxy relays",
            ));
        }
        if !credentials {
            return Err(Invalid::new(
                at,
                "only the project's MCP servers may use credentials: a project admin binds \
                 a credential to its server in the project's settings",
            ));
        }
        if let Some(stray) = stray_reference(value) {
            let shown: String = stray.chars().take(24).collect();
            return Err(Invalid::new(
                at,
                format!(
                    "'{shown}' is not an MCP credential reference: '${{' may only begin one, as in ${{MCP_NAME}} (MCP_ then capitals, digits, '_')"
                ),
            ));
        }
    }
    Ok(())
}

/// Where each MCP credential goes: the addresses of the servers whose headers reference it.
pub fn destinations(mcp: Option<&McpServers>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for config in mcp.iter().flat_map(|m| m.custom.values()) {
        if let Ok(Transport::Http { url, headers }) = transport(config) {
            for value in headers.values() {
                for name in references_in(value) {
                    if is_credential_key(name) {
                        out.entry(name.to_owned()).or_default().insert(url.clone());
                    }
                }
            }
        }
    }
    out
}

/// One server of a run, after merging.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Its name.
    pub name: String,
    /// Its configuration.
    pub config: Value,
    /// Whether it is the project's (its headers may use credentials) or the session's.
    pub project: bool,
}

/// The servers of a run: the project's, then the session's (a session's server replaces the
/// project's of the same name), less those either disables.
pub fn merge(project: Option<&McpServers>, session: Option<&McpServers>) -> Vec<Server> {
    let mut servers: BTreeMap<String, Server> = BTreeMap::new();
    for (mcp, is_project) in [(project, true), (session, false)] {
        for (name, config) in mcp.iter().flat_map(|m| &m.custom) {
            servers.insert(
                name.clone(),
                Server {
                    name: name.clone(),
                    config: config.clone(),
                    project: is_project,
                },
            );
        }
    }
    for name in [project, session]
        .iter()
        .flatten()
        .flat_map(|m| &m.disabled)
    {
        servers.remove(name);
    }
    servers.into_values().collect()
}

/// MCP servers as a person writes them: Claude Code's `.mcp.json` form (`{"mcpServers":
/// {...}}`) or the API's (`{"custom": {...}, "disabled": [...]}`); blank is none.
pub fn parse_config(text: &str) -> Result<Option<McpServers>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    if let Some(servers) = value.get("mcpServers") {
        let custom = serde_json::from_value(servers.clone())
            .map_err(|e| format!("mcpServers must be an object of servers: {e}"))?;
        return Ok(Some(McpServers {
            custom,
            disabled: Vec::new(),
        }));
    }
    serde_json::from_value(value).map(Some).map_err(|e| {
        format!(
            "is neither {{\"mcpServers\": {{…}}}} nor {{\"custom\": {{…}}, \"disabled\": […]}}: {e}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credential_names() {
        for good in ["MCP_A", "MCP_JIRA_TOKEN", "MCP_2"] {
            assert!(is_credential_key(good), "{good}");
        }
        for bad in [
            "MCP_",
            "mcp_a",
            "GITHUB_TOKEN",
            "MCP_a",
            "MCP_A-B",
            "XMCP_A",
        ] {
            assert!(!is_credential_key(bad), "{bad}");
        }
        assert!(!is_credential_key(&format!("MCP_{}", "A".repeat(61))));
    }

    #[test]
    fn transports_and_their_faults() {
        assert_eq!(
            transport(&json!({"command": "npx", "args": ["x"]})),
            Ok(Transport::Stdio)
        );
        assert_eq!(
            transport(&json!({"type": "http", "url": "https://mcp.example/x",
                "headers": {"Authorization": "Bearer ${MCP_T}"}})),
            Ok(Transport::Http {
                url: "https://mcp.example/x".into(),
                headers: [("Authorization".into(), "Bearer ${MCP_T}".into())].into()
            })
        );
        for (bad, says) in [
            (json!({}), "needs a 'command'"),
            (json!({"type": "ws", "url": "x"}), "unknown type"),
            (json!({"type": "http"}), "needs a 'url'"),
            (
                json!({"type": "http", "url": "file:///etc"}),
                "http or https",
            ),
            (
                json!({"type": "http", "url": "https://u:p@h/"}),
                "credentials",
            ),
            (
                json!({"type": "http", "url": "https://h/", "headers": {"Host": "x"}}),
                "set by the platform",
            ),
            (
                json!({"type": "http", "url": "https://h/${MCP_T}"}),
                "may not contain '$'",
            ),
            (
                json!({"type": "http", "url": "https://h/", "headers": null}),
                "must be an object",
            ),
            (
                json!({"type": "http", "url": "https://h/", "timeout": 5}),
                "unknown key 'timeout'",
            ),
            (
                json!({"command": "x", "url": "https://h/"}),
                "unknown key 'url'",
            ),
            (
                json!({"command": "x", "args": "a b"}),
                "'args' must be a list",
            ),
            (
                json!({"command": "x", "args": ["a".repeat(1025)]}),
                "at most 1024",
            ),
            (
                json!({"command": "x", "env": {"1A": "x"}}),
                "not an environment variable",
            ),
            (
                json!({"command": "x", "env": {"A": "${HOME}"}}),
                "may not contain",
            ),
            (json!({"command": "a\nb"}), "one line"),
            (
                json!({"type": "http", "url": "https://h/", "headers": {"A": "x".repeat(257)}}),
                "at most 256",
            ),
            (json!([]), "must be an object"),
            (
                json!({"type": "http", "url": "https://h/", "headers": {"A": "x\ny"}}),
                "one line",
            ),
            (
                json!({"type": "http", "url": "https://h/", "headers": {"A B": "x"}}),
                "not a header",
            ),
            (
                json!({"command": "x", "env": {"T": "${MCP_T}"}}),
                "agent's sandbox",
            ),
        ] {
            let e = transport(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn only_the_projects_servers_use_credentials() {
        let server = json!({"type": "http", "url": "https://h/", "headers": {"A": "${MCP_T}"}});
        assert!(check_server("s", &server, true).is_ok());
        let e = check_server("s", &server, false).unwrap_err();
        assert!(e.to_string().contains("only the project's"), "{e}");
        let other =
            json!({"type": "http", "url": "https://h/", "headers": {"A": "${GITHUB_TOKEN}"}});
        assert!(check_server("s", &other, true).is_err());
        let stray =
            json!({"type": "http", "url": "https://h/", "headers": {"A": "${lower} ${MCP_T}"}});
        let e = check_server("s", &stray, true).unwrap_err().to_string();
        assert!(
            e.contains("'${lower} ${MCP_T}' is not an MCP credential reference"),
            "{e}"
        );
        let sse = json!({"type": "sse", "url": "https://h/", "headers": {"A": "${MCP_T}"}});
        assert!(
            check_server("s", &sse, true)
                .unwrap_err()
                .to_string()
                .contains("SSE")
        );
    }

    #[test]
    fn expands_credentials_and_nothing_else() {
        let get = |k: &str| (k == "MCP_T").then(|| "secret".to_owned());
        assert_eq!(expand("Bearer ${MCP_T}", get).unwrap(), "Bearer secret");
        assert_eq!(expand("${HOME} ${MCP_T", get).unwrap(), "${HOME} ${MCP_T");
        assert_eq!(expand("${MCP_U}", get).unwrap_err(), "MCP_U");
        assert_eq!(references_in("a ${MCP_A}b${X}${low}"), ["MCP_A", "X"]);
    }

    #[test]
    fn merging_and_destinations() {
        let project = McpServers {
            custom: [
                (
                    "a".to_owned(),
                    json!({"type": "http", "url": "https://a/", "headers": {"T": "${MCP_A}"}}),
                ),
                ("b".to_owned(), json!({"command": "b"})),
                ("c".to_owned(), json!({"command": "c"})),
            ]
            .into(),
            disabled: vec![],
        };
        let session = McpServers {
            custom: [("b".to_owned(), json!({"command": "mine"}))].into(),
            disabled: vec!["c".into()],
        };
        let merged = merge(Some(&project), Some(&session));
        let names: Vec<_> = merged
            .iter()
            .map(|s| (s.name.as_str(), s.project))
            .collect();
        assert_eq!(names, [("a", true), ("b", false)]);
        assert_eq!(merged[1].config["command"], "mine");
        assert_eq!(
            destinations(Some(&project)),
            [("MCP_A".to_owned(), ["https://a/".to_owned()].into())].into()
        );
    }

    #[test]
    fn configurations_as_people_write_them() {
        let claude = parse_config(r#"{"mcpServers": {"a": {"command": "x"}}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(claude.custom["a"]["command"], "x");
        let api = parse_config(r#"{"custom": {}, "disabled": ["b"]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(api.disabled, ["b"]);
        assert_eq!(parse_config("  "), Ok(None));
        assert!(parse_config("{").unwrap_err().contains("not JSON"));
        assert!(parse_config(r#"{"mcpServers": []}"#).is_err());
    }
}
