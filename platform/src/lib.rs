//! The core of the Ambient Code Platform: the operations every client reaches (REST, the
//! UI's server functions, WebSockets) and what they stand on. The server serves it over
//! HTTP; the UI's server functions call it directly.
//!
//! Layout:
//! - [`services`]: the operations, which validate, authorise and act; [`services::Driver`]
//!   is how they tell whatever runs sessions;
//! - [`records`]: the seam to where sessions, projects, settings and credentials live
//!   ([`records::Records`]), with the SQLite implementation of local mode and the
//!   Kubernetes one;
//! - [`log`]: the sessions' event logs and their counters, in the server's own database in
//!   both modes; told commits go to a [`log::CommitListener`];
//! - [`hub`]: the live side: fan-out of committed events to viewers (the log's listener),
//!   connected runners;
//! - [`auth`]: who is calling; [`identity`]: how they prove it to the server itself
//!   (install secret, access keys, login links, browser sessions); [`kube_identity`]:
//!   Kubernetes identities and what the cluster lets them do (Kubernetes mode), and
//!   [`kube_keys`] their projects' access keys (ServiceAccount tokens); [`error`]:
//!   errors as clients see them;
//! - [`db`], [`schema`]: the SQLite database under the records and the logs;
//! - [`local`]: local mode's wiring of the local driver; [`cluster`]: Kubernetes mode's
//!   wiring (records in the cluster, the server following its sessions).

pub mod auth;
pub mod catalogue;
pub mod cluster;
pub mod db;
pub mod error;
pub mod hub;
pub mod identity;
pub mod kube_identity;
pub mod kube_keys;
pub mod local;
pub mod log;
pub mod metrics;
pub mod people;
pub mod records;
mod schema;
pub mod services;

pub use auth::Caller;
pub use error::ApiError;
pub use services::Services;
