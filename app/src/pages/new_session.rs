//! `/projects/:project/new`: start a session. Every field is checked as it is typed with the
//! same rules the server applies; the server's own refusal, if any, is shown too.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};
use model::api::Role;
use model::api::{CreateSessionRequest, CreateSessionResponse};
use model::session::{LlmSettings, SessionRepo};
use model::validate;

use super::Models;
use super::widgets::{ErrorBanner, FieldError, action_error};
use crate::error::AppError;
use crate::rpc::Json;

/// Starts a session.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn create_session(
    project: String,
    req: CreateSessionRequest,
) -> Result<CreateSessionResponse, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .create_session(&caller, &project, req)
        .await
        .map_err(crate::ssr::refusal)
}

/// Starts several sessions from one request ("run N"), to compare and keep one.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn create_attempts(
    project: String,
    req: model::api::CreateAttemptsRequest,
) -> Result<model::api::AttemptsCreated, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .create_attempts(&caller, &project, req)
        .await
        .map_err(crate::ssr::refusal)
}

/// The models a session may use.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn list_models() -> Result<Models, AppError> {
    let (services, _caller) = crate::ssr::context().await?;
    Ok(Models {
        models: services.settings.models.clone(),
        default: services.settings.default_model.clone(),
    })
}

/// The workflow catalogue (`AMBIENT_WORKFLOW_CATALOGUE`).
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn list_workflows() -> Result<model::workflow::Catalogue, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    Ok(services.workflow_catalogue(&caller).await)
}

/// A repository row of the form.
#[derive(Clone, Copy)]
struct RepoRow {
    id: usize,
    url: RwSignal<String>,
    branch: RwSignal<String>,
    auto_push: RwSignal<bool>,
}

/// An environment variable row.
#[derive(Clone, Copy)]
struct EnvRow {
    id: usize,
    name: RwSignal<String>,
    value: RwSignal<String>,
}

/// What the form holds, as typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Form {
    /// The prompt.
    pub prompt: String,
    /// The model chosen (empty: the platform's default).
    pub model: String,
    /// Repository rows: URL, branch (blank: the remote's default), push.
    pub repos: Vec<(String, String, bool)>,
    /// Environment rows: name, value.
    pub env: Vec<(String, String)>,
    /// Timeout in seconds (blank: none).
    pub timeout: String,
    /// Inactivity timeout in seconds (blank: the project's default).
    pub inactivity: String,
    /// Batch: the session completes once the agent has answered.
    pub batch: bool,
    /// What the agent may do without asking (blank: autonomous).
    pub permission: String,
    /// The session's own MCP servers, as JSON (blank: the project's only).
    pub mcp: String,
    /// The workflow: its repository (blank: none), branch (blank: main) and folder.
    pub workflow: (String, String, String),
    /// How many sessions to start from the prompt (0 or 1: one; more: attempts to compare).
    pub attempts: u32,
}

/// The workflow of these fields (none when the URL is blank).
pub fn workflow_of(url: &str, branch: &str, path: &str) -> Option<model::session::ActiveWorkflow> {
    let set = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    Some(model::session::ActiveWorkflow {
        git_url: set(url)?,
        branch: set(branch),
        path: set(path),
    })
}

impl Form {
    /// The request the form describes, checked with the server's own rules (`models`: the
    /// models a session may choose).
    pub fn request(&self, models: &[String]) -> Result<CreateSessionRequest, validate::Invalid> {
        let req = CreateSessionRequest {
            initial_prompt: self.prompt.clone(),
            llm_settings: Some(self.model.clone())
                .filter(|m| !m.is_empty())
                .map(|m| LlmSettings {
                    model: Some(m),
                    ..Default::default()
                }),
            repos: self
                .repos
                .iter()
                .map(|(url, branch, push)| SessionRepo {
                    url: url.trim().to_owned(),
                    branch: Some(branch.trim().to_owned()).filter(|b| !b.is_empty()),
                    auto_push: Some(*push),
                    provider: None,
                })
                .collect(),
            environment_variables: self
                .env
                .iter()
                .map(|(name, value)| (name.trim().to_owned(), value.clone()))
                .collect::<BTreeMap<_, _>>(),
            timeout: validate::seconds_text("timeout", &self.timeout)?,
            inactivity_timeout: validate::seconds_text("inactivityTimeout", &self.inactivity)?,
            stop_on_run_finished: self.batch.then_some(true),
            permission_mode: match self.permission.as_str() {
                "" => None,
                m => Some(
                    m.parse()
                        .map_err(|why: String| validate::Invalid::new("permissionMode", why))?,
                ),
            },
            mcp_servers: model::mcp::parse_config(&self.mcp)
                .map_err(|why| validate::Invalid::new("mcpServers", why))?,
            active_workflow: workflow_of(&self.workflow.0, &self.workflow.1, &self.workflow.2),
            ..Default::default()
        };
        validate::create_session(&req, models)?;
        Ok(req)
    }

    /// What the form starts: one session, or attempts (each a batch session) to compare.
    pub fn submission(&self, models: &[String]) -> Result<Submission, validate::Invalid> {
        let req = self.request(models)?;
        Ok(match self.attempts {
            0 | 1 => Submission::One(req),
            n => Submission::Attempts(model::api::CreateAttemptsRequest {
                attempts: n,
                session: CreateSessionRequest {
                    stop_on_run_finished: Some(true),
                    ..req
                },
            }),
        })
    }
}

/// What the new-session form sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Submission {
    /// One session.
    One(CreateSessionRequest),
    /// Several from one prompt ("run N").
    Attempts(model::api::CreateAttemptsRequest),
}

fn err<T>(r: Result<T, validate::Invalid>) -> Option<String> {
    r.err().map(|e| e.message)
}

/// The new-session page.
#[component]
pub fn NewSessionPage() -> impl IntoView {
    let params = use_params_map();
    let project = Memo::new(move |_| params.read().get("project").unwrap_or_default());
    let models = Resource::new(|| (), |_| list_models());
    let me = super::access::use_whoami_in(project);

    let prompt = RwSignal::new(String::new());
    let model = RwSignal::new(String::new());
    let repos: RwSignal<Vec<RepoRow>> = RwSignal::new(Vec::new());
    let envs: RwSignal<Vec<EnvRow>> = RwSignal::new(Vec::new());
    let timeout = RwSignal::new(String::new());
    let inactivity = RwSignal::new(String::new());
    let batch = RwSignal::new(false);
    let attempts = RwSignal::new(1u32);
    let permission = RwSignal::new(String::new());
    let mcp = RwSignal::new(String::new());
    let workflow = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
    );
    let next_id = StoredValue::new(0usize);
    let submitted = RwSignal::new(false);
    let id = move || {
        let i = next_id.get_value() + 1;
        next_id.set_value(i);
        i
    };

    let prompt_error = Signal::derive(move || {
        (submitted.get() || !prompt.get().is_empty())
            .then(|| err(validate::message_text("Prompt", &prompt.get())))
            .flatten()
    });
    let timeout_error = Signal::derive(move || err(validate::seconds_text("", &timeout.get())));
    let inactivity_error =
        Signal::derive(move || err(validate::seconds_text("", &inactivity.get())));
    let mcp_error = Signal::derive(move || {
        model::mcp::parse_config(&mcp.get())
            .map_err(|why| validate::Invalid::new("", why))
            .and_then(|m| match m {
                Some(m) => validate::mcp_servers("", &m, false),
                None => Ok(()),
            })
            .err()
            .map(|e| match e.field.trim_start_matches('.') {
                "" => e.message,
                at => format!("{at}: {}", e.message),
            })
    });
    let allowed = Signal::derive(move || {
        models
            .get()
            .and_then(Result::ok)
            .map(|m| m.models)
            .unwrap_or_default()
    });
    let form = move || Form {
        prompt: prompt.get_untracked(),
        model: model.get_untracked(),
        repos: repos
            .get_untracked()
            .iter()
            .map(|r| {
                (
                    r.url.get_untracked(),
                    r.branch.get_untracked(),
                    r.auto_push.get_untracked(),
                )
            })
            .collect(),
        env: envs
            .get_untracked()
            .iter()
            .map(|e| (e.name.get_untracked(), e.value.get_untracked()))
            .collect(),
        timeout: timeout.get_untracked(),
        inactivity: inactivity.get_untracked(),
        batch: batch.get_untracked(),
        permission: permission.get_untracked(),
        mcp: mcp.get_untracked(),
        workflow: (
            workflow.0.get_untracked(),
            workflow.1.get_untracked(),
            workflow.2.get_untracked(),
        ),
        attempts: attempts.get_untracked(),
    };

    let create = Action::new(move |req: &CreateSessionRequest| {
        create_session(project.get_untracked(), req.clone())
    });
    let create_many = Action::new(move |req: &model::api::CreateAttemptsRequest| {
        create_attempts(project.get_untracked(), req.clone())
    });
    let server_error = action_error(create);
    let many_error = action_error(create_many);
    let navigate = use_navigate();
    let to_group = navigate.clone();
    Effect::new(move |_| {
        if let Some(Ok(created)) = create_many.value().get() {
            to_group(
                &format!(
                    "/projects/{}/attempts/{}",
                    project.get_untracked(),
                    created.group
                ),
                Default::default(),
            );
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(created)) = create.value().get() {
            navigate(
                &format!(
                    "/projects/{}/sessions/{}",
                    project.get_untracked(),
                    created.name
                ),
                Default::default(),
            );
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        submitted.set(true);
        // Field errors are already shown next to their fields.
        match form().submission(&allowed.get_untracked()) {
            Ok(Submission::One(req)) => {
                create.dispatch(req);
            }
            Ok(Submission::Attempts(req)) => {
                create_many.dispatch(req);
            }
            Err(_) => {}
        }
    };

    view! {
        <section class="page-head">
            <a class="muted" href=move || format!("/projects/{}", project.get())>{move || format!("← {}", project.get())}</a>
            <h1>"New session"</h1>
        </section>
        <form class="panel new-session" on:submit=submit novalidate>
            <div class="field">
                <label for="prompt">"What should the agent do?"</label>
                <textarea id="prompt" rows="6" placeholder="Describe the task, e.g. “Add a health endpoint with a test”"
                    aria-invalid=move || prompt_error.get().is_some().to_string()
                    prop:value=prompt on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
                <FieldError error=prompt_error/>
            </div>

            <fieldset class="field">
                <legend>"Repositories"</legend>
                <p class="hint">"The first is the agent's working directory. With “push”, the work goes to a branch "
                    <code>"ambient/<session>"</code>" and a pull request when the session ends."</p>
                <For each=move || repos.get() key=|r| r.id let:row>
                    <RepoFields row on_remove=Callback::new(move |_| repos.update(|rs| rs.retain(|r| r.id != row.id)))/>
                </For>
                <button type="button" class="btn" on:click=move |_| {
                    let row = RepoRow { id: id(), url: RwSignal::new(String::new()), branch: RwSignal::new(String::new()), auto_push: RwSignal::new(false) };
                    repos.update(|rs| rs.push(row));
                }>"Add repository"</button>
            </fieldset>

            <fieldset class="field">
                <legend>"Workflow"</legend>
                <WorkflowFields url=workflow.0 branch=workflow.1 path=workflow.2/>
            </fieldset>

            <div class="field">
                <label for="model">"Model"</label>
                <Suspense fallback=|| view! { <select id="model" disabled><option>"…"</option></select> }>
                    {move || Suspend::new(async move {
                        let m = models.await.unwrap_or(Models { models: Vec::new(), default: String::new() });
                        if model.get_untracked().is_empty() {
                            model.set(m.default.clone());
                        }
                        view! {
                            <select id="model" on:change=move |ev| model.set(event_target_value(&ev))>
                                {m.models.into_iter().map(|name| {
                                    let selected = name == m.default;
                                    view! { <option value=name.clone() selected=selected>{name.clone()}</option> }
                                }).collect_view()}
                            </select>
                        }
                    })}
                </Suspense>
            </div>
            <div class="field">
                <label for="permission">"Permissions"</label>
                <select id="permission" on:change=move |ev| permission.set(event_target_value(&ev))>
                    <option value="" selected>"Work on its own, inside its sandbox"</option>
                    <option value="ask">"Ask me before each command and edit"</option>
                    <option value="plan">"Plan first; I approve the plan"</option>
                </select>
            </div>
            <div class="field check">
                <label>
                    <input type="checkbox" prop:checked=batch on:change=move |ev| batch.set(event_target_checked(&ev))/>
                    " Finish when the agent has answered"
                </label>
                <p class="muted hint">"Otherwise the session stays running, its agent ready for your next message, until it has been idle for the inactivity timeout."</p>
            </div>
            <div class="field">
                <label for="attempts">"Attempts"</label>
                <select id="attempts" on:change=move |ev| attempts.set(event_target_value(&ev).parse().unwrap_or(1))>
                    <option value="1" selected>"One session"</option>
                    {(2..=model::api::MAX_ATTEMPTS).map(|n| view! { <option value=n.to_string()>{format!("Run {n} and keep the best")}</option> }).collect_view()}
                </select>
                <p class="muted hint">"Several attempts at the same prompt, each finishing when its agent has answered; compare their work side by side and keep one: only its work is pushed."</p>
            </div>

            <details class="advanced">
                <summary>"Advanced options"</summary>
                <div class="field">
                    <label for="timeout">"Timeout (seconds, empty for none)"</label>
                    <input id="timeout" type="text" inputmode="numeric" prop:value=timeout on:input=move |ev| timeout.set(event_target_value(&ev))/>
                    <FieldError error=timeout_error/>
                </div>
                <div class="field">
                    <label for="inactivity">"Inactivity timeout (seconds; empty: the project's default, 0: never)"</label>
                    <input id="inactivity" type="text" inputmode="numeric" prop:value=inactivity on:input=move |ev| inactivity.set(event_target_value(&ev))/>
                    <FieldError error=inactivity_error/>
                </div>
                <fieldset class="field">
                    <legend>"Environment variables"</legend>
                    <For each=move || envs.get() key=|e| e.id let:row>
                        <EnvFields row on_remove=Callback::new(move |_| envs.update(|es| es.retain(|e| e.id != row.id)))/>
                    </For>
                    <button type="button" class="btn" on:click=move |_| {
                        let row = EnvRow { id: id(), name: RwSignal::new(String::new()), value: RwSignal::new(String::new()) };
                        envs.update(|es| es.push(row));
                    }>"Add variable"</button>
                </fieldset>
                <div class="field">
                    <label for="mcp">"MCP servers of this session (JSON, as in Claude Code's .mcp.json)"</label>
                    <textarea id="mcp" rows="4" spellcheck="false" class="mono"
                        placeholder=r#"{"mcpServers": {"docs": {"type": "http", "url": "https://…"}}}"#
                        aria-invalid=move || mcp_error.get().is_some().to_string()
                        prop:value=mcp on:input=move |ev| mcp.set(event_target_value(&ev))></textarea>
                    <p class="muted hint">"Added to the project's servers. Credentials belong in the project's servers (Settings)."</p>
                    <FieldError error=mcp_error/>
                </div>
            </details>

            <ErrorBanner error=server_error/>
            <ErrorBanner error=many_error/>
            // Starting a session needs edit: a view role is told so, not offered the button.
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let why = me.await.ok().and_then(|w| w.refusal(&project.get_untracked(), Role::Edit));
                    let blocked = why.is_some();
                    view! {
                        {why.map(super::access::role_note)}
                        <div class="actions">
                            <button type="submit" class="btn primary" disabled=move || blocked || create.pending().get() || create_many.pending().get()>
                                {move || if create.pending().get() || create_many.pending().get() {
                                    "Starting…"
                                } else if attempts.get() > 1 {
                                    "Start attempts"
                                } else {
                                    "Start session"
                                }}
                            </button>
                        </div>
                    }
                })}
            </Suspense>
        </form>
    }
}

/// A workflow's fields: one of the catalogue's, or any repository (URL, branch, folder),
/// checked as typed. Shared by the new-session form and the session page's switch.
#[component]
pub fn WorkflowFields(
    url: RwSignal<String>,
    branch: RwSignal<String>,
    path: RwSignal<String>,
) -> impl IntoView {
    let catalogue = Resource::new(|| (), |_| list_workflows());
    let error = Signal::derive(move || {
        workflow_of(&url.get(), &branch.get(), &path.get())
            .and_then(|wf| err(validate::active_workflow("workflow", &wf)))
    });
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let c = catalogue.await.unwrap_or_default();
                let problem = c.problem.clone();
                let list = c.workflows.clone();
                view! {
                    <label for="workflow-pick">"From the catalogue"</label>
                    <select id="workflow-pick" on:change=move |ev| {
                        let chosen = event_target_value(&ev).parse::<usize>().ok().and_then(|i| list.get(i).cloned());
                        let (u, b, p) = chosen.map(|w| (w.git_url, w.branch, w.path)).unwrap_or_default();
                        url.set(u);
                        branch.set(b);
                        path.set(p);
                    }>
                        <option value="">"None, or a repository below"</option>
                        {c.workflows.into_iter().enumerate().map(|(i, w)| view! {
                            <option value=i.to_string() title=w.description>{w.name}</option>
                        }).collect_view()}
                    </select>
                    {problem.map(|p| view! { <p class="muted hint">{format!("The catalogue could not be read: {p}")}</p> })}
                }
            })}
        </Suspense>
        <div class="workflow-row">
            <div class="field grow">
                <label for="workflow-url">"Repository"</label>
                <input id="workflow-url" type="text" placeholder="https://github.com/org/workflows.git"
                    prop:value=url on:input=move |ev| url.set(event_target_value(&ev))/>
            </div>
            <div class="field">
                <label for="workflow-branch">"Branch"</label>
                <input id="workflow-branch" type="text" placeholder="main"
                    prop:value=branch on:input=move |ev| branch.set(event_target_value(&ev))/>
            </div>
            <div class="field">
                <label for="workflow-path">"Folder"</label>
                <input id="workflow-path" type="text" placeholder="the root"
                    prop:value=path on:input=move |ev| path.set(event_target_value(&ev))/>
            </div>
        </div>
        <FieldError error/>
    }
}

fn repo_errors(r: &RepoRow) -> (Option<String>, Option<String>) {
    let url = r.url.get();
    let branch = r.branch.get();
    let url_error = err(validate::repo_url("URL", url.trim()));
    let branch_error = (!branch.trim().is_empty())
        .then(|| err(validate::branch_name("Branch", branch.trim())))
        .flatten();
    (url_error, branch_error)
}

fn env_error(e: &EnvRow) -> Option<String> {
    err(validate::env_var(e.name.get().trim(), &e.value.get()))
}

#[component]
fn RepoFields(row: RepoRow, on_remove: Callback<()>) -> impl IntoView {
    let url_error = Signal::derive(move || {
        (!row.url.get().is_empty())
            .then(|| repo_errors(&row).0)
            .flatten()
    });
    let branch_error = Signal::derive(move || repo_errors(&row).1);
    let n = row.id;
    view! {
        <div class="repo-row" data-row=n>
            <div class="field grow">
                <label for=format!("repo-url-{n}")>"URL"</label>
                <input id=format!("repo-url-{n}") type="text" placeholder="https://github.com/org/repo.git"
                    aria-invalid=move || url_error.get().is_some().to_string()
                    prop:value=row.url on:input=move |ev| row.url.set(event_target_value(&ev))/>
                <FieldError error=url_error/>
            </div>
            <div class="field">
                <label for=format!("repo-branch-{n}")>"Branch"</label>
                <input id=format!("repo-branch-{n}") type="text" placeholder="default"
                    aria-invalid=move || branch_error.get().is_some().to_string()
                    prop:value=row.branch on:input=move |ev| row.branch.set(event_target_value(&ev))/>
                <FieldError error=branch_error/>
            </div>
            <label class="check">
                <input type="checkbox" prop:checked=row.auto_push on:change=move |ev| row.auto_push.set(event_target_checked(&ev))/>
                "push"
            </label>
            <button type="button" class="btn" aria-label="Remove repository" on:click=move |_| on_remove.run(())>"Remove"</button>
        </div>
    }
}

#[component]
fn EnvFields(row: EnvRow, on_remove: Callback<()>) -> impl IntoView {
    let name_error = Signal::derive(move || {
        (!row.name.get().is_empty())
            .then(|| env_error(&row))
            .flatten()
    });
    let n = row.id;
    view! {
        <div class="env-row" data-row=n>
            <div class="field">
                <label for=format!("env-name-{n}")>"Name"</label>
                <input id=format!("env-name-{n}") type="text" placeholder="LOG_LEVEL"
                    aria-invalid=move || name_error.get().is_some().to_string()
                    prop:value=row.name on:input=move |ev| row.name.set(event_target_value(&ev))/>
                <FieldError error=name_error/>
            </div>
            <div class="field grow">
                <label for=format!("env-value-{n}")>"Value"</label>
                <input id=format!("env-value-{n}") type="text" prop:value=row.value on:input=move |ev| row.value.set(event_target_value(&ev))/>
            </div>
            <button type="button" class="btn" aria-label="Remove variable" on:click=move |_| on_remove.run(())>"Remove"</button>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> Form {
        Form {
            prompt: "fix it".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_filled_form_is_the_request_the_server_takes() {
        let models = vec!["claude-sonnet-4-6".to_owned()];
        let f = Form {
            model: "claude-sonnet-4-6".into(),
            repos: vec![(" https://github.com/o/r.git ".into(), " ".into(), true)],
            env: vec![(" LOG_LEVEL".into(), "debug".into())],
            timeout: "600".into(),
            inactivity: "0".into(),
            batch: true,
            ..form()
        };
        let req = f.request(&models).unwrap();
        assert_eq!(req.repos[0].url, "https://github.com/o/r.git");
        assert_eq!(
            (req.repos[0].branch.as_deref(), req.repos[0].auto_push),
            (None, Some(true))
        );
        assert_eq!(req.environment_variables["LOG_LEVEL"], "debug");
        assert_eq!((req.timeout, req.inactivity_timeout), (Some(600), Some(0)));
        assert_eq!(req.stop_on_run_finished, Some(true));
        let ask = Form {
            permission: "ask".into(),
            ..form()
        };
        assert_eq!(
            ask.request(&models).unwrap().permission_mode,
            Some(model::session::PermissionMode::Ask)
        );
        assert_eq!(
            req.llm_settings.unwrap().model.as_deref(),
            Some("claude-sonnet-4-6")
        );
        // Blank optional fields are left to the server's defaults.
        let plain = form().request(&models).unwrap();
        assert_eq!((plain.timeout, plain.llm_settings), (None, None));
        // Interactive unless asked: the server's default, not a `false` of the form's.
        assert_eq!(plain.stop_on_run_finished, None);
    }

    #[test]
    fn several_attempts_are_batch_sessions_of_the_same_request() {
        let models = vec!["claude-sonnet-4-6".to_owned()];
        assert!(matches!(form().submission(&models), Ok(Submission::One(_))));
        let three = Form {
            attempts: 3,
            ..form()
        };
        match three.submission(&models).unwrap() {
            Submission::Attempts(req) => {
                assert_eq!(req.attempts, 3);
                assert_eq!(req.session.initial_prompt, "fix it");
                assert_eq!(req.session.stop_on_run_finished, Some(true));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let field = |f: Form| f.request(&[]).unwrap_err().field;
        assert_eq!(
            field(Form {
                prompt: " ".into(),
                ..form()
            }),
            "initialPrompt"
        );
        assert_eq!(
            field(Form {
                timeout: "-5".into(),
                ..form()
            }),
            "timeout"
        );
        assert_eq!(
            field(Form {
                inactivity: "ten".into(),
                ..form()
            }),
            "inactivityTimeout"
        );
        assert_eq!(
            field(Form {
                mcp: "{".into(),
                ..form()
            }),
            "mcpServers"
        );
        assert_eq!(
            field(Form {
                mcp: r#"{"mcpServers": {"t": {"type": "http", "url": "https://x/", "headers": {"A": "${MCP_T}"}}}}"#.into(),
                ..form()
            }),
            "mcpServers.custom.t.headers.A"
        );
        let with_mcp = Form {
            mcp: r#"{"mcpServers": {"docs": {"command": "npx", "args": ["docs-mcp"]}}}"#.into(),
            ..form()
        };
        assert_eq!(
            with_mcp.request(&[]).unwrap().mcp_servers.unwrap().custom["docs"]["command"],
            "npx"
        );
        assert_eq!(
            field(Form {
                repos: vec![("nope".into(), String::new(), false)],
                ..form()
            }),
            "repos[0].url"
        );
        assert_eq!(
            field(Form {
                env: vec![("1BAD".into(), String::new())],
                ..form()
            }),
            "environmentVariables.1BAD"
        );
        assert_eq!(
            field(Form {
                model: "gpt".into(),
                ..form()
            }),
            "llmSettings.model"
        );
        assert_eq!(
            field(Form {
                workflow: (
                    "https://x.example/o/w.git".into(),
                    String::new(),
                    "../up".into()
                ),
                ..form()
            }),
            "activeWorkflow.path"
        );
        assert_eq!(
            field(Form {
                workflow: ("nope".into(), String::new(), String::new()),
                ..form()
            }),
            "activeWorkflow.gitUrl"
        );
        let with_workflow = Form {
            workflow: (
                " https://x.example/o/w.git ".into(),
                " ".into(),
                "flows/bugfix".into(),
            ),
            ..form()
        };
        assert_eq!(
            with_workflow.request(&[]).unwrap().active_workflow,
            Some(model::session::ActiveWorkflow {
                git_url: "https://x.example/o/w.git".into(),
                branch: None,
                path: Some("flows/bugfix".into()),
            })
        );
        assert_eq!(form().request(&[]).unwrap().active_workflow, None);
    }
}
