//! `/projects/:project/sessions/:session`: the live session.
//!
//! The first paint is rendered on the server with the latest events (at most [`WINDOW`]: a
//! session of any length opens at once); once hydrated, the page opens at the bottom,
//! follows the session's WebSocket from the last event it has while the reader is at the
//! bottom (otherwise a "jump to latest" control appears), loads earlier events when the
//! reader scrolls to the top, shows when it is reconnecting, and sends follow-ups,
//! interrupts and stops over the socket.

mod entries;
mod files;
mod fork;
mod workflow;

use leptos::either::Either;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};
use model::Phase;
use model::api::SessionSummary;
use model::protocol::StoredEvent;
use serde::{Deserialize, Serialize};

use super::project::{SessionAction, act_on_session};
use super::widgets::{ConfirmButton, ErrorBanner, PhaseBadge, action_error, use_now};
use crate::error::AppError;
use crate::rpc::Json;
use crate::time;
use crate::transcript::Transcript;

/// Events a session page opens with (the latest), and loads at a time when scrolled up.
pub const WINDOW: usize = 200;

/// A session and its latest events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionView {
    /// The session.
    pub session: SessionSummary,
    /// Its latest events, oldest first.
    pub events: Vec<StoredEvent>,
    /// Whether earlier events exist.
    pub more_before: bool,
    /// User messages waiting for their turn's result (over the whole log).
    pub open_turns: u32,
    /// Why the caller may not act on the session (start, steer, stop, rename, delete): a
    /// view role; `None` when they may.
    pub view_only: Option<String>,
    /// The models the caller may switch the session to (none for a view role).
    pub models: Vec<String>,
    /// Its MCP servers as last reported (their event may be before those loaded).
    pub mcp: Option<model::protocol::McpStatus>,
    /// Its workflow as its runner last found it (its commands), while it is its workflow.
    pub workflow: Option<model::workflow::WorkflowState>,
    /// Its workflow as set (what a switch starts from).
    pub active_workflow: Option<model::session::ActiveWorkflow>,
}

/// Loads a session and its latest events, or (`before`) the events before those a page has.
///
/// One server function for both, so that the browser carries one client and one decoder of
/// [`SessionView`]. A page of earlier events carries the session as it is now but no MCP or
/// workflow state and no models: only its `events` and `more_before` are read.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn load_session(
    project: String,
    session: String,
    before: Option<u64>,
) -> Result<SessionView, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let key = model::session::SessionKey::new(project, session);
    let s = services.get_session(&caller, &key).await;
    let window = services.event_window(&caller, &key, before, WINDOW).await;
    let window = window.map_err(crate::ssr::refusal)?;
    let s = s.map_err(crate::ssr::refusal)?;
    let view_only = services
        .require(&caller, &key.project, model::api::Role::Edit)
        .await
        .err()
        .map(|e| e.to_string());
    let (mut mcp, mut workflow, mut models) = (None, None, Vec::new());
    if before.is_none() {
        mcp = services
            .mcp_status(&caller, &key)
            .await
            .map_err(crate::ssr::refusal)?;
        workflow = services
            .workflow_metadata(&caller, &key)
            .await
            .map_err(crate::ssr::refusal)?;
        if view_only.is_none() {
            models = services.settings.models.clone();
        }
    }
    Ok(SessionView {
        mcp,
        workflow,
        active_workflow: s.spec.active_workflow.clone(),
        models,
        view_only,
        session: SessionSummary::of(&s),
        events: window.events,
        more_before: window.more_before,
        open_turns: window.open_turns,
    })
}

/// Answers what the session's agent asks: a question (`answers`: question → answer; none
/// declines), or a tool call or plan (allowed, for the session with `always`, or denied).
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn answer_ask(
    project: String,
    session: String,
    req: model::api::AnswerRequest,
) -> Result<(), AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let key = model::session::SessionKey::new(project, session);
    services
        .answer(&caller, &key, req)
        .await
        .map(drop)
        .map_err(crate::ssr::refusal)
}

/// The session page.
#[component]
pub fn SessionPage() -> impl IntoView {
    let params = use_params_map();
    let key = move || {
        let p = params.read();
        (
            p.get("project").unwrap_or_default(),
            p.get("session").unwrap_or_default(),
        )
    };
    let data = Resource::new(key, |(p, s)| load_session(p, s, None));
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => Either::Left(view! { <SessionBody view/> }),
                    Err(e) => Either::Right(view! {
                        <section class="page-head"><a class="muted" href="/projects">"← Projects"</a></section>
                        <p class="error banner" role="alert">{e.message}</p>
                    }),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SessionBody(view: SessionView) -> impl IntoView {
    let summary = view.session;
    let (project, name) = (summary.project.clone(), summary.name.clone());
    let transcript = RwSignal::new({
        let mut t = Transcript::from_events(view.events);
        // The log's own count: the turn's message may be before the events shown.
        t.outstanding_turns = view.open_turns;
        if t.mcp.is_none() {
            t.mcp = view.mcp;
        }
        if t.workflow.is_none() {
            t.workflow = view.workflow;
        }
        t
    });
    // The workflow's name and the MCP servers' states, as one escaped string: changes only
    // when a new state is reported, not with every event.
    let extras = Memo::new(move |_| {
        transcript.with(|t| {
            let mut html = t
                .workflow
                .as_ref()
                .map(crate::html::workflow_name)
                .unwrap_or_default();
            if let Some(m) = &t.mcp {
                html.push_str(&crate::html::mcp_servers(m));
            }
            html
        })
    });
    let more_before = RwSignal::new(view.more_before);
    let earlier = {
        let (project, name) = (project.clone(), name.clone());
        Action::new(move |before: &u64| load_session(project.clone(), name.clone(), Some(*before)))
    };
    let scroll = follow(transcript, more_before, earlier);
    let initial_phase = summary.phase;
    let phase = Signal::derive(move || transcript.with(|t| t.phase).unwrap_or(initial_phase));
    // The current run's times: from the log when it has them (a continue starts a new run).
    let (start0, end0) = (summary.start_ms, summary.completion_ms);
    let started = Signal::derive(move || transcript.with(|t| t.run_started_ms).or(start0));
    let ended = Signal::derive(move || {
        if phase.get().is_terminal() {
            transcript.with(|t| t.run_ended_ms).or(end0)
        } else {
            None
        }
    });
    let busy = Signal::derive(move || {
        transcript.with(Transcript::agent_busy) && !phase.get().is_terminal()
    });
    // A running session's agent either works or, having answered, waits (warm) for a person.
    let agent = Signal::derive(move || {
        (phase.get() == Phase::Running).then(|| {
            if transcript.with(|t| !t.open_asks().is_empty()) {
                "asking"
            } else if busy.get() {
                "working"
            } else {
                "waiting"
            }
        })
    });

    #[cfg(feature = "hydrate")]
    let live = crate::live::connect(project.clone(), name.clone(), transcript);
    #[cfg(feature = "hydrate")]
    let (status, refusal) = (live.status, live.refusal);
    #[cfg(not(feature = "hydrate"))]
    let (status, refusal) = (
        RwSignal::new(crate::live::ConnState::Connecting),
        RwSignal::new(None::<String>),
    );
    let send = Callback::new(move |msg: model::protocol::BrowserToServer| {
        #[cfg(feature = "hydrate")]
        live.send(msg);
        #[cfg(not(feature = "hydrate"))]
        let _ = msg;
    });

    let act = {
        let (project, name) = (project.clone(), name.clone());
        Action::new(move |a: &SessionAction| {
            act_on_session(project.clone(), name.clone(), a.clone())
        })
    };
    let navigate = use_navigate();
    {
        let project = project.clone();
        Effect::new(
            move |_| match (act.input().get_untracked(), act.value().get()) {
                (Some(SessionAction::Clone), Some(Ok(Some(clone)))) => navigate(
                    &format!("/projects/{project}/sessions/{clone}"),
                    Default::default(),
                ),
                (Some(SessionAction::Delete), Some(Ok(None))) => {
                    navigate(&format!("/projects/{project}"), Default::default())
                }
                _ => {}
            },
        );
    }
    let act_failed = action_error(act);
    let act_error = Signal::derive(move || act_failed.get().or_else(|| refusal.get()));
    let failure = summary.message.clone();
    let export = format!("/api/projects/{project}/agentic-sessions/{name}/export");
    let title = RwSignal::new(summary.display_name.clone());
    let view_only = view.view_only.clone();
    let can_edit = view_only.is_none();
    let show_files = RwSignal::new(false);
    let show_workflow = RwSignal::new(false);
    let show_fork = RwSignal::new(false);
    let active_workflow = view.active_workflow.clone();
    let forked_from = summary.forked_from.clone().map(|(source, turn)| {
        let href = format!("/projects/{project}/sessions/{source}");
        view! {
            <p class="muted forked-from">"Forked from "<a href=href>{source}</a>{format!(" after turn {turn}")}</p>
        }
    });

    view! {
        <section class="session-header">
            <a class="muted" href=format!("/projects/{project}")>{format!("← {project}")}</a>
            <DisplayName title act editable=can_edit/>
            <div class="meta">
                <PhaseBadge phase/>
                {move || agent.get().map(|a| view! {
                    <span class=format!("agent-state agent-{a}") data-agent=a role="status">
                        {match a { "working" => "Working", "asking" => "Waiting for your answer", _ => "Waiting for you" }}
                    </span>
                })}
                <ModelPicker act current=summary.model.clone() models=view.models.clone()/>
                <RunTimes started ended/>
                <span class=move || format!("conn conn-{}", status.get().as_str()) data-conn=move || status.get().as_str() role="status">
                    {move || status.get().label()}
                </span>
            </div>
            <div class="session-actions">
                <Show when=move || can_edit && !phase.get().is_terminal()>
                    <button class="btn" on:click=move |_| send.run(model::protocol::BrowserToServer::Stop)>"Stop"</button>
                </Show>
                <Show when=move || can_edit && phase.get().is_terminal()>
                    <button class="btn" on:click=move |_| { act.dispatch(SessionAction::Continue); }>"Continue"</button>
                </Show>
                {can_edit.then(|| view! {
                    <button class="btn" on:click=move |_| { act.dispatch(SessionAction::Clone); }>"Clone"</button>
                })}
                <button class="btn" aria-expanded=move || show_files.get().to_string()
                    on:click=move |_| show_files.update(|v| *v = !*v)>"Files"</button>
                {can_edit.then(|| view! {
                    <button class="btn" aria-expanded=move || show_workflow.get().to_string()
                        on:click=move |_| show_workflow.update(|v| *v = !*v)>"Workflow"</button>
                    <button class="btn" aria-expanded=move || show_fork.get().to_string()
                        on:click=move |_| show_fork.update(|v| *v = !*v)>"Fork"</button>
                })}
                <a class="btn" href=export.clone() download=format!("{name}.json")>"Export"</a>
                {can_edit.then(|| view! {
                    <ConfirmButton label="Delete" class="danger-outline" question="Delete this session and its workspace?".to_owned()
                        on_confirm=Callback::new(move |_| { act.dispatch(SessionAction::Delete); })/>
                })}
            </div>
            {forked_from}
            <div class="mcp-servers" aria-label="Workflow and MCP servers" inner_html=move || extras.get()></div>
            {view_only.map(super::access::role_note)}
            {(initial_phase == Phase::Failed).then(|| failure.map(|m| view! { <p class="error banner failure" role="alert">{m}</p> })).flatten()}
            <ErrorBanner error=act_error/>
        </section>
        {
            // The panel loads (its own WASM chunk) only once a person opens it.
            let (project, name) = (project.clone(), name.clone());
            let (wf_project, wf_name) = (project.clone(), name.clone());
            let (fork_project, fork_name) = (project.clone(), name.clone());
            view! {
                <Suspense>
                    {move || show_files.get().then(|| {
                        Suspend::new(files::files_panel(project.clone(), name.clone(), can_edit))
                    })}
                </Suspense>
                <Suspense>
                    {move || show_workflow.get().then(|| {
                        Suspend::new(workflow::workflow_panel(wf_project.clone(), wf_name.clone(), active_workflow.clone()))
                    })}
                </Suspense>
                <Suspense>
                    {move || show_fork.get().then(|| {
                        Suspend::new(fork::fork_panel(fork_project.clone(), fork_name.clone()))
                    })}
                </Suspense>
            }
        }
        <section class="transcript" aria-live="polite" aria-label="Transcript">
            <Show when=move || more_before.get()>
                <button class="btn load-earlier" disabled=move || earlier.pending().get()
                    on:click=move |_| scroll.load_earlier()>
                    {move || if earlier.pending().get() { "Loading earlier events…" } else { "Load earlier events" }}
                </button>
            </Show>
            <For each=move || transcript.with(|t| t.entries.clone()) key=|e| (e.seq, e.version) let:entry>
                <entries::EntryView entry/>
            </For>
            <Show when=move || busy.get()>
                <p class="working muted" role="status">"The agent is working…"</p>
            </Show>
        </section>
        <Show when=move || !scroll.at_bottom.get()>
            <button class="btn jump-latest" on:click=move |_| scroll.to_bottom()>"↓ Jump to latest"</button>
        </Show>
        {can_edit.then(|| {
            // The forms load (their own WASM chunk) only once the agent asks something, and
            // only in the browser after hydration: a chunk still loading cannot hydrate markup
            // the server rendered, so the server renders none (the forms need the browser).
            let mounted = RwSignal::new(false);
            Effect::new(move |_| mounted.set(true));
            let asking = Memo::new(move |_| mounted.get() && agent.get() == Some("asking"));
            let (project, name) = (project.clone(), name.clone());
            view! {
                <Suspense>
                    {move || asking.get().then(|| {
                        Suspend::new(questions(transcript, phase, project.clone(), name.clone()))
                    })}
                </Suspense>
            }
        })}
        {can_edit.then(|| view! { <Composer busy phase send transcript/> })}
    }
}

/// [`Questions`], loaded on demand: with the split build the forms and what they need are a
/// WASM chunk of their own, fetched when the agent first asks (most page loads never do).
#[lazy]
fn questions(
    transcript: RwSignal<Transcript>,
    phase: Signal<Phase>,
    project: String,
    name: String,
) -> AnyView {
    view! { <Questions transcript phase project name/> }.into_any()
}

/// The agent's open questions, each as a form: its options (one, or several where the
/// question allows), or the person's own words; answered or declined, the agent goes on.
#[component]
fn Questions(
    transcript: RwSignal<Transcript>,
    phase: Signal<Phase>,
    project: String,
    name: String,
) -> impl IntoView {
    let open = Memo::new(move |_| {
        if phase.get() == Phase::Running {
            transcript.with(Transcript::open_asks)
        } else {
            Vec::new()
        }
    });
    let reply = Action::new(move |req: &model::api::AnswerRequest| {
        answer_ask(project.clone(), name.clone(), req.clone())
    });
    let failed = action_error(reply);
    view! {
        <For each=move || open.get() key=|a| a.id.clone() let:ask>
            {if ask.tool == model::protocol::ASK_USER_QUESTION {
                view! { <QuestionForm ask reply/> }.into_any()
            } else {
                view! { <ApprovalForm ask reply/> }.into_any()
            }}
        </For>
        <Show when=move || failed.get().is_some()>
            <p class="error" role="alert">{move || failed.get().unwrap_or_default()}</p>
        </Show>
    }
}

/// A tool call (or, in plan mode, the plan) the agent asks to make: allow it once, for the
/// rest of the session, or deny it with a reason the agent is told.
#[component]
fn ApprovalForm(
    ask: model::protocol::Ask,
    reply: Action<model::api::AnswerRequest, Result<(), AppError>>,
) -> impl IntoView {
    let reason = RwSignal::new(String::new());
    let what = crate::transcript::ask_summary(&ask);
    let id = ask.id.clone();
    let answer = move |deny: bool, always: bool| {
        let id = id.clone();
        move |_| {
            let message = Some(reason.get_untracked()).filter(|r| deny && !r.trim().is_empty());
            reply.dispatch(model::api::AnswerRequest {
                id: id.clone(),
                deny,
                always,
                message,
                ..Default::default()
            });
        }
    };
    let plan = ask.tool == "ExitPlanMode";
    view! {
        <form class="panel ask-form approval" data-ask=ask.id.clone() data-tool=ask.tool.clone()
            aria-label="The agent asks to act" on:submit=|ev| ev.prevent_default()>
            <p><strong>{if plan { "The agent proposes this plan".to_owned() } else { format!("The agent asks to use {}", ask.tool) }}</strong></p>
            <pre class="ask-input">{what}</pre>
            {entries::edit_diff(&ask.tool, &ask.input).map(|html| view! { <div class="ask-diff" inner_html=html></div> })}
            <input type="text" class="own-words" placeholder="Reason, if you deny it (the agent is told)" aria-label="Reason"
                prop:value=reason on:input=move |ev| reason.set(event_target_value(&ev))/>
            <div class="actions">
                <button type="button" class="btn primary" on:click=answer(false, false) disabled=move || reply.pending().get()>
                    {if plan { "Approve the plan" } else { "Allow once" }}
                </button>
                {(!plan).then(|| view! {
                    <button type="button" class="btn" on:click=answer(false, true) disabled=move || reply.pending().get()>"Allow for this session"</button>
                })}
                <button type="button" class="btn danger-outline" on:click=answer(true, false) disabled=move || reply.pending().get()>"Deny"</button>
            </div>
        </form>
    }
}

/// One open question of the agent.
#[component]
fn QuestionForm(
    ask: model::protocol::Ask,
    reply: Action<model::api::AnswerRequest, Result<(), AppError>>,
) -> impl IntoView {
    let questions: Vec<serde_json::Value> = ask.input["questions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Per question: the chosen labels, and the person's own words.
    let chosen: Vec<(String, RwSignal<Vec<String>>, RwSignal<String>)> = questions
        .iter()
        .map(|q| {
            (
                q["question"].as_str().unwrap_or_default().to_owned(),
                RwSignal::new(Vec::new()),
                RwSignal::new(String::new()),
            )
        })
        .collect();
    let answers = {
        let chosen = chosen.clone();
        move || -> std::collections::BTreeMap<String, String> {
            chosen
                .iter()
                .filter_map(|(q, picked, own)| {
                    let own = own.get_untracked();
                    let text = if own.trim().is_empty() {
                        picked.get_untracked().join(", ")
                    } else {
                        own.trim().to_owned()
                    };
                    (!text.is_empty()).then(|| (q.clone(), text))
                })
                .collect()
        }
    };
    let id = ask.id.clone();
    let submit = {
        let id = id.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let a = answers();
            if !a.is_empty() {
                reply.dispatch(model::api::AnswerRequest {
                    id: id.clone(),
                    answers: a,
                    ..Default::default()
                });
            }
        }
    };
    let decline = move |_| {
        reply.dispatch(model::api::AnswerRequest {
            id: id.clone(),
            ..Default::default()
        });
    };
    let fields = questions
        .into_iter()
        .zip(chosen)
        .enumerate()
        .map(|(qi, (q, (text, picked, own)))| {
            let many = q["multiSelect"] == true;
            let options = q["options"].as_array().cloned().unwrap_or_default();
            view! {
                <fieldset class="question">
                    <legend>{text}</legend>
                    {options.into_iter().map(|o| {
                        let label = o["label"].as_str().unwrap_or_default().to_owned();
                        let description = o["description"].as_str().unwrap_or_default().to_owned();
                        let value = label.clone();
                        view! {
                            <label class="option">
                                <input type=if many { "checkbox" } else { "radio" } name=format!("q{qi}")
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        picked.update(|p| {
                                            if !many { p.clear(); }
                                            p.retain(|l| l != &value);
                                            if on { p.push(value.clone()); }
                                        });
                                    }/>
                                " " <strong>{label}</strong> " " <span class="muted">{description}</span>
                            </label>
                        }
                    }).collect_view()}
                    <input type="text" class="own-words" placeholder="Or answer in your own words" aria-label="Your own answer"
                        prop:value=own on:input=move |ev| own.set(event_target_value(&ev))/>
                </fieldset>
            }
        })
        .collect_view();
    view! {
        <form class="panel ask-form" data-ask=ask.id.clone() aria-label="The agent asks" on:submit=submit>
            {fields}
            <div class="actions">
                <button type="submit" class="btn primary" disabled=move || reply.pending().get()>"Answer"</button>
                <button type="button" class="btn" on:click=decline disabled=move || reply.pending().get()>"Decline"</button>
            </div>
        </form>
    }
}

/// The session's model: a picker for those who may switch it (a running agent switches at
/// once; the transcript records it), plain text for the others.
#[component]
fn ModelPicker(
    /// The page's action on the session (its errors are shown in the page's header).
    act: Action<SessionAction, Result<Option<String>, AppError>>,
    current: String,
    models: Vec<String>,
) -> impl IntoView {
    if models.is_empty() {
        return Either::Left(view! { <span class="muted" title="Model">{current}</span> });
    }
    Either::Right(view! {
        <select class="model-picker" aria-label="Model" title="Model"
            disabled=move || act.pending().get()
            on:change=move |ev| { act.dispatch(SessionAction::Model(event_target_value(&ev))); }>
            {models.into_iter().map(|m| {
                let selected = m == current;
                view! { <option value=m.clone() selected=selected>{m.clone()}</option> }
            }).collect_view()}
        </select>
    })
}

/// Where the reader is in the transcript, and what follows from it.
#[derive(Clone, Copy)]
struct Scroll {
    /// The reader is at the bottom: new events scroll into view.
    at_bottom: RwSignal<bool>,
    more_before: RwSignal<bool>,
    transcript: RwSignal<Transcript>,
    earlier: Action<u64, Result<SessionView, AppError>>,
}

impl Scroll {
    /// Loads the events before the first shown, unless that is under way or there are none.
    fn load_earlier(self) {
        if self.more_before.get_untracked() && !self.earlier.pending().get_untracked() {
            let first = self.transcript.with_untracked(|t| t.first_seq);
            self.earlier.dispatch(first);
        }
    }

    /// Scrolls to the latest event.
    fn to_bottom(self) {
        self.at_bottom.set(true);
        #[cfg(feature = "hydrate")]
        {
            let height = page_height();
            window().scroll_to_with_x_and_y(0.0, height);
        }
    }
}

#[cfg(feature = "hydrate")]
fn page_height() -> f64 {
    document()
        .document_element()
        .map(|e| e.scroll_height() as f64)
        .unwrap_or_default()
}

/// Follows the transcript: opens at the bottom, keeps to the bottom as events arrive while
/// the reader is there, loads earlier events at the top (keeping what the reader sees in
/// place), and says when the reader is elsewhere.
fn follow(
    transcript: RwSignal<Transcript>,
    more_before: RwSignal<bool>,
    earlier: Action<u64, Result<SessionView, AppError>>,
) -> Scroll {
    let scroll = Scroll {
        at_bottom: RwSignal::new(true),
        more_before,
        transcript,
        earlier,
    };
    // Earlier events go in front; the page grows above the reader, who stays put.
    Effect::new(move |_| {
        if let Some(Ok(page)) = earlier.value().get() {
            #[cfg(feature = "hydrate")]
            let (height, y) = (page_height(), window().scroll_y().unwrap_or_default());
            transcript.update(|t| t.prepend(page.events));
            more_before.set(page.more_before);
            #[cfg(feature = "hydrate")]
            request_animation_frame(move || {
                window().scroll_to_with_x_and_y(0.0, y + page_height() - height);
            });
        }
    });
    #[cfg(feature = "hydrate")]
    {
        // Opens at the latest event.
        request_animation_frame(move || scroll.to_bottom());
        // New events: follow them if the reader was at the bottom.
        Effect::new(move |_| {
            transcript.track();
            if scroll.at_bottom.get_untracked() {
                request_animation_frame(move || scroll.to_bottom());
            }
        });
        let handle = window_event_listener(leptos::ev::scroll, move |_| {
            let y = window().scroll_y().unwrap_or_default();
            let inner = window()
                .inner_height()
                .ok()
                .and_then(|h| h.as_f64())
                .unwrap_or_default();
            let at_bottom = y + inner >= page_height() - 80.0;
            if scroll.at_bottom.get_untracked() != at_bottom {
                scroll.at_bottom.set(at_bottom);
            }
            if y < 200.0 {
                scroll.load_earlier();
            }
        });
        on_cleanup(move || handle.remove());
    }
    scroll
}

/// The session's name, editable in place.
#[component]
fn DisplayName(
    title: RwSignal<String>,
    /// The page's action on the session (its errors are shown in the page's header).
    act: Action<SessionAction, Result<Option<String>, AppError>>,
    /// Whether the caller may rename it.
    editable: bool,
) -> impl IntoView {
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(String::new());
    let save = move || {
        let t = draft.get_untracked().trim().to_owned();
        if !t.is_empty() && t != title.get_untracked() {
            title.set(t.clone());
            act.dispatch(SessionAction::Rename(t));
        }
        editing.set(false);
    };
    view! {
        <Show
            when=move || editing.get()
            fallback=move || view! {
                <h1 class="title">
                    <span>{move || title.get()}</span>
                    {editable.then(|| view! {
                        <button class="btn icon" aria-label="Rename session" title="Rename"
                            on:click=move |_| { draft.set(title.get_untracked()); editing.set(true); }>"✎"</button>
                    })}
                </h1>
            }
        >
            <input class="title-input" type="text" aria-label="Session name" autofocus
                prop:value=draft on:input=move |ev| draft.set(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
                    "Enter" => { ev.prevent_default(); save(); }
                    "Escape" => editing.set(false),
                    _ => {}
                }
                on:blur=move |_| save()/>
        </Show>
    }
}

/// Start time and running duration of the current run.
#[component]
fn RunTimes(started: Signal<Option<i64>>, ended: Signal<Option<i64>>) -> impl IntoView {
    let now = use_now();
    move || {
        let (Some(now), Some(start)) = (now.get(), started.get()) else {
            return String::new();
        };
        let end = ended.get().unwrap_or(now);
        format!(
            "started {} · {}",
            time::ago(now, start),
            time::duration(end - start)
        )
    }
}

/// The command a click on the list of slash commands chose (its button's `data-command`).
fn chosen_command(ev: &leptos::ev::MouseEvent) -> Option<String> {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        let target = ev.target()?.dyn_into::<leptos::web_sys::Element>().ok()?;
        target
            .closest("[data-command]")
            .ok()??
            .get_attribute("data-command")
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = ev;
        None
    }
}

/// Puts the focus back in the message box, the caret after `text` (what it now holds), so
/// that typing goes on after a chosen command.
fn type_on(text: &str) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        let Some(area) = leptos::prelude::document()
            .get_element_by_id("composer")
            .and_then(|e| e.dyn_into::<leptos::web_sys::HtmlTextAreaElement>().ok())
        else {
            return;
        };
        area.set_value(text);
        let _ = area.focus();
        let end = text.encode_utf16().count() as u32;
        let _ = area.set_selection_range(end, end);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = text;
}

/// The message box: Enter sends, Shift+Enter is a new line; interrupt while a turn runs.
#[component]
fn Composer(
    busy: Signal<bool>,
    phase: Signal<Phase>,
    send: Callback<model::protocol::BrowserToServer>,
    /// Whose workflow's slash commands are offered as `/` is typed.
    transcript: RwSignal<Transcript>,
) -> impl IntoView {
    use model::protocol::{BrowserToServer, SendMessage};
    let text = RwSignal::new(String::new());
    // The commands whose name starts with what follows a leading `/`, as list items.
    let offered = Memo::new(move |_| {
        let typed = text.get();
        match typed.strip_prefix('/') {
            Some(start) if !start.contains(char::is_whitespace) => transcript.with(|t| {
                let commands: Vec<_> = t
                    .workflow
                    .iter()
                    .flat_map(|w| &w.commands)
                    .filter(|c| c.name.starts_with(start))
                    .take(8)
                    .cloned()
                    .collect();
                crate::html::slash_commands(&commands)
            }),
            _ => String::new(),
        }
    });
    let error = RwSignal::new(None::<String>);
    let submit = move || {
        let t = text.get_untracked();
        match model::validate::message_text("Message", &t) {
            Ok(()) => {
                send.run(BrowserToServer::SendMessage(SendMessage { text: t }));
                text.set(String::new());
                error.set(None);
            }
            Err(e) if t.trim().is_empty() => {
                let _ = e;
            }
            Err(e) => error.set(Some(e.message)),
        }
    };
    view! {
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); submit(); }>
            <label for="composer" class="sr-only">"Message to the agent"</label>
            <textarea id="composer" rows="3"
                placeholder=move || if phase.get().is_terminal() {
                    "Send a message to continue the session (Enter to send, Shift+Enter for a new line)"
                } else {
                    "Message the agent (Enter to send, Shift+Enter for a new line)"
                }
                prop:value=text on:input=move |ev| text.set(event_target_value(&ev))
                on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        submit();
                    }
                }></textarea>
            // One escaped string, one delegated click: a list of views would cost the page's
            // first load more than it is worth.
            <ul class="slash-commands" aria-label="The workflow's commands"
                hidden=move || offered.with(String::is_empty)
                inner_html=move || offered.get()
                on:click=move |ev| {
                    if let Some(name) = chosen_command(&ev) {
                        let chosen = format!("/{name} ");
                        text.set(chosen.clone());
                        type_on(&chosen);
                    }
                }></ul>
            <div class="composer-actions">
                <Show when=move || busy.get()>
                    <button type="button" class="btn" on:click=move |_| send.run(BrowserToServer::Interrupt)>"Interrupt"</button>
                </Show>
                <button type="submit" class="btn primary">"Send"</button>
            </div>
            <ErrorBanner error/>
        </form>
    }
}
