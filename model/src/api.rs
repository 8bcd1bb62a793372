//! REST request and response bodies, shared by the server, the UI and clients.
//!
//! Paths and shapes follow the original platform's backend where it has them
//! (`/api/projects/{project}/agentic-sessions/...`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::session::{ActiveWorkflow, AgenticSession, LlmSettings, McpServers, SessionRepo};

/// Body of every error answer: `{"error": "<kind>", "message": "<explanation>"}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// Machine-readable kind: `invalid`, `not_found`, `conflict`, `too_large`,
    /// `unsupported_media_type`, `unauthorized`, `forbidden`, `internal`.
    pub error: String,
    /// Human-readable explanation, safe to show to users.
    pub message: String,
}

/// `POST /api/projects/{project}/agentic-sessions`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
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
    #[serde(default)]
    pub timeout: Option<i64>,
    /// Seconds without activity before the session stops. Default: the project's.
    #[serde(default)]
    pub inactivity_timeout: Option<i64>,
    /// Stop when a run finishes. Default: false.
    #[serde(default)]
    pub stop_on_run_finished: Option<bool>,
    /// Repositories to clone.
    #[serde(default)]
    pub repos: Vec<SessionRepo>,
    /// Workflow to follow.
    #[serde(default)]
    pub active_workflow: Option<ActiveWorkflow>,
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

/// Answer to a session creation (`201 Created`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
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
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    /// The sessions of this page.
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

/// The branch an agent's work is pushed to.
pub fn auto_branch(session_name: &str) -> String {
    format!("ambient/{session_name}")
}

/// A project: a namespace for sessions, settings and credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
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
}

/// `POST /api/projects`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
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
