//! `/projects/:project/attempts/:group`: the attempts of one prompt ("run N") side by side:
//! each one's phase, turns, cost and what it changed per repository (with its diff); keep
//! one (its work is pushed and proposed) and the others stop. Its own lazy chunk.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use model::Phase;
use model::api::{AttemptGroup, AttemptSummary, Role};

use super::widgets::{ErrorBanner, PhaseBadge, action_error};
use crate::error::AppError;
use crate::rpc::Json;

/// A group of attempts.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn get_attempts(project: String, group: String) -> Result<AttemptGroup, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .attempt_group(&caller, &project, &group)
        .await
        .map_err(crate::ssr::refusal)
}

/// Keeps one attempt of a group and stops the others.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn keep_attempt(
    project: String,
    group: String,
    session: String,
) -> Result<AttemptGroup, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .keep_attempt(
            &caller,
            &project,
            &group,
            model::api::KeepAttemptRequest { session },
        )
        .await
        .map_err(crate::ssr::refusal)
}

/// The comparison page.
#[component]
pub fn AttemptsPage() -> impl IntoView {
    let params = use_params_map();
    let project = Memo::new(move |_| params.read().get("project").unwrap_or_default());
    let group = Memo::new(move |_| params.read().get("group").unwrap_or_default());
    let refresh = RwSignal::new(0u32);
    let data = Resource::new(
        move || (project.get(), group.get(), refresh.get()),
        |(p, g, _)| get_attempts(p, g),
    );
    // Attempts finish on their own: look again every 1.5 s while one is active.
    let any_active = RwSignal::new(true);
    #[cfg(feature = "hydrate")]
    {
        if let Ok(handle) = set_interval_with_handle(
            move || {
                if any_active.get_untracked() {
                    refresh.update(|r| *r += 1);
                }
            },
            std::time::Duration::from_millis(1500),
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    let keep = Action::new(move |session: &String| {
        keep_attempt(
            project.get_untracked(),
            group.get_untracked(),
            session.clone(),
        )
    });
    let keep_error = action_error(keep);
    Effect::new(move |_| {
        if let Some(Ok(_)) = keep.value().get() {
            any_active.set(true);
            refresh.update(|r| *r += 1);
        }
    });
    let me = super::access::use_whoami_in(project);

    view! {
        <section class="page-head">
            <a class="muted" href=move || format!("/projects/{}", project.get())>{move || format!("← {}", project.get())}</a>
            <h1>"Attempts"</h1>
        </section>
        <ErrorBanner error=keep_error/>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let g = match data.await {
                    Ok(g) => g,
                    Err(e) => return view! { <p class="error banner" role="alert">{e.message}</p> }.into_any(),
                };
                // Look again while one runs, and while the kept one has not delivered yet
                // (its work still reported held).
                any_active.set(g.attempts.iter().any(|a| {
                    a.phase.is_active()
                        || (a.kept && a.phase != Phase::Failed && a.changes.iter().any(|c| c.held))
                }));
                let editor = me.await.ok().and_then(|w| w.refusal(&project.get_untracked(), Role::Edit)).is_none();
                let kept = g.kept.clone();
                let note = match &kept {
                    Some(k) => format!("{k} was kept: its work is pushed and proposed; the others were stopped, their work left unpushed."),
                    None => "Each attempt's work is held in its workspace. Keep the one you want: its work is pushed and a pull request opened; the others stop.".to_owned(),
                };
                view! {
                    <blockquote class="panel attempts-prompt">{g.prompt.clone()}</blockquote>
                    <p class="muted hint">{note}</p>
                    <div class="attempts" data-group=g.group.clone()>
                        {g.attempts.into_iter().map(|a| attempt_card(a, project.get_untracked(), kept.is_none() && editor, keep)).collect_view()}
                    </div>
                }.into_any()
            })}
        </Transition>
    }
}

/// One attempt's column.
fn attempt_card(
    a: AttemptSummary,
    project: String,
    keepable: bool,
    keep: Action<String, Result<AttemptGroup, AppError>>,
) -> impl IntoView {
    let can_keep = keepable && a.phase.is_terminal();
    let name = a.name.clone();
    let href = format!("/projects/{project}/sessions/{}", a.name);
    let phase = a.phase;
    view! {
        <article class="panel attempt" data-attempt=a.name.clone() data-kept=a.kept.to_string()>
            <header>
                <h2><a href=href>{format!("Attempt {}", a.index)}</a></h2>
                <PhaseBadge phase=Signal::derive(move || phase)/>
                {a.kept.then(|| view! { <span class="badge kept">"Kept"</span> })}
            </header>
            <dl class="attempt-figures">
                <dt>"Turns"</dt><dd class="turns">{a.turns}</dd>
                <dt>"Cost"</dt><dd class="cost">{format!("${:.4}", a.cost_usd)}</dd>
            </dl>
            {if a.changes.is_empty() {
                view! { <p class="muted">{if a.phase.is_terminal() { "No changes reported." } else { "Working…" }}</p> }.into_any()
            } else {
                a.changes.into_iter().map(|c| {
                    let html = crate::html::unified_diff(&c.diff);
                    view! {
                        <section class="attempt-repo" data-repo=c.repo.clone()>
                            <h3>{c.repo.clone()}" "<span class="muted">{format!("{} against {}", c.branch, c.base)}</span></h3>
                            <p class="changes-figures">
                                {format!("{} file{} changed, ", c.files, if c.files == 1 { "" } else { "s" })}
                                <span class="added">{format!("+{}", c.insertions)}</span>" "
                                <span class="removed">{format!("−{}", c.deletions)}</span>
                            </p>
                            <details>
                                <summary>"Diff"</summary>
                                <div inner_html=html></div>
                                {c.truncated.then(|| view! { <p class="muted">"The diff is cut at 256 KiB."</p> })}
                            </details>
                        </section>
                    }
                }).collect_view().into_any()
            }}
            {(!a.pull_requests.is_empty()).then(|| view! {
                <ul class="pull-requests">
                    // Only web addresses become links.
                    {a.pull_requests.into_iter().map(|u| if u.starts_with("https://") || u.starts_with("http://") {
                        view! { <li><a href=u.clone() rel="noopener noreferrer" target="_blank">{u.clone()}</a></li> }.into_any()
                    } else {
                        view! { <li>{u}</li> }.into_any()
                    }).collect_view()}
                </ul>
            })}
            {keepable.then(|| view! {
                <div class="actions">
                    <button type="button" class="btn primary" disabled=move || !can_keep || keep.pending().get()
                        title=if can_keep { "" } else { "It is still running" }
                        on:click=move |_| { keep.dispatch(name.clone()); }>
                        "Keep this one"
                    </button>
                </div>
            })}
        </article>
    }
}
