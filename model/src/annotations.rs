//! Annotation and label keys: the control channel between users, the server and the operator.
//!
//! Users never write `status`; they set [`DESIRED_PHASE`] and the operator acts on it and
//! clears it (the original platform's contract).

/// Desired phase requested by a user: [`DESIRED_RUNNING`] or [`DESIRED_STOPPED`].
pub const DESIRED_PHASE: &str = "ambient-code.io/desired-phase";
/// Value of [`DESIRED_PHASE`] asking to start or continue the session.
pub const DESIRED_RUNNING: &str = "Running";
/// Value of [`DESIRED_PHASE`] asking to stop the session.
pub const DESIRED_STOPPED: &str = "Stopped";
/// Value of [`DESIRED_PHASE`] asking an active session to stop and start again at once,
/// its conversation kept (its workflow changed).
pub const DESIRED_RESTART: &str = "Restart";
/// RFC 3339 time of the last start request.
pub const START_REQUESTED_AT: &str = "ambient-code.io/start-requested-at";
/// RFC 3339 time of the last stop request.
pub const STOP_REQUESTED_AT: &str = "ambient-code.io/stop-requested-at";
/// Why a stop was requested (`user`, `inactivity`, `timeout`, `run-finished`, `capacity`,
/// `restart`).
pub const STOP_REASON: &str = "ambient-code.io/stop-reason";
/// The annotations of a request ([`DESIRED_PHASE`] and what goes with it), removed together
/// once the operator has taken the request.
pub const REQUEST_ANNOTATIONS: [&str; 5] = [
    DESIRED_PHASE,
    STOP_REASON,
    START_REQUESTED_AT,
    STOP_REQUESTED_AT,
    RESTART_OF_RUN,
];
/// With [`DESIRED_RESTART`]: the run (its generation) the restart was asked of. A later run
/// serves the request, so a request seen again (its removal lost to a concurrent change of
/// the session, in Kubernetes mode) restarts nothing twice.
pub const RESTART_OF_RUN: &str = "ambient-code.io/restart-of-run";
/// RFC 3339 time someone last asked for a stopped session's files (Kubernetes mode: the
/// server writes it, and the operator starts a files runner on the session's workspace
/// claim for a request it has not served yet).
pub const FILES_REQUESTED_AT: &str = "ambient-code.io/files-requested-at";
/// Name of the Secret holding the runner's token (Kubernetes mode).
pub const RUNNER_TOKEN_SECRET: &str = "ambient-code.io/runner-token-secret";
/// Name of the runner's ServiceAccount (Kubernetes mode).
pub const RUNNER_SA: &str = "ambient-code.io/runner-sa";
/// Session this one was continued or cloned from.
pub const PARENT_SESSION_ID: &str = "vteam.ambient-code/parent-session-id";
/// Run the initial prompt even when resuming (scheduled-session reuse).
pub const FORCE_EXECUTE_PROMPT: &str = "ambient-code.io/force-execute-prompt";

/// Label marking a namespace as a project.
pub const MANAGED_LABEL: &str = "ambient-code.io/managed";
/// Label naming the scheduled session that created a session.
pub const SCHEDULED_SESSION_NAME_LABEL: &str = "ambient-code.io/scheduled-session-name";
/// Label naming the user who created an object.
pub const CREATED_BY_LABEL: &str = "ambient-code.io/created-by";
