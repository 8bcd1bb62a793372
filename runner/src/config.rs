//! The runner's configuration, from its environment (see `model::runner_env`), validated
//! once into typed values.

use std::path::PathBuf;

use clap::Parser;
use model::session::SessionRepo;

/// Environment of a runner.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "runner",
    about = "Ambient Code Platform session runner",
    version
)]
pub struct RawConfig {
    /// Session name.
    #[arg(long, env = "AGENTIC_SESSION_NAME")]
    pub session_name: String,
    /// Project (namespace).
    #[arg(long, env = "AGENTIC_SESSION_NAMESPACE")]
    pub project: String,
    /// Workspace directory (absolute).
    #[arg(long, env = "WORKSPACE_PATH")]
    pub workspace: PathBuf,
    /// Artifacts folder, relative to the workspace.
    #[arg(long, env = "ARTIFACTS_DIR", default_value = "artifacts")]
    pub artifacts_dir: String,
    /// Base URL of the server's API (`http://host:port/api`).
    #[arg(long, env = "BACKEND_API_URL")]
    pub backend_api_url: String,
    /// The runner token.
    #[arg(long, env = "AMBIENT_RUNNER_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Runner generation.
    #[arg(long, env = "AMBIENT_RUNNER_GENERATION")]
    pub generation: u64,
    /// Highest user-message sequence already handled.
    #[arg(long, env = "AMBIENT_HANDLED_THROUGH", default_value_t = 0)]
    pub handled_through: u64,
    /// First prompt (fresh sessions only).
    #[arg(long, env = "INITIAL_PROMPT")]
    pub initial_prompt: Option<String>,
    /// Continue the previous conversation.
    #[arg(long, env = "IS_RESUME", default_value = "false")]
    pub is_resume: String,
    /// Model.
    #[arg(long, env = "LLM_MODEL")]
    pub model: Option<String>,
    /// Repositories, as JSON.
    #[arg(long, env = "REPOS_JSON", default_value = "[]")]
    pub repos_json: String,
    /// Name of the user the session belongs to.
    #[arg(long, env = "USER_NAME")]
    pub user_name: Option<String>,
    /// The `claude` executable.
    #[arg(long, env = "AMBIENT_CLAUDE_BIN", default_value = "claude")]
    pub claude_bin: PathBuf,
    /// Stream partial text as it is generated.
    #[arg(long, env = "AMBIENT_PARTIAL_MESSAGES", default_value = "true")]
    pub partial_messages: String,
    /// Anthropic API key.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,
    /// Anthropic-compatible endpoint.
    #[arg(long, env = "ANTHROPIC_BASE_URL")]
    pub anthropic_base_url: Option<String>,
    /// Bearer token for the endpoint.
    #[arg(long, env = "ANTHROPIC_AUTH_TOKEN", hide_env_values = true)]
    pub anthropic_auth_token: Option<String>,
    /// Token for GitHub pushes and pull requests.
    #[arg(long, env = "GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<String>,
    /// Token for GitLab pushes and merge requests.
    #[arg(long, env = "GITLAB_TOKEN", hide_env_values = true)]
    pub gitlab_token: Option<String>,
    /// GitHub's API base.
    #[arg(long, env = "GITHUB_API_URL")]
    pub github_api_url: Option<String>,
    /// GitLab's API base.
    #[arg(long, env = "GITLAB_API_URL")]
    pub gitlab_api_url: Option<String>,
    /// Workflow repository.
    #[arg(long, env = "ACTIVE_WORKFLOW_GIT_URL")]
    pub workflow_url: Option<String>,
    /// Workflow branch.
    #[arg(long, env = "ACTIVE_WORKFLOW_BRANCH")]
    pub workflow_branch: Option<String>,
    /// Workflow sub-directory.
    #[arg(long, env = "ACTIVE_WORKFLOW_PATH")]
    pub workflow_path: Option<String>,
    /// Most model turns per message.
    #[arg(long, env = "MAX_TURNS")]
    pub max_turns: Option<String>,
    /// The session's display name.
    #[arg(long, env = "AMBIENT_DISPLAY_NAME")]
    pub display_name: Option<String>,
    /// The session's MCP servers (JSON).
    #[arg(long, env = "CUSTOM_MCP_SERVERS")]
    pub custom_mcp_servers: Option<String>,
    /// The project's MCP servers (JSON).
    #[arg(long, env = "PROJECT_MCP_SERVERS")]
    pub project_mcp_servers: Option<String>,
}

/// Model credentials for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Variables to set for `claude`.
    pub env: Vec<(String, String)>,
}

/// The runner's configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Session name.
    pub session_name: String,
    /// Project.
    pub project: String,
    /// Workspace directory.
    pub workspace: PathBuf,
    /// Artifacts directory (absolute).
    pub artifacts: PathBuf,
    /// WebSocket URL of the runner endpoint.
    pub ws_url: String,
    /// Runner token.
    pub token: String,
    /// Generation.
    pub generation: u64,
    /// Highest handled user message.
    pub handled_through: u64,
    /// First prompt, for a fresh session.
    pub initial_prompt: Option<String>,
    /// Continue the previous conversation.
    pub resume: bool,
    /// Model, if set.
    pub model: Option<String>,
    /// Repositories.
    pub repos: Vec<SessionRepo>,
    /// Sender name of the initial prompt.
    pub user_name: String,
    /// `claude` executable.
    pub claude_bin: PathBuf,
    /// Stream partial text.
    pub partial_messages: bool,
    /// Model credentials; `None` when there are none.
    pub credentials: Option<Credentials>,
    /// GitHub token.
    pub github_token: Option<String>,
    /// GitLab token.
    pub gitlab_token: Option<String>,
    /// Forge API bases.
    pub apis: crate::forge::ApiUrls,
    /// The active workflow.
    pub workflow: Option<model::session::ActiveWorkflow>,
    /// Most model turns per message.
    pub max_turns: Option<u32>,
    /// Display name.
    pub display_name: Option<String>,
    /// `--mcp-config` JSON (`{"mcpServers": {...}}`), when any server is configured.
    pub mcp_config: Option<String>,
}

fn boolean(name: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        other => Err(format!("{name} must be true or false, not '{other}'")),
    }
}

impl RawConfig {
    /// Checks and resolves the configuration; the error is one line.
    pub fn validate(self) -> Result<Config, String> {
        if !self.workspace.is_absolute() {
            return Err(format!(
                "WORKSPACE_PATH must be absolute, not '{}'",
                self.workspace.display()
            ));
        }
        let base = url::Url::parse(&self.backend_api_url).map_err(|e| {
            format!(
                "BACKEND_API_URL '{}' is not a URL: {e}",
                self.backend_api_url
            )
        })?;
        let scheme = match base.scheme() {
            "http" => "ws",
            "https" => "wss",
            other => {
                return Err(format!(
                    "BACKEND_API_URL must be http or https, not {other}"
                ));
            }
        };
        let host = base.host_str().ok_or("BACKEND_API_URL has no host")?;
        let port = base.port().map(|p| format!(":{p}")).unwrap_or_default();
        let ws_url = format!(
            "{scheme}://{host}{port}{}/projects/{}/agentic-sessions/{}/runner/ws",
            base.path().trim_end_matches('/'),
            self.project,
            self.session_name
        );
        let repos: Vec<SessionRepo> = serde_json::from_str(&self.repos_json)
            .map_err(|e| format!("REPOS_JSON is not a list of repositories: {e}"))?;
        let set = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let (key, base_url, bearer) = (
            set(self.anthropic_api_key),
            set(self.anthropic_base_url),
            set(self.anthropic_auth_token),
        );
        let credentials = match (&key, &base_url, &bearer) {
            (None, None, None) => None,
            _ => {
                let mut env = Vec::new();
                if let Some(u) = &base_url {
                    env.push(("ANTHROPIC_BASE_URL".to_owned(), u.clone()));
                }
                if let Some(t) = &bearer {
                    env.push(("ANTHROPIC_AUTH_TOKEN".to_owned(), t.clone()));
                }
                match (&key, &bearer) {
                    (Some(k), _) => env.push(("ANTHROPIC_API_KEY".to_owned(), k.clone())),
                    // An endpoint that needs no key: the CLI still wants one to start.
                    (None, None) => {
                        env.push(("ANTHROPIC_API_KEY".to_owned(), "not-needed".to_owned()))
                    }
                    (None, Some(_)) => {}
                }
                Some(Credentials { env })
            }
        };
        let max_turns = match set(self.max_turns.clone()) {
            None => None,
            Some(v) => Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("MAX_TURNS must be a positive number, not '{v}'"))?,
            ),
        };
        let workflow =
            set(self.workflow_url.clone()).map(|git_url| model::session::ActiveWorkflow {
                git_url,
                branch: set(self.workflow_branch.clone()),
                path: set(self.workflow_path.clone()),
            });
        let mcp_config = mcp_config(
            set(self.project_mcp_servers.clone()),
            set(self.custom_mcp_servers.clone()),
        )?;
        Ok(Config {
            github_token: set(self.github_token.clone()),
            gitlab_token: set(self.gitlab_token.clone()),
            apis: crate::forge::ApiUrls {
                github: set(self.github_api_url.clone()),
                gitlab: set(self.gitlab_api_url.clone()),
            },
            workflow,
            max_turns,
            display_name: set(self.display_name.clone()),
            mcp_config,
            artifacts: self.workspace.join(&self.artifacts_dir),
            session_name: self.session_name,
            project: self.project,
            workspace: self.workspace,
            ws_url,
            token: self.token,
            generation: self.generation,
            handled_through: self.handled_through,
            initial_prompt: set(self.initial_prompt),
            resume: boolean("IS_RESUME", &self.is_resume)?,
            model: set(self.model),
            repos,
            user_name: set(self.user_name).unwrap_or_else(|| "user".into()),
            claude_bin: self.claude_bin,
            partial_messages: boolean("AMBIENT_PARTIAL_MESSAGES", &self.partial_messages)?,
            credentials,
        })
    }
}

/// Merges the project's MCP servers with the session's (which win), leaving out the
/// disabled ones, into Claude Code's `--mcp-config` JSON; `None` when nothing remains.
fn mcp_config(project: Option<String>, session: Option<String>) -> Result<Option<String>, String> {
    let parse = |name: &str, v: Option<String>| -> Result<model::session::McpServers, String> {
        match v {
            None => Ok(Default::default()),
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{name} is not an MCP server configuration: {e}")),
        }
    };
    let project = parse("PROJECT_MCP_SERVERS", project)?;
    let session = parse("CUSTOM_MCP_SERVERS", session)?;
    let mut servers = project.custom;
    servers.extend(session.custom);
    for name in project.disabled.iter().chain(&session.disabled) {
        servers.remove(name);
    }
    if servers.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        serde_json::json!({ "mcpServers": servers }).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(extra: &[&str]) -> Result<Config, String> {
        raw_in("/w", extra)
    }

    fn raw_in(workspace: &str, extra: &[&str]) -> Result<Config, String> {
        let base = [
            "runner",
            "--session-name",
            "s1",
            "--project",
            "p",
            "--workspace",
            workspace,
            "--backend-api-url",
            "http://127.0.0.1:3000/api",
            "--token",
            "t",
            "--generation",
            "2",
        ];
        RawConfig::try_parse_from(base.iter().chain(extra))
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn builds_the_runner_endpoint_url() {
        let c = raw(&[]).unwrap();
        assert_eq!(
            c.ws_url,
            "ws://127.0.0.1:3000/api/projects/p/agentic-sessions/s1/runner/ws"
        );
        assert_eq!(c.artifacts, PathBuf::from("/w/artifacts"));
    }

    #[test]
    fn a_base_url_alone_is_enough_credentials() {
        let c = raw(&[
            "--anthropic-base-url",
            "http://127.0.0.1:9/",
            "--anthropic-api-key",
            "",
        ])
        .unwrap();
        let env = c.credentials.unwrap().env;
        assert!(env.contains(&("ANTHROPIC_API_KEY".into(), "not-needed".into())));
    }

    #[test]
    fn mcp_servers_merge_session_over_project_and_drop_disabled() {
        let project = r#"{"custom":{"jira":{"command":"a"},"docs":{"type":"http","url":"http://d"}},"disabled":[]}"#;
        let session = r#"{"custom":{"jira":{"command":"b"}},"disabled":["docs"]}"#;
        let merged = mcp_config(Some(project.into()), Some(session.into()))
            .unwrap()
            .unwrap();
        assert_eq!(merged, r#"{"mcpServers":{"jira":{"command":"b"}}}"#);
        assert_eq!(mcp_config(None, None).unwrap(), None);
        assert!(
            mcp_config(Some("{".into()), None)
                .unwrap_err()
                .starts_with("PROJECT_MCP_SERVERS")
        );
    }

    #[test]
    fn bad_values_are_one_line() {
        assert!(
            raw(&["--max-turns", "0"])
                .unwrap_err()
                .contains("MAX_TURNS")
        );
        assert!(
            raw(&["--repos-json", "{"])
                .unwrap_err()
                .starts_with("REPOS_JSON")
        );
        assert!(
            raw(&["--is-resume", "maybe"])
                .unwrap_err()
                .contains("IS_RESUME")
        );
        assert!(raw_in("rel", &[]).unwrap_err().contains("absolute"));
    }
}
