//! `/projects/:project`: the project's sessions, live.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};
use model::api::{Role, SessionSummaries, SessionSummary};
use model::session::AgentStatus;
use serde::{Deserialize, Serialize};

use super::widgets::{ConfirmButton, ErrorBanner, PhaseBadge, action_error, use_now};
use crate::error::AppError;
use crate::rpc::Json;
use crate::time;

/// Sessions per page.
pub const PAGE: u64 = 20;

/// What can be done to a session from a list or its page: every change the pages make to
/// one session goes through [`act_on_session`] (one server function, so the browser carries
/// one client for them all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAction {
    /// Stop it.
    Stop,
    /// Continue a finished session.
    Continue,
    /// Delete it.
    Delete,
    /// Copy it into a new session.
    Clone,
    /// Give it this display name.
    Rename(String),
    /// Switch its model (a running agent's next request uses it).
    Model(String),
}

/// A page of the project's sessions.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn list_sessions(
    project: String,
    search: Option<String>,
    offset: u64,
) -> Result<SessionSummaries, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let list = services
        .list_sessions(&caller, &project, search, Some(offset), Some(PAGE))
        .await
        .map_err(crate::ssr::refusal)?;
    Ok(SessionSummaries::from(&list))
}

/// The project's sessions waiting for a person, the one waiting longest first.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn waiting_sessions(project: String) -> Result<SessionSummaries, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let list = services
        .waiting_sessions(
            &caller,
            &project,
            None,
            None,
            Some(crate::pages::project::PAGE),
        )
        .await
        .map_err(crate::ssr::refusal)?;
    Ok(SessionSummaries::from(&list))
}

/// Acts on a session; returns the clone's name for [`SessionAction::Clone`], the model now
/// set for [`SessionAction::Model`], nothing otherwise.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn act_on_session(
    project: String,
    name: String,
    action: SessionAction,
) -> Result<Option<String>, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let key = model::session::SessionKey::new(project, name);
    ssr::act(&services, &caller, &key, action)
        .await
        .map_err(crate::ssr::refusal)
}

#[cfg(feature = "ssr")]
mod ssr {
    use model::api::CloneSessionRequest;
    use model::session::SessionKey;
    use platform::{ApiError, Caller, Services};

    use super::SessionAction;

    /// Does `action`; a clone's name or the model now set is returned.
    pub async fn act(
        s: &Services,
        caller: &Caller,
        key: &SessionKey,
        action: SessionAction,
    ) -> Result<Option<String>, ApiError> {
        match action {
            SessionAction::Stop => s.stop(caller, key).await.map(|_| None),
            SessionAction::Continue => s.start(caller, key).await.map(|_| None),
            SessionAction::Delete => s.delete_session(caller, key).await.map(|_| None),
            SessionAction::Clone => s
                .clone_session(caller, key, CloneSessionRequest::default())
                .await
                .map(|c| Some(c.name)),
            SessionAction::Rename(title) => {
                s.set_display_name(caller, key, title).await.map(|_| None)
            }
            SessionAction::Model(model) => s
                .set_model(caller, key, model)
                .await
                .map(|s| Some(s.model().unwrap_or_default().to_owned())),
        }
    }
}

/// The project page.
#[component]
pub fn ProjectPage() -> impl IntoView {
    let params = use_params_map();
    let project = Memo::new(move |_| params.read().get("project").unwrap_or_default());
    let search = RwSignal::new(String::new());
    let offset = RwSignal::new(0u64);
    let refresh = RwSignal::new(0u32);
    let sessions = Resource::new(
        move || (project.get(), search.get(), offset.get(), refresh.get()),
        |(p, s, o, _)| list_sessions(p, (!s.trim().is_empty()).then_some(s), o),
    );
    let waiting = Resource::new(
        move || (project.get(), refresh.get()),
        |(p, _)| waiting_sessions(p),
    );
    // Phases change on their own: refresh often while something runs, rarely otherwise.
    let any_active = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    {
        let ticks = RwSignal::new(0u32);
        if let Ok(handle) = set_interval_with_handle(
            move || {
                let t = ticks.get_untracked() + 1;
                ticks.set(t);
                if any_active.get_untracked() || t.is_multiple_of(8) {
                    refresh.update(|r| *r += 1);
                }
            },
            std::time::Duration::from_millis(1250),
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    let act = Action::new(move |(name, action): &(String, SessionAction)| {
        act_on_session(project.get_untracked(), name.clone(), action.clone())
    });
    let navigate = use_navigate();
    Effect::new(move |_| match act.value().get() {
        Some(Ok(Some(clone))) => navigate(
            &format!("/projects/{}/sessions/{clone}", project.get_untracked()),
            Default::default(),
        ),
        Some(Ok(None)) => refresh.update(|r| *r += 1),
        _ => {}
    });
    let act_error = action_error(act);
    let me = super::access::use_whoami_in(project);
    // Why the caller may not start or steer sessions here (a view role), once known.
    let why_not = move || async move {
        let p = project.get_untracked();
        me.await.ok().and_then(|w| w.refusal(&p, Role::Edit))
    };
    let admin = move || async move {
        let p = project.get_untracked();
        me.await
            .ok()
            .is_none_or(|w| w.refusal(&p, Role::Admin).is_none())
    };

    view! {
        <section class="page-head">
            <a class="muted" href="/projects">"← Projects"</a>
            <h1>{move || project.get()}</h1>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let p = project.get();
                    let why = why_not().await;
                    let admin = admin().await;
                    view! {
                        <nav class="page-actions">
                            {match why.clone() {
                                None => view! {
                                    <a class="btn primary" href=format!("/projects/{p}/new")>"New session"</a>
                                    <a class="btn" href=format!("/projects/{p}/settings")>"Settings"</a>
                                }.into_any(),
                                Some(w) => view! {
                                    <button type="button" class="btn primary" disabled title=w>"New session"</button>
                                }.into_any(),
                            }}
                            {admin.then(|| view! { <a class="btn" href=format!("/projects/{p}/sharing")>"Sharing"</a> })}
                        </nav>
                        {why.map(super::access::role_note)}
                    }
                })}
            </Suspense>
        </section>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let p = project.get_untracked();
                waiting.await.ok().filter(|w| !w.items.is_empty()).map(|w| view! {
                    <section class="panel waiting" aria-label="Waiting for you">
                        <h2>"Waiting for you"</h2>
                        <ul class="waiting-list">
                            {w.items.into_iter().map(|s| view! {
                                <li data-session=s.name.clone()>
                                    <a href=format!("/projects/{p}/sessions/{}", s.name)>{s.display_name.clone()}</a>
                                    <span class="muted">" answered; your turn"</span>
                                </li>
                            }).collect_view()}
                        </ul>
                    </section>
                })
            })}
        </Transition>
        <section class="panel">
            <div class="toolbar">
                <input type="search" class="search" placeholder="Search sessions (name, prompt)" aria-label="Search sessions"
                    prop:value=search on:input=move |ev| { offset.set(0); search.set(event_target_value(&ev)); }/>
            </div>
            <ErrorBanner error=act_error/>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match sessions.await {
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                        Ok(page) => {
                            any_active.set(page.items.iter().any(|s| !s.phase.is_terminal()));
                            let can_edit = why_not().await.is_none();
                            view! { <SessionTable page act offset can_edit/> }.into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn SessionTable(
    page: SessionSummaries,
    act: Action<(String, SessionAction), Result<Option<String>, AppError>>,
    offset: RwSignal<u64>,
    /// Whether the caller may act on sessions (edit); otherwise no action is offered.
    can_edit: bool,
) -> impl IntoView {
    if page.items.is_empty() {
        return view! { <p class="muted empty-list">"No sessions yet. Start one with “New session”."</p> }.into_any();
    }
    let (total, at, more) = (page.total_count, page.offset, page.has_more);
    let rows = page
        .items
        .into_iter()
        .map(|s| view! { <SessionRow s act can_edit/> })
        .collect_view();
    view! {
        <table class="list sessions">
            <thead>
                <tr><th>"Session"</th><th>"Phase"</th><th>"Model"</th><th>"Created"</th><th>"Duration"</th><th></th></tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
        <div class="pager">
            <span class="muted">{format!("{}–{} of {total}", at + 1, (at + PAGE).min(total))}</span>
            <button class="btn" disabled=at == 0 on:click=move |_| offset.update(|o| *o = o.saturating_sub(PAGE))>"Previous"</button>
            <button class="btn" disabled=!more on:click=move |_| offset.update(|o| *o += PAGE)>"Next"</button>
        </div>
    }
    .into_any()
}

#[component]
fn SessionRow(
    s: SessionSummary,
    act: Action<(String, SessionAction), Result<Option<String>, AppError>>,
    can_edit: bool,
) -> impl IntoView {
    let now = use_now();
    let href = format!("/projects/{}/sessions/{}", s.project, s.name);
    let (created, start, end) = (s.created_ms, s.start_ms, s.completion_ms);
    let active = !s.phase.is_terminal();
    let name = s.name.clone();
    let run = move |a: SessionAction| {
        let name = name.clone();
        move |_| {
            act.dispatch((name.clone(), a.clone()));
        }
    };
    let question = format!("Delete “{}” and its workspace?", s.display_name);
    let del = {
        let name = s.name.clone();
        move |_: ()| {
            act.dispatch((name.clone(), SessionAction::Delete));
        }
    };
    view! {
        <tr data-session=s.name.clone()>
            <td><a href=href>{s.display_name.clone()}</a></td>
            <td>
                <PhaseBadge phase=Signal::stored(s.phase)/>
                {(s.agent_status == Some(AgentStatus::Idle)).then(|| view! {
                    " " <span class="agent-state agent-waiting" data-agent="waiting">"waiting for you"</span>
                })}
            </td>
            <td class="muted">{s.model.clone()}</td>
            <td class="muted">{move || now.get().map(|n| time::ago(n, created)).unwrap_or_default()}</td>
            <td class="muted">
                {move || start.map(|st| time::duration(end.or(now.get()).unwrap_or(st) - st)).unwrap_or_default()}
            </td>
            <td class="actions">
                {can_edit.then(|| view! {
                    {active.then(|| view! { <button class="btn" on:click=run(SessionAction::Stop)>"Stop"</button> })}
                    {(!active).then(|| view! { <button class="btn" on:click=run(SessionAction::Continue)>"Continue"</button> })}
                    <button class="btn" on:click=run(SessionAction::Clone)>"Clone"</button>
                    <ConfirmButton label="Delete" class="danger-outline" question on_confirm=Callback::new(del)/>
                })}
            </td>
        </tr>
    }
    .into_any()
}
