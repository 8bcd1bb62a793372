//! `/projects/:project/sessions/:session`: the live transcript of one session.
//!
//! The first paint is rendered on the server with the transcript so far; once hydrated,
//! the page connects to the session's WebSocket from the last event it has and applies
//! what follows.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use model::AgenticSession;
use model::protocol::StoredEvent;
use serde::{Deserialize, Serialize};

use super::widgets::PhaseBadge;
use crate::error::AppError;
use crate::transcript::{Entry, EntryKind, Transcript};

/// A session and its events so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionView {
    /// The session.
    pub session: AgenticSession,
    /// Its event log.
    pub events: Vec<StoredEvent>,
}

/// Loads a session and its event log.
#[server(prefix = "/rpc")]
pub async fn load_session(project: String, session: String) -> Result<SessionView, AppError> {
    let (backend, headers) = crate::backend::backend().await?;
    let s = backend.get_session(&headers, &project, &session).await?;
    let events = backend.events(&headers, &project, &session).await?;
    Ok(SessionView { session: s, events })
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
    let data = Resource::new(key, |(p, s)| load_session(p, s));
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(view) => {
                        let (project, session) = key();
                        view! { <SessionBody view project session/> }.into_any()
                    }
                    Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SessionBody(view: SessionView, project: String, session: String) -> impl IntoView {
    let initial_phase = view.session.phase();
    let transcript = RwSignal::new(Transcript::from_events(view.events));
    let phase = Signal::derive(move || transcript.with(|t| t.phase).unwrap_or(initial_phase));
    let title = view
        .session
        .spec
        .display_name
        .clone()
        .unwrap_or_else(|| session.clone());
    let model = view.session.model().unwrap_or_default().to_owned();

    #[cfg(feature = "hydrate")]
    let conn = crate::live::connect(project.clone(), session.clone(), transcript);
    #[cfg(feature = "hydrate")]
    let status = conn.status;
    #[cfg(not(feature = "hydrate"))]
    let status = RwSignal::new(ConnState::Connecting);
    let _ = &project;

    view! {
        <section class="session-header">
            <a class="muted" href=format!("/projects/{project}")>{format!("← {project}")}</a>
            <h1>{title}</h1>
            <div class="meta">
                <PhaseBadge phase/>
                <span class="muted">{model}</span>
                <span class=move || format!("conn conn-{}", status.get().as_str()) data-conn=move || status.get().as_str()>
                    {move || status.get().label()}
                </span>
            </div>
        </section>
        <section class="transcript" aria-live="polite">
            <For each=move || transcript.with(|t| t.entries.clone()) key=|e| (e.seq, e.version) let:entry>
                <EntryView entry/>
            </For>
        </section>
    }
}

/// State of the live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Opening the connection, replaying what was missed.
    Connecting,
    /// Caught up; new events appear as they happen.
    Live,
    /// The connection dropped; retrying.
    Reconnecting,
    /// The session no longer exists.
    Gone,
}

impl ConnState {
    /// Stable name (CSS class, test hook).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Live => "live",
            ConnState::Reconnecting => "reconnecting",
            ConnState::Gone => "gone",
        }
    }

    /// Text shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting…",
            ConnState::Live => "live",
            ConnState::Reconnecting => "reconnecting…",
            ConnState::Gone => "session deleted",
        }
    }
}

#[component]
fn EntryView(entry: Entry) -> impl IntoView {
    let seq = entry.seq;
    match entry.kind {
        EntryKind::User { text, sender } => view! {
            <article class="entry user" data-seq=seq>
                <header>{sender}</header>
                <div class="text">{text}</div>
            </article>
        }
        .into_any(),
        EntryKind::Agent { text, streaming, .. } => view! {
            <article class="entry agent" class:streaming=streaming data-seq=seq>
                <div class="text">{text}</div>
            </article>
        }
        .into_any(),
        EntryKind::Thinking { text } => view! {
            <details class="entry thinking" data-seq=seq>
                <summary>"Thinking"</summary>
                <div class="text">{text}</div>
            </details>
        }
        .into_any(),
        EntryKind::Tool { name, input, result, .. } => {
            let summary = tool_summary(&name, &input);
            let (result_text, is_error) = match &result {
                Some(r) => (Some(r.content.clone()), r.is_error),
                None => (None, false),
            };
            let label = name.clone();
            view! {
                <article class="entry tool" class:tool-error=is_error data-seq=seq data-tool=name>
                    <header><span class="tool-name">{label}</span>" "<code>{summary}</code></header>
                    {match result_text {
                        Some(text) => view! { <pre class="tool-result">{text}</pre> }.into_any(),
                        None => view! { <p class="muted running">"running…"</p> }.into_any(),
                    }}
                </article>
            }
            .into_any()
        }
        EntryKind::Log(l) => view! { <p class="entry log" data-seq=seq>{l.message}</p> }.into_any(),
        EntryKind::Error(e) => view! {
            <p class="entry error" role="alert" data-seq=seq>{e.message}</p>
        }
        .into_any(),
        EntryKind::Phase { phase, message } => view! {
            <p class="entry phase" data-seq=seq>
                "Phase " <strong>{phase.as_str()}</strong>
                {message.map(|m| view! { <span class="phase-message">{format!(": {m}")}</span> })}
            </p>
        }
        .into_any(),
        EntryKind::Turn(t) => view! {
            <p class="entry turn muted" data-seq=seq>
                {format!("Turn finished: {} model calls, {} in / {} out tokens, ${:.4}",
                    t.num_turns, t.usage.input_tokens, t.usage.output_tokens, t.usage.cost_usd)}
            </p>
        }
        .into_any(),
        EntryKind::Result(r) => view! {
            <article class="entry result" class:result-error=r.is_error data-seq=seq>
                <header>{if r.is_error { "Run failed" } else { "Run finished" }}</header>
                <dl>
                    <dt>"Turns"</dt><dd>{r.num_turns}</dd>
                    <dt>"Tokens"</dt><dd>{format!("{} in / {} out", r.usage.input_tokens, r.usage.output_tokens)}</dd>
                    <dt>"Cost"</dt><dd>{format!("${:.4}", r.usage.cost_usd)}</dd>
                    <dt>"Duration"</dt><dd>{format!("{:.1} s", r.duration_ms as f64 / 1000.0)}</dd>
                    <dt>"Exit code"</dt><dd>{r.exit_code}</dd>
                </dl>
            </article>
        }
        .into_any(),
        EntryKind::Control { what, sender } => view! {
            <p class="entry control muted" data-seq=seq>{format!("{sender} asked to {what}")}</p>
        }
        .into_any(),
        EntryKind::Push(p) => view! {
            <p class="entry git" data-seq=seq>{format!("Pushed {} to {} ({})", p.repo, p.branch, p.commit)}</p>
        }
        .into_any(),
        EntryKind::PullRequest(p) => view! {
            <p class="entry git" data-seq=seq>
                {format!("Pull request #{} for {}: ", p.number, p.repo)}
                <a href=p.url.clone() target="_blank" rel="noopener">{p.url.clone()}</a>
            </p>
        }
        .into_any(),
    }
}

/// One line describing a tool call's input.
fn tool_summary(name: &str, input: &serde_json::Value) -> String {
    let field = |k: &str| input.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    match name {
        "Write" | "Edit" | "MultiEdit" | "Read" => field("file_path"),
        "Bash" => field("command"),
        "Glob" | "Grep" => field("pattern"),
        _ => None,
    }
    .unwrap_or_else(|| {
        let s = input.to_string();
        if s.len() > 120 {
            format!("{}…", &s[..s.floor_char_boundary(120)])
        } else {
            s
        }
    })
}
