//! Creating, reading, listing, changing and deleting sessions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use model::annotations::PARENT_SESSION_ID;
use model::api::{
    CloneSessionRequest, CreateSessionRequest, CreateSessionResponse, ForkSessionRequest,
    SessionList, SessionTurn, UpdateSessionRequest, auto_branch,
};
use model::protocol::{SessionEvent, UserMessage};
use model::session::{AgentStatus, SessionKey};
use model::session::{AgenticSessionSpec, ForkSource, LlmSettings, UserContext};
use model::validate::{self, Invalid};
use model::{AgenticSession, protocol};

use super::{Services, uid_of, with_activity};
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::hub::AgentState;
use crate::log::TurnPoint;
use crate::records::{Page, update_session};

/// Largest page of a list.
pub const MAX_PAGE: u64 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u64 = 20;
/// Most events of one window of a log.
pub const MAX_WINDOW: usize = 1000;

/// Some consecutive events of a session's log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWindow {
    /// The events, oldest first.
    pub events: Vec<protocol::StoredEvent>,
    /// Whether the log has events before these.
    pub more_before: bool,
    /// User messages of the whole log still waiting for their turn's result.
    pub open_turns: u32,
}

/// A page of a list from its query parameters.
pub(super) fn page(
    search: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
) -> Result<Page, Invalid> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Invalid::new(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    validate::offset(offset)?;
    if let Some(s) = &search {
        validate::search(s)?;
    }
    Ok(Page {
        search,
        offset,
        limit,
    })
}

/// Where a new session comes from, besides its request: the session it forks, the group of
/// attempts it is one of (set only by the platform's own routes).
#[derive(Debug, Default)]
pub(super) struct Origin {
    pub fork: Option<ForkSource>,
    pub attempt: Option<model::session::Attempt>,
}

impl Services {
    /// Validates and stores a new session (its prompt the first event of its log), then
    /// hands it to the driver.
    pub async fn create_session(
        &self,
        caller: &Caller,
        project: &str,
        req: CreateSessionRequest,
    ) -> Result<CreateSessionResponse, ApiError> {
        self.require(caller, project, Role::Edit).await?;
        self.create_named_session(
            caller,
            project,
            format!("session-{}", uuid::Uuid::new_v4()),
            req,
            Origin::default(),
        )
        .await
    }

    /// Checks a session's request as [`Self::create_session`] does, creating nothing.
    pub(super) fn check_new_session(
        &self,
        caller: &Caller,
        project: &str,
        req: &CreateSessionRequest,
    ) -> Result<(), ApiError> {
        validate::dns1123_label("project", project)?;
        validate::create_session(req, &self.settings.models)?;
        self.owner_remotes_only_for_the_owner(caller, req)
    }

    pub(super) async fn create_named_session(
        &self,
        caller: &Caller,
        project: &str,
        name: String,
        req: CreateSessionRequest,
        origin: Origin,
    ) -> Result<CreateSessionResponse, ApiError> {
        self.check_new_session(caller, project, &req)?;
        let mut session = self.new_session(caller, project, name, req);
        session.spec.fork = origin.fork;
        session.spec.attempt = origin.attempt;
        let created = self.records.create_session(caller, session).await?.session;
        let uid = uid_of(&created).to_owned();
        let log = self.log.open(&uid).await?;
        if let Some(prompt) = created
            .spec
            .initial_prompt
            .clone()
            .filter(|t| !t.trim().is_empty())
        {
            let event = SessionEvent::UserMessage(UserMessage {
                text: prompt,
                sender: caller.display_name.clone(),
            });
            self.log.append(log, event).await?;
        }
        let name = created.metadata.name.clone().unwrap_or_default();
        self.notify(&SessionKey::new(project, &name));
        Ok(CreateSessionResponse {
            message: "Agentic session created successfully".to_owned(),
            auto_branch: auto_branch(&name),
            name,
            uid,
        })
    }

    /// In local mode ssh and `file://` remotes reach with the owner's own identity (the
    /// owner's ssh keys and agent, the owner's files): only the owner may name them. A project
    /// key acts as the project, through https and the project's token.
    fn owner_remotes_only_for_the_owner(
        &self,
        caller: &Caller,
        req: &CreateSessionRequest,
    ) -> Result<(), ApiError> {
        let urls = req
            .repos
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("repos[{i}].url"), r.url.as_str()))
            .chain(
                req.active_workflow
                    .iter()
                    .map(|w| ("activeWorkflow.gitUrl".to_owned(), w.git_url.as_str())),
            );
        self.owner_remotes_check(caller, urls)
    }

    /// [`Self::owner_remotes_only_for_the_owner`] for these `(field, url)`.
    pub(super) fn owner_remotes_check<'a>(
        &self,
        caller: &Caller,
        urls: impl Iterator<Item = (String, &'a str)>,
    ) -> Result<(), ApiError> {
        if !self.driver.runs_with_the_owners_identity() || caller.is_owner() {
            return Ok(());
        }
        for (field, url) in urls {
            if model::api::uses_owner_identity(url) {
                return Err(Invalid::new(
                    field,
                    "ssh and file:// remotes use the installation owner's own identity (ssh keys, files): \
                     only the owner may use them; use an https URL (the project's token is used there)",
                )
                .into());
            }
        }
        Ok(())
    }

    /// The resource of a new session from a (validated) request.
    fn new_session(
        &self,
        caller: &Caller,
        project: &str,
        name: String,
        req: CreateSessionRequest,
    ) -> AgenticSession {
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
        AgenticSession {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(project.to_owned()),
                uid: Some(uuid::Uuid::new_v4().to_string()),
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
                permission_mode: req.permission_mode,
                fork: None,
                attempt: None,
            },
            status: None,
        }
    }

    /// Changes a session's prompt, name, model or timeouts; refused while it runs.
    pub async fn update_session(
        &self,
        caller: &Caller,
        key: &SessionKey,
        req: UpdateSessionRequest,
    ) -> Result<AgenticSession, ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        if let Some(p) = &req.initial_prompt {
            validate::message_text("initialPrompt", p)?;
        }
        if let Some(d) = &req.display_name {
            validate_display_name(d)?;
        }
        if let Some(model) = req.llm_settings.as_ref().and_then(|l| l.model.as_deref()) {
            validate::model("llmSettings.model", model, &self.settings.models)?;
        }
        validate::seconds("timeout", req.timeout)?;
        validate::seconds("inactivityTimeout", req.inactivity_timeout)?;
        let record = update_session(&*self.records, caller, key, |s| {
            if s.phase().is_active() {
                return Err(ApiError::Conflict(format!(
                    "the session is {}: stop it before changing it",
                    s.phase()
                )));
            }
            let spec = &mut s.spec;
            if let Some(p) = &req.initial_prompt {
                spec.initial_prompt = Some(p.clone());
            }
            if let Some(d) = &req.display_name {
                spec.display_name = Some(d.trim().to_owned());
            }
            if let Some(llm) = &req.llm_settings {
                let current = spec.llm_settings.get_or_insert_with(Default::default);
                current.model = llm.model.clone().or(current.model.take());
                current.temperature = llm.temperature.or(current.temperature);
                current.max_tokens = llm.max_tokens.or(current.max_tokens);
            }
            if let Some(t) = req.timeout {
                spec.timeout = (t > 0).then_some(t);
            }
            if let Some(t) = req.inactivity_timeout {
                spec.inactivity_timeout = Some(t);
            }
            Ok(())
        })
        .await?;
        Ok(record.session)
    }

    /// Renames a session (allowed in any phase).
    pub async fn set_display_name(
        &self,
        caller: &Caller,
        key: &SessionKey,
        display_name: String,
    ) -> Result<AgenticSession, ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        validate_display_name(&display_name)?;
        let record = update_session(&*self.records, caller, key, |s| {
            s.spec.display_name = Some(display_name.trim().to_owned());
            Ok::<_, ApiError>(())
        })
        .await?;
        Ok(record.session)
    }

    /// Copies a session's spec into a new session (in this or another project), which starts
    /// like any new session.
    pub async fn clone_session(
        &self,
        caller: &Caller,
        key: &SessionKey,
        req: CloneSessionRequest,
    ) -> Result<CreateSessionResponse, ApiError> {
        self.require(caller, &key.project, Role::View).await?;
        let source = self.records.get_session(caller, key).await?.session;
        let target = req.target_project.unwrap_or_else(|| key.project.clone());
        validate::dns1123_label("targetProject", &target)?;
        self.require(caller, &target, Role::Edit).await?;
        self.records.get_project(caller, &target).await?;
        let new_name = match req.new_session_name {
            Some(n) => {
                validate::dns1123_label("newSessionName", &n)?;
                n
            }
            None => format!("session-{}", uuid::Uuid::new_v4()),
        };
        let spec = source.spec;
        let display = spec.display_name.clone().map(|d| format!("{d} (copy)"));
        let prompt = spec.initial_prompt.clone().unwrap_or_default();
        let req = request_like(spec, prompt, display, &key.name);
        self.create_named_session(caller, &target, new_name, req, Origin::default())
            .await
    }

    /// The session's finished turns, oldest first, each with the start of its answer and
    /// whether a fork can continue after it.
    pub async fn session_turns(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<Vec<SessionTurn>, ApiError> {
        let live = self.live_session(caller, key).await?;
        let turns = self.log.turns(live.log).await?;
        Ok(turns
            .into_iter()
            .enumerate()
            .map(|(i, t)| SessionTurn {
                turn: i as u32 + 1,
                forkable: fork_point(&t).is_some(),
                answer: t.answer,
                is_error: t.is_error,
            })
            .collect())
    }

    /// Forks a session after one of its turns (default: its last): a new session in the
    /// same project, with its repositories, model, workflow and settings, that starts from
    /// a copy of its workspace and continues its conversation as it stood after that turn
    /// with `prompt`. The source may be running: its files are copied as they are when the
    /// fork first runs.
    pub async fn fork_session(
        &self,
        caller: &Caller,
        key: &SessionKey,
        req: ForkSessionRequest,
    ) -> Result<CreateSessionResponse, ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        validate::fork_session(&req)?;
        let live = self.live_session(caller, key).await?;
        let turns = self.log.turns(live.log).await?;
        let finished = turns.len();
        let turn = req.turn.map_or(finished, |t| t as usize);
        if finished == 0 {
            return Err(
                Invalid::new("turn", "the session has no finished turn to fork after").into(),
            );
        }
        let point = turn
            .checked_sub(1)
            .and_then(|i| turns.get(i))
            .ok_or_else(|| {
                Invalid::new(
                    "turn",
                    format!(
                        "is {turn}; the session has {finished} finished turn{}",
                        plural(finished)
                    ),
                )
            })?;
        let Some((conversation_id, resume_at)) = fork_point(point) else {
            return Err(Invalid::new(
                "turn",
                format!("turn {turn} left no message of the agent's to continue after"),
            )
            .into());
        };
        let fork = ForkSource {
            session: key.name.clone(),
            turn: turn as u32,
            conversation_id,
            resume_at,
        };
        let spec = live.record.session.spec;
        let display = req.display_name.or_else(|| {
            let suffix = format!(" (fork after turn {turn})");
            let base: String = spec
                .display_name
                .as_deref()
                .unwrap_or(&key.name)
                .chars()
                .take(validate::MAX_DISPLAY_NAME.saturating_sub(suffix.chars().count()))
                .collect();
            Some(format!("{base}{suffix}"))
        });
        let create = request_like(spec, req.prompt, display, &key.name);
        let name = format!("session-{}", uuid::Uuid::new_v4());
        let origin = Origin {
            fork: Some(fork),
            ..Origin::default()
        };
        self.create_named_session(caller, &key.project, name, create, origin)
            .await
    }

    /// A session, its last activity included.
    pub async fn get_session(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<AgenticSession, ApiError> {
        self.require(caller, &key.project, Role::View).await?;
        let mut session = self.records.get_session(caller, key).await?.session;
        let activity = self
            .log
            .last_activity(vec![uid_of(&session).to_owned()])
            .await?;
        with_activity(&mut session, activity.values().next().copied());
        let live = self.runners.agent_states(&key.project);
        with_agent_status(&mut session, &live);
        Ok(session)
    }

    /// A page of a project's sessions, newest first.
    pub async fn list_sessions(
        &self,
        caller: &Caller,
        project: &str,
        search: Option<String>,
        offset: Option<u64>,
        limit: Option<u64>,
    ) -> Result<SessionList, ApiError> {
        self.require(caller, project, Role::View).await?;
        self.records.get_project(caller, project).await?;
        let page = page(search, offset, limit)?;
        let mut list = self.records.list_sessions(caller, project, &page).await?;
        let uids = list.items.iter().map(|s| uid_of(s).to_owned()).collect();
        let activity = self.log.last_activity(uids).await?;
        let live = self.runners.agent_states(project);
        for s in &mut list.items {
            let at = activity.get(uid_of(s)).copied();
            with_activity(s, at);
            with_agent_status(s, &live);
        }
        Ok(list)
    }

    /// The project's sessions whose agent waits for a person (it answered every message, or
    /// asked something), the one waiting longest first; `search` and paging as the list's.
    pub async fn waiting_sessions(
        &self,
        caller: &Caller,
        project: &str,
        search: Option<String>,
        offset: Option<u64>,
        limit: Option<u64>,
    ) -> Result<SessionList, ApiError> {
        let page = page(search, offset, limit)?;
        self.require(caller, project, Role::View).await?;
        self.records.get_project(caller, project).await?;
        let mut waiting: Vec<(Timestamp, String)> = self
            .runners
            .agent_states(project)
            .into_iter()
            .filter_map(|(name, state)| match state {
                AgentState::Idle(since) | AgentState::Asking(since) => Some((since, name)),
                AgentState::Working => None,
            })
            .collect();
        waiting.sort();
        let mut items = Vec::with_capacity(waiting.len());
        for (_, name) in waiting {
            match self
                .get_session(caller, &SessionKey::new(project, name))
                .await
            {
                // Still waiting once read (a message may have arrived meanwhile).
                Ok(s) if waits_for_a_person(&s) => items.push(s),
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(needle) = page.search.as_deref().map(str::to_lowercase)
            && !needle.trim().is_empty()
        {
            items.retain(|s| {
                [
                    s.metadata.name.as_deref(),
                    s.spec.display_name.as_deref(),
                    s.spec.initial_prompt.as_deref(),
                ]
                .into_iter()
                .flatten()
                .any(|t| t.to_lowercase().contains(&needle))
            });
        }
        let total = items.len() as u64;
        let items: Vec<AgenticSession> = items
            .into_iter()
            .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(page.limit).unwrap_or(usize::MAX))
            .collect();
        Ok(SessionList {
            has_more: page.offset.saturating_add(items.len() as u64) < total,
            items,
            total_count: total,
            offset: page.offset,
            limit: page.limit,
        })
    }

    /// The last events of a session's log before `before` (its latest, without), at most
    /// [`MAX_WINDOW`], with what a page showing only them needs to know: whether earlier
    /// events exist, and how many turns are open.
    pub async fn event_window(
        &self,
        caller: &Caller,
        key: &SessionKey,
        before: Option<u64>,
        limit: usize,
    ) -> Result<EventWindow, ApiError> {
        self.require(caller, &key.project, Role::View).await?;
        let live = self.live_session(caller, key).await?;
        let rows = self
            .log
            .events_before(
                live.log,
                before.unwrap_or(u64::MAX),
                limit.clamp(1, MAX_WINDOW),
            )
            .await?;
        let events = rows
            .iter()
            .map(crate::log::EventRow::decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EventWindow {
            more_before: events.first().is_some_and(|e| e.seq > 1),
            events,
            open_turns: live.counters.open_turns,
        })
    }

    /// The session's MCP servers as its agent last reported them (`None` before any run
    /// with MCP servers).
    pub async fn mcp_status(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<Option<model::protocol::McpStatus>, ApiError> {
        self.require(caller, &key.project, Role::View).await?;
        let live = self.live_session(caller, key).await?;
        Ok(self.log.last_mcp_status(live.log).await?)
    }

    /// Deletes a session: its runner and every process it started are ended, its log and
    /// workspace removed.
    pub async fn delete_session(&self, caller: &Caller, key: &SessionKey) -> Result<(), ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        let removed = self.records.delete_session(caller, key).await?;
        self.forget(key.clone(), &removed.uid).await
    }

    /// Removes what a deleted session leaves: its log (its viewers are told), and whatever
    /// the driver keeps of it.
    pub(super) async fn forget(&self, key: SessionKey, uid: &str) -> Result<(), ApiError> {
        self.driver.deleted(key);
        Ok(self.log.delete(uid).await?)
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

/// Sets `status.agentStatus` of a running session whose runner this server holds.
fn with_agent_status(
    session: &mut AgenticSession,
    live: &std::collections::HashMap<String, AgentState>,
) {
    if session.phase() != model::Phase::Running {
        return;
    }
    let name = session.metadata.name.as_deref().unwrap_or_default();
    if let Some(state) = live.get(name) {
        session
            .status
            .get_or_insert_with(Default::default)
            .agent_status = Some(state.status());
    }
}

/// Whether a session, as read, waits for a person.
fn waits_for_a_person(session: &AgenticSession) -> bool {
    matches!(
        session.status.as_ref().and_then(|s| s.agent_status),
        Some(AgentStatus::Idle | AgentStatus::WaitingInput)
    )
}

/// A request for a session like the one of `spec` (its repositories, model, workflow and
/// settings), with its own first message and name, and `parent` as its parent.
fn request_like(
    spec: AgenticSessionSpec,
    prompt: String,
    display_name: Option<String>,
    parent: &str,
) -> CreateSessionRequest {
    CreateSessionRequest {
        initial_prompt: prompt,
        display_name,
        llm_settings: spec.llm_settings,
        timeout: spec.timeout,
        inactivity_timeout: spec.inactivity_timeout,
        stop_on_run_finished: spec.stop_on_run_finished,
        repos: spec.repos,
        active_workflow: spec.active_workflow,
        permission_mode: spec.permission_mode,
        environment_variables: spec.environment_variables,
        mcp_servers: spec.mcp_servers,
        parent_session_id: Some(parent.to_owned()),
        ..Default::default()
    }
}

/// The conversation and entry a fork after this turn resumes at, when both are known and
/// are ids (a runner's report is never put on a command line unchecked).
fn fork_point(t: &TurnPoint) -> Option<(String, String)> {
    let id = |s: &Option<String>| s.clone().filter(|s| ForkSource::is_id(s));
    Some((id(&t.conversation)?, id(&t.resume_at)?))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
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
