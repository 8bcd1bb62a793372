//! The runner: the process that runs one session's agent.
//!
//! Layout:
//! - [`config`]: its environment, validated once;
//! - [`link`]: the connection to the server (reliable, resumable);
//! - [`workspace`]: folders, clones, working branches, the agent's context;
//! - [`git`], [`forge`], [`deliver`]: commit, push and pull request at the end of a run;
//! - [`claude`]: the `claude` CLI process; [`translate`]: its output as session events;
//! - [`session`]: the run itself, from first prompt to exit code.

pub mod claude;
pub mod config;
pub mod deliver;
pub mod forge;
pub mod git;
pub mod link;
pub mod session;
pub mod translate;
pub mod workspace;
