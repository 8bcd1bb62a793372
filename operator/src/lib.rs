//! Session lifecycle for the Ambient Code Platform.
//!
//! Layout:
//! - [`lifecycle`]: the pure state machine — from a session and what is observed of its
//!   runner to a plan (status, phase event, action);
//! - [`runner_env`]: the runner's environment, a pure function of the session and the run;
//! - [`store`]: what drivers need from the session store;
//! - [`local`]: the local driver, applying plans with child processes;
//! - [`crd`]: CustomResourceDefinitions generated from `model` (see the `crdgen` binary).

pub mod crd;
pub mod lifecycle;
pub mod local;
pub mod runner_env;
pub mod store;

pub use local::{LocalConfig, LocalDriver};
pub use store::{SessionKey, SessionStore};
