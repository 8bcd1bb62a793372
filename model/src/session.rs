//! The `AgenticSession` custom resource (`vteam.ambient-code/v1alpha1`): one agent run.
//!
//! Field names and defaults follow the original platform's CRD so that an existing manifest
//! parses unchanged. Only the operator writes `status`; users steer a session through the
//! [`annotations::DESIRED_PHASE`](crate::annotations::DESIRED_PHASE) annotation.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;

pub use crate::project_settings::GitProvider;
use serde::{Deserialize, Serialize};

/// Desired state of an agentic session.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "vteam.ambient-code",
    version = "v1alpha1",
    kind = "AgenticSession",
    plural = "agenticsessions",
    singular = "agenticsession",
    shortname = "as",
    namespaced,
    derive = "PartialEq",
    status = "AgenticSessionStatus",
    printcolumn = r#"{"name":"Display","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".status.model"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Cost","type":"number","jsonPath":".status.result.costUsd","priority":1}"#,
    printcolumn = r#"{"name":"Started","type":"date","jsonPath":".status.startTime","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AgenticSessionSpec {
    /// Repositories cloned into the workspace as `repos/<name>`; the first is the working
    /// directory. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<SessionRepo>,
    /// The first prompt, run when the session starts for the first time (not on continue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_prompt: Option<String>,
    /// Human-readable name shown in the UI. Default: derived from the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Who created the session; set by the server from the caller's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_context: Option<UserContext>,
    /// Model settings. Default: the platform's default model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_settings: Option<LlmSettings>,
    /// Hard limit on the run's wall time in seconds (enforced here, unlike the original).
    /// Default: 300 in the original's CRD; absent means the platform default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Seconds without any event before the session is stopped with reason `inactivity`;
    /// 0 disables. Default: the project's setting, else the platform's (30 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub inactivity_timeout: Option<i64>,
    /// Batch mode: the session ends (`Completed`) when its agent has answered every message,
    /// instead of staying `Running` with its agent warm until the inactivity timeout.
    /// Default: false (interactive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_on_run_finished: Option<bool>,
    /// Extra environment variables for the runner and the agent. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_variables: BTreeMap<String, String>,
    /// Session-level MCP server overrides, merged over the project's. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<McpServers>,
    /// Workflow repository cloned to `workflows/<name>`. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_workflow: Option<ActiveWorkflow>,
    /// What the agent may do without asking: `autonomous` (anything, inside its sandbox),
    /// `ask` (a person approves each command and edit), `plan` (it proposes a plan and a
    /// person approves it before it acts). Default: autonomous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<PermissionMode>,
    /// The session this one was forked from, and where (set by `POST …/fork` only): its
    /// first run starts from a copy of that session's workspace and continues its
    /// conversation as it stood after that turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<ForkSource>,
    /// One of several attempts at the same prompt ("run N", set by `POST …/attempts`
    /// only): until a person keeps it, its work is held (committed in its workspace, not
    /// pushed, no pull request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Attempt>,
}

/// A session's place among the attempts of one prompt (see `spec.attempt`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// The group of attempts (the same for each of them).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub group: String,
    /// This attempt's number, from 1.
    #[schemars(range(min = 1))]
    pub index: u32,
    /// How many attempts the group started with.
    #[schemars(range(min = 2))]
    pub of: u32,
    /// Whether a person kept this attempt: its work is delivered like any session's.
    #[serde(default)]
    pub kept: bool,
}

impl Attempt {
    /// Whether the attempt's work is held back (not kept yet).
    pub fn holds_delivery(&self) -> bool {
        !self.kept
    }
}

/// Where a fork continues from (see `spec.fork`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForkSource {
    /// The session forked, in the same project.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub session: String,
    /// Its turn the fork continues after (1: its first).
    #[schemars(range(min = 1))]
    pub turn: u32,
    /// Claude's conversation in that session at that turn.
    #[schemars(regex(pattern = r"^[A-Za-z0-9-]{1,64}$"))]
    pub conversation_id: String,
    /// The conversation's last entry at the end of that turn (`--resume-session-at`).
    #[schemars(regex(pattern = r"^[A-Za-z0-9-]{1,64}$"))]
    pub resume_at: String,
}

impl ForkSource {
    /// Whether `s` may name a conversation or one of its entries: what Claude Code writes
    /// (UUIDs), never anything a command line could take for more.
    pub fn is_id(s: &str) -> bool {
        (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }

    /// Whether every field is as the schema says (a fork applied with `kubectl` is checked
    /// again before anything uses it).
    pub fn is_valid(&self) -> bool {
        crate::validate::dns1123_label("fork.session", &self.session).is_ok()
            && self.turn >= 1
            && Self::is_id(&self.conversation_id)
            && Self::is_id(&self.resume_at)
    }
}

/// What the agent may do without asking a person (see `spec.permissionMode`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PermissionMode {
    /// Anything, inside its sandbox (Claude Code's `bypassPermissions`).
    #[default]
    Autonomous,
    /// A person approves each command and edit (Claude Code's `default` mode, every
    /// permission asked of the runner).
    Ask,
    /// The agent plans first; a person approves the plan before it acts (`plan`).
    Plan,
}

impl PermissionMode {
    /// Every mode.
    pub const ALL: [PermissionMode; 3] = [
        PermissionMode::Autonomous,
        PermissionMode::Ask,
        PermissionMode::Plan,
    ];

    /// The mode as written in `spec.permissionMode` and the runner's environment.
    pub const fn as_str(self) -> &'static str {
        match self {
            PermissionMode::Autonomous => "autonomous",
            PermissionMode::Ask => "ask",
            PermissionMode::Plan => "plan",
        }
    }
}

impl std::str::FromStr for PermissionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PermissionMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| "must be autonomous, ask or plan".to_owned())
    }
}

/// A git repository of a session.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionRepo {
    /// Clone URL (https, ssh or file).
    pub url: String,
    /// Branch to check out. Default: `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_branch")]
    pub branch: Option<String>,
    /// Commit and push the agent's work to `ambient/<session>` and open a pull request.
    /// Default: false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_false")]
    pub auto_push: Option<bool>,
    /// Hosting of the repository, for pull requests. Default: GitLab when the host's name
    /// contains `gitlab`, else GitHub (github.com or GitHub Enterprise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<GitProvider>,
}

impl SessionRepo {
    /// Whether the agent's work is pushed and proposed as a pull request.
    pub fn auto_push(&self) -> bool {
        self.auto_push.unwrap_or(false)
    }
}

/// Branch used when a repository names none.
pub const DEFAULT_BRANCH: &str = "main";

fn default_branch() -> Option<String> {
    Some(DEFAULT_BRANCH.to_owned())
}

fn default_false() -> Option<bool> {
    Some(false)
}

/// Identity of the session's creator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserContext {
    /// Stable user id.
    #[serde(default)]
    pub user_id: String,
    /// Name shown in the UI.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Groups the user belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// Model settings of a session.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LlmSettings {
    /// Model id passed to Claude Code. Default: the platform's default model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling temperature (kept for compatibility; Claude Code ignores it). Default: 0.7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Output token cap (kept for compatibility; Claude Code ignores it). Default: 4000.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::validate::whole_number"
    )]
    pub max_tokens: Option<i64>,
}

/// MCP server configuration: extra servers and names of default servers to disable.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpServers {
    /// Servers by name; each value is a Claude Code MCP server config (stdio, http or sse).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::free_form_map")]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, Object>))]
    pub custom: BTreeMap<String, serde_json::Value>,
    /// Names of inherited servers to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
}

/// A workflow repository the agent follows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActiveWorkflow {
    /// Clone URL of the workflow repository.
    pub git_url: String,
    /// Branch. Default: `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(default = "default_branch")]
    pub branch: Option<String>,
    /// Sub-directory holding the workflow. Default: the repository root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ActiveWorkflow {
    /// The branch to clone: the one named, else [`DEFAULT_BRANCH`].
    pub fn branch_or_default(&self) -> &str {
        self.branch.as_deref().unwrap_or(DEFAULT_BRANCH)
    }
}

/// Observed state of an agentic session; written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgenticSessionStatus {
    /// Last spec generation the operator acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The model the current run uses: the session's, or the platform's default when the
    /// session names none (one made with `kubectl apply`, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Lifecycle phase. Default: `Pending`.
    #[serde(default)]
    pub phase: Phase,
    /// When the current run started (reset on continue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the session reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// State of each cloned repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reconciled_repos: Vec<ReconciledRepo>,
    /// State of the active workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_workflow: Option<ReconciledWorkflow>,
    /// Time of the last event seen from the session; drives the inactivity timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<Time>,
    /// Why the session stopped, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<StoppedReason>,
    /// Claude Code conversation id, used to resume on continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_session_id: Option<String>,
    /// How many times the runner was restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk_restart_count: Option<i64>,
    /// Totals of the last run (tokens, cost, turns, exit code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunSummary>,
    /// The current run (1, 2 ... one per start; Kubernetes mode): its Job, and the only run
    /// whose runner token is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_generation: Option<i64>,
    /// SHA-256 (hex) of the current run's runner token (Kubernetes mode: the token itself is
    /// in the run's Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_token_hash: Option<String>,
    /// SHA-256 (hex) of the token of the runner that serves a stopped session's files (a
    /// short-lived `runner files`, started when someone opens them), written by the driver
    /// that starts it. That token admits only a files runner, never a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_token_hash: Option<String>,
    /// The run whose runner the server saw connect (written by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_connected_generation: Option<i64>,
    /// User messages wait in the session's log that no agent has handled (written by the
    /// server, which keeps the log, once a run has ended; a Completed session with messages
    /// waiting goes on). Cleared when a run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhandled_messages: Option<bool>,
    /// Standard Kubernetes conditions (`Ready`, `RunnerStarted`, `Failed` ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What the agent of a running session does now, as its server sees its runner:
    /// computed when the session is read through the API, never stored (like the
    /// original's `agentStatus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<AgentStatus>,
}

/// What the agent of a running session does now.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AgentStatus {
    /// A turn is under way (or a message waits for one).
    Working,
    /// Every message has its answer: the session waits for a person, its agent warm.
    Idle,
    /// The agent asked a person something and waits for the answer.
    WaitingInput,
}

impl AgentStatus {
    /// The status as written in `status.agentStatus`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Working => "working",
            AgentStatus::Idle => "idle",
            AgentStatus::WaitingInput => "waiting_input",
        }
    }
}

/// Lifecycle phase of a session.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing started yet.
    #[default]
    Pending,
    /// The runner is being started.
    Creating,
    /// The runner is connected and the agent works.
    Running,
    /// A stop was requested; the runner is being terminated.
    Stopping,
    /// Stopped on request, by inactivity or by timeout.
    Stopped,
    /// The runner finished successfully.
    Completed,
    /// The runner failed or could not start.
    Failed,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Creating,
        Phase::Running,
        Phase::Stopping,
        Phase::Stopped,
        Phase::Completed,
        Phase::Failed,
    ];

    /// The phase's name as written in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Creating => "Creating",
            Phase::Running => "Running",
            Phase::Stopping => "Stopping",
            Phase::Stopped => "Stopped",
            Phase::Completed => "Completed",
            Phase::Failed => "Failed",
        }
    }

    /// Parses a phase name as written in `status.phase`.
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// No runner exists or will exist until someone starts the session again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Stopped | Phase::Completed | Phase::Failed)
    }

    /// A runner is starting, running or stopping.
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Creating | Phase::Running | Phase::Stopping)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session stopped.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StoppedReason {
    /// A user asked for it.
    User,
    /// No event for longer than the inactivity timeout.
    Inactivity,
    /// The run exceeded `spec.timeout`.
    Timeout,
    /// `spec.stopOnRunFinished` and the run finished.
    RunFinished,
    /// Its agent waited for a person when another session needed its slot (the cap on
    /// running sessions was reached); a message continues it.
    Capacity,
    /// Its workflow was switched: it starts again at once in the new one, its conversation
    /// kept (seen only while it restarts).
    Restart,
}

impl StoppedReason {
    /// The reason as written in `status.stoppedReason` and the stop-reason annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            StoppedReason::User => "user",
            StoppedReason::Inactivity => "inactivity",
            StoppedReason::Timeout => "timeout",
            StoppedReason::RunFinished => "run-finished",
            StoppedReason::Capacity => "capacity",
            StoppedReason::Restart => "restart",
        }
    }

    /// Parses the annotation value.
    pub fn parse(s: &str) -> Option<StoppedReason> {
        [
            Self::User,
            Self::Inactivity,
            Self::Timeout,
            Self::RunFinished,
            Self::Capacity,
            Self::Restart,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// State of one repository in the workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconciledRepo {
    /// Clone URL.
    pub url: String,
    /// Deprecated single branch; see `branches`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Local branches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// Checked-out branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_active_branch: Option<String>,
    /// The remote's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    /// Directory name under `repos/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Clone state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RepoState>,
    /// When the clone finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloned_at: Option<Time>,
}

/// Clone state of a repository.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RepoState {
    /// Being cloned.
    Cloning,
    /// Cloned and checked out.
    Ready,
    /// The clone failed.
    Failed,
}

/// State of the active workflow.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconciledWorkflow {
    /// Clone URL.
    pub git_url: String,
    /// Branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Sub-directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Clone state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WorkflowState>,
    /// When it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
}

/// Clone state of a workflow.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WorkflowState {
    /// Being cloned.
    Cloning,
    /// In use.
    Active,
    /// The clone failed.
    Failed,
}

/// Totals of a run, as reported by the runner's final result.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Exit code of the runner process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Model turns over the run.
    #[serde(default)]
    pub turns: u32,
    /// Input tokens over the run (cache reads and writes included).
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens over the run.
    #[serde(default)]
    pub output_tokens: u64,
    /// Cost in US dollars at list price, as computed by Claude Code.
    #[serde(default)]
    pub cost_usd: f64,
}

/// Identifies a session: its project (namespace) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// Project (namespace) name.
    pub project: String,
    /// Session name.
    pub name: String,
}

impl SessionKey {
    /// A key from its parts.
    pub fn new(project: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            name: name.into(),
        }
    }

    /// The key of a session resource.
    pub fn of(session: &AgenticSession) -> Self {
        Self::new(
            session.metadata.namespace.clone().unwrap_or_default(),
            session.metadata.name.clone().unwrap_or_default(),
        )
    }
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.project, self.name)
    }
}

impl AgenticSession {
    /// The phase, `Pending` when no status was written yet.
    pub fn phase(&self) -> Phase {
        self.status.as_ref().map(|s| s.phase).unwrap_or_default()
    }

    /// The model the session asked for, if any.
    pub fn model(&self) -> Option<&str> {
        self.spec.llm_settings.as_ref()?.model.as_deref()
    }

    /// Whether an agent conversation exists that a new run can resume (the runner reported
    /// Claude's session id).
    pub fn has_conversation(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.sdk_session_id.is_some())
    }

    /// Value of an annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}
