//! `runner files`: a stopped session's workspace, served to the Files panel by a short-lived
//! runner that does nothing else.
//!
//! A driver starts it when someone opens the files of a session that has no run (the local
//! driver as a process on the workspace folder, the operator as a one-container Job on the
//! workspace claim). It clones nothing, runs no agent, holds no credential: it connects to
//! the server's files-runner endpoint with a token that admits only that, answers workspace
//! requests with the same code as a run's runner ([`crate::files`]: no link followed, git
//! confined), and exits once no request came for a while, when the server says finish (the
//! session started a run, whose runner serves the files from then on), or when the server
//! refuses it. Uploads made meanwhile are noted for the session's next run, which tells its
//! agent.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use model::runner_env::{self as env, exit};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Connect, Repos};
use crate::files::Files;
use crate::git::Confinement;
use crate::link::{Down, Link, LinkConfig};

/// How often the runner looks at how long it has been idle.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// Give up after the server has been unreachable this long.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// Environment of a files runner (a subset of a run's).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "runner files",
    about = "Serves a stopped session's workspace to the platform's Files panel"
)]
pub struct FilesConfig {
    /// The session, its workspace, and the server to connect to (a files runner's token).
    #[command(flatten)]
    pub connect: Connect,
    /// The session's repositories, as JSON (their folders under `repos/`).
    #[arg(long, env = env::REPOS_JSON, value_name = env::REPOS_JSON, default_value = "[]", value_parser = crate::config::repos)]
    pub repos_json: Repos,
    /// Whether git runs in the bubblewrap sandbox (`auto`, `required`, `off`), as the agent's.
    #[arg(long, env = env::SANDBOX, value_name = env::SANDBOX, default_value = "auto", value_parser = crate::config::sandbox_mode)]
    pub sandbox: crate::sandbox::Mode,
    /// Seconds without a request before the runner exits.
    #[arg(long, env = env::FILES_IDLE_SECONDS, value_name = env::FILES_IDLE_SECONDS, default_value = "300", value_parser = crate::config::positive)]
    pub idle_seconds: NonZeroU32,
}

impl FilesConfig {
    /// The files-runner endpoint's WebSocket URL.
    pub fn ws_url(&self) -> Result<String, crate::error::Error> {
        self.connect.ws_url("files-runner/ws")
    }

    /// The folder names of the session's repositories under `repos/`, as a run names them.
    pub fn repo_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for repo in &self.repos_json.0 {
            let name = crate::workspace::repo_name(&repo.url, &names);
            names.push(name);
        }
        names
    }
}

/// `runner files [ARGS]`: serves until idle; returns the process exit code.
pub async fn main(args: impl Iterator<Item = String>) -> i32 {
    let config = match FilesConfig::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return exit::PREREQUISITE;
        }
    };
    let url = match config.ws_url() {
        Ok(url) => url,
        Err(e) => {
            eprintln!("runner files: {e}");
            return e.exit_code();
        }
    };
    let mode = config.sandbox;
    let isolation = match tokio::task::spawn_blocking(move || crate::sandbox::probe(mode)).await {
        Ok(Ok(isolation)) => isolation,
        Ok(Err(why)) => {
            eprintln!("runner files: {why}");
            return exit::PREREQUISITE;
        }
        Err(e) => {
            eprintln!("runner files: the sandbox probe failed: {e}");
            return exit::PREREQUISITE;
        }
    };
    let files = Arc::new(
        Files::new(
            config.connect.workspace.clone(),
            Confinement {
                isolation,
                workspace: config.connect.workspace.clone(),
            },
            config.repo_names(),
        )
        .without_agent(),
    );
    tracing::info!(session = %config.connect.session_name, "serving the workspace of a stopped session");
    let (link, down) = Link::start(LinkConfig {
        url,
        token: config.connect.token.clone(),
        generation: 0,
        handled_through: 0,
        give_up_after: GIVE_UP_AFTER,
    });
    link.serve_files(files.clone());
    let idle = Duration::from_secs(u64::from(config.idle_seconds.get()));
    let code = serve(&files, down, idle).await;
    files.abandon_all().await;
    code
}

/// Serves until the runner has been idle for `idle`, the server says finish or refuses it,
/// or a signal asks it to end.
async fn serve(
    files: &Files,
    mut down: tokio::sync::mpsc::UnboundedReceiver<Down>,
    idle: Duration,
) -> i32 {
    let mut tick = tokio::time::interval(IDLE_CHECK.min(idle));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch for SIGTERM");
            return exit::FAILED;
        }
    };
    loop {
        tokio::select! {
            work = down.recv() => match work {
                None | Some(Down::Finish) | Some(Down::Stop) => {
                    tracing::info!("the server says finish");
                    return exit::OK;
                }
                Some(Down::Fatal(why)) => {
                    tracing::warn!(%why, "the server refused this files runner");
                    return exit::OK;
                }
                // A files runner has no agent: the server sends it nothing else.
                Some(other) => tracing::warn!(?other, "ignored: no agent runs here"),
            },
            _ = tick.tick() => {
                if files.idle_for() >= idle {
                    tracing::info!(idle_seconds = idle.as_secs(), "no request for a while; exiting");
                    return exit::OK;
                }
            }
            _ = term.recv() => return exit::OK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<FilesConfig, clap::Error> {
        let mut args = vec![
            "runner files",
            "--session-name",
            "s1",
            "--project",
            "p",
            "--workspace",
            "/w",
            "--backend-api-url",
            "http://127.0.0.1:3000/api",
            "--token",
            "t",
        ];
        args.extend_from_slice(extra);
        FilesConfig::try_parse_from(args)
    }

    /// The files runner connects to its own endpoint, names the repositories' folders as a
    /// run does, and is idle five minutes before it exits unless told otherwise.
    #[test]
    fn a_files_runner_connects_to_its_endpoint_and_names_repositories_as_a_run() {
        let c = parse(&[
            "--repos-json",
            r#"[{"url":"https://example.com/a/app.git"},{"url":"git@example.com:b/app"}]"#,
        ])
        .unwrap();
        assert_eq!(
            c.ws_url().unwrap(),
            "ws://127.0.0.1:3000/api/projects/p/agentic-sessions/s1/files-runner/ws"
        );
        assert_eq!(c.repo_names(), ["app", "app-2"]);
        assert_eq!(c.idle_seconds.get(), 300);
        assert!(parse(&["--idle-seconds", "0"]).is_err());
        let mut relative = parse(&[]).unwrap();
        relative.connect.workspace = "w".into();
        assert!(
            relative.ws_url().is_err(),
            "a relative workspace is refused, as a run's is"
        );
    }
}
