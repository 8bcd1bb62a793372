//! The runner's configuration contract: names of the environment variables through which a
//! driver (local process or Kubernetes Job) configures a runner, and the exit record a runner
//! leaves in its workspace.
//!
//! Names follow the original platform where it has them; the platform's own additions start
//! with [`crate::validate::RESERVED_ENV_PREFIX`] and cannot be overridden by users.

use serde::{Deserialize, Serialize};

/// Session name.
pub const SESSION_NAME: &str = "AGENTIC_SESSION_NAME";
/// Project (namespace) of the session.
pub const SESSION_NAMESPACE: &str = "AGENTIC_SESSION_NAMESPACE";
/// Session uid.
pub const SESSION_ID: &str = "SESSION_ID";
/// Project name (same as the namespace).
pub const PROJECT_NAME: &str = "PROJECT_NAME";
/// Absolute path of the session's workspace.
pub const WORKSPACE_PATH: &str = "WORKSPACE_PATH";
/// Artifacts folder, relative to the workspace.
pub const ARTIFACTS_DIR: &str = "ARTIFACTS_DIR";
/// The first prompt; set only when the session starts for the first time.
pub const INITIAL_PROMPT: &str = "INITIAL_PROMPT";
/// `true` when the runner continues an earlier conversation.
pub const IS_RESUME: &str = "IS_RESUME";
/// Model id.
pub const LLM_MODEL: &str = "LLM_MODEL";
/// Run timeout in seconds (the operator enforces it; informative for the runner).
pub const TIMEOUT: &str = "TIMEOUT";
/// JSON array of the session's repos (`[{"url","branch","autoPush"}]`).
pub const REPOS_JSON: &str = "REPOS_JSON";
/// Workflow repository URL.
pub const ACTIVE_WORKFLOW_GIT_URL: &str = "ACTIVE_WORKFLOW_GIT_URL";
/// Workflow branch.
pub const ACTIVE_WORKFLOW_BRANCH: &str = "ACTIVE_WORKFLOW_BRANCH";
/// Workflow sub-directory.
pub const ACTIVE_WORKFLOW_PATH: &str = "ACTIVE_WORKFLOW_PATH";
/// Creator's user id.
pub const USER_ID: &str = "USER_ID";
/// Creator's display name.
pub const USER_NAME: &str = "USER_NAME";
/// JSON of the session's MCP servers (`{"custom":{...},"disabled":[...]}`).
pub const CUSTOM_MCP_SERVERS: &str = "CUSTOM_MCP_SERVERS";
/// JSON of the project's MCP servers.
pub const PROJECT_MCP_SERVERS: &str = "PROJECT_MCP_SERVERS";
/// Base URL of the server's API, e.g. `http://127.0.0.1:3000/api`.
pub const BACKEND_API_URL: &str = "BACKEND_API_URL";

/// The runner's token for the runner endpoint (valid for this session and generation only).
pub const RUNNER_TOKEN: &str = "AMBIENT_RUNNER_TOKEN";
/// Which start of the session this runner is.
pub const RUNNER_GENERATION: &str = "AMBIENT_RUNNER_GENERATION";
/// Highest session `seq` of a user message already given to the agent (the initial prompt
/// counts when [`INITIAL_PROMPT`] is set).
pub const HANDLED_THROUGH: &str = "AMBIENT_HANDLED_THROUGH";
/// Path of the `claude` executable.
pub const CLAUDE_BIN: &str = "AMBIENT_CLAUDE_BIN";

/// Anthropic API key.
pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
/// Base URL of an Anthropic-compatible endpoint.
pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// Bearer token for an Anthropic-compatible endpoint.
pub const ANTHROPIC_AUTH_TOKEN: &str = "ANTHROPIC_AUTH_TOKEN";
/// Token for pushes and pull requests on GitHub.
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// Token for pushes and merge requests on GitLab.
pub const GITLAB_TOKEN: &str = "GITLAB_TOKEN";
/// GitHub's REST API base (default `https://api.github.com`, or `https://<host>/api/v3`).
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
/// GitLab's REST API base (default `https://<host>/api/v4`).
pub const GITLAB_API_URL: &str = "GITLAB_API_URL";
/// Most model turns per message (`--max-turns`); unset for no limit.
pub const MAX_TURNS: &str = "MAX_TURNS";
/// The session's display name (pull request titles).
pub const DISPLAY_NAME: &str = "AMBIENT_DISPLAY_NAME";

/// Folder inside the workspace that belongs to the platform, not the agent.
pub const STATE_DIR: &str = ".ambient";
/// File in [`STATE_DIR`] where the runner records how it ended, for a driver that is not its
/// parent (a server restarted while the runner ran).
pub const EXIT_RECORD_FILE: &str = "runner-exit.json";
/// File in [`STATE_DIR`] receiving the runner's standard output and error.
pub const RUNNER_LOG_FILE: &str = "runner.log";

/// How a runner ended, as it records it in [`EXIT_RECORD_FILE`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The runner's generation.
    pub generation: u64,
    /// Its exit code.
    pub exit_code: i32,
}
