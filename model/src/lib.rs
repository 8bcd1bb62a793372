//! Shared types of the Ambient Code Platform. No I/O: builds for `wasm32-unknown-unknown` and
//! native alike.
//!
//! Layout:
//! - [`session`]: the `AgenticSession` custom resource (spec, status, phase, "has a
//!   conversation") and [`session::SessionKey`];
//! - [`project_settings`]: the `ProjectSettings` custom resource;
//! - [`annotations`]: annotation and label keys (the desired-phase control channel);
//! - [`protocol`]: the WebSocket protocol, one enum per direction, and its close codes (every
//!   close a client acts on has its own code);
//! - [`api`]: REST request and response bodies;
//! - [`runner_env`]: the runner's contract with its drivers: environment variable names, the
//!   typed [`runner_env::Credentials`], exit codes, the exit record;
//! - [`mcp`]: MCP server configurations: transports, credential references, merging;
//! - [`workflow`]: workflows: `ambient.json`, slash commands, what a session reports of its
//!   workflow, a catalogue's entries;
//! - [`validate`]: input validation shared by the server and the UI (one rule for each field,
//!   one for a whole session-creation request).

pub mod annotations;
pub mod api;
pub mod mcp;
pub mod project_settings;
pub mod protocol;
pub mod runner_env;
mod schema;
pub mod session;
pub mod validate;
pub mod workflow;

pub use project_settings::{ProjectSettings, ProjectSettingsSpec, ProjectSettingsStatus};
pub use session::{AgenticSession, AgenticSessionSpec, AgenticSessionStatus, Phase};
