//! Shared types of the Ambient Code Platform. No I/O: builds for `wasm32-unknown-unknown` and
//! native alike.
//!
//! Layout:
//! - [`session`]: the `AgenticSession` custom resource (spec, status, phase);
//! - [`project_settings`]: the `ProjectSettings` custom resource;
//! - [`annotations`]: annotation and label keys (the desired-phase control channel);
//! - [`protocol`]: the WebSocket protocol, one enum per direction, and its close codes;
//! - [`api`]: REST request and response bodies;
//! - [`runner_env`]: the runner's environment variables and exit record;
//! - [`validate`]: input validation shared by the server and the UI.

pub mod annotations;
pub mod api;
pub mod project_settings;
pub mod protocol;
pub mod runner_env;
mod schema;
pub mod session;
pub mod validate;

pub use project_settings::{ProjectSettings, ProjectSettingsSpec, ProjectSettingsStatus};
pub use session::{AgenticSession, AgenticSessionSpec, AgenticSessionStatus, Phase};
