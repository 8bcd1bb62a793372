//! `/projects/:project/new`: start a session. Every field is checked as it is typed with the
//! same rules the server applies; the server's own refusal, if any, is shown too.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use leptos_router::hooks::{use_navigate, use_params_map};
use model::api::{CreateSessionRequest, CreateSessionResponse};
use model::session::{LlmSettings, SessionRepo};
use model::validate;

use super::Models;
use super::widgets::{ErrorBanner, FieldError, action_error};
use crate::error::AppError;

/// Starts a session.
#[server(prefix = "/rpc", input = Json)]
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

/// The models a session may use.
#[server(prefix = "/rpc", input = Json)]
pub async fn list_models() -> Result<Models, AppError> {
    let (services, _caller) = crate::ssr::context().await?;
    Ok(Models {
        models: services.settings.models.clone(),
        default: services.settings.default_model.clone(),
    })
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

fn err<T>(r: Result<T, validate::Invalid>) -> Option<String> {
    r.err().map(|e| e.message)
}

fn seconds_error(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && t.parse::<i64>().map_or(true, |n| n < 0))
        .then(|| "must be a whole number of seconds, zero or more".into())
}

/// The new-session page.
#[component]
pub fn NewSessionPage() -> impl IntoView {
    let params = use_params_map();
    let project = Memo::new(move |_| params.read().get("project").unwrap_or_default());
    let models = Resource::new(|| (), |_| list_models());

    let prompt = RwSignal::new(String::new());
    let model = RwSignal::new(String::new());
    let repos: RwSignal<Vec<RepoRow>> = RwSignal::new(Vec::new());
    let envs: RwSignal<Vec<EnvRow>> = RwSignal::new(Vec::new());
    let timeout = RwSignal::new(String::new());
    let inactivity = RwSignal::new(String::new());
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
    let timeout_error = Signal::derive(move || seconds_error(&timeout.get()));
    let inactivity_error = Signal::derive(move || seconds_error(&inactivity.get()));
    let has_errors = move || {
        err(validate::message_text("Prompt", &prompt.get_untracked())).is_some()
            || timeout_error.get_untracked().is_some()
            || inactivity_error.get_untracked().is_some()
            || repos
                .get_untracked()
                .iter()
                .any(|r| repo_errors(r).0.is_some() || repo_errors(r).1.is_some())
            || envs.get_untracked().iter().any(|e| env_error(e).is_some())
    };

    let create = Action::new(move |req: &CreateSessionRequest| {
        create_session(project.get_untracked(), req.clone())
    });
    let server_error = action_error(create);
    let navigate = use_navigate();
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
        if has_errors() {
            return;
        }
        let secs = |s: String| s.trim().parse::<i64>().ok();
        let req = CreateSessionRequest {
            initial_prompt: prompt.get_untracked(),
            llm_settings: Some(model.get_untracked())
                .filter(|m| !m.is_empty())
                .map(|m| LlmSettings {
                    model: Some(m),
                    ..Default::default()
                }),
            repos: repos
                .get_untracked()
                .iter()
                .map(|r| SessionRepo {
                    url: r.url.get_untracked().trim().to_owned(),
                    branch: Some(r.branch.get_untracked().trim().to_owned())
                        .filter(|b| !b.is_empty()),
                    auto_push: Some(r.auto_push.get_untracked()),
                    provider: None,
                })
                .collect(),
            environment_variables: envs
                .get_untracked()
                .iter()
                .map(|e| {
                    (
                        e.name.get_untracked().trim().to_owned(),
                        e.value.get_untracked(),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
            timeout: secs(timeout.get_untracked()),
            inactivity_timeout: secs(inactivity.get_untracked()),
            ..Default::default()
        };
        create.dispatch(req);
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
            </details>

            <ErrorBanner error=server_error/>
            <div class="actions">
                <button type="submit" class="btn primary" disabled=move || create.pending().get()>
                    {move || if create.pending().get() { "Starting…" } else { "Start session" }}
                </button>
            </div>
        </form>
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
    err(validate::env_var_name("Name", e.name.get().trim()))
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
