//! The event hub: live fan-out of persisted events to viewers, and the registry of connected
//! runners through which user messages and controls go down.
//!
//! Layout: [`Fanout`] (here), [`Runners`] (here), [`viewer`] and [`runner`] (the two
//! WebSocket endpoints).
//!
//! Events reach viewers only from the store's post-commit hooks, in sequence order. Each
//! session has a bounded broadcast ring; a viewer that falls behind it catches up from the
//! store by itself, so a slow viewer never slows the runner or other viewers and never
//! misses an event.

pub mod runner;
pub mod viewer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use model::protocol::ServerToRunner;
use tokio::sync::{broadcast, mpsc};

/// Frames kept per session for live viewers before a slow one must catch up from the store.
pub const FANOUT_CAPACITY: usize = 64;

/// An encoded viewer frame of one event; cloning shares the bytes.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The event's sequence number.
    pub seq: u64,
    /// The encoded `ServerToBrowser::Event`.
    pub text: Utf8Bytes,
}

impl Frame {
    /// A frame from its encoded text.
    pub fn new(seq: u64, text: String) -> Frame {
        Frame {
            seq,
            text: Utf8Bytes::from(text),
        }
    }
}

/// Per-session broadcast of committed events to live viewers.
#[derive(Clone, Default)]
pub struct Fanout {
    channels: Arc<Mutex<HashMap<i64, broadcast::Sender<Frame>>>>,
}

impl Fanout {
    /// Subscribes to a session's future events.
    pub fn subscribe(&self, session_id: i64) -> broadcast::Receiver<Frame> {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(session_id)
            .or_insert_with(|| broadcast::channel(FANOUT_CAPACITY).0)
            .subscribe()
    }

    /// Sends committed frames to the session's viewers, if any.
    pub fn publish(&self, session_id: i64, frames: impl IntoIterator<Item = Frame>) {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(&session_id) {
            if tx.receiver_count() == 0 {
                map.remove(&session_id);
                return;
            }
            for frame in frames {
                let _ = tx.send(frame);
            }
        }
    }

    /// Ends a deleted session's broadcast: its viewers see the channel close.
    pub fn close(&self, session_id: i64) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&session_id);
    }

    /// Sessions with a live channel (for tests and metrics).
    pub fn len(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether no session has a live channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connected runner.
struct Slot {
    conn: u64,
    superseded: Arc<tokio::sync::Notify>,
    generation: u64,
    tx: mpsc::UnboundedSender<ServerToRunner>,
    /// Told to finish: it gets no new work; what arrives now waits for the next run.
    finishing: bool,
}

/// Connected runners, by session id.
#[derive(Clone, Default)]
pub struct Runners {
    slots: Arc<Mutex<HashMap<i64, Slot>>>,
    locks: Arc<Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
}

impl Runners {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a runner connection, replacing (and thereby closing) an older one of the
    /// same session. Returns the connection's id.
    pub fn register(
        &self,
        session_id: i64,
        generation: u64,
        tx: mpsc::UnboundedSender<ServerToRunner>,
        superseded: Arc<tokio::sync::Notify>,
    ) -> u64 {
        let conn = self
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let old = self.slots().insert(
            session_id,
            Slot {
                conn,
                superseded,
                generation,
                tx,
                finishing: false,
            },
        );
        if let Some(old) = old {
            old.superseded.notify_one();
        }
        conn
    }

    /// Removes a connection if it is still the registered one.
    pub fn unregister(&self, session_id: i64, conn: u64) {
        let mut slots = self.slots();
        if slots.get(&session_id).is_some_and(|s| s.conn == conn) {
            slots.remove(&session_id);
            drop(slots);
            self.locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&session_id);
        }
    }

    /// Whether the runner of `generation` is connected.
    pub fn is_connected(&self, session_id: i64, generation: u64) -> bool {
        self.slots()
            .get(&session_id)
            .is_some_and(|s| s.generation == generation)
    }

    /// Sends to the session's runner if it is connected and still takes work.
    pub fn send(&self, session_id: i64, msg: ServerToRunner) -> bool {
        match self.slots().get(&session_id) {
            Some(slot) if !slot.finishing => slot.tx.send(msg).is_ok(),
            _ => false,
        }
    }

    /// Tells the runner to finish: it gets no more work.
    pub fn finish(&self, session_id: i64, conn: u64) {
        if let Some(slot) = self.slots().get_mut(&session_id).filter(|s| s.conn == conn) {
            slot.finishing = true;
            let _ = slot.tx.send(ServerToRunner::Finish);
        }
    }

    /// Serialises the control decisions of one session (delivering a message versus telling
    /// an idle runner to finish), which each span a store write.
    pub async fn lock(&self, session_id: i64) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(session_id)
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Number of connected runners.
    pub fn len(&self) -> usize {
        self.slots().len()
    }

    /// Whether no runner is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
