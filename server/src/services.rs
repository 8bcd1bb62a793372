//! The platform's operations, shared by the REST API, the UI's server functions and the
//! WebSocket endpoints: one place validates, authorises and acts.
//!
//! Layout: [`projects`], [`settings`] (credentials, defaults), [`sessions`] (create, read,
//! list, update, clone), [`control`] (messages, interrupt, stop, continue, delivery to
//! runners).

mod control;
mod projects;
mod sessions;
mod settings;

use std::sync::Arc;

use operator::{LocalDriver, SessionKey};

use crate::hub::Runners;
use crate::store::Store;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable user id.
    pub user_id: String,
    /// Name shown to others (in transcripts, as the sender of messages).
    pub display_name: String,
}

/// Settings of the operations.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Model of sessions that name none.
    pub default_model: String,
    /// Models a session may choose.
    pub models: Vec<String>,
    /// Credentials given to every project's runners unless the project sets its own
    /// (from the server's environment: `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` ...).
    pub default_credentials: Vec<(String, String)>,
    /// The user of a local installation (every request acts as this user).
    pub local_user: Caller,
}

/// Handle to the operations; cheap to clone.
#[derive(Clone)]
pub struct Services {
    /// The store.
    pub store: Store,
    /// Connected runners.
    pub runners: Runners,
    /// The local driver.
    pub driver: LocalDriver,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Changes once when the server shuts down: long-lived connections close.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Services {
    /// Asks the driver to look at a session.
    pub fn notify(&self, project: &str, name: &str) {
        self.driver.notify(SessionKey::new(project, name));
    }
}
