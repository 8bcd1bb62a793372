//! The runner endpoint: `GET /api/projects/{p}/agentic-sessions/{s}/runner/ws` with
//! `Authorization: Bearer <runner token>`.
//!
//! The token is valid for its session and current generation only. Events are appended in
//! batches (whatever arrived together) and acknowledged after commit; re-sent events are
//! dropped by their runner sequence number.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use model::protocol::{
    Ack, ErrorEvent, Frame as _, MAX_RUNNER_FRAME, PROTOCOL_VERSION, RunnerEvent, RunnerHello,
    RunnerToServer, ServerToRunner, SessionEvent, Welcome, close,
};
use model::session::SessionKey;
use platform::auth::{AuthError, bearer};
use platform::local::token_hash;
use platform::log::LogId;
use platform::services::LiveSession;
use platform::{ApiError, Caller, Services};
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, mpsc};

use super::{Connection, End, Incoming, ReadError};

/// Time a runner has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most events appended in one batch.
const MAX_BATCH: usize = 256;

/// Upgrades to the runner WebSocket (see `model::protocol`); `Authorization: Bearer <runner token>`.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/runner/ws", tag = "realtime",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 101, description = "Switching to the runner protocol (RunnerToServer / ServerToRunner frames)")))]
pub async fn runner_ws(
    State(services): State<Services>,
    Path((project, name)): Path<(String, String)>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = match bearer(&headers) {
        // Not a runner at all: refused before the upgrade, like every unauthenticated
        // request. (A runner with a wrong or stale token is told why in the close frame.)
        Ok(None) => {
            return ApiError::Unauthorized(
                "missing runner token (Authorization: Bearer ...)".into(),
            )
            .into_response();
        }
        other => other.map(|t| t.map(str::to_owned)),
    };
    ws.max_message_size(MAX_RUNNER_FRAME + 1024)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            let mut endpoint = RunnerEndpoint {
                conn: Connection::new(socket),
                services,
                key: SessionKey::new(project, name),
            };
            let end = match token {
                Ok(Some(token)) => endpoint.serve(&token).await,
                Ok(None) => End::Close(
                    close::UNAUTHORIZED,
                    "missing runner token (Authorization: Bearer ...)".into(),
                ),
                Err(AuthError::Invalid(why)) => End::Close(close::UNAUTHORIZED, why),
                Err(AuthError::RunnerToken) => {
                    End::Close(close::UNAUTHORIZED, "invalid token".into())
                }
            };
            endpoint.conn.close(end).await;
        })
}

struct RunnerEndpoint {
    conn: Connection,
    services: Services,
    key: SessionKey,
}

/// The runner's registration with the hub, for the time it is connected.
struct Registered {
    log: LogId,
    generation: u64,
    conn: u64,
    out: mpsc::UnboundedSender<ServerToRunner>,
    superseded: Arc<Notify>,
    /// Hosts a pull request or push of this session may be on: its repositories' and its
    /// configured forges'.
    link_hosts: Vec<String>,
}

impl RunnerEndpoint {
    /// The session, if `token` is the token of its current run and that run is live.
    async fn authenticate(&mut self, token: &str) -> Result<LiveSession, End> {
        let live = self
            .services
            .live_session(&Caller::system(), &self.key)
            .await
            .map_err(End::refused)?;
        let presented = token_hash(token);
        match &live.record.run.token_hash {
            Some(expected) if bool::from(expected.as_slice().ct_eq(&presented)) => {}
            _ => {
                return Err(End::Close(
                    close::UNAUTHORIZED,
                    "invalid runner token for this session".into(),
                ));
            }
        }
        if !live.record.session.phase().is_active() {
            return Err(End::Close(
                close::UNAUTHORIZED,
                format!(
                    "the run of this token has ended (the session is {})",
                    live.record.session.phase()
                ),
            ));
        }
        Ok(live)
    }

    async fn hello(&mut self) -> Result<RunnerHello, End> {
        match tokio::time::timeout(HELLO_TIMEOUT, self.conn.read_frame::<RunnerToServer>()).await {
            Ok(Ok(RunnerToServer::Hello(h))) if h.protocol == PROTOCOL_VERSION => Ok(h),
            Ok(Ok(RunnerToServer::Hello(h))) => Err(End::Close(
                close::BAD_FRAME,
                format!(
                    "protocol {} is not supported (server speaks {PROTOCOL_VERSION})",
                    h.protocol
                ),
            )),
            Ok(Ok(_)) => Err(End::Close(
                close::BAD_FRAME,
                "the first message must be hello".into(),
            )),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(End::Close(
                close::HEARTBEAT_TIMEOUT,
                "no hello within 10 s".into(),
            )),
        }
    }

    async fn serve(&mut self, token: &str) -> End {
        let live = match self.authenticate(token).await {
            Ok(live) => live,
            Err(end) => return end,
        };
        let hello = match self.hello().await {
            Ok(h) => h,
            Err(end) => return end,
        };
        let current = live.record.run.generation;
        if hello.generation != current {
            return End::Close(
                close::SUPERSEDED,
                format!(
                    "generation {} is not current (the session is at {current})",
                    hello.generation
                ),
            );
        }
        if live.counters.generation < current {
            // Kubernetes mode: the run was decided in the cluster and its pod connected
            // before the server's follower saw it. Begin it now (once; the follower's turn
            // then changes nothing).
            if let Err(e) = self
                .services
                .log
                .begin_run(live.log, current, live.record.session.has_conversation())
                .await
            {
                return End::internal(e);
            }
        }
        let (out, mut out_rx) = mpsc::unbounded_channel();
        let superseded = Arc::new(Notify::new());
        let Some(conn) =
            self.services
                .runners
                .register(live.log, current, out.clone(), superseded.clone())
        else {
            return End::Close(
                close::ALREADY_CONNECTED,
                "this run's runner is connected already".into(),
            );
        };
        let reg = Registered {
            log: live.log,
            generation: current,
            conn,
            out,
            superseded,
            link_hosts: link_hosts(&self.services, &live).await,
        };
        // Welcome goes first: it is queued before anything else can be.
        let welcome = self.services.log.counters(live.log).await;
        let end = match welcome {
            Ok(c) => {
                let _ = reg.out.send(ServerToRunner::Welcome(Welcome {
                    acked_rseq: c.runner_acked,
                }));
                self.run(&reg, &hello, &mut out_rx).await
            }
            Err(e) => End::internal(e),
        };
        self.services.runners.unregister(reg.log, reg.conn);
        self.services.notify(&self.key);
        // Flush what is still queued (acknowledgements) before closing.
        let mut queued = Vec::new();
        while let Ok(msg) = out_rx.try_recv() {
            queued.push(msg.encode().into());
        }
        let _ = self.conn.write_texts(queued).await;
        end
    }

    async fn run(
        &mut self,
        reg: &Registered,
        hello: &RunnerHello,
        out_rx: &mut mpsc::UnboundedReceiver<ServerToRunner>,
    ) -> End {
        if let Err(e) = self
            .services
            .deliver_pending(reg.log, reg.generation, hello.handled_through)
            .await
        {
            return End::internal(e);
        }
        self.services.notify(&self.key);
        let mut shutdown = self.services.shutdown.clone();
        let mut carried: Option<RunnerToServer> = None;
        loop {
            if let Some(msg) = carried.take() {
                match self.handle(msg, reg).await {
                    Ok(next) => carried = next,
                    Err(end) => return end,
                }
                continue;
            }
            let step = tokio::select! {
                msg = out_rx.recv() => match msg {
                    Some(msg) => self.conn.write_frame(&msg).await.map(|()| None),
                    None => Err(End::Gone),
                },
                incoming = self.conn.next::<RunnerToServer>() => match incoming {
                    Ok(Incoming::Frame(msg)) => self.handle(msg, reg).await,
                    Ok(Incoming::Beat) => {
                        let _ = reg.out.send(ServerToRunner::Ping);
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                },
                _ = reg.superseded.notified() => Err(End::Close(
                    close::SUPERSEDED,
                    "another connection of this runner replaced this one".into(),
                )),
                _ = shutdown.changed() => Err(End::Close(
                    close::GOING_AWAY,
                    "the server is restarting; reconnect".into(),
                )),
            };
            match step {
                Ok(next) => carried = next,
                Err(end) => return end,
            }
        }
    }

    /// Handles one message; returns a message read meanwhile that must be handled next.
    async fn handle(
        &mut self,
        msg: RunnerToServer,
        reg: &Registered,
    ) -> Result<Option<RunnerToServer>, End> {
        match msg {
            RunnerToServer::Event(first) => {
                let (batch, next) = self.batch(first)?;
                self.append(batch, reg).await?;
                Ok(next)
            }
            RunnerToServer::Idle(idle) => {
                self.services
                    .runner_idle(reg.log, reg.generation, reg.conn, idle.handled_through)
                    .await
                    .map_err(End::internal)?;
                Ok(None)
            }
            RunnerToServer::Ping => {
                let _ = reg.out.send(ServerToRunner::Pong);
                Ok(None)
            }
            RunnerToServer::Pong => Ok(None),
            RunnerToServer::Hello(_) => Err(End::Close(
                close::BAD_FRAME,
                "hello was already received".into(),
            )),
        }
    }

    /// Persists a batch; the runner's acknowledgement goes out once it is committed. Only
    /// what runners produce is taken; a link to a host the session has nothing to do with is
    /// kept as an error saying so, not as a link.
    async fn append(&mut self, mut batch: Vec<RunnerEvent>, reg: &Registered) -> Result<(), End> {
        for e in &mut batch {
            if !e.event.from_runner() {
                return Err(End::Close(
                    close::BAD_FRAME,
                    format!("runners may not send {} events", e.event.kind()),
                ));
            }
            if let Some((what, host)) = foreign_link(&e.event, &reg.link_hosts) {
                e.event = SessionEvent::Error(ErrorEvent {
                    message: format!(
                        "a {what} link to {host} was refused: it is not on a host of this session's repositories"
                    ),
                    code: Some("refused_link".into()),
                });
            }
        }
        let ack = reg.out.clone();
        let on_commit = move |rseq| {
            let _ = ack.send(ServerToRunner::Ack(Ack { rseq }));
        };
        let appended = self
            .services
            .log
            .append_runner_events(reg.log, reg.generation, batch, on_commit)
            .await
            .map_err(|e| match ApiError::from(e) {
                ApiError::NotFound(_) => End::Close(close::GONE, "the session was deleted".into()),
                other => End::refused(other),
            })?;
        if let Some(conversation) = appended.conversation {
            // What a continued session resumes.
            self.services
                .records
                .set_sdk_session_id(&Caller::system(), &self.key, &conversation)
                .await
                .map_err(|e| End::refused(e.into()))?;
        }
        Ok(())
    }

    /// The first event and the events already waiting behind it, in order; a non-event
    /// message met on the way is returned to be handled after the batch.
    fn batch(
        &mut self,
        first: RunnerEvent,
    ) -> Result<(Vec<RunnerEvent>, Option<RunnerToServer>), End> {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match self.conn.try_read_frame::<RunnerToServer>() {
                None | Some(Err(ReadError::End(End::Gone))) => break,
                Some(Ok(RunnerToServer::Event(e))) => batch.push(e),
                Some(Ok(other)) => return Ok((batch, Some(other))),
                Some(Err(e)) => return Err(e.into()),
            }
        }
        Ok((batch, None))
    }
}

/// What kind of link `event` holds and its host, when that host is not among `hosts`: a
/// pull request is always a web link; a push's remote when it is one (a path or an
/// scp-like remote is not shown as a link).
fn foreign_link(event: &SessionEvent, hosts: &[String]) -> Option<(&'static str, String)> {
    let (what, url, must_be_web) = match event {
        SessionEvent::PullRequest(pr) => ("pull request", pr.url.as_str(), true),
        SessionEvent::GitPush(p) => ("push", p.remote.as_str(), false),
        _ => return None,
    };
    match host_of(url) {
        Some(host) if hosts.contains(&host) => None,
        Some(host) => Some((what, host)),
        None if must_be_web => Some((what, url.chars().take(100).collect())),
        None if url.starts_with("http:") || url.starts_with("https:") => {
            Some((what, url.chars().take(100).collect()))
        }
        None => None,
    }
}

/// The host of an http(s) URL, lowercase.
fn host_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https")
        .then(|| parsed.host_str().map(str::to_ascii_lowercase))
        .flatten()
}

/// The hosts a session's pull requests may be on: its repositories', and its forges' (the
/// public ones, and the APIs its project or the server configured).
async fn link_hosts(services: &Services, live: &LiveSession) -> Vec<String> {
    let mut hosts: Vec<String> = vec!["github.com".into(), "gitlab.com".into()];
    for repo in &live.record.session.spec.repos {
        let url = &repo.url;
        let host = host_of(url).or_else(|| {
            // scp-like `user@host:path`
            let (user_host, _) = url.split_once(':')?;
            Some(user_host.rsplit('@').next()?.to_ascii_lowercase())
        });
        hosts.extend(host);
    }
    let project = &live
        .record
        .session
        .metadata
        .namespace
        .clone()
        .unwrap_or_default();
    if let Ok(creds) = services.run_credentials(&Caller::system(), project).await {
        hosts.extend(
            [creds.github_api_url, creds.gitlab_api_url]
                .iter()
                .flatten()
                .filter_map(|u| host_of(u)),
        );
    }
    hosts
}
