//! Creating, reading, listing and deleting sessions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use model::annotations::PARENT_SESSION_ID;
use model::api::{
    CloneSessionRequest, CreateSessionRequest, CreateSessionResponse, SessionList,
    UpdateSessionRequest, auto_branch,
};
use model::session::{AgenticSessionSpec, LlmSettings, UserContext};
use model::validate::{self, Invalid};
use model::{AgenticSession, protocol};

use super::{Caller, Services};
use crate::error::ApiError;
use crate::store::StoreError;

/// Largest page of a list.
pub const MAX_PAGE: u64 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u64 = 20;

impl Services {
    /// Validates and stores a new session, then hands it to the driver.
    pub async fn create_session(
        &self,
        project: &str,
        req: CreateSessionRequest,
        caller: &Caller,
    ) -> Result<CreateSessionResponse, ApiError> {
        self.create_named_session(
            project,
            format!("session-{}", uuid::Uuid::new_v4()),
            req,
            caller,
        )
        .await
    }

    async fn create_named_session(
        &self,
        project: &str,
        name: String,
        req: CreateSessionRequest,
        caller: &Caller,
    ) -> Result<CreateSessionResponse, ApiError> {
        validate::dns1123_label("project", project)?;
        self.validate_create(&req)?;
        let uid = uuid::Uuid::new_v4().to_string();
        let model = req
            .llm_settings
            .as_ref()
            .and_then(|l| l.model.clone())
            .unwrap_or_else(|| self.settings.default_model.clone());
        let display_name = req
            .display_name
            .clone()
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| display_name_from_prompt(&req.initial_prompt));
        let mut annotations = req.annotations.clone();
        if let Some(parent) = &req.parent_session_id {
            annotations.insert(PARENT_SESSION_ID.to_owned(), parent.clone());
        }
        let session = AgenticSession {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(project.to_owned()),
                uid: Some(uid.clone()),
                generation: Some(1),
                creation_timestamp: Some(Time(Timestamp::now())),
                labels: non_empty(req.labels.clone()),
                annotations: non_empty(annotations),
                ..Default::default()
            },
            spec: AgenticSessionSpec {
                repos: req.repos,
                initial_prompt: Some(req.initial_prompt),
                display_name: Some(display_name),
                user_context: Some(UserContext {
                    user_id: caller.user_id.clone(),
                    display_name: caller.display_name.clone(),
                    groups: Vec::new(),
                }),
                llm_settings: Some(LlmSettings {
                    model: Some(model),
                    ..req.llm_settings.unwrap_or_default()
                }),
                timeout: req.timeout,
                inactivity_timeout: req.inactivity_timeout,
                stop_on_run_finished: req.stop_on_run_finished,
                environment_variables: req.environment_variables,
                mcp_servers: req.mcp_servers,
                active_workflow: req.active_workflow,
            },
            status: None,
        };
        self.store
            .create_session(session, caller.display_name.clone())
            .await?;
        self.notify(project, &name);
        Ok(CreateSessionResponse {
            message: "Agentic session created successfully".to_owned(),
            auto_branch: auto_branch(&name),
            name,
            uid,
        })
    }

    fn validate_create(&self, req: &CreateSessionRequest) -> Result<(), Invalid> {
        validate::message_text("initialPrompt", &req.initial_prompt)?;
        if let Some(d) = &req.display_name {
            validate::display_name("displayName", d)?;
        }
        if let Some(model) = req.llm_settings.as_ref().and_then(|l| l.model.as_deref()) {
            validate::model("llmSettings.model", model, &self.settings.models)?;
        }
        for (field, value) in [
            ("timeout", req.timeout),
            ("inactivityTimeout", req.inactivity_timeout),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(Invalid::new(field, "must be zero or more seconds"));
            }
        }
        if req.repos.len() > 20 {
            return Err(Invalid::new("repos", "at most 20 repositories"));
        }
        for (i, repo) in req.repos.iter().enumerate() {
            validate::repo_url(&format!("repos[{i}].url"), &repo.url)?;
            if let Some(branch) = &repo.branch {
                validate::branch_name(&format!("repos[{i}].branch"), branch)?;
            }
        }
        if let Some(wf) = &req.active_workflow {
            validate::repo_url("activeWorkflow.gitUrl", &wf.git_url)?;
            if let Some(branch) = &wf.branch {
                validate::branch_name("activeWorkflow.branch", branch)?;
            }
        }
        for (k, v) in &req.environment_variables {
            validate::env_var_name(&format!("environmentVariables.{k}"), k)?;
            if v.len() > 32 * 1024 {
                return Err(Invalid::new(
                    format!("environmentVariables.{k}"),
                    "value is longer than 32 KiB",
                ));
            }
        }
        Ok(())
    }

    /// Changes a session's prompt, name, model or timeouts; refused while it runs.
    pub async fn update_session(
        &self,
        project: &str,
        name: &str,
        req: UpdateSessionRequest,
    ) -> Result<AgenticSession, ApiError> {
        if let Some(p) = &req.initial_prompt {
            validate::message_text("initialPrompt", p)?;
        }
        if let Some(d) = &req.display_name {
            validate_display_name(d)?;
        }
        if let Some(model) = req.llm_settings.as_ref().and_then(|l| l.model.as_deref()) {
            validate::model("llmSettings.model", model, &self.settings.models)?;
        }
        for (field, value) in [
            ("timeout", req.timeout),
            ("inactivityTimeout", req.inactivity_timeout),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(Invalid::new(field, "must be zero or more seconds").into());
            }
        }
        let row = self
            .store
            .update_session(project, name, move |s| {
                if s.phase().is_active() {
                    return Err(StoreError::Conflict(format!(
                        "the session is {}: stop it before changing it",
                        s.phase()
                    )));
                }
                let spec = &mut s.spec;
                if let Some(p) = req.initial_prompt {
                    spec.initial_prompt = Some(p);
                }
                if let Some(d) = req.display_name {
                    spec.display_name = Some(d.trim().to_owned());
                }
                if let Some(llm) = req.llm_settings {
                    let current = spec.llm_settings.get_or_insert_with(Default::default);
                    current.model = llm.model.or(current.model.take());
                    current.temperature = llm.temperature.or(current.temperature);
                    current.max_tokens = llm.max_tokens.or(current.max_tokens);
                }
                if let Some(t) = req.timeout {
                    spec.timeout = (t > 0).then_some(t);
                }
                if let Some(t) = req.inactivity_timeout {
                    spec.inactivity_timeout = Some(t);
                }
                Ok(None)
            })
            .await?;
        Ok(row.session)
    }

    /// Renames a session (allowed in any phase).
    pub async fn set_display_name(
        &self,
        project: &str,
        name: &str,
        display_name: String,
    ) -> Result<AgenticSession, ApiError> {
        validate_display_name(&display_name)?;
        let row = self
            .store
            .update_session(project, name, move |s| {
                s.spec.display_name = Some(display_name.trim().to_owned());
                Ok(None)
            })
            .await?;
        Ok(row.session)
    }

    /// Copies a session's spec into a new session (in this or another project), which starts
    /// like any new session.
    pub async fn clone_session(
        &self,
        project: &str,
        name: &str,
        req: CloneSessionRequest,
        caller: &Caller,
    ) -> Result<CreateSessionResponse, ApiError> {
        let source = self.store.get_session(project, name).await?;
        let target = req.target_project.unwrap_or_else(|| project.to_owned());
        validate::dns1123_label("targetProject", &target)?;
        self.store.get_project(&target).await?;
        let new_name = match req.new_session_name {
            Some(n) => {
                validate::dns1123_label("newSessionName", &n)?;
                n
            }
            None => format!("session-{}", uuid::Uuid::new_v4()),
        };
        let spec = source.spec;
        let display = spec.display_name.clone().map(|d| format!("{d} (copy)"));
        let req = CreateSessionRequest {
            initial_prompt: spec.initial_prompt.unwrap_or_default(),
            display_name: display,
            llm_settings: spec.llm_settings,
            timeout: spec.timeout,
            inactivity_timeout: spec.inactivity_timeout,
            stop_on_run_finished: spec.stop_on_run_finished,
            repos: spec.repos,
            active_workflow: spec.active_workflow,
            environment_variables: spec.environment_variables,
            mcp_servers: spec.mcp_servers,
            parent_session_id: Some(name.to_owned()),
            ..Default::default()
        };
        self.create_named_session(&target, new_name, req, caller)
            .await
    }

    /// A session.
    pub async fn get_session(&self, project: &str, name: &str) -> Result<AgenticSession, ApiError> {
        Ok(self.store.get_session(project, name).await?)
    }

    /// A page of a project's sessions, newest first.
    pub async fn list_sessions(
        &self,
        project: &str,
        search: Option<String>,
        offset: Option<u64>,
        limit: Option<u64>,
    ) -> Result<SessionList, ApiError> {
        self.store.get_project(project).await?;
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(Invalid::new("limit", format!("must be between 1 and {MAX_PAGE}")).into());
        }
        Ok(self
            .store
            .list_sessions(project, search, offset.unwrap_or(0), limit)
            .await?)
    }

    /// The session's whole event log.
    pub async fn events(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Vec<protocol::StoredEvent>, ApiError> {
        let row = self.store.session_row(project, name).await?;
        let mut out = Vec::with_capacity(row.last_seq as usize);
        let mut after = 0;
        loop {
            let page = self.store.events_after(row.id, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                out.push(e.decode()?);
            }
        }
        Ok(out)
    }
}

fn validate_display_name(d: &str) -> Result<(), Invalid> {
    if d.trim().is_empty() {
        return Err(Invalid::new("displayName", "must not be empty"));
    }
    validate::display_name("displayName", d)
}

/// A display name from the first line of a prompt, shortened at a word boundary.
pub fn display_name_from_prompt(prompt: &str) -> String {
    let line = prompt
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("New session");
    if line.chars().count() <= 60 {
        return line.to_owned();
    }
    let cut: String = line.chars().take(60).collect();
    let trimmed = cut
        .rsplit_once(' ')
        .map(|(head, _)| head)
        .filter(|h| h.len() > 20)
        .unwrap_or(&cut);
    format!("{}…", trimmed.trim_end())
}

fn non_empty(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_come_from_the_first_line() {
        assert_eq!(
            display_name_from_prompt("\n  Fix the login bug\nmore"),
            "Fix the login bug"
        );
        let long =
            "Refactor the session list so that it pages through ten thousand sessions quickly";
        let name = display_name_from_prompt(long);
        assert!(name.ends_with('…') && name.chars().count() <= 61, "{name}");
        assert_eq!(display_name_from_prompt(""), "New session");
    }
}
