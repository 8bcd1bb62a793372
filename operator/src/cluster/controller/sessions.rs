//! The session controller: a session's reconcile observes its run ([`observe_run`]),
//! plans with [`lifecycle::plan`] ([`decide`]), writes the status and takes the requests
//! ([`record`]), makes or removes the run's objects ([`act`], [`start_run`]) and records a
//! Kubernetes Event of the phase change ([`publish`]).

use super::*;

pub(super) fn error_policy(session: Arc<AgenticSession>, error: &Error, ctx: Arc<Ctx>) -> Action {
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

pub(super) async fn reconcile(
    session: Arc<AgenticSession>,
    ctx: Arc<Ctx>,
) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*session);
    let action = reconcile_session(&session, &ctx).await?;
    ctx.succeeded(&key);
    Ok(action)
}

/// One look at a session: observe its run, plan with [`lifecycle::plan`], then record the
/// plan, act on it and tell people, in that order.
async fn reconcile_session(session: &AgenticSession, ctx: &Ctx) -> Result<Action, Error> {
    let ns = session
        .namespace()
        .ok_or_else(|| Error::Invalid("a session without a namespace".into()))?;
    let name = session.name_any();
    tracing::debug!(session = %name, namespace = %ns, "reconcile");
    if !is_ours(ctx, session, &ns).await? {
        tracing::debug!(session = %name, namespace = %ns, "not ours to run");
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
    let plan = decide(ctx, session, &ns, &observed).await?;
    let recorded = record(ctx, session, &ns, &plan, &observed).await?;
    let starting = matches!(plan.action, Some(lifecycle::Action::Start { .. }));
    if starting {
        // A files runner goes before the run's pod comes: one writer of the workspace.
        super::files::reconcile_files(ctx, session, &ns, true).await?;
    }
    act(ctx, session, &ns, &plan, &observed, recorded).await?;
    if !starting {
        // A stopped session's files, served while someone looks at them.
        super::files::reconcile_files(ctx, session, &ns, false).await?;
    }
    // After the action: the Event is for people, the run's objects are on the critical path.
    if let Some(change) = &plan.event {
        publish(ctx, session, change).await;
    }
    Ok(match plan.requeue_after {
        Some(after) => Action::requeue(after.max(Duration::from_millis(10))),
        // Watches bring every change; a periodic look catches anything missed.
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// Whether the session is the operator's to run: in a project (the project cache first;
/// while it is filling, a start, the API server) and not being deleted.
async fn is_ours(ctx: &Ctx, session: &AgenticSession, ns: &str) -> Result<bool, Error> {
    if session.meta().deletion_timestamp.is_some() {
        return Ok(false);
    }
    let is_project =
        |n: &Namespace| n.labels().get(MANAGED_LABEL).map(String::as_str) == Some("true");
    Ok(match ctx.projects.get(&ObjectRef::new(ns)) {
        Some(n) => is_project(&n),
        None => Api::<Namespace>::all(ctx.client.clone())
            .get_opt(ns)
            .await?
            .is_some_and(|n| is_project(&n)),
    })
}

/// The plan for what was observed, in the operator's context.
async fn decide(
    ctx: &Ctx,
    session: &AgenticSession,
    ns: &str,
    observed: &Observed,
) -> Result<lifecycle::Plan, Error> {
    let project_inactivity_timeout = if session.phase().is_active() {
        project_settings(ctx, ns)
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
        make_room: false,
    };
    Ok(lifecycle::plan(session, &observed.runner, &lctx))
}

/// What [`record`] wrote: the status as it now is, and a new run's token.
struct Recorded {
    status: Option<model::session::AgenticSessionStatus>,
    token: Option<String>,
}

/// Writes the plan's status (with the next run's generation and token hash when it starts
/// one) and takes the requests, each only if the session is still as it was planned from.
async fn record(
    ctx: &Ctx,
    session: &AgenticSession,
    ns: &str,
    plan: &lifecycle::Plan,
    observed: &Observed,
) -> Result<Recorded, Error> {
    let mut status = plan.status.clone();
    let mut token = None;
    if matches!(plan.action, Some(lifecycle::Action::Start { .. })) {
        let t = new_token();
        let st = status.get_or_insert_with(|| session.status.clone().unwrap_or_default());
        st.run_generation = Some(observed.generation as i64 + 1);
        st.runner_token_hash = Some(token_hash_hex(&t));
        token = Some(t);
    }
    let mut version = session.resource_version();
    if let Some(new) = &status {
        version = Some(write_status(ctx, session, ns, new).await?);
    }
    if plan.clear_desired_phase {
        clear_desired_phase(ctx, ns, &session.name_any(), version.as_deref()).await?;
    }
    Ok(Recorded { status, token })
}

/// Does what the plan says: makes the next run's objects, deletes a run being stopped, or
/// removes the Job of a run that ended while its pod is still there.
async fn act(
    ctx: &Ctx,
    session: &AgenticSession,
    ns: &str,
    plan: &lifecycle::Plan,
    observed: &Observed,
    recorded: Recorded,
) -> Result<(), Error> {
    let name = session.name_any();
    match plan.action {
        Some(lifecycle::Action::Start { resume }) => {
            let generation = observed.generation + 1;
            let mut updated = session.clone();
            updated.status = recorded.status;
            start_run(
                ctx,
                &updated,
                ns,
                generation,
                Some((resume, recorded.token)),
            )
            .await?;
            tracing::info!(session = %name, namespace = %ns, generation, resume, "run started");
        }
        Some(lifecycle::Action::Stop { reason }) => {
            if observed.generation > 0 {
                delete_run_job(
                    ctx,
                    ns,
                    &name,
                    observed.generation,
                    DeleteParams::foreground(),
                )
                .await?;
                tracing::info!(session = %name, namespace = %ns, ?reason, "run stopping");
            }
        }
        None => {
            let ended = recorded
                .status
                .as_ref()
                .is_some_and(|s| s.phase.is_terminal());
            let pod_left = matches!(
                observed.runner,
                Runner::Unstartable { .. } | Runner::Waiting { .. } | Runner::Alive { .. }
            );
            if ended && pod_left && observed.job.is_some() {
                // Failed while its pod still exists (an image that cannot be pulled): the
                // pod must not wait on for ever.
                delete_run_job(
                    ctx,
                    ns,
                    &name,
                    observed.generation,
                    DeleteParams::background(),
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Deletes the Job of run `generation` of session `name` (gone already is fine).
async fn delete_run_job(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    generation: u64,
    params: DeleteParams,
) -> Result<(), Error> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    delete(&jobs, &job_name(name, generation), &params).await
}

/// Records a phase change as a Kubernetes Event of the session (a failure to is logged).
async fn publish(ctx: &Ctx, session: &AgenticSession, change: &model::protocol::PhaseChange) {
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
        tracing::warn!(session = %session.name_any(), error = %e, "could not record an event");
    }
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
        .await?;
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
        .await?;
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
