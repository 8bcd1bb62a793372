//! Files runners in a cluster: a stopped session's workspace served to the Files panel by a
//! one-container Job on its workspace claim (`runner files`: no agent, no credential).
//!
//! The server asks by setting the session's [`FILES_REQUESTED_AT`] annotation to the time of
//! the request; each request gets at most one Job (named after its time, so a runner that
//! failed is not started again and again for the same request), with a new token whose hash
//! goes into `status.filesTokenHash`. A request older than [`FILES_REQUEST_TTL`] is not
//! served (the person's page gave up long ago). The Jobs of earlier requests go once they
//! have ended, and every files Job goes as soon as the session runs again (its runner serves
//! the files, and the claim is its), with the request itself.

use super::*;
use build::{FILES_LABEL, files_job, files_job_name, files_token_secret};
use model::annotations::FILES_REQUESTED_AT;

/// How long a request for files is worth a Job.
const FILES_REQUEST_TTL: Duration = Duration::from_secs(120);

/// Starts, keeps or removes the session's files runner as its phase and its latest request
/// say (`starting`: this reconcile started a run, which the session's phase does not show
/// yet).
pub(super) async fn reconcile_files(
    ctx: &Ctx,
    session: &AgenticSession,
    ns: &str,
    starting: bool,
) -> Result<(), Error> {
    let name = session.name_any();
    // Never asked for (most sessions): nothing to look for.
    let asked = session.annotations().contains_key(FILES_REQUESTED_AT)
        || session
            .status
            .as_ref()
            .is_some_and(|s| s.files_token_hash.is_some());
    if !asked {
        return Ok(());
    }
    let jobs: Vec<Arc<RunJob>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| {
            j.metadata.namespace.as_deref() == Some(ns)
                && j.labels().get(SESSION_LABEL) == Some(&name)
                && j.labels().contains_key(FILES_LABEL)
        })
        .collect();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let requested = session
        .annotations()
        .get(FILES_REQUESTED_AT)
        .and_then(|t| Some((t.clone(), t.parse::<Timestamp>().ok()?)));
    let current = requested
        .as_ref()
        .map(|(_, at)| files_job_name(&name, at.as_second()));
    let active = starting || session.phase().is_active();
    let mut running = false;
    for job in &jobs {
        let ended = job
            .status
            .as_ref()
            .is_some_and(|s| s.succeeded.unwrap_or(0) > 0 || s.failed.unwrap_or(0) > 0);
        let job_name = job.name_any();
        if active || (ended && current.as_deref() != Some(job_name.as_str())) {
            delete(&api, &job_name, &DeleteParams::background()).await?;
        } else if !ended {
            running = true;
        }
    }
    let Some((raw, at)) = requested else {
        return Ok(());
    };
    if active {
        // The run's runner serves the files: the request is answered. Removed, so that it
        // is not served again once the run has ended.
        let sessions: Api<AgenticSession> = Api::namespaced(ctx.client.clone(), ns);
        sessions
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": {FILES_REQUESTED_AT: null}}})),
            )
            .await?;
        return Ok(());
    }
    let fresh = Timestamp::now()
        .duration_since(at)
        .unsigned_abs()
        .le(&FILES_REQUEST_TTL);
    let served = jobs.iter().any(|j| Some(j.name_any()) == current);
    let never_ran = session
        .status
        .as_ref()
        .and_then(|s| s.run_generation)
        .unwrap_or(0)
        == 0;
    if active || running || served || !fresh || never_ran {
        return Ok(());
    }
    let Some(job) = files_job(session, &raw, at.as_second(), &ctx.config) else {
        // Workspaces are emptyDirs: nothing outlived the run.
        return Ok(());
    };
    // The cache may not show a Job made by the previous reconcile yet: ask, rather than give
    // the request a second token (its pod would hold the first).
    if api.get_opt(&job.name_any()).await?.is_some() {
        return Ok(());
    }
    let token = new_token();
    let sessions: Api<AgenticSession> = Api::namespaced(ctx.client.clone(), ns);
    sessions
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"filesTokenHash": token_hash_hex(&token)}})),
        )
        .await?;
    let secret = files_token_secret(session, &token);
    Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .patch(
            &secret.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    create_if_missing(&api, &job).await?;
    tracing::info!(session = %name, namespace = %ns, job = %job.name_any(), "files runner started");
    Ok(())
}
