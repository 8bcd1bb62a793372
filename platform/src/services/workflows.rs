//! Workflows of sessions: what a session's runner found of its workflow (its commands), a
//! switch of workflow, and the catalogue the new-session form offers.

use k8s_openapi::jiff::Timestamp;
use model::annotations::{
    DESIRED_PHASE, DESIRED_RESTART, DESIRED_STOPPED, RESTART_OF_RUN, START_REQUESTED_AT,
    STOP_REASON, STOP_REQUESTED_AT,
};
use model::protocol::{SessionEvent, WorkflowChange};
use model::session::{ActiveWorkflow, SessionKey, StoppedReason};
use model::workflow::{Catalogue, WorkflowState};
use model::{AgenticSession, Phase, validate};

use super::Services;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::hub::AgentState;
use crate::records::update_session;

/// Whether `state` (a runner's report) is of `wf` (the session's workflow).
pub fn reports(state: &WorkflowState, wf: &ActiveWorkflow) -> bool {
    state.git_url == wf.git_url
        && state.branch == wf.branch_or_default()
        && state.path == wf.path.as_deref().unwrap_or_default().trim_matches('/')
}

/// Whether two workflows are the same (the default branch named or not, the folder with
/// or without its slashes).
fn same(a: Option<&ActiveWorkflow>, b: Option<&ActiveWorkflow>) -> bool {
    let key = |w: &ActiveWorkflow| {
        (
            w.git_url.clone(),
            w.branch_or_default().to_owned(),
            w.path
                .as_deref()
                .unwrap_or_default()
                .trim_matches('/')
                .to_owned(),
        )
    };
    a.map(key) == b.map(key)
}

impl Services {
    /// The session's workflow as its runner last found it (name, commands), while it is
    /// still the session's workflow; `None` without one, or before a run found it.
    pub async fn workflow_metadata(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<Option<WorkflowState>, ApiError> {
        self.require(caller, &key.project, Role::View).await?;
        let live = self.live_session(caller, key).await?;
        let Some(wf) = live.record.session.spec.active_workflow.clone() else {
            return Ok(None);
        };
        Ok(self
            .log
            .last_workflow(live.log)
            .await?
            .filter(|s| reports(s, &wf)))
    }

    /// Switches the session's workflow (none: it leaves its workflow). A finished session
    /// uses it when it continues; an active one restarts in it at once, its conversation
    /// kept, unless its agent is in the middle of a turn or waits for an answer (409: the
    /// turn would be lost).
    pub async fn set_workflow(
        &self,
        caller: &Caller,
        key: &SessionKey,
        workflow: Option<ActiveWorkflow>,
    ) -> Result<AgenticSession, ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        if let Some(wf) = &workflow {
            validate::active_workflow("workflow", wf)?;
            self.owner_remotes_check(
                caller,
                std::iter::once(("workflow.gitUrl".to_owned(), wf.git_url.as_str())),
            )?;
        }
        let workflow = workflow.map(|mut wf| {
            // One spelling of "the root" and of the default branch.
            wf.path = wf
                .path
                .map(|p| p.trim_matches('/').to_owned())
                .filter(|p| !p.is_empty());
            wf.branch = wf.branch.filter(|b| b != model::session::DEFAULT_BRANCH);
            wf
        });
        let live = self.live_session(caller, key).await?;
        let _guard = self.runners.lock(live.log).await;
        let session = &live.record.session;
        if same(session.spec.active_workflow.as_ref(), workflow.as_ref()) {
            return Ok(live.record.session);
        }
        let active = matches!(session.phase(), Phase::Creating | Phase::Running);
        match self.runners.agent_states(&key.project).get(&key.name) {
            Some(AgentState::Working) if active => {
                return Err(ApiError::Conflict(
                    "the agent is in the middle of a turn: switch the workflow when it has answered, \
                     or interrupt it first"
                        .into(),
                ));
            }
            Some(AgentState::Asking(_)) if active => {
                return Err(ApiError::Conflict(
                    "the agent waits for an answer: answer it first, then switch the workflow"
                        .into(),
                ));
            }
            _ => {}
        }
        let now = Timestamp::now().to_string();
        let run = live.record.run.generation;
        let record = update_session(&*self.records, caller, key, |s| {
            s.spec.active_workflow = workflow.clone();
            // Looked at again under the write: a run that ended meanwhile just keeps the
            // change for its next run, and a stop asked and not yet taken stays a stop.
            let stopping = s.annotation(DESIRED_PHASE) == Some(DESIRED_STOPPED);
            if matches!(s.phase(), Phase::Creating | Phase::Running) && !stopping {
                let a = s.metadata.annotations.get_or_insert_with(Default::default);
                a.insert(DESIRED_PHASE.to_owned(), DESIRED_RESTART.to_owned());
                a.insert(RESTART_OF_RUN.to_owned(), run.to_string());
                a.insert(START_REQUESTED_AT.to_owned(), now.clone());
                a.insert(STOP_REQUESTED_AT.to_owned(), now.clone());
                a.insert(
                    STOP_REASON.to_owned(),
                    StoppedReason::Restart.as_str().to_owned(),
                );
            }
            Ok::<_, ApiError>(())
        })
        .await?;
        let event = SessionEvent::WorkflowChanged(WorkflowChange {
            workflow,
            sender: caller.display_name.clone(),
        });
        self.log.append(live.log, event).await?;
        self.notify(key);
        Ok(record.session)
    }

    /// The workflow catalogue (any signed-in caller: it names public workflows, no project's
    /// data).
    pub async fn workflow_catalogue(&self, _caller: &Caller) -> Catalogue {
        self.settings.catalogue.list().await
    }
}
