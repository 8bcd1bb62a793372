//! REST request and response bodies, shared by the server, the UI and clients.
//!
//! Paths and shapes follow the original platform's backend where it has them
//! (`/api/projects/{project}/agentic-sessions/...`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::session::{ActiveWorkflow, AgenticSession, LlmSettings, McpServers, SessionRepo};

/// Body of every error answer: `{"error": "<kind>", "message": "<explanation>"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Machine-readable kind: `invalid`, `not_found`, `conflict`, `too_large`,
    /// `unsupported_media_type`, `unauthorized`, `forbidden`, `internal`.
    pub error: String,
    /// Human-readable explanation, safe to show to users.
    pub message: String,
}

/// `POST /api/projects/{project}/agentic-sessions`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSessionRequest {
    /// What the agent should do. Required, at most [`crate::protocol::MAX_MESSAGE_TEXT`] bytes.
    #[serde(default)]
    pub initial_prompt: String,
    /// Name shown in the UI. Default: the start of the prompt.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Model settings. Default: the platform's default model.
    #[serde(default)]
    pub llm_settings: Option<LlmSettings>,
    /// Wall-time limit of a run in seconds. Default: none beyond the platform's.
    #[serde(default, deserialize_with = "crate::validate::whole_number")]
    pub timeout: Option<i64>,
    /// Seconds without activity before the session stops. Default: the project's.
    #[serde(default, deserialize_with = "crate::validate::whole_number")]
    pub inactivity_timeout: Option<i64>,
    /// Batch mode: the session completes once its agent has answered every message.
    /// Default: false (interactive: it stays running, its agent warm, until the inactivity
    /// timeout).
    #[serde(default)]
    pub stop_on_run_finished: Option<bool>,
    /// Repositories to clone.
    #[serde(default)]
    pub repos: Vec<SessionRepo>,
    /// Workflow to follow.
    #[serde(default)]
    pub active_workflow: Option<ActiveWorkflow>,
    /// What the agent may do without asking: `autonomous` (default), `ask` (a person
    /// approves each command and edit), `plan` (a person approves its plan first).
    #[serde(default)]
    pub permission_mode: Option<crate::session::PermissionMode>,
    /// Extra environment for the runner and the agent.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
    /// Labels of the session.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the session.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// MCP servers for this session.
    #[serde(default)]
    pub mcp_servers: Option<McpServers>,
    /// Session this one continues (kept as an annotation).
    #[serde(default, rename = "parent_session_id")]
    pub parent_session_id: Option<String>,
}

/// `POST /api/projects/{project}/agentic-sessions/{session}/fork`: a new session that
/// continues this one's conversation as it stood after one of its turns, in a copy of its
/// workspace, with its repositories, model, workflow and settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForkSessionRequest {
    /// The turn to continue after: 1 is the session's first finished turn. Default: its
    /// last.
    #[serde(default, deserialize_with = "crate::validate::whole_u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub turn: Option<u32>,
    /// The fork's first message. Required, at most [`crate::protocol::MAX_MESSAGE_TEXT`]
    /// bytes.
    #[serde(default)]
    pub prompt: String,
    /// Name shown in the UI. Default: the source's, marked as a fork after its turn.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Most attempts one "run N" starts.
pub const MAX_ATTEMPTS: u32 = 5;

/// `POST /api/projects/{project}/attempts`: several sessions from one request ("run N"),
/// to compare their work and keep one. Each is a batch session (it completes after
/// answering) whose work is held (committed in its workspace, not pushed) until a person
/// keeps it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAttemptsRequest {
    /// How many sessions: 2 to [`MAX_ATTEMPTS`].
    #[serde(deserialize_with = "crate::validate::required_whole_u32")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 5))]
    pub attempts: u32,
    /// The session each attempt is, as for `POST …/agentic-sessions` (`stopOnRunFinished`
    /// is taken as true).
    pub session: CreateSessionRequest,
}

/// Answer to `POST …/attempts` (`201 Created`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AttemptsCreated {
    /// The group's name (`GET …/attempts/{group}`).
    pub group: String,
    /// Its sessions, in order.
    pub sessions: Vec<String>,
}

/// `GET /api/projects/{project}/attempts/{group}`: the attempts side by side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AttemptGroup {
    /// The group's name.
    pub group: String,
    /// The prompt every attempt started with.
    pub prompt: String,
    /// The attempt a person kept, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// The attempts still there, in order.
    pub attempts: Vec<AttemptSummary>,
}

/// One attempt, as the comparison shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AttemptSummary {
    /// The session's name.
    pub name: String,
    /// Its display name.
    pub display_name: String,
    /// Its number in the group, from 1.
    pub index: u32,
    /// Its phase.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub phase: crate::session::Phase,
    /// Model turns of its last run.
    pub turns: u32,
    /// Cost of its last run in US dollars.
    pub cost_usd: f64,
    /// Whether a person kept it.
    pub kept: bool,
    /// What it changed, per repository (the last report of each).
    pub changes: Vec<crate::protocol::RepoChanges>,
    /// Its pull requests (once kept and delivered).
    pub pull_requests: Vec<String>,
}

/// `POST /api/projects/{project}/attempts/{group}/keep`: keeps one attempt (its work is
/// pushed and proposed) and stops the others.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeepAttemptRequest {
    /// The session to keep: one of the group's.
    pub session: String,
}

/// One finished turn of a session (`GET …/{session}/turns`): what a fork can continue
/// after.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionTurn {
    /// Its number, from 1.
    pub turn: u32,
    /// The start of the agent's answer (or of the turn's error), at most 200 characters.
    pub answer: String,
    /// Whether the turn failed.
    pub is_error: bool,
    /// Whether a fork can continue after it (its conversation and last message are known).
    pub forkable: bool,
}

/// Answer to a session creation (`201 Created`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionResponse {
    /// Always "Agentic session created successfully".
    pub message: String,
    /// The session's name, `session-<uuid>`.
    pub name: String,
    /// The session's uid.
    pub uid: String,
    /// The branch the agent's work goes to.
    pub auto_branch: String,
}

/// A page of sessions, newest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    /// The sessions of this page.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::api::session_array_schema))]
    pub items: Vec<AgenticSession>,
    /// Sessions matching the search, over all pages.
    pub total_count: u64,
    /// Offset of this page.
    pub offset: u64,
    /// Page size asked for.
    pub limit: u64,
    /// Whether more sessions follow this page.
    pub has_more: bool,
}

/// How a session's `userContext.userId` names a project access key's holder (`key:<id>`).
pub const KEY_USER_PREFIX: &str = "key:";

/// Whether a session was created by a project access key's holder (not the installation's
/// owner): its runner gets none of the owner's own identities (ssh agent, home).
pub fn is_key_user(user_id: &str) -> bool {
    user_id.starts_with(KEY_USER_PREFIX)
}

/// Whether a git remote reaches with the identity of the machine's user rather than a
/// project's token: ssh (the user's keys and agent) and `file://` (the user's files).
pub fn uses_owner_identity(url: &str) -> bool {
    let url = url.trim();
    if url.starts_with("https://") || url.starts_with("http://") {
        return false;
    }
    // ssh://, file://, and scp-like user@host:path.
    true
}

/// The branch an agent's work is pushed to.
pub fn auto_branch(session_name: &str) -> String {
    format!("ambient/{session_name}")
}

/// A project: a namespace for sessions, settings and credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// DNS-1123 label; the Kubernetes namespace in Kubernetes mode.
    pub name: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// RFC 3339 creation time.
    pub creation_timestamp: String,
    /// Number of sessions in the project.
    #[serde(default)]
    pub session_count: u64,
    /// The caller's role in the project (in lists: what it may do there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_role: Option<Role>,
}

/// `POST /api/projects`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProjectRequest {
    /// DNS-1123 label.
    #[serde(default)]
    pub name: String,
    /// Name shown in the UI. Default: the name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// `PUT /api/projects/{project}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProjectRequest {
    /// New display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
}

/// A page of projects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProjectList {
    /// The projects of this page, by name.
    pub items: Vec<Project>,
    /// Projects matching the search, over all pages.
    pub total_count: u64,
    /// Offset of this page.
    pub offset: u64,
    /// Page size asked for.
    pub limit: u64,
    /// Whether more projects follow this page.
    pub has_more: bool,
}

/// Name of the project every fresh installation starts with.
pub const DEFAULT_PROJECT: &str = "default";

/// `PUT /api/projects/{project}/agentic-sessions/{session}`: fields to change; absent fields
/// stay. Refused with 409 while the session runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSessionRequest {
    /// New initial prompt (used by the next fresh start).
    #[serde(default)]
    pub initial_prompt: Option<String>,
    /// New display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// New model settings.
    #[serde(default)]
    pub llm_settings: Option<LlmSettings>,
    /// New timeout in seconds (0 removes it).
    #[serde(default, deserialize_with = "crate::validate::whole_number")]
    pub timeout: Option<i64>,
    /// New inactivity timeout in seconds (0 disables).
    #[serde(default, deserialize_with = "crate::validate::whole_number")]
    pub inactivity_timeout: Option<i64>,
}

/// `PUT .../agentic-sessions/{session}/displayname`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisplayNameRequest {
    /// The new display name.
    #[serde(default)]
    pub display_name: String,
}

/// `POST .../agentic-sessions/{session}/clone`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloneSessionRequest {
    /// Project of the copy. Default: the same project.
    #[serde(default)]
    pub target_project: Option<String>,
    /// Name of the copy (a DNS-1123 label). Default: `session-<uuid>`.
    #[serde(default)]
    pub new_session_name: Option<String>,
}

/// `PUT .../agentic-sessions/{session}/model`: switches the model, in a running agent too.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetModelRequest {
    /// One of the platform's models (`GET /api/models`).
    #[serde(default)]
    pub model: String,
}

/// `POST .../agentic-sessions/{session}/answers`: answers a question of the agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnswerRequest {
    /// The question's id (`GET .../asks`).
    #[serde(default)]
    pub id: String,
    /// A question: each question's text → its answer (an option's label, several
    /// comma-separated, or the person's own words); at most 16. Empty: declined.
    #[serde(default)]
    pub answers: BTreeMap<String, String>,
    /// An approval: deny it (default: allow).
    #[serde(default)]
    pub deny: bool,
    /// Why it is denied, told to the agent (at most 4 KiB).
    #[serde(default)]
    pub message: Option<String>,
    /// An approval: allow this tool for the rest of the session.
    #[serde(default)]
    pub always: bool,
}

/// `GET .../agentic-sessions/{session}/asks`: the agent's questions waiting for an answer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AskList {
    /// The questions, oldest first: `id`, `tool` and `input` (its `questions`, each with
    /// `question`, `header`, `options` [`label`, `description`] and `multiSelect`).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<crate::protocol::Ask>,
}

/// `POST .../agentic-sessions/{session}/messages`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessageRequest {
    /// The message for the agent.
    #[serde(default)]
    pub text: String,
}

/// Answer to a message: its place in the session's log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MessageAccepted {
    /// Sequence number of the message's event.
    pub seq: u64,
}

/// A credential of a project, as shown after it is set: never in plain text.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MaskedSecret {
    /// Variable name (`ANTHROPIC_API_KEY` ...).
    pub key: String,
    /// A masked form, e.g. `…9f2c`: the last four characters of a secret of 20 or more,
    /// nothing of a shorter one (URLs are shown whole, but for credentials in them).
    pub masked: String,
}

/// `GET /api/projects/{project}/runner-secrets`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RunnerSecrets {
    /// The credentials set, by key.
    pub items: Vec<MaskedSecret>,
    /// Keys a project may set.
    pub allowed_keys: Vec<String>,
}

/// `PUT /api/projects/{project}/runner-secrets`: a value sets a key, `null` or `""` removes
/// it; credentials not mentioned stay. A token and its address are one credential (the model's
/// `ANTHROPIC_*`; `GITHUB_TOKEN` with `GITHUB_API_URL`; `GITLAB_TOKEN` with `GITLAB_API_URL`):
/// naming any of one replaces it whole, so a variable of it not named is removed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRunnerSecrets {
    /// Values by key.
    pub data: BTreeMap<String, Option<String>>,
}

/// Keys a project's runner secrets may have.
pub const RUNNER_SECRET_KEYS: &[&str] = &crate::runner_env::Credentials::KEYS;

/// Masks a credential for display: URLs whole, tokens as their first 4 and last 4
/// characters (or only `••••` when short).
pub fn mask_secret(key: &str, value: &str) -> String {
    if key.ends_with("_URL") {
        // Not secret, unless it carries credentials.
        return match value.split_once("://") {
            Some((scheme, rest)) if rest.split('/').next().is_some_and(|a| a.contains('@')) => {
                let host = rest.split_once('@').map_or(rest, |(_, h)| h);
                format!("{scheme}://••••@{host}")
            }
            _ => value.to_owned(),
        };
    }
    // The last four characters of a long secret (enough to tell two apart, too few to
    // matter); nothing of a short one.
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 20 {
        return "••••".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("…{tail}")
}

/// `GET`/`PUT /api/projects/{project}/settings`: the project's session defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSettingsBody {
    /// Inactivity timeout of sessions that set none, in seconds (0 disables). Default: the
    /// platform's (30 minutes).
    #[serde(default, deserialize_with = "crate::validate::whole_number")]
    pub inactivity_timeout_seconds: Option<i64>,
    /// MCP servers of every session of the project.
    #[serde(default)]
    pub mcp_servers: Option<McpServers>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn remotes_that_use_the_owners_identity() {
        for url in [
            "file:///srv/r.git",
            "ssh://git@host/o/r.git",
            "git@github.com:o/r.git",
        ] {
            assert!(super::uses_owner_identity(url), "{url}");
        }
        assert!(!super::uses_owner_identity("https://github.com/o/r.git"));
        assert!(super::is_key_user("key:7") && !super::is_key_user("ada"));
    }

    use super::*;

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask_secret("ANTHROPIC_API_KEY", "sk-ant-api03-abcdefgh1234"),
            "…1234"
        );
        assert_eq!(mask_secret("GITHUB_TOKEN", "short"), "••••");
        // A 12-character token showed 8 of its characters.
        assert_eq!(mask_secret("GITHUB_TOKEN", "abcdefgh1234"), "••••");
        assert_eq!(
            mask_secret("GITHUB_API_URL", "https://bot:hunter2@ghe.corp/api/v3"),
            "https://••••@ghe.corp/api/v3"
        );
        assert_eq!(
            mask_secret("ANTHROPIC_BASE_URL", "http://proxy:8080"),
            "http://proxy:8080"
        );
    }
}

/// A reference to the `AgenticSession` schema (the CRD's, added to the document by the server).
#[cfg(feature = "openapi")]
pub fn session_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::Ref::from_schema_name("AgenticSession").into()
}

/// An array of `AgenticSession`.
#[cfg(feature = "openapi")]
pub fn session_array_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::Array::new(session_schema())
}

/// A session as the UI shows it: what a page needs, without the Kubernetes object around it
/// (its types and time parsing would weigh on the browser's download). Times are
/// milliseconds since the Unix epoch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    /// Session name.
    pub name: String,
    /// Project.
    pub project: String,
    /// Display name.
    pub display_name: String,
    /// Phase.
    pub phase: crate::Phase,
    /// Model.
    pub model: String,
    /// The initial prompt.
    pub initial_prompt: String,
    /// Repositories.
    pub repos: Vec<SessionRepo>,
    /// Creation time.
    pub created_ms: i64,
    /// Start of the current (or last) run.
    pub start_ms: Option<i64>,
    /// End of the last run.
    pub completion_ms: Option<i64>,
    /// Why it stopped.
    pub stopped_reason: Option<crate::session::StoppedReason>,
    /// The `Ready` condition's explanation (why it failed, what it waits for).
    pub message: Option<String>,
    /// Totals of the last run.
    pub result: Option<crate::session::RunSummary>,
    /// How many times it was continued.
    pub restarts: i64,
    /// What its agent does now, while it runs (see `status.agentStatus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<crate::session::AgentStatus>,
    /// The session it was forked from, and after which turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<(String, u32)>,
}

impl SessionSummary {
    /// The summary of a session.
    pub fn of(s: &AgenticSession) -> SessionSummary {
        let status = s.status.clone().unwrap_or_default();
        let ms = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.as_ref().map(|t| t.0.as_millisecond())
        };
        let name = s.metadata.name.clone().unwrap_or_default();
        SessionSummary {
            display_name: s.spec.display_name.clone().unwrap_or_else(|| name.clone()),
            project: s.metadata.namespace.clone().unwrap_or_default(),
            phase: status.phase,
            model: s.model().unwrap_or_default().to_owned(),
            initial_prompt: s.spec.initial_prompt.clone().unwrap_or_default(),
            repos: s.spec.repos.clone(),
            created_ms: ms(&s.metadata.creation_timestamp).unwrap_or_default(),
            start_ms: ms(&status.start_time),
            completion_ms: ms(&status.completion_time),
            stopped_reason: status.stopped_reason,
            message: status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.message.clone())
                .filter(|m| !m.is_empty()),
            result: status.result,
            restarts: status.sdk_restart_count.unwrap_or(0),
            agent_status: status.agent_status,
            forked_from: s.spec.fork.as_ref().map(|f| (f.session.clone(), f.turn)),
            name,
        }
    }
}

/// A page of session summaries, newest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummaries {
    /// This page.
    pub items: Vec<SessionSummary>,
    /// Matches over all pages.
    pub total_count: u64,
    /// Offset of this page.
    pub offset: u64,
    /// Whether more follow.
    pub has_more: bool,
}

impl From<&SessionList> for SessionSummaries {
    fn from(list: &SessionList) -> Self {
        SessionSummaries {
            items: list.items.iter().map(SessionSummary::of).collect(),
            total_count: list.total_count,
            offset: list.offset,
            has_more: list.has_more,
        }
    }
}

/// What a person or a key may do in a project; each role includes the ones before it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read sessions and their transcripts, watch them live.
    View,
    /// Also create, steer (messages, interrupt), stop, continue and delete sessions, and set
    /// the project's runner credentials.
    Edit,
    /// Also change the project's settings, share it (access keys) and delete it.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::View, Role::Edit, Role::Admin];

    /// Its name (`view`, `edit`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::View => "view",
            Role::Edit => "edit",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("'{s}' is not a role (view, edit or admin)"))
    }
}

/// Who the caller is, for a page to show only what they may do.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Whoami {
    /// The name shown for the caller.
    pub name: String,
    /// Whether the caller owns the installation (every project, every role).
    pub owner: bool,
    /// The one project a project's key opens, with its role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The role in that project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Whether the caller may make projects (the owner; in Kubernetes mode, anyone the
    /// cluster knows).
    #[serde(default)]
    pub may_create_projects: bool,
}

impl Whoami {
    /// The caller's role in `project`, if any.
    pub fn role_in(&self, project: &str) -> Option<Role> {
        if self.owner {
            return Some(Role::Admin);
        }
        self.role
            .filter(|_| self.project.as_deref() == Some(project))
    }

    /// Why the caller cannot do what needs `need` in `project`; `None` when they can.
    pub fn refusal(&self, project: &str, need: Role) -> Option<String> {
        match self.role_in(project) {
            Some(role) if role >= need => None,
            role => Some(refusal(role, project, need)),
        }
    }
}

/// What a caller with `role` in `project` is told when an action needs `need` (the server's
/// 403 and the pages' notes say the same).
pub fn refusal(role: Option<Role>, project: &str, need: Role) -> String {
    match role {
        Some(role) => format!("you need {need} on project {project} (you have {role})"),
        None => format!("you have no access to project {project}"),
    }
}

/// `GET /api/projects/{project}/access`: what the caller may do in a project.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProjectAccess {
    /// The project.
    pub project: String,
    /// Whether the caller may see it at all.
    pub allowed: bool,
    /// The caller's role in it, when allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_role: Option<Role>,
    /// Whether the caller owns the installation (every project, every role).
    pub owner: bool,
    /// Why, when not allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An access key as listed (its value is shown once, when it is made).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessKey {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its first characters, to recognise it.
    pub prefix: String,
    /// When it was made (RFC 3339).
    pub created: String,
    /// When it was last used (RFC 3339), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
    /// The project it opens; none for the owner's keys, which open every project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Its role in that project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// When it stops working (RFC 3339), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// Longest life of an access key: a year.
pub const MAX_KEY_LIFETIME_SECS: i64 = 366 * 24 * 3600;

/// Who a project is shared with: a user or a group of the cluster (Kubernetes mode).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SubjectType {
    /// A user (`alice`, `system:serviceaccount:ns:name`).
    User,
    /// A group.
    Group,
}

impl std::fmt::Display for SubjectType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubjectType::User => "user",
            SubjectType::Group => "group",
        })
    }
}

impl std::str::FromStr for SubjectType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(SubjectType::User),
            "group" => Ok(SubjectType::Group),
            _ => Err(format!("'{s}' is not a subject type (user or group)")),
        }
    }
}

/// Where a permission comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum PermissionSource {
    /// Given on the Sharing page or with `POST .../permissions`: removable there.
    Sharing,
    /// The project's `groupAccess` setting (the operator's binding): changed there.
    GroupAccess,
    /// A RoleBinding made some other way (`kubectl`, the project's creator): changed there.
    Binding,
}

/// One person's or group's role in a project (Kubernetes mode: a RoleBinding to
/// `ambient-project-<role>`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// User or group.
    pub subject_type: SubjectType,
    /// Its name.
    pub subject_name: String,
    /// The role.
    pub role: Role,
    /// Where it comes from.
    pub source: PermissionSource,
    /// The RoleBinding that gives it.
    pub binding: String,
}

/// Longest user or group name, in characters (a Kubernetes object name's limit).
pub const MAX_SUBJECT_NAME: usize = 253;

/// `POST /api/projects/{project}/permissions`: gives a user or group a role in the project
/// (replacing the role it was given there before).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantRequest {
    /// User or group.
    pub subject_type: SubjectType,
    /// Its name, as the cluster knows it: 1 to 253 characters, no control characters, not
    /// blank; the cluster's `system:` users and groups are refused (a ServiceAccount is
    /// given as `system:serviceaccount:<namespace>:<name>`).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 253,
            pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
        )
    )]
    pub subject_name: String,
    /// The role.
    pub role: Role,
}

/// `POST /api/keys` (the owner's keys) and `POST /api/projects/{project}/keys`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAccessKeyRequest {
    /// What the key is for (`ci`, `my laptop`): 1 to 100 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub name: String,
    /// The key's role in the project (project keys only; default `edit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Seconds until the key stops working (1 to a year); none: until revoked.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::validate::whole_number"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 31_622_400))]
    pub expiration_seconds: Option<i64>,
}

/// Answer to making an access key: the key itself, shown this once.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreatedAccessKey {
    /// The key: send it as `Authorization: Bearer <key>`. It is not stored and cannot be
    /// shown again.
    pub key: String,
    /// The key as listed.
    pub access_key: AccessKey,
}
