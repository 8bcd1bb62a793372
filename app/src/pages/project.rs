//! `/projects/:project`: start a session, see the project's sessions.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};
use model::api::{CreateSessionResponse, SessionList};

use super::widgets::PhaseBadge;
use crate::error::AppError;

/// A page of the project's sessions, newest first.
#[server(prefix = "/rpc")]
pub async fn list_sessions(project: String, offset: u64) -> Result<SessionList, AppError> {
    let (backend, headers) = crate::backend::backend().await?;
    backend
        .list_sessions(&headers, &project, None, offset, 50)
        .await
}

/// Starts a session with a prompt.
#[server(prefix = "/rpc")]
pub async fn create_session(
    project: String,
    prompt: String,
) -> Result<CreateSessionResponse, AppError> {
    let (backend, headers) = crate::backend::backend().await?;
    let req = model::api::CreateSessionRequest {
        initial_prompt: prompt,
        ..Default::default()
    };
    backend.create_session(&headers, &project, req).await
}

/// The project page.
#[component]
pub fn ProjectPage() -> impl IntoView {
    let params = use_params_map();
    let project = move || params.read().get("project").unwrap_or_default();
    let create = ServerAction::<CreateSession>::new();
    let sessions = Resource::new(
        move || (project(), create.version().get()),
        |(p, _)| list_sessions(p, 0),
    );
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(created)) = create.value().get() {
            navigate(
                &format!("/projects/{}/sessions/{}", project(), created.name),
                Default::default(),
            );
        }
    });

    view! {
        <section class="panel new-session">
            <h1>"New session"</h1>
            <ActionForm action=create>
                <input type="hidden" name="project" prop:value=project/>
                <label for="prompt">"What should the agent do?"</label>
                <textarea id="prompt" name="prompt" rows="5" required
                    placeholder="Describe the task, e.g. “Add a health endpoint with a test”"></textarea>
                <div class="actions">
                    <button type="submit" class="primary" disabled=move || create.pending().get()>
                        {move || if create.pending().get() { "Starting…" } else { "Start session" }}
                    </button>
                </div>
            </ActionForm>
            {move || create.value().get().and_then(Result::err).map(|e| view! { <p class="error" role="alert">{e.message}</p> })}
        </section>
        <section class="panel">
            <h2>"Sessions"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match sessions.await {
                        Ok(list) => view! { <SessionTable list project=project()/> }.into_any(),
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn SessionTable(list: SessionList, project: String) -> impl IntoView {
    if list.items.is_empty() {
        return view! { <p class="muted">"No sessions yet."</p> }.into_any();
    }
    let rows = list
        .items
        .into_iter()
        .map(|s| {
            let name = s.metadata.name.clone().unwrap_or_default();
            let href = format!("/projects/{project}/sessions/{name}");
            let title = s.spec.display_name.clone().unwrap_or_else(|| name.clone());
            let model = s.model().unwrap_or_default().to_owned();
            let phase = s.phase();
            view! {
                <tr>
                    <td><a href=href>{title}</a></td>
                    <td><PhaseBadge phase=Signal::stored(phase)/></td>
                    <td class="muted">{model}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="sessions">
            <thead><tr><th>"Session"</th><th>"Phase"</th><th>"Model"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}
