//! The controllers that run sessions in a cluster: one on `AgenticSession` (owning Jobs,
//! watching runner Pods and the managed namespaces), one on the managed namespaces
//! (projects). Both observe, decide with the pure functions of this crate, and apply.
//!
//! A session's reconcile: read the current run's Job and Pods → [`observe`] → the same
//! [`lifecycle::plan`] the local driver uses → write the status as a merge diff with the
//! resource version as precondition (a conflict means plan again) → clear the desired
//! phase → record a Kubernetes Event → create the run's objects or delete its Job.

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
    Kube(#[from] kube::Error),
    /// The session changed since it was read: plan again.
    #[error("the session changed concurrently")]
    Conflict,
    /// An object without a namespace or a name (cannot happen for namespaced resources).
    #[error("{0}")]
    Invalid(String),
}

fn conflict(e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 409 && !s.is_already_exists() => Error::Conflict,
        _ => Error::Kube(e),
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

fn error_policy(session: Arc<AgenticSession>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let key = ObjectRef::from_obj(&*session);
    if matches!(error, Error::Conflict) {
        return Action::requeue(Duration::from_millis(50));
    }
    let after = ctx.backoff(key.clone());
    tracing::warn!(session = %key, error = %error, retry_in = ?after, "reconcile failed");
    Action::requeue(after)
}

/// Everything read of one session's run.
struct Observed {
    generation: u64,
    job: Option<Job>,
    runner: Runner,
}

async fn observe_run(
    ctx: &Ctx,
    session: &AgenticSession,
    ns: &str,
    name: &str,
) -> Result<Observed, Error> {
    let st = session.status.clone().unwrap_or_default();
    let generation = u64::try_from(st.run_generation.unwrap_or(0)).unwrap_or(0);
    let phase = session.phase();
    if generation == 0 || !phase.is_active() {
        return Ok(Observed {
            generation,
            job: None,
            runner: Runner::Absent,
        });
    }
    let job_ref = ObjectRef::new(&job_name(name, generation)).within(ns);
    let job = match ctx.jobs.get(&job_ref) {
        Some(job) => Some(Job::from((*job).clone())),
        // Not cached (yet): ask, since a missing Job means objects to make.
        None => {
            Api::<Job>::namespaced(ctx.client.clone(), ns)
                .get_opt(&job_ref.name)
                .await?
        }
    };
    let run = generation.to_string();
    let pods: Vec<Pod> = match &job {
        Some(_) => ctx
            .runs
            .of(&ctx.pods, ns, name)
            .into_iter()
            .filter(|p| p.labels().get(RUN_LABEL) == Some(&run))
            .map(|p| Pod::from((*p).clone()))
            .collect(),
        None => Vec::new(),
    };
    let connected = st.runner_connected_generation == st.run_generation;
    let was_running = matches!(phase, Phase::Running | Phase::Stopping);
    let mut runner = observe(job.as_ref(), &pods, connected, was_running);
    let mut job = job;
    if matches!(runner, Runner::Lost { .. }) {
        // A cache that is still filling (an operator that just started) must not fail a
        // running session: a loss is confirmed with the API server.
        job = Api::<Job>::namespaced(ctx.client.clone(), ns)
            .get_opt(&job_ref.name)
            .await?;
        let selector = format!("{SESSION_LABEL}={name},{RUN_LABEL}={generation}");
        let pods = match &job {
            Some(_) => {
                Api::<Pod>::namespaced(ctx.client.clone(), ns)
                    .list(&ListParams::default().labels(&selector))
                    .await?
                    .items
            }
            None => Vec::new(),
        };
        runner = observe(job.as_ref(), &pods, connected, was_running);
    }
    if let Runner::Exited(exit) = &mut runner {
        // The run's totals, as the server recorded them from the runner's result.
        exit.summary = st.result.clone();
    }
    Ok(Observed {
        generation,
        job,
        runner,
    })
}

async fn reconcile(session: Arc<AgenticSession>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*session);
    let action = reconcile_session(&session, &ctx).await?;
    ctx.succeeded(&key);
    Ok(action)
}

async fn reconcile_session(session: &AgenticSession, ctx: &Ctx) -> Result<Action, Error> {
    let ns = session
        .namespace()
        .ok_or_else(|| Error::Invalid("a session without a namespace".into()))?;
    let name = session.name_any();
    tracing::debug!(session = %name, namespace = %ns, "reconcile");
    let is_project =
        |n: &Namespace| n.labels().get(MANAGED_LABEL).map(String::as_str) == Some("true");
    // The project cache first; while it is filling (a start), the API server.
    let managed = match ctx.projects.get(&ObjectRef::new(&ns)) {
        Some(n) => is_project(&n),
        None => Api::<Namespace>::all(ctx.client.clone())
            .get_opt(&ns)
            .await?
            .is_some_and(|n| is_project(&n)),
    };
    if !managed || session.meta().deletion_timestamp.is_some() {
        tracing::debug!(session = %name, namespace = %ns, managed, "not ours to run");
        // Not a project (yet), or going: its objects go with it (owner references).
        return Ok(Action::await_change());
    }
    let observed = observe_run(ctx, session, &ns, &name).await?;
    tracing::debug!(session = %name, namespace = %ns, phase = %session.phase(), runner = ?observed.runner, "observed");
    if session.phase() == Phase::Creating && observed.generation > 0 && observed.job.is_none() {
        // The run was decided but its objects were not all made (the operator stopped in
        // between): make them, with a new token, since only its hash was kept.
        start_run(ctx, session, &ns, observed.generation, None).await?;
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let project_inactivity_timeout = if session.phase().is_active() {
        project_settings(ctx, &ns)
            .await?
            .and_then(|s| s.spec.inactivity_timeout_seconds)
    } else {
        None
    };
    let lctx = Context {
        now: Timestamp::now(),
        default_inactivity_timeout: ctx.config.default_inactivity_timeout,
        default_model: ctx.config.default_model.clone(),
        project_inactivity_timeout,
        // The log is the server's: it says in `status.unhandledMessages` that messages wait.
        unhandled_messages: false,
        no_room: None,
    };
    let plan = lifecycle::plan(session, &observed.runner, &lctx);
    let start = match plan.action {
        Some(lifecycle::Action::Start { resume }) => Some(resume),
        _ => None,
    };
    let mut status = plan.status.clone();
    let mut token = None;
    if start.is_some() {
        let t = new_token();
        let st = status.get_or_insert_with(|| session.status.clone().unwrap_or_default());
        st.run_generation = Some(observed.generation as i64 + 1);
        st.runner_token_hash = Some(token_hash_hex(&t));
        token = Some(t);
    }
    let mut version = session.resource_version();
    if let Some(new) = &status {
        version = Some(write_status(ctx, session, &ns, new).await?);
    }
    if plan.clear_desired_phase {
        clear_desired_phase(ctx, &ns, &name, version.as_deref()).await?;
    }
    match plan.action {
        Some(lifecycle::Action::Start { resume }) => {
            let generation = observed.generation + 1;
            let mut updated = session.clone();
            updated.status = status;
            start_run(ctx, &updated, &ns, generation, Some((resume, token))).await?;
            tracing::info!(session = %name, namespace = %ns, generation, resume, "run started");
        }
        Some(lifecycle::Action::Stop { reason }) => {
            if observed.generation > 0 {
                let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
                delete(
                    &jobs,
                    &job_name(&name, observed.generation),
                    &DeleteParams::foreground(),
                )
                .await?;
                tracing::info!(session = %name, namespace = %ns, ?reason, "run stopping");
            }
        }
        None => {
            let ended = status.as_ref().is_some_and(|s| s.phase.is_terminal());
            let pod_left = matches!(
                observed.runner,
                Runner::Unstartable { .. } | Runner::Waiting { .. } | Runner::Alive { .. }
            );
            if ended && pod_left && observed.job.is_some() {
                // Failed while its pod still exists (an image that cannot be pulled): the
                // pod must not wait on for ever.
                let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
                delete(
                    &jobs,
                    &job_name(&name, observed.generation),
                    &DeleteParams::background(),
                )
                .await?;
            }
        }
    }
    // After the action: the Event is for people, the run's objects are on the critical path.
    if let Some(change) = &plan.event {
        let failed = change.phase == Phase::Failed;
        let event = Event {
            type_: if failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: change
                .reason
                .clone()
                .unwrap_or_else(|| change.phase.to_string()),
            note: Some(
                change
                    .message
                    .clone()
                    .map(|m| format!("{}: {m}", change.phase))
                    .unwrap_or_else(|| change.phase.to_string())
                    .chars()
                    .take(1000)
                    .collect(),
            ),
            action: "Phase".into(),
            secondary: None,
        };
        // A Recorder per Event: kube's keeps every Event it sent for six minutes and scans
        // them all under one lock at each publish (at 5,000 sessions, tens of MiB and a
        // quadratic cost); a phase change is never a repeat to aggregate into a series.
        if let Err(e) = Recorder::new(ctx.client.clone(), ctx.reporter.clone())
            .publish(&event, &object_reference(session))
            .await
        {
            tracing::warn!(session = %name, error = %e, "could not record an event");
        }
    }
    Ok(match plan.requeue_after {
        Some(after) => Action::requeue(after.max(Duration::from_millis(10))),
        // Watches bring every change; a periodic look catches anything missed.
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// A project's settings: from the cache, else (a start, a new project) from the API server.
async fn project_settings(ctx: &Ctx, ns: &str) -> Result<Option<Arc<ProjectSettings>>, Error> {
    let key = ObjectRef::new(SETTINGS_NAME).within(ns);
    if let Some(s) = ctx.settings.get(&key) {
        return Ok(Some(s));
    }
    Ok(Api::<ProjectSettings>::namespaced(ctx.client.clone(), ns)
        .get_opt(SETTINGS_NAME)
        .await?
        .map(Arc::new))
}

fn object_reference(session: &AgenticSession) -> ObjectReference {
    session.object_ref(&())
}

/// Writes `new` as the diff from the session's status, only if the session is still at the
/// version that was planned from. Returns the new resource version.
async fn write_status(
    ctx: &Ctx,
    session: &AgenticSession,
    ns: &str,
    new: &model::session::AgenticSessionStatus,
) -> Result<String, Error> {
    let old = serde_json::to_value(session.status.clone().unwrap_or_default())
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let new = serde_json::to_value(new).map_err(|e| Error::Invalid(e.to_string()))?;
    let Some(diff) = merge_diff(&old, &new) else {
        return Ok(session.resource_version().unwrap_or_default());
    };
    let api: Api<AgenticSession> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "metadata": {"resourceVersion": session.resource_version()},
        "status": diff,
    });
    let written = api
        .patch_status(
            &session.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(conflict)?;
    Ok(written.resource_version().unwrap_or_default())
}

/// Removes the requests (taken: every one of [`REQUEST_ANNOTATIONS`], as the local store
/// does), unless the session changed since.
async fn clear_desired_phase(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    version: Option<&str>,
) -> Result<(), Error> {
    let api: Api<AgenticSession> = Api::namespaced(ctx.client.clone(), ns);
    let taken: serde_json::Map<String, serde_json::Value> = REQUEST_ANNOTATIONS
        .iter()
        .map(|k| ((*k).to_owned(), serde_json::Value::Null))
        .collect();
    let patch = json!({
        "metadata": {
            "resourceVersion": version,
            "annotations": taken,
        }
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(conflict)?;
    Ok(())
}

/// Makes what run `generation` needs: the workspace claim (kept across runs), the token
/// Secret (a new token), the Job; and removes the Jobs of earlier runs. `fresh` is the
/// planned start (resume, token); `None` re-makes the objects of a run whose start was
/// interrupted (a new token, its hash written first).
async fn start_run(
    ctx: &Ctx,
    session: &AgenticSession,
    ns: &str,
    generation: u64,
    fresh: Option<(bool, Option<String>)>,
) -> Result<(), Error> {
    let name = session.name_any();
    let (resume, token) = match fresh {
        Some((resume, Some(token))) => (resume, token),
        Some((resume, None)) => (resume, new_token()),
        None => {
            let token = new_token();
            let mut st = session.status.clone().unwrap_or_default();
            st.runner_token_hash = Some(token_hash_hex(&token));
            write_status(ctx, session, ns, &st).await?;
            (session.has_conversation(), token)
        }
    };
    // The pod runs as the project's runner account: it must exist before the Job (the
    // project controller may not have made it yet in a new project).
    let known = ctx
        .accounts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(ns);
    if !known {
        create_if_missing(
            &Api::<ServiceAccount>::namespaced(ctx.client.clone(), ns),
            &project::runner_service_account(ns, &ctx.config.runner_service_account),
        )
        .await?;
        ctx.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ns.to_owned());
    }
    // The claim and the token Secret at once; the Job after both (its pod reads the Secret).
    let claim = async {
        match workspace_claim(session, &ctx.config) {
            Some(claim) => {
                let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
                create_if_missing(&claims, &claim).await
            }
            None => Ok(()),
        }
    };
    let secret = async {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
        let secret = token_secret(session, &token, &new_token(), generation);
        secrets
            .patch(
                &secret.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .map(|_| ())
            .map_err(Error::from)
    };
    futures::try_join!(claim, secret)?;
    let project_mcp = project_settings(ctx, ns)
        .await?
        .and_then(|s| s.spec.mcp_servers.clone());
    let run = Run {
        generation,
        resume,
        // The event log, and so what the agent has handled, is the server's: the runner
        // reports 0 and the server counts what its log knows was handled.
        handled_through: 0,
        project_mcp_servers: project_mcp.as_ref(),
    };
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    create_if_missing(&jobs, &build::desired_job(session, &run, &ctx.config)).await?;
    if generation == 1 {
        return Ok(());
    }
    // Earlier runs' Jobs (finished) go: one Job per session at a time.
    let earlier = jobs
        .list(&ListParams::default().labels(&format!("{SESSION_LABEL}={name}")))
        .await?;
    for job in earlier.items {
        let old = job
            .labels()
            .get(RUN_LABEL)
            .and_then(|g| g.parse::<u64>().ok());
        if old.is_some_and(|g| g < generation) {
            delete(&jobs, &job.name_any(), &DeleteParams::background()).await?;
        }
    }
    Ok(())
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

fn project_error_policy(ns: Arc<Namespace>, error: &Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(project = %ns.name_any(), error = %error, "project reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// A project holds its settings, the runners' ServiceAccount, the credentials Secret (made
/// empty; never overwritten), the runners' NetworkPolicy (kept as built) and a RoleBinding
/// per group of its settings' `groupAccess` (kept as listed, but none for the cluster's own
/// `system:` groups; re-run when the settings change).
async fn reconcile_project(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.name_any();
    if ns.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let client = ctx.client.clone();
    create_if_missing(
        &Api::<ProjectSettings>::namespaced(client.clone(), &name),
        &project::default_settings(&name),
    )
    .await?;
    create_if_missing(
        &Api::<ServiceAccount>::namespaced(client.clone(), &name),
        &project::runner_service_account(&name, &ctx.config.runner_service_account),
    )
    .await?;
    create_if_missing(
        &Api::<Secret>::namespaced(client.clone(), &name),
        &project::runner_secrets(&name),
    )
    .await?;
    let policy = project::runner_network_policy(&name, &ctx.config.server_namespace);
    Api::<NetworkPolicy>::namespaced(client.clone(), &name)
        .patch(
            project::NETWORK_POLICY,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&policy),
        )
        .await?;
    // The groups of `groupAccess` get their RoleBindings; those of groups no longer listed
    // go (only the ones made here: a RoleBinding made by hand stays).
    let settings_api = Api::<ProjectSettings>::namespaced(client.clone(), &name);
    let settings = settings_api.get_opt(SETTINGS_NAME).await?;
    let access = settings
        .as_ref()
        .map(|s| s.spec.group_access.clone())
        .unwrap_or_default();
    for a in access
        .iter()
        .filter(|a| model::validate::is_system_subject(&a.group_name))
    {
        tracing::warn!(
            project = %name,
            group = %a.group_name,
            "groupAccess names one of the cluster's own groups: it gets no RoleBinding"
        );
    }
    let desired = project::group_bindings(&name, &access);
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &name);
    for b in &desired {
        bindings
            .patch(
                b.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(b),
            )
            .await?;
    }
    let made = bindings
        .list(&ListParams::default().labels(&format!("{}=true", project::GROUP_ACCESS_LABEL)))
        .await?;
    for b in made.items {
        if !desired.iter().any(|d| d.metadata.name == b.metadata.name) {
            delete(&bindings, &b.name_any(), &DeleteParams::default()).await?;
        }
    }
    let count = desired.len() as i64;
    if settings.is_some_and(|s| s.status.and_then(|st| st.group_bindings_created) != Some(count)) {
        settings_api
            .patch_status(
                SETTINGS_NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"groupBindingsCreated": count}})),
            )
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}
