//! Session lifecycle for the Ambient Code Platform: what should happen to a session, decided
//! once, and the drivers that make it happen.
//!
//! Layout:
//! - [`lifecycle`]: the pure state machine, shared by every driver: from a session and what
//!   is observed of its runner ([`lifecycle::Runner`]: waiting, unstartable, alive, exited
//!   with a code and a reason, lost) to a plan (status, phase event, action);
//! - [`runner_env`]: the runner's environment, a pure function of the session and the run,
//!   shared by every driver;
//! - [`local`]: the local driver, applying plans with child processes (its port to the
//!   server's records is [`local::SessionStore`]);
//! - [`cluster`]: the Kubernetes driver: pure builders of the Job, token Secret, workspace
//!   claim and project objects, the observation of a run's Job and Pods as a
//!   [`lifecycle::Runner`], and the controllers (`kube::runtime`) that apply the plans
//!   (binary `operator`);
//! - [`token`]: runner tokens, kept only as their hash;
//! - [`crd`]: CustomResourceDefinitions generated from `model` (see the `crdgen` binary).

pub mod cluster;
pub mod crd;
pub mod lifecycle;
pub mod local;
pub mod runner_env;
pub mod token;

pub use local::{LocalConfig, LocalDriver, SessionStore};
pub use model::session::SessionKey;
