//! The runner: the process that runs one session's agent.
//!
//! Layout:
//! - [`config`]: its environment, validated once;
//! - [`link`]: the connection to the server (reliable, resumable);
//! - [`workspace`]: folders, clones, the agent's context;
//! - [`claude`]: the `claude` CLI process; [`translate`]: its output as session events;
//! - [`session`]: the run itself, from first prompt to exit code.

pub mod claude;
pub mod config;
pub mod link;
pub mod session;
pub mod translate;
pub mod workspace;
