//! The runner: the process that runs one session's agent.
//!
//! Layout:
//! - [`config`]: its environment (the contract of `model::runner_env`), typed and validated
//!   once; [`error`]: what ends a run early, with its exit code;
//! - [`connection`]: a client WebSocket of the protocol (also used by test peers);
//! - [`link`]: the connection to the server (reliable, resumable);
//! - [`workspace`]: folders, clones, working branches, the agent's context;
//! - [`git`], [`forge`], [`deliver`]: commit, push and pull request at the end of a run;
//! - [`keeper`]: whoever holds the credentials: the runner itself, or (in a Kubernetes
//!   pod) a second container the agent cannot reach but through a narrow interface;
//! - [`claude`]: the `claude` CLI process, in the agent's [`sandbox`], its model calls
//!   through the runner's [`proxy`] (the key never enters the sandbox), on a network of its
//!   own ([`netns`]); [`translate`]: its output as session events;
//! - [`session`]: the run itself, from first prompt to exit code;
//! - [`serve_files`]: `runner files`, a stopped session's workspace served to the Files
//!   panel by a runner that does nothing else.

pub mod claude;
pub mod config;
/// The client WebSocket (its own crate: the command-line client and the tests use it too).
pub use ws_client as connection;
pub mod deliver;
pub mod error;
pub mod files;
pub mod forge;
pub mod git;
pub mod keeper;
pub mod link;
pub mod mcp;
pub mod netns;
pub mod proxy;
pub mod reap;
pub mod sandbox;
pub mod serve_files;
pub mod session;
pub mod translate;
pub mod workspace;
