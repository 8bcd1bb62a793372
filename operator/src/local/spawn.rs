//! The runner processes: what is observed of a session's runner (a child, a process left by
//! an earlier server, an exit record), and starting, adopting and stopping them: each in its
//! own process group, with an environment of the session's contract and little of the
//! server's, its output appended to the workspace's log.

use super::*;

impl<S: SessionStore> DriverTask<S> {
    /// What is known of the current generation's runner.
    pub(super) fn observe(&mut self, key: &SessionKey, loaded: &Loaded) -> Runner {
        if let Some(p) = self.procs.get(key) {
            if p.generation == loaded.generation {
                return match (&p.exit, &p.unstartable) {
                    (_, Some(why)) => Runner::Unstartable {
                        reason: "RunnerNotStarted".into(),
                        message: why.clone(),
                    },
                    (Some(exit), None) => Runner::Exited(Exit {
                        summary: loaded.summary.clone(),
                        ..exit.clone()
                    }),
                    (None, None) => Runner::Alive {
                        connected: loaded.connected,
                    },
                };
            }
            // A runner of an older generation: it must not linger.
            if p.is_running() {
                process::kill_tree(p.pid, p.ticks);
            }
            self.procs.remove(key);
        }
        let workspace = self.config.workspace(key);
        let record =
            read_json::<RunnerRecord>(&workspace).filter(|r| r.generation == loaded.generation);
        let Some(rp) = record else {
            return if loaded.generation > 0 && loaded.session.phase().is_active() {
                Runner::Lost {
                    reason: "the server stopped while starting the runner".into(),
                }
            } else {
                Runner::Absent
            };
        };
        if !loaded.session.phase().is_active() {
            return Runner::Absent;
        }
        if process::is_alive(rp.pid, rp.start_ticks) {
            tracing::info!(session = %key, pid = rp.pid, "adopting a runner started by an earlier server");
            self.adopt(key, rp);
            return Runner::Alive {
                connected: loaded.connected,
            };
        }
        match read_json::<ExitRecord>(&workspace) {
            Some(rec) if rec.generation == loaded.generation => Runner::Exited(Exit {
                code: Some(rec.exit_code),
                summary: loaded.summary.clone(),
                ..Exit::default()
            }),
            _ => Runner::Lost {
                reason: format!(
                    "the runner (pid {}) ended while the server was not running and left no exit status",
                    rp.pid
                ),
            },
        }
    }

    pub(super) async fn start(
        &mut self,
        key: &SessionKey,
        loaded: &Loaded,
        resume: bool,
    ) -> Result<(), StoreError> {
        let ticket = self.store.begin_run(loaded, resume).await?;
        let workspace = self.config.workspace(key);
        // A fork copies the workspace of the session it was forked from, in its project.
        let fork_workspace = loaded
            .session
            .spec
            .fork
            .as_ref()
            .filter(|f| f.is_valid())
            .map(|f| {
                self.config
                    .workspace(&SessionKey::new(key.project.clone(), f.session.clone()))
            });
        let run = RunSpec {
            generation: ticket.generation,
            token: Some(&ticket.token),
            resume,
            handled_through: ticket.handled_through,
            workspace: &workspace,
            backend_api_url: &self.config.backend_api_url,
            claude_bin: self.config.claude_bin.as_deref(),
            default_model: &self.config.default_model,
            credentials: &ticket.credentials,
            project_mcp_servers: ticket.project_mcp_servers.as_ref(),
            sandbox: if self.config.require_sandbox {
                SandboxMode::Required
            } else {
                SandboxMode::Auto
            },
            fork_workspace: fork_workspace.as_deref(),
        };
        let vars = runner_env(&loaded.session, &run);
        let mut proc = Proc {
            generation: ticket.generation,
            pid: 0,
            ticks: 0,
            log_offset: 0,
            exit: None,
            unstartable: None,
            stopping_since: None,
            workspace: workspace.clone(),
        };
        // A key holder's session gets none of the owner's own identities.
        let owners = loaded
            .session
            .spec
            .user_context
            .as_ref()
            .is_none_or(|u| !model::api::is_key_user(&u.user_id));
        match spawn(&self.config.runner_bin, &workspace, &vars, owners) {
            Ok((child, log_offset)) => {
                proc.pid = child.id().unwrap_or_default();
                proc.ticks = process::start_ticks(proc.pid).unwrap_or_default();
                proc.log_offset = log_offset;
                let record = RunnerRecord {
                    generation: ticket.generation,
                    pid: proc.pid,
                    start_ticks: proc.ticks,
                };
                if let Err(e) = write_json(&workspace, RUNNER_RECORD_FILE, &record) {
                    tracing::warn!(session = %key, error = %e, "could not record the runner's pid; a restarted server will not adopt it");
                }
                tracing::info!(session = %key, pid = proc.pid, generation = ticket.generation, resume, "runner started");
                self.wait_for(key.clone(), ticket.generation, child);
            }
            Err(e) => {
                tracing::error!(session = %key, error = %e, "could not start the runner");
                proc.unstartable = Some(format!(
                    "could not start {}: {e}",
                    self.config.runner_bin.display()
                ));
                self.enqueue(key.clone());
            }
        }
        self.procs.insert(key.clone(), proc);
        Ok(())
    }

    /// Reports the exit of a runner started by this driver.
    pub(super) fn wait_for(
        &self,
        key: SessionKey,
        generation: u64,
        mut child: tokio::process::Child,
    ) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => Exit {
                    code: status.code(),
                    signal: status.signal(),
                    ..Exit::default()
                },
                Err(e) => Exit {
                    stderr_tail: vec![format!("waiting for the runner failed: {e}")],
                    ..Exit::default()
                },
            };
            let _ = tx.send(Msg::Exited {
                key,
                generation,
                exit,
            });
        });
    }

    /// Watches a runner that is not our child: its exit status is unknowable, so the runner's
    /// exit record decides; without one it counts as lost.
    pub(super) fn adopt(&mut self, key: &SessionKey, rp: RunnerRecord) {
        let workspace = self.config.workspace(key);
        let log_offset = std::fs::metadata(workspace.join(STATE_DIR).join(RUNNER_LOG_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        self.procs.insert(
            key.clone(),
            Proc {
                generation: rp.generation,
                pid: rp.pid,
                ticks: rp.start_ticks,
                log_offset,
                exit: None,
                unstartable: None,
                stopping_since: None,
                workspace: workspace.clone(),
            },
        );
        let tx = self.tx.clone();
        let key = key.clone();
        tokio::spawn(async move {
            while process::is_alive(rp.pid, rp.start_ticks) {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let exit = match read_json::<ExitRecord>(&workspace)
                .filter(|r| r.generation == rp.generation)
            {
                Some(rec) => Exit {
                    code: Some(rec.exit_code),
                    ..Exit::default()
                },
                None => Exit {
                    stderr_tail: vec![format!(
                        "the runner (pid {}) ended without recording an exit status",
                        rp.pid
                    )],
                    ..Exit::default()
                },
            };
            let _ = tx.send(Msg::Exited {
                key,
                generation: rp.generation,
                exit,
            });
        });
    }

    pub(super) fn stop(&mut self, key: &SessionKey) {
        let grace = self.config.stop_grace;
        let Some(p) = self.procs.get_mut(key).filter(|p| p.is_running()) else {
            return;
        };
        match p.stopping_since {
            None => {
                tracing::info!(session = %key, pid = p.pid, "stopping the runner");
                p.stopping_since = Some(Instant::now());
                process::terminate(p.pid, p.ticks);
                self.requeue_after(key, grace);
            }
            Some(since) if since.elapsed() >= grace => {
                tracing::warn!(session = %key, pid = p.pid, "runner did not stop in time; killing it and its processes");
                process::kill_tree(p.pid, p.ticks);
            }
            Some(since) => self.requeue_after(key, grace.saturating_sub(since.elapsed())),
        }
    }
}

/// Starts a runner in its own process group, its output appended to the workspace's log.
/// Returns the child and the log offset where this run's output starts.
fn spawn(
    bin: &Path,
    workspace: &Path,
    vars: &[(String, String)],
    owners: bool,
) -> std::io::Result<(tokio::process::Child, u64)> {
    let state = workspace.join(STATE_DIR);
    std::fs::create_dir_all(&state)?;
    let _ = std::fs::remove_file(state.join(EXIT_RECORD_FILE));
    let _ = std::fs::remove_file(state.join(RUNNER_RECORD_FILE));
    rotate_log(&state.join(RUNNER_LOG_FILE));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join(RUNNER_LOG_FILE))?;
    let offset = log.metadata()?.len();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.current_dir(workspace)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own group: a Ctrl-C on the server's terminal does not reach it, and a stop can
        // signal the whole group.
        .process_group(0)
        .kill_on_drop(false);
    // Nothing of the server's environment (its credentials, whatever else its user has
    // there) reaches a runner but what a process needs to run; the rest is `vars`, as
    // resolved for the session's project.
    cmd.env_clear()
        .envs(inherited(owners))
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if !owners {
        // Not the owner's home either (git and ssh look for keys and configuration there).
        cmd.env("HOME", &state);
    }
    Ok((cmd.spawn()?, offset))
}

/// What a runner keeps of the server's environment: [`INHERITED`], less the owner's own
/// identities ([`OWNERS_ONLY`]) for a session that is not the owner's.
fn inherited(owners: bool) -> impl Iterator<Item = (&'static str, std::ffi::OsString)> {
    INHERITED
        .into_iter()
        .filter(move |k| owners || !OWNERS_ONLY.contains(k))
        .filter_map(|k| Some((k, std::env::var_os(k)?)))
}

/// What only the owner's sessions inherit: the owner's ssh agent and home.
const OWNERS_ONLY: [&str; 2] = ["SSH_AUTH_SOCK", "HOME"];

/// What a runner keeps of the server's environment.
const INHERITED: [&str; 9] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "RUST_LOG",
    "SSH_AUTH_SOCK",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// A session of a key's holder gets neither the owner's ssh agent nor the owner's home.
    #[test]
    fn a_key_holders_runner_inherits_none_of_the_owners_identities() {
        let theirs: Vec<_> = inherited(false).map(|(k, _)| k).collect();
        assert!(!theirs.contains(&"SSH_AUTH_SOCK") && !theirs.contains(&"HOME"));
        if std::env::var_os("HOME").is_some() {
            assert!(inherited(true).any(|(k, _)| k == "HOME"));
        }
        assert!(theirs.contains(&"PATH") || std::env::var_os("PATH").is_none());
    }
}
