//! The viewer endpoint: `GET /api/projects/{p}/agentic-sessions/{s}/ws?after=<seq>`.
//!
//! Subscribes to the live broadcast first, then replays the stored log after the viewer's
//! cursor, then forwards live frames, skipping what the replay already sent: every event
//! exactly once, in order. A viewer that falls behind the broadcast ring, or that sees a gap,
//! catches up from the log and carries on.

use std::time::Duration;

use axum::extract::ws::{Utf8Bytes, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::response::Response;
use model::protocol::{
    BrowserToServer, DecodeError, Live, MAX_BROWSER_FRAME, Refusal, ServerToBrowser, close,
};
use model::session::SessionKey;
use platform::hub::EventFrame;
use platform::log::LogId;
use platform::{Caller, Services};
use serde::Deserialize;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{Connection, End, Incoming, ReadError};

/// Events read from the log per replay query.
const REPLAY_PAGE: usize = 512;
/// Most live frames written before one flush.
const MAX_BATCH: usize = 64;

/// Query of the viewer endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewerQuery {
    /// Last sequence the viewer has (0 or absent for none).
    #[serde(default)]
    pub after: u64,
}

/// Upgrades to the viewer WebSocket (see `model::protocol`).
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/ws", tag = "realtime",
    params(("project" = String, Path), ("session" = String, Path), ViewerQuery),
    responses((status = 101, description = "Switching to the viewer protocol (ServerToBrowser / BrowserToServer frames)")))]
pub async fn viewer_ws(
    State(services): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    Query(query): Query<ViewerQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    // Refused before the upgrade, as HTTP: watching needs view; what the viewer sends
    // (messages, interrupt, stop) is checked as it comes, needing edit.
    if let Err(e) = services
        .require(&caller, &project, platform::auth::Role::View)
        .await
    {
        return e.into_response();
    }
    ws.max_message_size(MAX_BROWSER_FRAME + 1024)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            let _open = platform::metrics::ViewerGuard::new(&services.metrics);
            let mut viewer = Viewer {
                conn: Connection::new(socket),
                services,
                key: SessionKey::new(project, name),
                cursor: query.after,
            };
            let end = viewer.serve(&caller).await;
            viewer.conn.close(end).await;
        })
}

struct Viewer {
    conn: Connection,
    services: Services,
    key: SessionKey,
    /// The last sequence the viewer has.
    cursor: u64,
}

impl Viewer {
    async fn serve(&mut self, caller: &Caller) -> End {
        match self.start(caller).await {
            Ok((log, live)) => self.follow(caller, log, live).await,
            Err(end) => end,
        }
    }

    /// Subscribes, replays what the viewer misses, and says it is live.
    async fn start(&mut self, caller: &Caller) -> Result<(LogId, Receiver<EventFrame>), End> {
        let session = self
            .services
            .live_session(caller, &self.key)
            .await
            .map_err(End::refused)?;
        let last = session.counters.last_seq;
        if self.cursor > last {
            return Err(End::Close(
                close::CURSOR_AHEAD,
                format!("cursor {} is past the end of the log ({last})", self.cursor),
            ));
        }
        // Subscribe before replaying: what commits meanwhile is in the ring or the replay.
        let live = self.services.fanout.subscribe(session.log);
        self.catch_up(session.log).await?;
        let hello = ServerToBrowser::Live(Live { seq: self.cursor });
        self.conn.write_frame(&hello).await?;
        Ok((session.log, live))
    }

    /// Forwards live events and answers the viewer's requests until the connection ends.
    async fn follow(&mut self, caller: &Caller, log: LogId, mut live: Receiver<EventFrame>) -> End {
        let mut shutdown = self.services.shutdown.clone();
        // What let the caller in can end while it watches (a key revoked or expired, a
        // Kubernetes identity's role taken away): asked again, whoever the caller is, as
        // often as answers are kept; the socket closes (UNAUTHORIZED for a key that no
        // longer works, FORBIDDEN for a role that is gone).
        let period = self
            .services
            .settings
            .access_recheck
            .max(Duration::from_secs(1));
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            let step = tokio::select! {
                _ = recheck.tick() => self
                    .services
                    .require_again(caller, &self.key.project, platform::auth::Role::View)
                    .await
                    .map_err(End::refused),
                frame = live.recv() => self.forward(log, frame, &mut live).await,
                incoming = self.conn.next::<BrowserToServer>() => match incoming {
                    Ok(Incoming::Frame(msg)) => self.request(caller, Ok(msg)).await,
                    Ok(Incoming::Beat) => Ok(()),
                    Err(e) => self.request(caller, Err(e)).await,
                },
                _ = shutdown.changed() => Err(End::Close(
                    close::GOING_AWAY,
                    "the server is restarting; reconnect".into(),
                )),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Sends a live frame and whatever else is ready, with one flush; falls back to the log
    /// when the ring overran the viewer or a frame is missing.
    async fn forward(
        &mut self,
        log: LogId,
        first: Result<EventFrame, RecvError>,
        live: &mut Receiver<EventFrame>,
    ) -> Result<(), End> {
        let first = match first {
            Ok(f) => f,
            // The ring overran this viewer: the log has everything.
            Err(RecvError::Lagged(_)) => return self.catch_up(log).await,
            Err(RecvError::Closed) => {
                return Err(End::Close(close::GONE, "the session was deleted".into()));
            }
        };
        let mut ready = vec![first];
        let mut behind = false;
        while ready.len() < MAX_BATCH {
            match live.try_recv() {
                Ok(f) => ready.push(f),
                Err(TryRecvError::Lagged(_)) => {
                    behind = true;
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        let mut texts = Vec::with_capacity(ready.len());
        for f in ready {
            if f.seq <= self.cursor {
                continue;
            }
            if f.seq != self.cursor + 1 {
                // A gap: the log has what is missing.
                behind = true;
                break;
            }
            self.cursor = f.seq;
            texts.push(f.text);
        }
        let sent = texts.len() as u64;
        self.conn.write_texts(texts).await?;
        self.services.metrics.events_delivered.inc_by(sent);
        if behind {
            self.catch_up(log).await?;
        }
        Ok(())
    }

    /// Sends every logged event after the cursor.
    async fn catch_up(&mut self, log: LogId) -> Result<(), End> {
        loop {
            let page = self
                .services
                .log
                .events_after(log, self.cursor, REPLAY_PAGE)
                .await
                .map_err(End::internal)?;
            let full = page.len() == REPLAY_PAGE;
            if let Some(last) = page.last() {
                self.cursor = last.seq;
            }
            let texts: Vec<Utf8Bytes> = page.iter().map(|row| EventFrame::of(row).text).collect();
            let sent = texts.len() as u64;
            self.conn.write_texts(texts).await?;
            self.services.metrics.events_delivered.inc_by(sent);
            if !full {
                return Ok(());
            }
        }
    }

    /// Handles a viewer's request, answering a refusal when there is one.
    async fn request(
        &mut self,
        caller: &Caller,
        msg: Result<BrowserToServer, ReadError>,
    ) -> Result<(), End> {
        let (s, key) = (&self.services, &self.key);
        let outcome = match msg {
            Ok(BrowserToServer::Ping) => {
                return self.conn.write_frame(&ServerToBrowser::Pong).await;
            }
            Ok(BrowserToServer::SendMessage(m)) => {
                s.send_message(caller, key, m.text).await.map(|_| ())
            }
            Ok(BrowserToServer::Interrupt) => s.interrupt(caller, key).await,
            Ok(BrowserToServer::Stop) => s.stop(caller, key).await.map(|_| ()),
            Err(ReadError::End(end)) => return Err(end),
            Err(ReadError::Undecodable(DecodeError::TooLarge { len, max })) => {
                let why = format!("frame of {len} bytes exceeds {max}");
                return self.refuse("too_large", why).await;
            }
            Err(ReadError::Undecodable(DecodeError::Malformed(why))) => {
                return self
                    .refuse("bad_request", format!("malformed message: {why}"))
                    .await;
            }
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => self.refuse(e.kind(), e.to_string()).await,
        }
    }

    async fn refuse(&mut self, error: &str, message: String) -> Result<(), End> {
        let refusal = ServerToBrowser::Error(Refusal {
            error: error.to_owned(),
            message,
        });
        self.conn.write_frame(&refusal).await
    }
}
