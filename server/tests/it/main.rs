//! The server's integration tests, linked into one binary (one link on a 2-core machine
//! instead of one per topic): a real server on a loopback port, the real router, real
//! WebSockets, the real runner and `claude` CLI against a mock model.
//!
//! Topics: [`doors`] (authentication, host and origin checks), [`permissions`] (roles and project keys), [`people`] (Kubernetes identities and their roles), [`api_projects`], [`api_sessions`], [`api_control`] (REST); [`hub`] (the event
//! hub's WebSockets with simulated peers); [`session_e2e`], [`interactive`] (warm agents
//! between turns), [`files`] (the workspace through the runner), [`runner_failures`],
//! [`runner_git`] (whole sessions); [`restart`] (a killed server); [`kubernetes`] (Kubernetes mode on the test API server); [`sandbox`] (what an agent can see); [`cli`] (the `ambient` client); [`assets`] (the UI's
//! assets). [`common`] starts servers and talks to them.

mod api_control;
mod api_projects;
mod api_sessions;
mod assets;
mod attempts;
mod cli;
mod common;
mod doors;
mod files;
mod forks;
mod hub;
mod interactive;
mod kubernetes;
mod mcp;
mod metrics;
mod people;
mod permissions;
mod restart;
mod runner_failures;
mod runner_git;
mod sandbox;
mod session_e2e;
mod workflows;
