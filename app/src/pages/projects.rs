//! `/projects`: find, create and delete projects.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use model::api::{CreateProjectRequest, Project, ProjectList, Role};
use model::validate;

use super::widgets::{ConfirmButton, ErrorBanner, FieldError, action_error, use_now};
use crate::error::AppError;
use crate::rpc::Json;

/// Projects per page.
pub const PAGE: u64 = 50;

/// A page of projects.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn list_projects(search: Option<String>, offset: u64) -> Result<ProjectList, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .list_projects(&caller, search, Some(offset), Some(PAGE))
        .await
        .map_err(crate::ssr::refusal)
}

/// Creates a project.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn create_project(req: CreateProjectRequest) -> Result<Project, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .create_project(&caller, req)
        .await
        .map_err(crate::ssr::refusal)
}

/// Deletes a project with its sessions.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn delete_project(name: String) -> Result<(), AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .delete_project(&caller, &name)
        .await
        .map_err(crate::ssr::refusal)
}

/// The projects page.
#[component]
pub fn ProjectsPage() -> impl IntoView {
    let me = super::access::use_whoami();
    let search = RwSignal::new(String::new());
    let changed = RwSignal::new(0u32);
    let list = Resource::new(
        move || (search.get(), changed.get()),
        |(s, _)| list_projects((!s.trim().is_empty()).then_some(s), 0),
    );
    let delete = Action::new(|name: &String| delete_project(name.clone()));
    Effect::new(move |_| {
        if delete.version().get() > 0 {
            changed.update(|c| *c += 1);
        }
    });
    let delete_error = action_error(delete);
    let now = use_now();

    view! {
        // What only the installation's owner may do (make projects, the owner's keys) is
        // offered to the owner only; this page's own module holds the check, not every page's.
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let me = me.await.ok();
                let owner = me.as_ref().is_none_or(|w| w.owner);
                let may_create = me.as_ref().is_none_or(|w| w.may_create_projects);
                view! {
                    <section class="page-head">
                        <h1>"Projects"</h1>
                        {owner.then(|| view! {
                            <nav class="page-actions"><a class="btn" href="/keys">"Access keys"</a></nav>
                        })}
                    </section>
                    {may_create.then(|| view! { <CreateProject/> })}
                }
            })}
        </Suspense>
        <section class="panel">
            <div class="toolbar">
                <input type="search" class="search" placeholder="Search projects" aria-label="Search projects"
                    prop:value=search on:input=move |ev| search.set(event_target_value(&ev))/>
            </div>
            <ErrorBanner error=delete_error/>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                        Ok(l) if l.items.is_empty() => view! { <p class="muted">"No project matches."</p> }.into_any(),
                        Ok(l) => view! {
                            <table class="list projects">
                                <thead><tr><th>"Project"</th><th>"Sessions"</th><th>"Created"</th><th></th></tr></thead>
                                <tbody>
                                    {l.items.into_iter().map(|p| {
                                        let name = p.name.clone();
                                        let question = format!("Delete {} and its {} sessions?", p.name, p.session_count);
                                        let created = p.creation_timestamp.clone();
                                        view! {
                                            <tr data-project=p.name.clone()>
                                                <td>
                                                    <a href=format!("/projects/{}", p.name)>{p.display_name.clone()}</a>
                                                    <span class="muted small">" "{p.name.clone()}</span>
                                                </td>
                                                <td>{p.session_count}</td>
                                                <td class="muted" title=p.creation_timestamp.clone()>{move || created_ago(now.get(), &created)}</td>
                                                <td class="actions">
                                                    {(p.user_role == Some(Role::Admin)).then(|| view! {
                                                        <ConfirmButton label="Delete" class="danger-outline" question
                                                            on_confirm=Callback::new(move |_| { delete.dispatch(name.clone()); })/>
                                                    })}
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

fn created_ago(now: Option<i64>, rfc3339: &str) -> String {
    let Some(now) = now else { return String::new() };
    // RFC 3339 from the server, parsed by the browser (no date library in the bundle).
    #[cfg(feature = "hydrate")]
    {
        let ms = js_sys::Date::parse(rfc3339);
        if ms.is_finite() {
            return crate::time::ago(now, ms as i64);
        }
    }
    let _ = (now, rfc3339);
    String::new()
}

#[component]
fn CreateProject() -> impl IntoView {
    let name = RwSignal::new(String::new());
    let display = RwSignal::new(String::new());
    let touched = RwSignal::new(false);
    let name_error = Signal::derive(move || {
        let n = name.get();
        (touched.get() || !n.is_empty())
            .then(|| validate::dns1123_label("Name", &n).err().map(|e| e.message))
            .flatten()
    });
    let create = Action::new(|req: &CreateProjectRequest| create_project(req.clone()));
    let server_error = action_error(create);
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(p)) = create.value().get() {
            navigate(&format!("/projects/{}", p.name), Default::default());
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        touched.set(true);
        if name_error.get_untracked().is_some()
            || validate::dns1123_label("name", &name.get_untracked()).is_err()
        {
            return;
        }
        let display_name = Some(display.get_untracked()).filter(|d| !d.trim().is_empty());
        create.dispatch(CreateProjectRequest {
            name: name.get_untracked(),
            display_name,
            description: None,
        });
    };
    view! {
        <section class="panel">
            <h2>"New project"</h2>
            <form class="inline-form" on:submit=submit novalidate>
                <div class="field">
                    <label for="project-name">"Name"</label>
                    <input id="project-name" type="text" autocomplete="off" placeholder="team-a"
                        aria-invalid=move || name_error.get().is_some().to_string()
                        prop:value=name on:input=move |ev| name.set(event_target_value(&ev))/>
                    <FieldError error=name_error/>
                    <p class="hint">"Lowercase letters, digits and '-' (it becomes a Kubernetes namespace)."</p>
                </div>
                <div class="field">
                    <label for="project-display">"Display name"</label>
                    <input id="project-display" type="text" placeholder="Team A"
                        prop:value=display on:input=move |ev| display.set(event_target_value(&ev))/>
                </div>
                <div class="actions">
                    <button type="submit" class="btn primary" disabled=move || create.pending().get()>"Create project"</button>
                </div>
            </form>
            <ErrorBanner error=server_error/>
        </section>
    }
}
