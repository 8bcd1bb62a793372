//! What ends a run early, each with the exit code the operator reads and a kind the
//! transcript shows.

use model::runner_env::exit;

/// A failure that ends the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The environment is not a valid runner configuration.
    #[error("configuration error: {0}")]
    Config(String),
    /// The workspace could not be set up.
    #[error("{0}")]
    Workspace(String),
    /// A repository could not be cloned.
    #[error("{0}")]
    CloneFailed(String),
    /// No model credentials were given.
    #[error(
        "No model credentials: set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL for an Anthropic-compatible endpoint) \
         in the project's settings or in the server's environment, then continue the session."
    )]
    NoCredentials,
    /// The `claude` executable could not be started.
    #[error("could not start {bin}: {reason}")]
    ClaudeMissing {
        /// The executable.
        bin: String,
        /// Why.
        reason: String,
    },
    /// The sandbox is required but cannot run here.
    #[error("{0}")]
    Sandbox(String),
    /// The CLI ended unexpectedly.
    #[error("{0}")]
    ClaudeCrashed(String),
    /// Signal handling could not be set up.
    #[error("cannot handle signals: {0}")]
    Signals(String),
    /// The server refused this runner for good.
    #[error("{0}")]
    ServerRefused(String),
    /// The credentials keeper of the runner's pod cannot be reached or refused the runner.
    #[error("{0}")]
    Keeper(String),
    /// Delivering the work took longer than its budget.
    #[error("delivering the work took too long; it was left in the workspace")]
    DeliveryTimeout,
}

impl Error {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_)
            | Error::Workspace(_)
            | Error::CloneFailed(_)
            | Error::NoCredentials
            | Error::Sandbox(_)
            | Error::Keeper(_)
            | Error::ClaudeMissing { .. } => exit::PREREQUISITE,
            Error::ClaudeCrashed(_)
            | Error::Signals(_)
            | Error::ServerRefused(_)
            | Error::DeliveryTimeout => exit::FAILED,
        }
    }

    /// Machine-readable kind, carried by the error event.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Workspace(_) => "workspace",
            Error::CloneFailed(_) => "clone_failed",
            Error::NoCredentials => "no_credentials",
            Error::Sandbox(_) => "sandbox",
            Error::Keeper(_) => "keeper",
            Error::ClaudeMissing { .. } => "claude_missing",
            Error::ClaudeCrashed(_) => "claude_crashed",
            Error::Signals(_) => "signals",
            Error::ServerRefused(_) => "server_refused",
            Error::DeliveryTimeout => "delivery_timeout",
        }
    }
}

/// Result of the runner's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
