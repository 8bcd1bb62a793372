//! The session page's fork panel: pick a finished turn and write the fork's first message;
//! the fork is a new session that starts from a copy of this one's files and continues its
//! conversation as it stood after that turn (this session goes on unchanged). The panel is
//! its own lazily loaded WASM chunk, fetched when a person first opens it.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use model::api::SessionTurn;

use crate::error::AppError;
use crate::pages::widgets::{ErrorBanner, action_error};
use crate::rpc::Json;

/// The session's finished turns, with whether each can be forked.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn session_turns(project: String, session: String) -> Result<Vec<SessionTurn>, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let key = model::session::SessionKey::new(project, session);
    services
        .session_turns(&caller, &key)
        .await
        .map_err(crate::ssr::refusal)
}

/// Forks the session after `turn` with `prompt`; the fork's name.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn fork_session(
    project: String,
    session: String,
    turn: u32,
    prompt: String,
) -> Result<String, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let key = model::session::SessionKey::new(project, session);
    let req = model::api::ForkSessionRequest {
        turn: Some(turn),
        prompt,
        display_name: None,
    };
    services
        .fork_session(&caller, &key, req)
        .await
        .map(|created| created.name)
        .map_err(crate::ssr::refusal)
}

/// The panel, loaded on demand (see the module's documentation).
#[lazy]
pub fn fork_panel(project: String, name: String) -> AnyView {
    view! { <ForkPanel project name/> }.into_any()
}

/// An option's text: the turn and the start of its answer.
fn label(t: &SessionTurn) -> String {
    let answer: String = t
        .answer
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(80)
        .collect();
    let failed = if t.is_error { " (failed)" } else { "" };
    format!("Turn {}{failed}: {answer}", t.turn)
}

#[component]
fn ForkPanel(project: String, name: String) -> impl IntoView {
    let turns = {
        let (project, name) = (project.clone(), name.clone());
        LocalResource::new(move || session_turns(project.clone(), name.clone()))
    };
    // The last forkable turn, until a person picks another.
    let picked = RwSignal::new(None::<u32>);
    let turn = move || {
        picked.get().or_else(|| {
            turns.with(|t| {
                t.as_ref()
                    .and_then(|t| t.as_ref().ok())
                    .and_then(|t| t.iter().rev().find(|t| t.forkable).map(|t| t.turn))
            })
        })
    };
    let prompt = RwSignal::new(String::new());
    let fork = {
        let project = project.clone();
        Action::new(move |(turn, prompt): &(u32, String)| {
            fork_session(project.clone(), name.clone(), *turn, prompt.clone())
        })
    };
    let error = action_error(fork);
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(fork)) = fork.value().get() {
            navigate(
                &format!("/projects/{project}/sessions/{fork}"),
                Default::default(),
            );
        }
    });
    let ready = move || {
        turn().is_some()
            && model::validate::message_text("prompt", &prompt.get()).is_ok()
            && !fork.pending().get()
    };
    view! {
        <section class="panel fork-panel" aria-label="Fork">
            <Suspense fallback=|| view! { <p class="muted">"Loading the turns…"</p> }>
                {move || Suspend::new(async move {
                    match turns.await {
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                        Ok(t) if t.is_empty() => view! {
                            <p class="muted">"No turn has finished yet: a fork continues after one."</p>
                        }.into_any(),
                        Ok(t) => view! {
                            <label for="fork-turn">"Continue after"</label>
                            <select id="fork-turn" on:change=move |ev| picked.set(event_target_value(&ev).parse().ok())>
                                {t.iter().map(|t| {
                                    let n = t.turn;
                                    view! {
                                        <option value=n.to_string() disabled=!t.forkable
                                            selected=move || turn() == Some(n)>{label(t)}</option>
                                    }
                                }).collect_view()}
                            </select>
                        }.into_any(),
                    }
                })}
            </Suspense>
            <label for="fork-prompt">"The fork's first message"</label>
            <textarea id="fork-prompt" rows="3" prop:value=move || prompt.get()
                on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
            <div class="actions">
                <button type="button" class="btn primary" disabled=move || !ready()
                    on:click=move |_| {
                        if let Some(t) = turn() {
                            fork.dispatch((t, prompt.get_untracked()));
                        }
                    }>"Fork"</button>
            </div>
            <p class="muted hint">"The fork starts from a copy of this session's files and its conversation up to that turn; this session goes on unchanged."</p>
            <ErrorBanner error/>
        </section>
    }
}
