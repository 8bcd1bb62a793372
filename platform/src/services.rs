//! The platform's operations, shared by the REST API, the UI's server functions and the
//! WebSocket endpoints: one place validates, authorises and acts.
//!
//! Layout: [`projects`], [`settings`] (credentials, defaults), [`sessions`] (create, read,
//! list, update, clone, delete), [`control`] (messages, interrupt, stop, continue, delivery
//! to runners), [`files`] (the workspace, through its runner), [`runner`] (what a runner
//! may do: its token, its run, its events),
//! [`keys`] (access keys), [`permissions`] (sharing with the cluster's people and groups).

mod asks;
mod attempts;
pub use asks::{MAX_ANSWER_TEXT, MAX_ANSWERS};
mod control;
mod files;
pub use files::{Download, FILES_TIMEOUT};
mod keys;
mod permissions;
mod projects;
pub mod runner;
mod sessions;
mod settings;
mod workflows;
pub use workflows::reports as reports_workflow;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use model::AgenticSession;
use model::runner_env::Credentials;
use model::session::SessionKey;

pub use control::CONTINUE_PROMPT;
pub use sessions::{DEFAULT_PAGE, EventWindow, MAX_PAGE, MAX_WINDOW};

use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::hub::{Fanout, Runners};
use crate::log::{Counters, EventLog, LogId};
use crate::records::{Records, SessionRecord};

/// Settings of the operations.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Model of sessions that name none.
    pub default_model: String,
    /// Models a session may choose.
    pub models: Vec<String>,
    /// Credentials given to every project's runners unless the project sets its own
    /// (from the server's environment: `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` ...).
    pub default_credentials: Credentials,
    /// The user of a local installation (every request acts as this user).
    pub local_user: Caller,
    /// How often a connection kept open (a viewer's WebSocket) asks again whether its caller
    /// may still watch: a key revoked or expired, a role taken away, ends it within this time
    /// (`AMBIENT_ACCESS_CACHE_SECONDS`).
    pub access_recheck: std::time::Duration,
    /// The workflow catalogue the new-session form offers.
    pub catalogue: Arc<crate::catalogue::Catalogue>,
}

/// What runs sessions: told when a session changes or goes away. The local driver runs them
/// as child processes; in Kubernetes mode the operator watches the resources itself and
/// needs no telling.
pub trait Driver: Send + Sync + 'static {
    /// A session changed: look at it again.
    fn notify(&self, key: SessionKey);
    /// A session was deleted: end whatever of it still runs and remove what it left.
    fn deleted(&self, key: SessionKey);
    /// Whether runs reach remotes with the owner's own identity (the owner's ssh keys and
    /// agent, the owner's files): processes on the owner's machine do, a cluster's pods do
    /// not. Assumed unless the driver says otherwise.
    fn runs_with_the_owners_identity(&self) -> bool {
        true
    }
    /// Someone wants the files of a session that has no run: start a files runner on its
    /// workspace (`runner files`), which connects to the files-runner endpoint. Returns
    /// whether one may come (a driver that cannot says no, and the request is refused).
    fn serve_files(&self, _key: SessionKey) -> bool {
        false
    }
}

/// A driver that is told nothing (sessions are run elsewhere, or not at all).
pub struct NoDriver;

impl Driver for NoDriver {
    fn notify(&self, _: SessionKey) {}
    fn deleted(&self, _: SessionKey) {}
}

/// Handle to the operations; cheap to clone.
#[derive(Clone)]
pub struct Services {
    /// Sessions, projects, settings, credentials.
    pub records: Arc<dyn Records>,
    /// The sessions' event logs.
    pub log: EventLog,
    /// Live viewers of the logs.
    pub fanout: Fanout,
    /// Connected runners.
    pub runners: Runners,
    /// What runs sessions.
    pub driver: Arc<dyn Driver>,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Who may use the installation.
    pub identities: crate::identity::Identities,
    /// Changes once when the server shuts down: long-lived connections close.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Who comes in besides the owner and the server's keys, and what each may do: nobody
    /// in local mode, the cluster's users and groups in Kubernetes mode.
    pub people: Arc<dyn crate::people::People>,
    /// The server's metrics (`/metrics` on the metrics address).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A session with its log and what the log says of it.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// The session (its last activity taken from the log) and its run.
    pub record: SessionRecord,
    /// Its event log.
    pub log: LogId,
    /// The log's counters.
    pub counters: Counters,
}

/// The uid of a stored session (records always set one).
pub fn uid_of(session: &AgenticSession) -> &str {
    session.metadata.uid.as_deref().unwrap_or_default()
}

/// Puts the log's last activity into the session's status, where clients look for it.
pub fn with_activity(session: &mut AgenticSession, last_activity_ms: Option<i64>) {
    if let Some(ts) = last_activity_ms.and_then(|ms| Timestamp::from_millisecond(ms).ok()) {
        session
            .status
            .get_or_insert_with(Default::default)
            .last_activity_time = Some(Time(ts));
    }
}

impl Services {
    /// The caller's role in `project`: its own (the owner, a project's key), or what the
    /// cluster grants a Kubernetes identity there.
    pub async fn role_in(&self, caller: &Caller, project: &str) -> Result<Option<Role>, ApiError> {
        self.people.role_of(caller, project).await
    }

    /// Refuses (403, saying what is missing) unless the caller has at least `need` in
    /// `project`.
    pub async fn require(
        &self,
        caller: &Caller,
        project: &str,
        need: Role,
    ) -> Result<(), ApiError> {
        crate::auth::check(self.role_in(caller, project).await?, project, need)
    }

    /// [`Services::require`] again for a caller proven a while ago (a viewer's WebSocket is
    /// checked when it opens, then stays open): the access key it proved itself with must
    /// still work (not revoked, not expired: 401), and its role must still suffice (403).
    /// One read of the key, and the role as [`Services::require`] finds it.
    pub async fn require_again(
        &self,
        caller: &Caller,
        project: &str,
        need: Role,
    ) -> Result<(), ApiError> {
        if let Some(key) = caller.key {
            let expired = key.expires_ms.is_some_and(|t| t <= crate::db::now_ms());
            if expired || !self.identities.key_is_valid(key.id).await? {
                let why = "the access key of this connection was revoked or has expired";
                return Err(ApiError::Unauthorized(why.into()));
            }
        }
        self.require(caller, project, need).await
    }

    /// Asks the driver to look at a session.
    pub fn notify(&self, key: &SessionKey) {
        self.driver.notify(key.clone());
    }

    /// A session with its log (opened if it has none yet) and the log's counters.
    pub async fn live_session(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<LiveSession, ApiError> {
        self.require(caller, &key.project, Role::View).await?;
        let mut record = self.records.get_session(caller, key).await?;
        let uid = uid_of(&record.session);
        // A session made elsewhere (a resource applied to the cluster) has no log yet.
        let log = match self.log.find(uid).await? {
            Some(log) => log,
            None => self.log.open(uid).await?,
        };
        let counters = self.log.counters(log).await?;
        with_activity(&mut record.session, counters.last_activity);
        Ok(LiveSession {
            record,
            log,
            counters,
        })
    }
}
