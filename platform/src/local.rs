//! Local mode's driver wiring: the local driver's view of the platform
//! ([`operator::SessionStore`] over the records, the event log and the hub), and the
//! [`Driver`] handle through which the services tell it about changes.

use model::protocol::SessionEvent;
use model::session::SessionKey;
use operator::LocalDriver;
use operator::lifecycle::Plan;
use operator::local::{Loaded, RunTicket, SessionStore, StoreError as DriverError};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::records::{RecordsError, Run, SqliteRecords};
use crate::services::{Driver, Services, uid_of};

impl Driver for LocalDriver {
    fn notify(&self, key: SessionKey) {
        LocalDriver::notify(self, key);
    }

    fn deleted(&self, key: SessionKey) {
        self.delete(key);
    }

    fn serve_files(&self, key: SessionKey) -> bool {
        LocalDriver::serve_files(self, key);
        true
    }
}

/// The local driver's store: sessions from the records, what the server knows of their runs
/// from the event log and the hub; the driver's own bookkeeping (statuses, runs) in the
/// embedded store, behind no seam: only local mode has it. It acts as the platform itself
/// ([`Caller::system`]).
#[derive(Clone)]
pub struct LocalSessions {
    /// The operations (records, log, runners, settings).
    pub services: Services,
    /// The same records as `services.records`, with the driver's bookkeeping.
    pub records: SqliteRecords,
}

fn convert(e: ApiError) -> DriverError {
    match e {
        ApiError::Conflict(_) => DriverError::Conflict,
        other => DriverError::Other(other.to_string()),
    }
}

fn records(e: RecordsError) -> DriverError {
    convert(e.into())
}

pub use operator::token::{new_token, token_hash};

impl SessionStore for LocalSessions {
    async fn unfinished(&self) -> Result<Vec<SessionKey>, DriverError> {
        self.records.unfinished_sessions().await.map_err(records)
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Loaded>, DriverError> {
        let s = &self.services;
        let caller = Caller::system();
        let live = match s.live_session(&caller, key).await {
            Ok(live) => live,
            Err(ApiError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(convert(e)),
        };
        let settings = s
            .records
            .project_settings(&caller, &key.project)
            .await
            .map_err(records)?;
        Ok(Some(Loaded {
            connected: s.runners.is_connected(live.log, live.record.run.generation),
            generation: live.record.run.generation,
            summary: live.counters.summary,
            unhandled_messages: live.counters.unhandled_messages,
            project_inactivity_timeout: settings.inactivity_timeout_seconds,
            session: live.record.session,
        }))
    }

    async fn save(&self, loaded: &Loaded, plan: &Plan) -> Result<(), DriverError> {
        let s = &self.services;
        let key = SessionKey::of(&loaded.session);
        let version = loaded
            .session
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default();
        self.records
            .save_status(&key, version, plan.status.clone(), plan.clear_desired_phase)
            .await
            .map_err(records)?;
        if let Some(change) = &plan.event {
            let log = s
                .log
                .open(uid_of(&loaded.session))
                .await
                .map_err(|e| convert(e.into()))?;
            s.log
                .append(log, SessionEvent::Phase(change.clone()))
                .await
                .map_err(|e| convert(e.into()))?;
        }
        Ok(())
    }

    async fn begin_run(&self, loaded: &Loaded, resume: bool) -> Result<RunTicket, DriverError> {
        let s = &self.services;
        let caller = Caller::system();
        let key = SessionKey::of(&loaded.session);
        let generation = loaded.generation + 1;
        let token = new_token();
        let run = Run {
            generation,
            token_hash: Some(token_hash(&token)),
        };
        self.records.set_run(&key, run).await.map_err(records)?;
        let log = s
            .log
            .open(uid_of(&loaded.session))
            .await
            .map_err(|e| convert(e.into()))?;
        let handled_through = s
            .log
            .begin_run(log, generation, resume)
            .await
            .map_err(|e| convert(e.into()))?;
        let settings = s
            .records
            .project_settings(&caller, &key.project)
            .await
            .map_err(records)?;
        Ok(RunTicket {
            generation,
            token,
            handled_through,
            credentials: s
                .run_credentials(&caller, &key.project)
                .await
                .map_err(convert)?,
            project_mcp_servers: settings.mcp_servers,
        })
    }

    async fn begin_files(&self, loaded: &Loaded) -> Result<String, DriverError> {
        let token = new_token();
        self.records
            .set_files_token_hash(
                &SessionKey::of(&loaded.session),
                operator::token::token_hash_hex(&token),
            )
            .await
            .map_err(records)?;
        Ok(token)
    }

    fn idle_agents(&self) -> Vec<(SessionKey, k8s_openapi::jiff::Timestamp)> {
        self.services.runners.idle_agents()
    }
}

/// Local mode's platform in `data_dir`: records and logs in its SQLite database, and with
/// `driver` the local driver, whose task (returned) must be run for sessions to run.
pub fn open(
    data_dir: &std::path::Path,
    settings: crate::services::Settings,
    driver: Option<operator::LocalConfig>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<
    (
        LocalSessions,
        Option<operator::local::DriverTask<LocalSessions>>,
    ),
    crate::db::StoreError,
> {
    use std::sync::Arc;
    let db = crate::db::Db::open_in(data_dir)?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let fanout = crate::hub::Fanout::counting(metrics.clone());
    let (handle, unstarted) = match driver {
        Some(config) => {
            // Workspaces hold code and transcripts: the owner's only.
            crate::db::create_private_dir(&config.workspaces)?;
            let (handle, unstarted) = LocalDriver::new(config);
            (Arc::new(handle) as Arc<dyn Driver>, Some(unstarted))
        }
        None => (Arc::new(crate::services::NoDriver) as Arc<dyn Driver>, None),
    };
    let identities = crate::identity::Identities::open(db.clone(), data_dir)?;
    let records = SqliteRecords::new(db.clone());
    let services = Services {
        identities,
        records: Arc::new(records.clone()),
        log: crate::log::EventLog::new(db, Arc::new(fanout.clone())),
        fanout,
        runners: Default::default(),
        driver: handle,
        settings: Arc::new(settings),
        shutdown,
        people: Arc::new(crate::people::OwnerOnly),
        metrics,
    };
    let local = LocalSessions { services, records };
    let task = unstarted.map(|u| u.with_store(local.clone()));
    Ok((local, task))
}
