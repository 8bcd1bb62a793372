//! The event hub: live fan-out of committed events to viewers, and the registry of
//! connected runners through which user messages and controls go down.
//!
//! Layout: [`Fanout`] (subscribes to the event log's commits), [`Runners`] (with the
//! workspace requests in flight, [`FilesCall`]). The WebSocket endpoints that use them are
//! the server's.
//!
//! Events reach viewers only from the log's commit listener, in sequence order. Each session
//! has a bounded broadcast ring; a viewer that falls behind it catches up from the log by
//! itself, so a slow viewer never slows the runner or other viewers and never misses an
//! event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use k8s_openapi::jiff::Timestamp;
use model::protocol::files::{FILES_WINDOW, FilesBody, FilesOp, FilesReply, FilesRequest};
use model::protocol::{ServerToRunner, encode_event_frame};
use model::session::{AgentStatus, SessionKey};
use tokio::sync::{broadcast, mpsc};

use crate::log::{CommitListener, EventRow, LogId};

/// Frames kept per session for live viewers before a slow one must catch up from the log.
pub const FANOUT_CAPACITY: usize = 64;

/// A viewer frame carrying one event, encoded once for every viewer; cloning shares the
/// bytes.
#[derive(Debug, Clone)]
pub struct EventFrame {
    /// The event's sequence number.
    pub seq: u64,
    /// The encoded `ServerToBrowser::Event`.
    pub text: Utf8Bytes,
}

impl EventFrame {
    /// The frame of a committed event.
    pub fn of(row: &EventRow) -> EventFrame {
        EventFrame {
            seq: row.seq,
            text: Utf8Bytes::from(encode_event_frame(row.seq, row.ts, &row.body)),
        }
    }
}

/// Per-session broadcast of committed events to live viewers.
#[derive(Clone, Default)]
pub struct Fanout {
    channels: Arc<Mutex<HashMap<LogId, broadcast::Sender<EventFrame>>>>,
    /// Counts every event committed, viewers or not, and what they say.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Fanout {
    /// A fanout that counts every committed event, and what it says, in `metrics`.
    pub fn counting(metrics: Arc<crate::metrics::Metrics>) -> Fanout {
        Fanout {
            channels: Default::default(),
            metrics,
        }
    }

    /// Subscribes to a session's future events.
    pub fn subscribe(&self, log: LogId) -> broadcast::Receiver<EventFrame> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(log)
            .or_insert_with(|| broadcast::channel(FANOUT_CAPACITY).0)
            .subscribe()
    }
}

impl CommitListener for Fanout {
    /// Sends committed events to the session's viewers, if any.
    fn committed(&self, log: LogId, events: Vec<EventRow>) {
        self.metrics.events_committed.inc_by(events.len() as u64);
        self.metrics.observe(events.iter().map(|e| e.body.as_str()));
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(&log) {
            if tx.receiver_count() == 0 {
                map.remove(&log);
                return;
            }
            for row in &events {
                let _ = tx.send(EventFrame::of(row));
            }
        }
    }

    /// Ends a deleted session's broadcast: its viewers see the channel close.
    fn deleted(&self, log: LogId) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&log);
    }
}

/// A connected runner.
struct Slot {
    /// Its session.
    key: SessionKey,
    conn: u64,
    superseded: Arc<tokio::sync::Notify>,
    generation: u64,
    tx: mpsc::UnboundedSender<ServerToRunner>,
    /// Told to finish: it gets no new work; what arrives now waits for the next run.
    finishing: bool,
    /// Since when its agent has answered every message and waits for a person; `None`
    /// while it works (or has not said yet).
    idle_since: Option<Timestamp>,
    /// Its agent's asks that wait for a person's answer, with when the first was asked.
    asks: HashMap<String, Timestamp>,
    /// Workspace requests in flight: where each one's answers go.
    calls: HashMap<u64, mpsc::Sender<FilesBody>>,
    /// A files runner's token (its hash): a runner with a newer token replaces it.
    files_token: Option<String>,
}

impl Slot {
    fn new(
        key: SessionKey,
        conn: u64,
        generation: u64,
        tx: mpsc::UnboundedSender<ServerToRunner>,
        superseded: Arc<tokio::sync::Notify>,
    ) -> Slot {
        Slot {
            key,
            conn,
            superseded,
            generation,
            tx,
            finishing: false,
            idle_since: None,
            asks: HashMap::new(),
            calls: HashMap::new(),
            files_token: None,
        }
    }

    fn state(&self) -> AgentState {
        if let Some(first) = self.asks.values().min() {
            return AgentState::Asking(*first);
        }
        self.idle_since
            .map_or(AgentState::Working, AgentState::Idle)
    }
}

/// What the agent behind a connected runner does, as the hub knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// A turn is under way, or a message waits for one.
    Working,
    /// Every message has its answer since this time; the agent waits, warm.
    Idle(Timestamp),
    /// The agent asked a person something at this time and waits for the answer.
    Asking(Timestamp),
}

impl AgentState {
    /// The API's word for it.
    pub fn status(self) -> AgentStatus {
        match self {
            AgentState::Working => AgentStatus::Working,
            AgentState::Idle(_) => AgentStatus::Idle,
            AgentState::Asking(_) => AgentStatus::WaitingInput,
        }
    }
}

/// The connected runners.
#[derive(Default)]
struct Slots {
    /// Runs' runners, by session (log).
    runs: HashMap<LogId, Slot>,
    /// Files runners (`runner files`: a stopped session's workspace, nothing else), by
    /// session; asked only when the session has no run's runner.
    files: HashMap<LogId, Slot>,
}

impl Slots {
    /// Connection `conn` of the session's runner, whichever kind it is.
    fn of(&mut self, session: LogId, conn: u64) -> Option<&mut Slot> {
        match self.runs.get_mut(&session) {
            Some(slot) if slot.conn == conn => Some(slot),
            _ => self.files.get_mut(&session).filter(|s| s.conn == conn),
        }
    }
}

/// Connected runners, by session (log).
#[derive(Clone, Default)]
pub struct Runners {
    slots: Arc<Mutex<Slots>>,
    /// Told whenever a runner registers (a request waiting for a files runner looks again).
    registered: Arc<tokio::sync::Notify>,
    locks: Arc<Mutex<HashMap<LogId, Arc<tokio::sync::Mutex<()>>>>>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
}

impl Runners {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_conn(&self) -> u64 {
        self.next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// Registers a runner connection; returns its id. A connection of an older generation
    /// is replaced (and told so); one of the same run refuses the newcomer: whoever holds a
    /// copy of the token cannot push the real runner out.
    pub fn register(
        &self,
        key: SessionKey,
        session: LogId,
        generation: u64,
        tx: mpsc::UnboundedSender<ServerToRunner>,
        superseded: Arc<tokio::sync::Notify>,
    ) -> Option<u64> {
        let mut slots = self.slots();
        if slots
            .runs
            .get(&session)
            .is_some_and(|s| s.generation == generation && !s.tx.is_closed())
        {
            return None;
        }
        let conn = self.next_conn();
        let old = slots
            .runs
            .insert(session, Slot::new(key, conn, generation, tx, superseded));
        if let Some(old) = old {
            old.superseded.notify_one();
        }
        // The run's runner serves the files from now on: a files runner finishes.
        if let Some(files) = slots.files.remove(&session) {
            let _ = files.tx.send(ServerToRunner::Finish);
        }
        drop(slots);
        self.registered.notify_waiters();
        Some(conn)
    }

    /// Registers a files runner (a stopped session's workspace) admitted with the token
    /// whose hash is `token`, the session's current one; returns its connection id. Refused
    /// while the session's run has its runner connected (that one serves the files) and
    /// while another runner of the same token is connected; one of an earlier token (a
    /// leaked copy, an older runner) is replaced and told so.
    pub fn register_files(
        &self,
        key: SessionKey,
        session: LogId,
        token: String,
        tx: mpsc::UnboundedSender<ServerToRunner>,
        superseded: Arc<tokio::sync::Notify>,
    ) -> Option<u64> {
        let mut slots = self.slots();
        if slots.runs.get(&session).is_some_and(|s| !s.tx.is_closed())
            || slots.files.get(&session).is_some_and(|s| {
                !s.tx.is_closed() && s.files_token.as_deref() == Some(token.as_str())
            })
        {
            return None;
        }
        let conn = self.next_conn();
        let mut slot = Slot::new(key, conn, 0, tx, superseded);
        slot.files_token = Some(token);
        if let Some(old) = slots.files.insert(session, slot) {
            old.superseded.notify_one();
        }
        drop(slots);
        self.registered.notify_waiters();
        Some(conn)
    }

    /// Waits until a runner registers (any session's; at most `timeout`).
    pub async fn registration(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.registered.notified()).await;
    }

    /// Removes a connection if it is still the registered one.
    pub fn unregister(&self, session: LogId, conn: u64) {
        let mut slots = self.slots();
        if slots.files.get(&session).is_some_and(|s| s.conn == conn) {
            slots.files.remove(&session);
            return;
        }
        if slots.runs.get(&session).is_some_and(|s| s.conn == conn) {
            slots.runs.remove(&session);
            drop(slots);
            self.locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&session);
        }
    }

    /// How many runners are connected: runs' and files runners'.
    pub fn connected(&self) -> usize {
        let slots = self.slots();
        let open = |s: &Slot| !s.tx.is_closed();
        slots.runs.values().filter(|s| open(s)).count()
            + slots.files.values().filter(|s| open(s)).count()
    }

    /// Whether the runner of `generation` is connected.
    pub fn is_connected(&self, session: LogId, generation: u64) -> bool {
        self.slots()
            .runs
            .get(&session)
            .is_some_and(|s| s.generation == generation)
    }

    /// Sends to the session's runner if it is connected and still takes work. A user
    /// message sets its agent working.
    pub fn send(&self, session: LogId, msg: ServerToRunner) -> bool {
        match self.slots().runs.get_mut(&session) {
            Some(slot) if !slot.finishing => {
                if matches!(msg, ServerToRunner::UserMessage(_)) {
                    slot.idle_since = None;
                }
                slot.tx.send(msg).is_ok()
            }
            _ => false,
        }
    }

    /// Notes that the agent of connection `conn` has answered every message: it waits for a
    /// person (the time it started waiting is kept across repeated reports).
    pub fn idle(&self, session: LogId, conn: u64) {
        if let Some(slot) = self
            .slots()
            .runs
            .get_mut(&session)
            .filter(|s| s.conn == conn)
        {
            slot.idle_since.get_or_insert_with(Timestamp::now);
        }
    }

    /// Notes the asks of the session's agent that wait for an answer (`open`) and those
    /// answered (`answered`).
    pub fn asks(&self, session: LogId, open: &[String], answered: &[String]) {
        if let Some(slot) = self.slots().runs.get_mut(&session) {
            for id in open {
                slot.asks.entry(id.clone()).or_insert_with(Timestamp::now);
            }
            for id in answered {
                slot.asks.remove(id);
            }
        }
    }

    /// What the agents of a project's connected runners do, by session name.
    pub fn agent_states(&self, project: &str) -> HashMap<String, AgentState> {
        self.slots()
            .runs
            .values()
            .filter(|s| s.key.project == project && !s.finishing)
            .map(|s| (s.key.name.clone(), s.state()))
            .collect()
    }

    /// Every connected runner's session whose agent waits for a person, with the time it
    /// started waiting.
    pub fn idle_agents(&self) -> Vec<(SessionKey, Timestamp)> {
        self.slots()
            .runs
            .values()
            .filter(|s| !s.finishing)
            .filter_map(|s| Some((s.key.clone(), s.idle_since?)))
            .collect()
    }

    /// Tells the runner to finish: it gets no more work.
    pub fn finish(&self, session: LogId, conn: u64) {
        if let Some(slot) = self
            .slots()
            .runs
            .get_mut(&session)
            .filter(|s| s.conn == conn)
        {
            slot.finishing = true;
            let _ = slot.tx.send(ServerToRunner::Finish);
        }
    }

    /// Sends a workspace request to the session's runner (even one told to finish: it still
    /// has the files), or else to its files runner; `None` when neither is connected. Its
    /// answers come through the call.
    pub fn call_files(&self, session: LogId, op: FilesOp) -> Option<FilesCall> {
        // Random: a runner that outlived a restarted server may still hold an earlier
        // server's calls (an upload's partial file); a new call never takes their number.
        let id = rand::random::<u64>() >> 1;
        // Room for every chunk the runner may send ahead, and its last word.
        let (tx, rx) = mpsc::channel(FILES_WINDOW as usize + 2);
        let mut slots = self.slots();
        let slot = match slots.runs.get_mut(&session) {
            Some(slot) => slot,
            None => slots.files.get_mut(&session)?,
        };
        slot.tx
            .send(ServerToRunner::Files(FilesRequest { id, op }))
            .ok()?;
        slot.calls.insert(id, tx);
        Some(FilesCall {
            id,
            session,
            conn: slot.conn,
            runners: self.clone(),
            rx,
            done: false,
        })
    }

    /// Routes an answer of connection `conn`'s runner to its call. An answer to no call in
    /// flight (cancelled, or never asked) is dropped; a runner that sends more than its
    /// window loses the call.
    pub fn files_reply(&self, session: LogId, conn: u64, reply: FilesReply) {
        let mut slots = self.slots();
        let Some(slot) = slots.of(session, conn) else {
            return;
        };
        let last = reply.body.is_final();
        let Some(tx) = slot.calls.get(&reply.id) else {
            return;
        };
        if tx.try_send(reply.body).is_err() || last {
            slot.calls.remove(&reply.id);
        }
    }

    /// Sends `op` on call `id` of connection `conn`, if it is still connected.
    fn send_on_call(&self, session: LogId, conn: u64, id: u64, op: FilesOp) -> bool {
        self.slots()
            .of(session, conn)
            .filter(|s| s.calls.contains_key(&id))
            .is_some_and(|s| {
                s.tx.send(ServerToRunner::Files(FilesRequest { id, op }))
                    .is_ok()
            })
    }

    /// Forgets call `id`; the runner is told to stop its work for it.
    fn end_call(&self, session: LogId, conn: u64, id: u64) {
        let mut slots = self.slots();
        if let Some(slot) = slots.of(session, conn)
            && slot.calls.remove(&id).is_some()
        {
            let _ = slot.tx.send(ServerToRunner::Files(FilesRequest {
                id,
                op: FilesOp::Cancel,
            }));
        }
    }

    /// Serialises the control decisions of one session (delivering a message versus telling
    /// an idle runner to finish), which each span a store write.
    pub async fn lock(&self, session: LogId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(session)
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

/// A workspace request in flight to a runner: its answers, in order. Dropped before its last
/// answer, the runner is told to stop (a download whose reader went away stops reading).
pub struct FilesCall {
    id: u64,
    session: LogId,
    conn: u64,
    runners: Runners,
    rx: mpsc::Receiver<FilesBody>,
    done: bool,
}

impl FilesCall {
    /// The next answer; `None` when the runner went away (or broke the protocol) first.
    pub async fn next(&mut self) -> Option<FilesBody> {
        let body = self.rx.recv().await;
        // The hub forgot the call with its last answer (or when the runner went).
        self.done = body.as_ref().is_none_or(FilesBody::is_final);
        body
    }

    /// Tells the runner one chunk was taken: it may send one more.
    pub fn more(&self) -> bool {
        self.runners
            .send_on_call(self.session, self.conn, self.id, FilesOp::More)
    }

    /// Sends a further piece of the same request (an upload's next piece) after
    /// [`FilesBody::Written`].
    pub fn send(&mut self, op: FilesOp) -> bool {
        self.done = false;
        self.runners
            .send_on_call(self.session, self.conn, self.id, op)
    }
}

impl Drop for FilesCall {
    fn drop(&mut self) {
        if !self.done {
            self.runners.end_call(self.session, self.conn, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> (
        mpsc::UnboundedSender<ServerToRunner>,
        mpsc::UnboundedReceiver<ServerToRunner>,
    ) {
        mpsc::unbounded_channel()
    }

    /// A files runner serves workspace requests only while no run's runner is connected; it
    /// counts as no runner of the session; a newer token replaces an older one (a leaked
    /// copy cannot hold the slot), the same token is refused; a run's runner ends it.
    #[test]
    fn a_files_runner_serves_files_only_and_gives_way() {
        let runners = Runners::default();
        let (log, key) = (LogId::test(1), SessionKey::new("p", "s"));
        let (old_tx, _old_rx) = channel();
        let old_superseded = Arc::new(tokio::sync::Notify::new());
        runners
            .register_files(key.clone(), log, "a".into(), old_tx, old_superseded.clone())
            .unwrap();
        let (tx, _rx) = channel();
        assert!(
            runners
                .register_files(key.clone(), log, "a".into(), tx, Default::default())
                .is_none(),
            "the same token twice"
        );
        let (files_tx, mut files_rx) = channel();
        let files = runners
            .register_files(key.clone(), log, "b".into(), files_tx, Default::default())
            .expect("a newer token replaces the older one");
        assert!(
            futures::FutureExt::now_or_never(old_superseded.notified()).is_some(),
            "the older connection is told"
        );
        assert!(!runners.is_connected(log, 0));
        assert!(!runners.send(log, ServerToRunner::Ping));
        assert!(runners.agent_states("p").is_empty());
        assert!(runners.idle_agents().is_empty());
        let call = runners
            .call_files(
                log,
                FilesOp::List {
                    path: String::new(),
                },
            )
            .expect("served by the files runner");
        assert!(matches!(files_rx.try_recv(), Ok(ServerToRunner::Files(_))));
        drop(call);
        let (run_tx, _run_rx) = channel();
        let run = runners
            .register(key.clone(), log, 1, run_tx, Default::default())
            .unwrap();
        let mut told: Vec<ServerToRunner> = Vec::new();
        while let Ok(m) = files_rx.try_recv() {
            told.push(m);
        }
        assert!(
            told.iter().any(|m| matches!(m, ServerToRunner::Finish)),
            "the files runner is told to finish: {told:?}"
        );
        let (tx, _rx) = channel();
        assert!(
            runners
                .register_files(key, log, "c".into(), tx, Default::default())
                .is_none(),
            "no files runner while a run's runner is connected"
        );
        runners.unregister(log, files);
        assert!(
            runners.is_connected(log, 1),
            "the run's slot is not the files one"
        );
        runners.unregister(log, run);
        assert!(runners.call_files(log, FilesOp::Repos).is_none());
    }
}
