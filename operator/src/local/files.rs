//! Files runners: a stopped session's workspace served to the Files panel by `runner files`
//! (no agent, no credential), started when the server asks for it and ended when the session
//! starts a run (whose runner serves the files) or is deleted. It exits by itself once idle;
//! the server's files-runner endpoint admits it by a token of its own.

use super::*;

/// File in [`STATE_DIR`] receiving a files runner's output (replaced by each one).
pub const FILES_RUNNER_LOG_FILE: &str = "files-runner.log";

/// A files runner the driver started.
#[derive(Debug, Clone, Copy)]
pub(super) struct FilesProc {
    pid: u32,
    ticks: u64,
}

impl<S: SessionStore> DriverTask<S> {
    /// Starts a files runner on the session's workspace, unless one runs already, the
    /// session runs (its runner serves the files), or it has no workspace.
    pub(super) async fn start_files(
        &mut self,
        key: &SessionKey,
        loaded: &Loaded,
    ) -> Result<(), StoreError> {
        if loaded.session.phase().is_active() || self.procs.get(key).is_some_and(Proc::is_running) {
            return Ok(());
        }
        if let Some(f) = self.files.get(key) {
            if process::is_alive(f.pid, f.ticks) {
                return Ok(());
            }
            self.files.remove(key);
        }
        let workspace = self.config.workspace(key);
        if !workspace.is_dir() {
            tracing::info!(session = %key, "no workspace to serve");
            return Ok(());
        }
        let token = self.store.begin_files(loaded).await?;
        let sandbox = if self.config.require_sandbox {
            SandboxMode::Required
        } else {
            SandboxMode::Auto
        };
        let vars = crate::runner_env::files_env(
            &loaded.session,
            &workspace,
            &self.config.backend_api_url,
            Some(&token),
            sandbox,
        );
        match spawn_files(&self.config.runner_bin, &workspace, &vars) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or_default();
                let ticks = process::start_ticks(pid).unwrap_or_default();
                tracing::info!(session = %key, pid, "files runner started");
                self.files.insert(key.clone(), FilesProc { pid, ticks });
                let (tx, key) = (self.tx.clone(), key.clone());
                tokio::spawn(async move {
                    let _ = child.wait().await;
                    let _ = tx.send(Msg::FilesExited { key, pid });
                });
            }
            Err(e) => {
                tracing::error!(session = %key, error = %e, "could not start a files runner");
            }
        }
        Ok(())
    }

    /// Ends the session's files runner, if one runs.
    pub(super) fn end_files(&mut self, key: &SessionKey) {
        if let Some(f) = self.files.remove(key)
            && process::is_alive(f.pid, f.ticks)
        {
            process::kill_tree(f.pid, f.ticks);
        }
    }

    /// Ends every files runner (the driver stops).
    pub(super) fn end_all_files(&mut self) {
        let keys: Vec<SessionKey> = self.files.keys().cloned().collect();
        for key in keys {
            self.end_files(&key);
        }
    }

    /// A files runner exited.
    pub(super) fn files_exited(&mut self, key: &SessionKey, pid: u32) {
        if self.files.get(key).is_some_and(|f| f.pid == pid) {
            self.files.remove(key);
        }
    }
}

/// Starts `runner files` in the workspace, in its own process group, with `vars` and only
/// what a process needs of the server's environment (not the owner's ssh agent: it pushes
/// nothing), its output in [`FILES_RUNNER_LOG_FILE`].
fn spawn_files(
    bin: &Path,
    workspace: &Path,
    vars: &[(String, String)],
) -> std::io::Result<tokio::process::Child> {
    let state = workspace.join(STATE_DIR);
    std::fs::create_dir_all(&state)?;
    let log = std::fs::File::create(state.join(FILES_RUNNER_LOG_FILE))?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("files")
        .current_dir(workspace)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(false)
        .env_clear()
        .envs(
            ["PATH", "LANG", "LC_ALL", "TZ", "RUST_LOG"]
                .into_iter()
                .filter_map(|k| Some((k, std::env::var_os(k)?))),
        )
        .env("HOME", &state)
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(idle) = std::env::var_os(model::runner_env::FILES_IDLE_SECONDS) {
        cmd.env(model::runner_env::FILES_IDLE_SECONDS, idle);
    }
    cmd.spawn()
}
