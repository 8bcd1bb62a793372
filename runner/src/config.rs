//! The runner's configuration, from its environment (the contract in `model::runner_env`),
//! parsed into typed values and checked once.

use std::num::NonZeroU32;
use std::path::PathBuf;

use clap::Parser;
use model::runner_env::{self as env, Credentials};
use model::session::{ForkSource, McpServers, SessionRepo};

use crate::error::Error;

/// A boolean the way environments write them: `true`/`false`, `1`/`0`, `yes`/`no` (any
/// case; empty is false).
pub(crate) fn boolean(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        other => Err(format!("must be true or false, not '{other}'")),
    }
}

/// An http(s) URL, kept as written.
fn http_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    let url = url::Url::parse(value).map_err(|e| format!("'{value}' is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(value.to_owned()),
        other => Err(format!("must be an http or https URL, not {other}")),
    }
}

/// The sandbox mode, as the drivers write it.
fn permission_mode(value: &str) -> Result<model::session::PermissionMode, String> {
    let value = value.trim();
    value.parse().map_err(|why| format!("{why}, not '{value}'"))
}

pub(crate) fn sandbox_mode(value: &str) -> Result<crate::sandbox::Mode, String> {
    let value = value.trim();
    value.parse().map_err(|why| format!("{why}, not '{value}'"))
}

/// A positive whole number.
pub(crate) fn positive(value: &str) -> Result<NonZeroU32, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("must be a positive number, not '{value}'"))
}

/// The URL of the server's API.
fn api_url(value: &str) -> Result<url::Url, String> {
    url::Url::parse(value.trim()).map_err(|e| format!("'{value}' is not a URL: {e}"))
}

pub(crate) fn repos(value: &str) -> Result<Repos, String> {
    serde_json::from_str(value).map_err(|e| format!("is not a list of repositories: {e}"))
}

fn mcp_servers(value: &str) -> Result<McpServers, String> {
    serde_json::from_str(value).map_err(|e| format!("is not an MCP server configuration: {e}"))
}

/// A clap error as one line naming the variable: `MAX_TURNS must be a positive number, not
/// 'many'`.
fn describe(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let variable = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg
            .split_once('<')
            .and_then(|(_, rest)| rest.strip_suffix('>'))
            .map(str::to_owned),
        _ => None,
    };
    let cause = std::error::Error::source(e).map(ToString::to_string);
    match (variable, cause) {
        (Some(variable), Some(cause)) => format!("{variable} {cause}"),
        _ => first_line(&e.to_string())
            .trim_start_matches("error: ")
            .to_owned(),
    }
}

/// Environment of a runner.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "runner",
    about = "Ambient Code Platform session runner",
    version
)]
pub struct RawConfig {
    /// The session, its workspace, and the server to connect to.
    #[command(flatten)]
    pub connect: Connect,
    /// Artifacts folder, relative to the workspace.
    #[arg(long, env = env::ARTIFACTS_DIR, value_name = env::ARTIFACTS_DIR, default_value = "artifacts")]
    pub artifacts_dir: String,
    /// Runner generation.
    #[arg(long, env = env::RUNNER_GENERATION, value_name = env::RUNNER_GENERATION)]
    pub generation: u64,
    /// Highest user-message sequence already handled.
    #[arg(long, env = env::HANDLED_THROUGH, value_name = env::HANDLED_THROUGH, default_value_t = 0)]
    pub handled_through: u64,
    /// First prompt (fresh sessions only).
    #[arg(long, env = env::INITIAL_PROMPT, value_name = env::INITIAL_PROMPT)]
    pub initial_prompt: Option<String>,
    /// The fork's source (`spec.fork` as JSON), for a forked session.
    #[arg(long, env = env::FORK_SOURCE, value_name = env::FORK_SOURCE, value_parser = fork_source)]
    pub fork_source: Option<ForkSource>,
    /// The workspace a fork's first run copies (local mode).
    #[arg(long, env = env::FORK_WORKSPACE, value_name = env::FORK_WORKSPACE)]
    pub fork_workspace: Option<PathBuf>,
    /// Hold the work: commit it in the workspace and report it, push nothing (an attempt no
    /// one has kept yet).
    #[arg(long, env = env::HOLD_DELIVERY, value_name = env::HOLD_DELIVERY, default_value = "false", value_parser = boolean, action = clap::ArgAction::Set)]
    pub hold_delivery: bool,
    /// Continue the previous conversation.
    #[arg(long, env = env::IS_RESUME, value_name = env::IS_RESUME, default_value = "false", value_parser = boolean, action = clap::ArgAction::Set)]
    pub is_resume: bool,
    /// Model.
    #[arg(long, env = env::LLM_MODEL, value_name = env::LLM_MODEL)]
    pub model: Option<String>,
    /// The session's repositories and workflow.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Name of the user the session belongs to.
    #[arg(long, env = env::USER_NAME, value_name = env::USER_NAME)]
    pub user_name: Option<String>,
    /// The `claude` executable.
    #[arg(long, env = env::CLAUDE_BIN, value_name = env::CLAUDE_BIN, default_value = "claude")]
    pub claude_bin: PathBuf,
    /// Stream partial text as it is generated.
    #[arg(long, env = env::PARTIAL_MESSAGES, value_name = env::PARTIAL_MESSAGES, default_value = "true", value_parser = boolean, action = clap::ArgAction::Set)]
    pub partial_messages: bool,
    /// Model and git credentials (none where a keeper holds them).
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// Where the credentials keeper is (`http://127.0.0.1:4142`), when another process
    /// holds the credentials (the runner pod's `credentials` container).
    #[arg(long, env = env::KEEPER_URL, value_name = env::KEEPER_URL, value_parser = http_url)]
    pub keeper_url: Option<String>,
    /// The token the keeper takes.
    #[arg(long, env = env::KEEPER_TOKEN, value_name = env::KEEPER_TOKEN, hide_env_values = true)]
    pub keeper_token: Option<String>,
    /// Most model turns per message.
    #[arg(long, env = env::MAX_TURNS, value_name = env::MAX_TURNS, value_parser = positive)]
    pub max_turns: Option<NonZeroU32>,
    /// The session's display name.
    #[arg(long, env = env::DISPLAY_NAME, value_name = env::DISPLAY_NAME)]
    pub display_name: Option<String>,
    /// The MCP servers.
    #[command(flatten)]
    pub mcp: McpArgs,
    /// Whether the agent runs in a bubblewrap sandbox: `auto` (when bubblewrap can run
    /// here), `required`, or `off` (a Kubernetes pod is its own sandbox).
    #[arg(long, env = env::SANDBOX, value_name = env::SANDBOX, default_value = "auto", value_parser = sandbox_mode)]
    pub sandbox: crate::sandbox::Mode,
    /// What the agent may do without asking: `autonomous`, `ask` or `plan`.
    #[arg(long, env = env::PERMISSION_MODE, value_name = env::PERMISSION_MODE, default_value = "autonomous", value_parser = permission_mode)]
    pub permission_mode: model::session::PermissionMode,
}

/// What every runner (a run's, a files runner) is told of its session and its server.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// Session name.
    #[arg(long, env = env::SESSION_NAME, value_name = env::SESSION_NAME)]
    pub session_name: String,
    /// Project (namespace).
    #[arg(long, env = env::SESSION_NAMESPACE, value_name = env::SESSION_NAMESPACE)]
    pub project: String,
    /// Workspace directory (absolute).
    #[arg(long, env = env::WORKSPACE_PATH, value_name = env::WORKSPACE_PATH)]
    pub workspace: PathBuf,
    /// Base URL of the server's API (`http://host:port/api`).
    #[arg(long, env = env::BACKEND_API_URL, value_name = env::BACKEND_API_URL, value_parser = api_url)]
    pub backend_api_url: url::Url,
    /// The runner's token.
    #[arg(long, env = env::RUNNER_TOKEN, value_name = env::RUNNER_TOKEN, hide_env_values = true)]
    pub token: String,
}

impl Connect {
    /// The WebSocket URL of the session's endpoint `tail` (`runner/ws`), once the workspace
    /// is found absolute.
    pub fn ws_url(&self, tail: &str) -> Result<String, Error> {
        if !self.workspace.is_absolute() {
            return Err(Error::Config(format!(
                "{} must be absolute, not '{}'",
                env::WORKSPACE_PATH,
                self.workspace.display()
            )));
        }
        endpoint(
            &self.backend_api_url,
            &self.project,
            &self.session_name,
            tail,
        )
    }
}

/// The session's repositories and active workflow (read by the runner and by the
/// credentials keeper, which clones them).
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// Repositories, as JSON.
    #[arg(long, env = env::REPOS_JSON, value_name = env::REPOS_JSON, default_value = "[]", value_parser = repos)]
    pub repos_json: Repos,
    /// Workflow repository.
    #[arg(long, env = env::ACTIVE_WORKFLOW_GIT_URL, value_name = env::ACTIVE_WORKFLOW_GIT_URL)]
    pub workflow_url: Option<String>,
    /// Workflow branch.
    #[arg(long, env = env::ACTIVE_WORKFLOW_BRANCH, value_name = env::ACTIVE_WORKFLOW_BRANCH)]
    pub workflow_branch: Option<String>,
    /// Workflow sub-directory.
    #[arg(long, env = env::ACTIVE_WORKFLOW_PATH, value_name = env::ACTIVE_WORKFLOW_PATH)]
    pub workflow_path: Option<String>,
}

impl SourceArgs {
    /// The repositories and the active workflow, blank values unset.
    pub fn resolve(self) -> (Vec<SessionRepo>, Option<model::session::ActiveWorkflow>) {
        let workflow = set(self.workflow_url).map(|git_url| model::session::ActiveWorkflow {
            git_url,
            branch: set(self.workflow_branch),
            path: set(self.workflow_path),
        });
        (self.repos_json.0, workflow)
    }
}

/// The project's and the session's MCP servers (read by the runner, which gives the agent
/// their configuration, and by the credentials keeper, whose proxy relays to HTTP servers).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct McpArgs {
    /// The session's MCP servers (JSON).
    #[arg(long, env = env::CUSTOM_MCP_SERVERS, value_name = env::CUSTOM_MCP_SERVERS, value_parser = mcp_servers)]
    pub custom_mcp_servers: Option<McpServers>,
    /// The project's MCP servers (JSON).
    #[arg(long, env = env::PROJECT_MCP_SERVERS, value_name = env::PROJECT_MCP_SERVERS, value_parser = mcp_servers)]
    pub project_mcp_servers: Option<McpServers>,
}

impl McpArgs {
    /// The servers of the run: the project's, the session's over them, less the disabled.
    pub fn servers(&self) -> Vec<model::mcp::Server> {
        model::mcp::merge(
            self.project_mcp_servers.as_ref(),
            self.custom_mcp_servers.as_ref(),
        )
    }
}

/// The model and git credentials (with the API addresses they go to).
#[derive(Debug, Clone, clap::Args)]
pub struct CredentialArgs {
    /// Anthropic API key.
    #[arg(long, env = env::ANTHROPIC_API_KEY, value_name = env::ANTHROPIC_API_KEY, hide_env_values = true)]
    pub anthropic_api_key: Option<String>,
    /// Anthropic-compatible endpoint.
    #[arg(long, env = env::ANTHROPIC_BASE_URL, value_name = env::ANTHROPIC_BASE_URL, value_parser = http_url)]
    pub anthropic_base_url: Option<String>,
    /// Bearer token for the endpoint.
    #[arg(long, env = env::ANTHROPIC_AUTH_TOKEN, value_name = env::ANTHROPIC_AUTH_TOKEN, hide_env_values = true)]
    pub anthropic_auth_token: Option<String>,
    /// Token for GitHub pushes and pull requests.
    #[arg(long, env = env::GITHUB_TOKEN, value_name = env::GITHUB_TOKEN, hide_env_values = true)]
    pub github_token: Option<String>,
    /// Token for GitLab pushes and merge requests.
    #[arg(long, env = env::GITLAB_TOKEN, value_name = env::GITLAB_TOKEN, hide_env_values = true)]
    pub gitlab_token: Option<String>,
    /// GitHub's API base.
    #[arg(long, env = env::GITHUB_API_URL, value_name = env::GITHUB_API_URL, value_parser = http_url)]
    pub github_api_url: Option<String>,
    /// GitLab's API base.
    #[arg(long, env = env::GITLAB_API_URL, value_name = env::GITLAB_API_URL, value_parser = http_url)]
    pub gitlab_api_url: Option<String>,
}

impl CredentialArgs {
    /// The credentials, blank values unset, and the forges their API addresses name.
    pub fn resolve(self) -> (Credentials, crate::forge::Forges) {
        let forges = crate::forge::Forges::new(&crate::forge::ApiUrls {
            github: self.github_api_url.clone(),
            gitlab: self.gitlab_api_url.clone(),
        });
        let credentials = Credentials {
            anthropic_api_key: set(self.anthropic_api_key),
            anthropic_base_url: set(self.anthropic_base_url),
            anthropic_auth_token: set(self.anthropic_auth_token),
            github_token: set(self.github_token),
            gitlab_token: set(self.gitlab_token),
            github_api_url: self.github_api_url,
            gitlab_api_url: self.gitlab_api_url,
            // The project's MCP credentials come as `MCP_*` variables, whatever their names.
            mcp: std::env::vars()
                .filter(|(k, v)| model::mcp::is_credential_key(k) && !v.trim().is_empty())
                .collect(),
        };
        (credentials, forges)
    }
}

/// The repositories of `REPOS_JSON`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(transparent)]
pub struct Repos(pub Vec<SessionRepo>);

/// A forked session's origin.
#[derive(Debug, Clone)]
pub struct Fork {
    /// The conversation and the entry it resumes at.
    pub source: ForkSource,
    /// The source's workspace, copied by the fork's first run (local mode; `None` where
    /// the workspace already is a copy: a cluster's cloned claim).
    pub workspace: Option<PathBuf>,
}

/// `spec.fork` as JSON, checked as the schema says.
fn fork_source(s: &str) -> Result<ForkSource, String> {
    let source: ForkSource =
        serde_json::from_str(s).map_err(|e| format!("is not a fork's source ({e})"))?;
    if !source.is_valid() {
        return Err("is not a fork's source: a session, a turn from 1, and ids".into());
    }
    Ok(source)
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
    /// Whether the run's work is held (committed and reported, not pushed).
    pub hold_delivery: bool,
    /// Where a forked session's conversation comes from, and (local mode) its files.
    pub fork: Option<Fork>,
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
    /// Model and git credentials.
    pub credentials: Credentials,
    /// The forges of the run (from its configured API URLs only).
    pub forges: crate::forge::Forges,
    /// The credentials keeper, when another process holds the credentials (then
    /// `credentials` is empty).
    pub keeper: Option<crate::keeper::Address>,
    /// The active workflow.
    pub workflow: Option<model::session::ActiveWorkflow>,
    /// Most model turns per message.
    pub max_turns: Option<NonZeroU32>,
    /// Display name.
    pub display_name: Option<String>,
    /// The MCP servers of the run (project's and session's, merged).
    pub mcp_servers: Vec<model::mcp::Server>,
    /// Whether the agent is sandboxed.
    pub sandbox: crate::sandbox::Mode,
    /// What the agent may do without asking a person.
    pub permission_mode: model::session::PermissionMode,
}

impl Config {
    /// Parses and checks the process's arguments and environment.
    pub fn from_env() -> Result<Config, Error> {
        RawConfig::try_parse()
            .map_err(|e| Error::Config(describe(&e)))?
            .validate()
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// A trimmed value; blank counts as unset.
fn set(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl RawConfig {
    /// Checks and resolves the configuration.
    pub fn validate(self) -> Result<Config, Error> {
        let ws_url = self.connect.ws_url("runner/ws")?;
        let (repos, workflow) = self.sources.resolve();
        let (credentials, forges) = self.credentials.resolve();
        let keeper = match (set(self.keeper_url), set(self.keeper_token)) {
            (Some(url), Some(token)) => Some(crate::keeper::Address { url, token }),
            (None, None) => None,
            _ => {
                return Err(Error::Config(format!(
                    "{} and {} go together",
                    env::KEEPER_URL,
                    env::KEEPER_TOKEN
                )));
            }
        };
        Ok(Config {
            credentials,
            forges,
            keeper,
            workflow,
            max_turns: self.max_turns,
            display_name: set(self.display_name),
            mcp_servers: self.mcp.servers(),
            artifacts: self.connect.workspace.join(&self.artifacts_dir),
            session_name: self.connect.session_name,
            project: self.connect.project,
            workspace: self.connect.workspace,
            ws_url,
            token: self.connect.token,
            generation: self.generation,
            handled_through: self.handled_through,
            initial_prompt: set(self.initial_prompt),
            resume: self.is_resume,
            hold_delivery: self.hold_delivery,
            fork: self.fork_source.map(|source| Fork {
                source,
                workspace: self.fork_workspace,
            }),
            model: set(self.model),
            repos,
            user_name: set(self.user_name).unwrap_or_else(|| "user".into()),
            claude_bin: self.claude_bin,
            partial_messages: self.partial_messages,
            sandbox: self.sandbox,
            permission_mode: self.permission_mode,
        })
    }
}

/// The WebSocket URL of a session's endpoint `tail` under the API's base URL.
fn endpoint(base: &url::Url, project: &str, session: &str, tail: &str) -> Result<String, Error> {
    let scheme = match base.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => {
            return Err(Error::Config(format!(
                "{} must be http or https, not {other}",
                env::BACKEND_API_URL
            )));
        }
    };
    let host = base
        .host_str()
        .ok_or_else(|| Error::Config(format!("{} has no host", env::BACKEND_API_URL)))?;
    let port = base.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!(
        "{scheme}://{host}{port}{}/projects/{project}/agentic-sessions/{session}/{tail}",
        base.path().trim_end_matches('/'),
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
            .map_err(|e| describe(&e))?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn builds_the_runner_endpoint_url() {
        let c = raw(&[]).unwrap();
        assert_eq!(
            c.ws_url,
            "ws://127.0.0.1:3000/api/projects/p/agentic-sessions/s1/runner/ws"
        );
        assert_eq!(c.artifacts, PathBuf::from("/w/artifacts"));
        assert!((!c.resume) && c.partial_messages && !c.credentials.has_model());
        assert_eq!(c.sandbox, crate::sandbox::Mode::Auto);
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
        assert!(c.credentials.has_model());
        assert_eq!(c.credentials.anthropic_api_key, None);
        assert_eq!(
            c.credentials.anthropic_base_url.as_deref(),
            Some("http://127.0.0.1:9/")
        );
    }

    #[test]
    fn mcp_servers_merge_session_over_project_and_drop_disabled() {
        let project = r#"{"custom":{"jira":{"command":"a"},"docs":{"type":"http","url":"http://d"}},"disabled":[]}"#;
        let session = r#"{"custom":{"jira":{"command":"b"}},"disabled":["docs"]}"#;
        let c = raw(&[
            "--project-mcp-servers",
            project,
            "--custom-mcp-servers",
            session,
        ])
        .unwrap();
        assert_eq!(c.mcp_servers.len(), 1);
        assert_eq!(c.mcp_servers[0].config["command"], "b");
        assert!(!c.mcp_servers[0].project);
    }

    #[test]
    fn bad_values_are_one_line_naming_the_variable() {
        for (args, start) in [
            (
                &["--max-turns", "0"][..],
                "MAX_TURNS must be a positive number",
            ),
            (
                &["--repos-json", "{"],
                "REPOS_JSON is not a list of repositories",
            ),
            (&["--is-resume", "maybe"], "IS_RESUME must be true or false"),
            (
                &["--sandbox", "maybe"],
                "AMBIENT_SANDBOX must be auto, required or off",
            ),
            (
                &["--github-api-url", "ftp://x"],
                "GITHUB_API_URL must be an http or https URL",
            ),
            (
                &["--project-mcp-servers", "{"],
                "PROJECT_MCP_SERVERS is not an MCP server",
            ),
            (
                &[
                    "--fork-source",
                    r#"{"session":"s","turn":1,"conversationId":"a","resumeAt":"--x=1 y"}"#,
                ],
                "AMBIENT_FORK_SOURCE is not a fork's source",
            ),
        ] {
            let err = raw(args).unwrap_err();
            assert!(err.starts_with(start) && !err.contains('\n'), "{err}");
        }
        assert!(raw(&["--is-resume", "YES"]).unwrap().resume);
        assert_eq!(
            raw(&["--max-turns", "7"])
                .unwrap()
                .max_turns
                .map(|n| n.get()),
            Some(7)
        );
        let relative = raw_in("rel", &[]).unwrap_err();
        assert!(relative.contains("WORKSPACE_PATH") && relative.contains("absolute"));
    }
}
