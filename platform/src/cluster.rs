//! The server's part in Kubernetes mode. The operator runs sessions (Jobs, phases); the
//! server keeps the event logs and writes into a session's status only what it alone knows:
//! that the runner of run G connected, the last activity, the run's totals. It follows every
//! `AgenticSession` (made in the UI or with `kubectl`) with a watch:
//!
//! - a session's phase changes are appended to its log (viewers see them live);
//! - a new run begins its log (the runner's events are accepted from then on);
//! - a run that ended while a message waited says so in the status (the operator decides);
//! - a deleted session's log goes and its viewers are told.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use model::protocol::{PhaseChange, SessionEvent};
use model::session::SessionKey;
use model::{AgenticSession, Phase};
use serde_json::json;
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::services::{Driver, Services, uid_of};

/// How stale a session's `lastActivityTime` may be before the server writes it again (the
/// operator's inactivity timeout reads it; the UI reads the log).
const ACTIVITY_WRITE_EVERY_MS: i64 = 30_000;

/// The services' driver in Kubernetes mode: a change the server made (a runner connected or
/// left, a message sent) is looked at by the [`Follower`].
pub struct ClusterLink {
    tx: mpsc::UnboundedSender<SessionKey>,
    client: Client,
    /// When each session's files were last asked of the operator (requests within
    /// [`FILES_REQUEST_EVERY`] of it are the same request).
    files_requested: std::sync::Mutex<HashMap<SessionKey, std::time::Instant>>,
}

/// How often the server asks the operator again for a session's files runner while none
/// has connected.
const FILES_REQUEST_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Driver for ClusterLink {
    fn notify(&self, key: SessionKey) {
        let _ = self.tx.send(key);
    }

    fn deleted(&self, _: SessionKey) {
        // The API server's garbage collector removes the session's Job, Secret and claim.
    }

    fn runs_with_the_owners_identity(&self) -> bool {
        false
    }

    /// Asks the operator for a files runner: the session's [`FILES_REQUESTED_AT`]
    /// annotation set to now (the operator starts one Job per request time).
    ///
    /// [`FILES_REQUESTED_AT`]: model::annotations::FILES_REQUESTED_AT
    fn serve_files(&self, key: SessionKey) -> bool {
        {
            let mut asked = self
                .files_requested
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            asked.retain(|_, at| at.elapsed() < FILES_REQUEST_EVERY);
            if asked.contains_key(&key) {
                return true;
            }
            asked.insert(key.clone(), std::time::Instant::now());
        }
        let api: Api<AgenticSession> = Api::namespaced(self.client.clone(), &key.project);
        let patch = json!({"metadata": {"annotations": {
            model::annotations::FILES_REQUESTED_AT: Timestamp::now().to_string(),
        }}});
        tokio::spawn(async move {
            if let Err(e) = api
                .patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(session = %key, error = %e, "could not ask for a files runner");
            }
        });
        true
    }
}

/// Follows the cluster's sessions; run with [`Follower::run`].
pub struct Follower {
    services: Services,
    client: Client,
    rx: mpsc::UnboundedReceiver<SessionKey>,
    /// The last phase appended to each log (by uid).
    phases: HashMap<String, Phase>,
    /// Sessions with a run in progress (by uid): looked at every half minute, so their last
    /// activity reaches the operator even when nothing else changes.
    active: HashMap<String, SessionKey>,
}

/// Kubernetes mode's platform: records in the cluster (through `client`), event logs in
/// `data_dir`'s SQLite database, the install secret given (from a Kubernetes Secret) or kept
/// in `data_dir`. The returned follower must run for sessions to be followed.
pub fn open(
    data_dir: &std::path::Path,
    settings: crate::services::Settings,
    client: Client,
    identity: Arc<crate::kube_identity::KubeIdentity>,
    install_secret: Option<&str>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(Services, Follower), crate::db::StoreError> {
    let db = crate::db::Db::open_in(data_dir)?;
    let identities = match install_secret {
        Some(secret) => crate::identity::Identities::with_secret(db.clone(), secret)?,
        None => crate::identity::Identities::open(db.clone(), data_dir)?,
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let fanout = crate::hub::Fanout::counting(metrics.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    let services = Services {
        identities,
        records: Arc::new(crate::records::KubeRecords::with_identity(
            client.clone(),
            identity.clone(),
        )),
        log: crate::log::EventLog::new(db, Arc::new(fanout.clone())),
        fanout,
        runners: Default::default(),
        driver: Arc::new(ClusterLink {
            tx,
            client: client.clone(),
            files_requested: Default::default(),
        }),
        settings: Arc::new(settings),
        shutdown,
        people: identity,
        metrics,
    };
    let follower = Follower {
        services: services.clone(),
        client,
        rx,
        phases: HashMap::new(),
        active: HashMap::new(),
    };
    Ok((services, follower))
}

impl Follower {
    /// Follows sessions, as the API server's watch of every `AgenticSession` shows them,
    /// until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let api: Api<AgenticSession> = Api::all(self.client.clone());
        let events = watcher(api, watcher::Config::default()).default_backoff();
        self.run_on(events, shutdown).await;
    }

    /// Follows sessions as `events` shows them (the watch [`Follower::run`] opens; a test
    /// gives its own sequence) until `shutdown` completes or `events` ends.
    pub async fn run_on(
        mut self,
        events: impl futures::Stream<Item = Result<watcher::Event<AgenticSession>, watcher::Error>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut events = std::pin::pin!(events);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(
            ACTIVITY_WRITE_EVERY_MS as u64,
        ));
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                Some(key) = self.rx.recv() => self.follow_key(&key).await,
                _ = tick.tick() => {
                    let keys: Vec<SessionKey> = self.active.values().cloned().collect();
                    for key in keys {
                        self.follow_key(&key).await;
                    }
                }
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s))) => {
                        self.follow(&s, Source::Watch).await;
                    }
                    Some(Ok(watcher::Event::Delete(s))) => self.forget(&s).await,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "watching sessions"),
                    None => return,
                },
            }
        }
    }

    async fn follow_key(&mut self, key: &SessionKey) {
        match self
            .services
            .records
            .get_session(&Caller::system(), key)
            .await
        {
            Ok(record) => self.follow(&record.session, Source::Read).await,
            Err(e) => tracing::debug!(session = %key, error = %e, "not followed"),
        }
    }

    async fn forget(&mut self, session: &AgenticSession) {
        let uid = uid_of(session).to_owned();
        self.phases.remove(&uid);
        self.active.remove(&uid);
        if let Err(e) = self.services.log.delete(&uid).await {
            tracing::warn!(session = %session.name_any(), error = %e, "could not delete a log");
        }
    }

    /// Appends the session's phase to its log if it is a change. Only what the watch shows
    /// is told: the watch gives a session's states in the order they were written, whereas
    /// a read ([`Follower::follow_key`]) may get a state the watch has not shown yet, after
    /// which the watch shows the older ones; a phase taken from both would go back (the
    /// run just started, then the previous run's `Completed` again), and a viewer would
    /// take the old end for the new run's.
    async fn tell_phase(
        &mut self,
        session: &AgenticSession,
        log: crate::log::LogId,
        uid: &str,
    ) -> anyhow::Result<()> {
        let phase = session.phase();
        let last = match self.phases.get(uid) {
            Some(p) => Some(*p),
            None => self.services.log.last_phase(log).await?,
        };
        // A session made with kubectl starts Pending with nothing in its log: that is no
        // change to tell.
        if last.is_some_and(|l| l != phase) || (last.is_none() && phase != Phase::Pending) {
            let ready = session
                .status
                .as_ref()
                .and_then(|st| st.conditions.iter().find(|c| c.type_ == "Ready"));
            self.services
                .log
                .append(
                    log,
                    SessionEvent::Phase(PhaseChange {
                        phase,
                        reason: ready.map(|c| c.reason.clone()),
                        message: ready.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
                    }),
                )
                .await?;
        }
        self.phases.insert(uid.to_owned(), phase);
        Ok(())
    }

    async fn follow(&mut self, session: &AgenticSession, source: Source) {
        if let Err(e) = self.try_follow(session, source).await {
            tracing::warn!(session = %session.name_any(), error = %e, "following a session");
        }
    }

    async fn try_follow(&mut self, session: &AgenticSession, source: Source) -> anyhow::Result<()> {
        if session.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let uid = uid_of(session).to_owned();
        let key = SessionKey::of(session);
        let log = self.services.log.open(&uid).await?;
        let phase = session.phase();
        if source == Source::Watch {
            self.tell_phase(session, log, &uid).await?;
        }
        let s = &self.services;
        if phase.is_active() {
            self.active.insert(uid, key.clone());
        } else {
            self.active.remove(&uid);
        }

        let st = session.status.clone().unwrap_or_default();
        let generation = st
            .run_generation
            .and_then(|g| u64::try_from(g).ok())
            .unwrap_or(0);
        let mut counters = s.log.counters(log).await?;
        if generation > counters.generation {
            // A new run: its runner's events are accepted from now on; a resumed
            // conversation goes on from what its agent has handled.
            s.log
                .begin_run(log, generation, session.has_conversation())
                .await?;
            counters = s.log.counters(log).await?;
        }
        let mut status = serde_json::Map::new();
        if generation > 0
            && s.runners.is_connected(log, generation)
            && st.runner_connected_generation != Some(generation as i64)
        {
            status.insert("runnerConnectedGeneration".into(), json!(generation));
        }
        let written = st
            .last_activity_time
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .unwrap_or(0);
        if let Some(last) = counters.last_activity
            && phase.is_active()
            && last.saturating_sub(written) >= ACTIVITY_WRITE_EVERY_MS
            && let Ok(ts) = Timestamp::from_millisecond(last)
        {
            status.insert("lastActivityTime".into(), json!(Time(ts)));
        }
        if let Some(summary) = &counters.summary {
            let recorded = st.result.as_ref();
            let differs = recorded.is_none_or(|r| {
                (r.turns, r.input_tokens, r.output_tokens)
                    != (summary.turns, summary.input_tokens, summary.output_tokens)
                    || r.cost_usd != summary.cost_usd
            });
            if differs && counters.generation == generation {
                // Totals only: the exit code is the operator's to write.
                status.insert(
                    "result".into(),
                    json!({
                        "turns": summary.turns,
                        "inputTokens": summary.input_tokens,
                        "outputTokens": summary.output_tokens,
                        "costUsd": summary.cost_usd,
                    }),
                );
            }
        }
        // A run has ended with messages no agent handled (sent while it was finishing): the
        // operator's plan decides what follows (`lifecycle::plan`: a Completed one goes on).
        if phase.is_terminal() && counters.unhandled_messages && st.unhandled_messages != Some(true)
        {
            status.insert("unhandledMessages".into(), json!(true));
        }
        let api: Api<AgenticSession> = Api::namespaced(self.client.clone(), &key.project);
        if !status.is_empty() {
            // Only onto the session as it was read: a word about run G (that messages wait
            // after it) must not land on run G+1 that the operator started meanwhile. A
            // session changed since is followed again on its watch event.
            let written = api
                .patch_status(
                    &key.name,
                    &PatchParams::default(),
                    &Patch::Merge(&status_patch(session, status)),
                )
                .await;
            match written {
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    tracing::debug!(session = %key, "changed since read; followed again");
                }
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }
}

/// Where the follower got a session from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The watch: every state, in the order written.
    Watch,
    /// A read of the session now (a change the server made; the periodic look).
    Read,
}

/// The merge patch of `status` onto `session` as it was read (its resource version): the
/// API server refuses it (409) once the session changed since.
pub fn status_patch(
    session: &AgenticSession,
    status: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    json!({
        "metadata": {"resourceVersion": session.resource_version()},
        "status": status,
    })
}
