//! The controllers that run sessions in a cluster: one on `AgenticSession` (owning Jobs,
//! watching runner Pods and the managed namespaces), one on the managed namespaces
//! (projects). Both observe, decide with the pure functions of this crate, and apply.
//!
//! A session's reconcile ([`sessions`]): read the current run's Job and Pods → [`observe`] →
//! the same [`lifecycle::plan`] the local driver uses → write the status as a merge diff with
//! the resource version as precondition (a conflict means plan again) → take the requests →
//! create the run's objects or delete its Job → record a Kubernetes Event. A project's
//! ([`projects`]): what a managed namespace needs.
//!
//! This file: the controllers' wiring ([`run`]), their shared context and caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Namespace, ObjectReference, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use model::annotations::REQUEST_ANNOTATIONS;
use model::{AgenticSession, Phase, ProjectSettings};
use serde_json::json;

use super::build::{
    self, ClusterConfig, RUN_LABEL, Run, SESSION_LABEL, job_name, token_secret, workspace_claim,
};
use super::merge_diff;
use super::observe::{RunJob, RunPod, observe};
use super::project::{self, MANAGED_LABEL, SETTINGS_NAME};
use crate::lifecycle::{self, Context, Runner};
use crate::token::{new_token, token_hash_hex};

mod files;
mod projects;
mod sessions;

use projects::{project_error_policy, reconcile_project};
use sessions::{error_policy, reconcile};

/// The field manager and event reporter name of the operator.
pub const MANAGER: &str = "ambient-operator";

/// How long reconciles in flight get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Reconciles run at once at most (each holds API connections; unbounded, a burst of a
/// thousand sessions opened a thousand TLS connections).
const CONCURRENCY: u16 = 16;

/// Failures of a reconcile; every one is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(kube::Error),
    /// The session changed since it was read: plan again.
    #[error("the session changed concurrently")]
    Conflict,
    /// An object without a namespace or a name (cannot happen for namespaced resources).
    #[error("{0}")]
    Invalid(String),
}

/// The one mapping of the API server's answers: a write refused because the object changed
/// since it was read (409, not "already exists") is a conflict: plan again.
impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.code == 409 && !s.is_already_exists() => Error::Conflict,
            _ => Error::Kube(e),
        }
    }
}

/// What the controllers share.
pub struct Ctx {
    client: Client,
    config: ClusterConfig,
    /// Who the operator's Events say reported them.
    reporter: Reporter,
    /// The managed namespaces (the project controller's cache).
    projects: Store<Namespace>,
    /// The runs' Jobs (metadata and status).
    jobs: Store<RunJob>,
    /// The runs' Pods (metadata and status).
    pods: Store<RunPod>,
    /// Which of them belong to which session.
    runs: Arc<RunPods>,
    /// Every project's settings.
    settings: Store<ProjectSettings>,
    /// Namespaces where the runner ServiceAccount is known to exist.
    accounts: Mutex<std::collections::HashSet<String>>,
    /// Consecutive failures per session, for back-off.
    failures: Mutex<HashMap<ObjectRef<AgenticSession>, u32>>,
}

impl Ctx {
    fn backoff(&self, key: ObjectRef<AgenticSession>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key).or_default();
        *n = n.saturating_add(1);
        // 250 ms, 500 ms, 1 s ... 60 s.
        Duration::from_millis(250u64.saturating_mul(1 << (*n - 1).min(8)))
            .min(Duration::from_secs(60))
    }

    fn succeeded(&self, key: &ObjectRef<AgenticSession>) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The names of each session's Pods, kept beside the Pod cache so that a reconcile finds
/// its session's pods without going through all of them (at 5,000 sessions, scanning the
/// cache in every reconcile was quadratic).
#[derive(Default)]
struct RunPods(Mutex<HashMap<(String, String), std::collections::HashSet<String>>>);

impl RunPods {
    /// A Pod the watch touched: `present` whether the cache still holds it.
    fn note(&self, pod: &RunPod, present: bool) {
        let (Some(ns), Some(session)) = (pod.namespace(), pod.labels().get(SESSION_LABEL)) else {
            return;
        };
        let mut runs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (ns, session.clone());
        if present {
            runs.entry(key).or_default().insert(pod.name_any());
        } else if let Some(names) = runs.get_mut(&key) {
            names.remove(&pod.name_any());
            if names.is_empty() {
                runs.remove(&key);
            }
        }
    }

    /// The cached Pods of session `name` in `ns` (a name the cache lost while the watch
    /// was interrupted is dropped here).
    fn of(&self, cache: &Store<RunPod>, ns: &str, name: &str) -> Vec<Arc<RunPod>> {
        let mut runs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (ns.to_owned(), name.to_owned());
        let Some(names) = runs.get_mut(&key) else {
            return Vec::new();
        };
        let mut pods = Vec::with_capacity(names.len());
        names.retain(|n| match cache.get(&ObjectRef::new(n).within(ns)) {
            Some(p) => {
                pods.push(p);
                true
            }
            None => false,
        });
        if names.is_empty() {
            runs.remove(&key);
        }
        pods
    }
}

/// Runs the session and project controllers until `shutdown` completes; each finishes the
/// reconciles in flight, then returns.
pub async fn run(
    client: Client,
    config: ClusterConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let mut managed = watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true"));
    if let Some(ns) = &config.watch_namespace {
        managed = managed.fields(&format!("metadata.name={ns}"));
    }
    let (session_api, job_api, pod_api, settings_api) = match &config.watch_namespace {
        Some(ns) => (
            Api::<AgenticSession>::namespaced(client.clone(), ns),
            Api::<RunJob>::namespaced(client.clone(), ns),
            Api::<RunPod>::namespaced(client.clone(), ns),
            Api::<ProjectSettings>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::<AgenticSession>::all(client.clone()),
            Api::<RunJob>::all(client.clone()),
            Api::<RunPod>::all(client.clone()),
            Api::<ProjectSettings>::all(client.clone()),
        ),
    };
    // Caches of the runs' Jobs and Pods (only what observation reads), filled by the same
    // watches that trigger reconciles: a reconcile reads memory, not the API server.
    let ours = watcher::Config::default().labels(SESSION_LABEL);
    let (jobs, jobs_writer) = reflector::store();
    let job_stream = reflector(
        jobs_writer,
        watcher(job_api, ours.clone())
            .default_backoff()
            .modify(super::observe::slim_job),
    )
    .touched_objects();
    let (pods, pods_writer) = reflector::store();
    let runs = Arc::new(RunPods::default());
    let pod_stream = {
        let (pods, runs) = (pods.clone(), runs.clone());
        reflector(
            pods_writer,
            watcher(pod_api, ours)
                .default_backoff()
                .modify(super::observe::slim_pod),
        )
        .touched_objects()
        .inspect_ok(move |pod| runs.note(pod, pods.get(&ObjectRef::from_obj(pod)).is_some()))
    };
    let settings_changes = settings_api.clone();
    let (settings, settings_writer) = reflector::store();
    let settings_stream = reflector(
        settings_writer,
        watcher(settings_api, watcher::Config::default()).default_backoff(),
    )
    .for_each(|_| futures::future::ready(()));

    let projects = Controller::new(Api::<Namespace>::all(client.clone()), managed.clone());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reporter: Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("AMBIENT_POD_NAME").ok(),
        },
        config,
        projects: projects.store(),
        jobs,
        pods,
        runs,
        settings,
        accounts: Mutex::default(),
        failures: Mutex::default(),
    });

    // The sessions' cache as the API server sends them, less their managedFields (which
    // grow with every writer and are read by nobody here): at 5,000 sessions the largest
    // part of each cached object.
    let (cached, sessions_writer) = reflector::store();
    let session_stream = reflector(
        sessions_writer,
        watcher(session_api, watcher::Config::default())
            .default_backoff()
            .modify(|s: &mut AgenticSession| s.metadata.managed_fields = None),
    )
    .applied_objects();
    let sessions = Controller::for_stream(session_stream, cached.clone())
        .with_config(controller::Config::default().concurrency(CONCURRENCY));
    let sessions = sessions
        .owns_stream(job_stream)
        .watches_stream(pod_stream, |pod| {
            let name = pod.labels().get(SESSION_LABEL).cloned();
            let ns = pod.namespace();
            name.zip(ns)
                .map(|(name, ns)| ObjectRef::new(&name).within(&ns))
        })
        // A namespace that becomes a project: its sessions start.
        .watches(Api::<Namespace>::all(client.clone()), managed, move |ns| {
            let name = ns.name_any();
            cached
                .state()
                .into_iter()
                .filter(|s| s.namespace().as_deref() == Some(name.as_str()))
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stopped())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "session controller");
            }
            futures::future::ready(())
        });
    let projects = projects
        // Changed settings (their `groupAccess`) reconcile their project.
        .watches(settings_changes, watcher::Config::default(), |s| {
            s.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .with_config(controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(stopped())
        .run(reconcile_project, project_error_policy, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "project controller");
            }
            futures::future::ready(())
        });
    // The controllers end after their graceful shutdown; the settings cache with them.
    let settings_cache = async {
        settings_stream.await;
        std::future::pending::<()>().await
    };
    // A controller asked to stop before its cache is filled waits for the cache for ever
    // (kube-runtime): past a grace period the operator stops anyway.
    let overdue = async {
        stopped().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = futures::future::join(sessions, projects) => {}
        _ = settings_cache => {}
        _ = overdue => tracing::warn!("reconciles did not end within the shutdown grace period"),
    }
}

async fn create_if_missing<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn delete<K>(api: &Api<K>, name: &str, params: &DeleteParams) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
