//! The browser's live connection to a session.
//!
//! It connects with the last sequence the transcript has, applies every event, and on any
//! drop reconnects with backoff from the new last sequence: nothing is missed, nothing
//! shown twice. It sends a ping every 15 s and treats 45 s of silence as a drop. Its state
//! ([`ConnState`]) exists in both builds (the server renders it); the socket only in the
//! browser.

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

#[cfg(feature = "hydrate")]
mod socket;

#[cfg(feature = "hydrate")]
pub use socket::{Live, connect};
