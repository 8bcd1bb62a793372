//! The local driver: runs each session's runner as a child process with its own workspace.
//!
//! One task owns all runner bookkeeping. It plans a session whenever it is notified (a
//! change in the store, a runner connecting, a process exiting) or a planned deadline
//! passes, and applies the plan: spawn, stop, kill. Runners live in their own process
//! group and write their output to a log file in the workspace, so they survive a server
//! restart; the next server adopts them by pid (checked against their start time) and they
//! reconnect by themselves.

mod process;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use model::runner_env::{EXIT_RECORD_FILE, ExitRecord, RUNNER_LOG_FILE, STATE_DIR};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::lifecycle::{self, Action, Context, Exit, Runner};
use crate::runner_env::{RunSpec, runner_env};
use crate::store::{Loaded, RunnerProcess, SessionKey, SessionStore, StoreError};

pub use process::{descendants, kill_descendants, kill_tree, start_ticks};

/// Configuration of the local driver.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The `runner` executable.
    pub runner_bin: PathBuf,
    /// Base URL of the server's API given to runners (`http://127.0.0.1:3000/api`).
    pub backend_api_url: String,
    /// The `claude` executable given to runners, when not on their PATH.
    pub claude_bin: Option<PathBuf>,
    /// Model for sessions that name none.
    pub default_model: String,
    /// Inactivity timeout when neither session nor project sets one (seconds; 0 disables).
    pub default_inactivity_timeout: i64,
    /// Time a runner gets to stop after SIGTERM before it and its descendants are killed.
    pub stop_grace: Duration,
}

/// Handle to the driver: tells it that a session needs attention.
#[derive(Clone, Debug)]
pub struct LocalDriver {
    tx: mpsc::UnboundedSender<Msg>,
}

#[derive(Debug)]
enum Msg {
    Notify(SessionKey),
    Deleted {
        key: SessionKey,
        workspace: PathBuf,
    },
    Exited {
        key: SessionKey,
        generation: u64,
        exit: Exit,
    },
}

impl LocalDriver {
    /// Creates the driver; run the returned task to make it work.
    pub fn new<S: SessionStore>(store: S, config: LocalConfig) -> (LocalDriver, DriverTask<S>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = LocalDriver { tx: tx.clone() };
        let task = DriverTask {
            store,
            config,
            tx,
            rx,
            procs: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            due: HashMap::new(),
        };
        (driver, task)
    }

    /// Asks the driver to look at a session again.
    pub fn notify(&self, key: SessionKey) {
        let _ = self.tx.send(Msg::Notify(key));
    }

    /// A session was deleted: kill whatever of it runs and remove its workspace.
    pub fn delete(&self, key: SessionKey, workspace: PathBuf) {
        let _ = self.tx.send(Msg::Deleted { key, workspace });
    }
}

/// A runner process the driver knows of.
#[derive(Debug)]
struct Proc {
    generation: u64,
    pid: u32,
    /// Where this run's output starts in the log file.
    log_offset: u64,
    exit: Option<Exit>,
    /// When SIGTERM was sent.
    stopping_since: Option<Instant>,
    /// The session's workspace (holds the log and exit record).
    workspace: PathBuf,
}

/// The driver's event loop; see [`DriverTask::run`].
pub struct DriverTask<S> {
    store: S,
    config: LocalConfig,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    procs: HashMap<SessionKey, Proc>,
    queue: VecDeque<SessionKey>,
    queued: HashSet<SessionKey>,
    due: HashMap<SessionKey, Instant>,
}

impl<S: SessionStore> DriverTask<S> {
    /// Runs until `shutdown` resolves. Runners are left running on shutdown: the next server
    /// adopts them.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.store.unfinished().await {
                Ok(keys) => {
                    keys.into_iter().for_each(|k| self.enqueue(k));
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listing sessions failed; retrying");
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        loop {
            while let Some(key) = self.queue.pop_front() {
                self.queued.remove(&key);
                self.reconcile(&key).await;
                // Take what arrived meanwhile without starving the queue.
                while let Ok(msg) = self.rx.try_recv() {
                    self.handle(msg);
                }
            }
            let next_due = self.due.values().min().copied();
            tokio::select! {
                _ = &mut shutdown => return,
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                _ = sleep_until(next_due) => {
                    let now = Instant::now();
                    let ready: Vec<_> = self.due.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
                    for key in ready {
                        self.due.remove(&key);
                        self.enqueue(key);
                    }
                }
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Notify(key) => self.enqueue(key),
            Msg::Deleted { key, workspace } => {
                if let Some(p) = self.procs.remove(&key)
                    && p.exit.is_none()
                {
                    process::kill_tree(p.pid);
                }
                self.due.remove(&key);
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = std::fs::remove_dir_all(&workspace)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(workspace = %workspace.display(), error = %e, "could not remove a deleted session's workspace");
                    }
                });
            }
            Msg::Exited {
                key,
                generation,
                mut exit,
            } => {
                if let Some(p) = self
                    .procs
                    .get_mut(&key)
                    .filter(|p| p.generation == generation)
                {
                    let tail = process::tail(
                        &p.workspace.join(STATE_DIR).join(RUNNER_LOG_FILE),
                        p.log_offset,
                        20,
                    );
                    exit.stderr_tail.extend(tail);
                    p.exit = Some(exit);
                }
                self.enqueue(key);
            }
        }
    }

    fn enqueue(&mut self, key: SessionKey) {
        if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    fn requeue_after(&mut self, key: &SessionKey, after: Duration) {
        let at = Instant::now() + after;
        let entry = self.due.entry(key.clone()).or_insert(at);
        *entry = (*entry).min(at);
    }

    async fn reconcile(&mut self, key: &SessionKey) {
        match self.try_reconcile(key).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => self.enqueue(key.clone()),
            Err(e) => {
                tracing::warn!(session = %key, error = %e, "reconcile failed; retrying");
                self.requeue_after(key, Duration::from_secs(2));
            }
        }
    }

    async fn try_reconcile(&mut self, key: &SessionKey) -> Result<(), StoreError> {
        let Some(loaded) = self.store.load(key).await? else {
            // Deleted: nothing of it may keep running.
            if let Some(p) = self.procs.remove(key)
                && p.exit.is_none()
            {
                process::kill_tree(p.pid);
            }
            self.due.remove(key);
            return Ok(());
        };
        let runner = self.observe(key, &loaded);
        let ctx = Context {
            now: Timestamp::now(),
            default_inactivity_timeout: self.config.default_inactivity_timeout,
            project_inactivity_timeout: loaded.project_inactivity_timeout,
        };
        let plan = lifecycle::plan(&loaded.session, &runner, &ctx);
        if plan.status.is_some() || plan.clear_desired_phase || plan.event.is_some() {
            self.store.save(key, loaded.resource_version, &plan).await?;
        }
        match &plan.action {
            Some(Action::Start { resume }) => self.start(key, &loaded, *resume).await?,
            Some(Action::Stop { .. }) => self.stop(key),
            None => {}
        }
        let phase = plan
            .status
            .as_ref()
            .map(|s| s.phase)
            .unwrap_or_else(|| loaded.session.phase());
        if phase.is_terminal() && self.procs.get(key).is_some_and(|p| p.exit.is_some()) {
            self.procs.remove(key);
        }
        if let Some(after) = plan.requeue_after {
            self.requeue_after(key, after);
        }
        Ok(())
    }

    /// What is known of the current generation's runner.
    fn observe(&mut self, key: &SessionKey, loaded: &Loaded) -> Runner {
        if let Some(p) = self.procs.get(key) {
            if p.generation == loaded.generation {
                return match &p.exit {
                    Some(exit) => Runner::Exited(Exit {
                        summary: loaded.summary.clone(),
                        ..exit.clone()
                    }),
                    None => Runner::Alive {
                        connected: loaded.connected,
                    },
                };
            }
            // A runner of an older generation: it must not linger.
            if p.exit.is_none() {
                process::kill_tree(p.pid);
            }
            self.procs.remove(key);
        }
        let Some(rp) = loaded.runner else {
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
            self.adopt(key, loaded, rp);
            return Runner::Alive {
                connected: loaded.connected,
            };
        }
        match read_exit_record(&loaded.workspace) {
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

    async fn start(
        &mut self,
        key: &SessionKey,
        loaded: &Loaded,
        resume: bool,
    ) -> Result<(), StoreError> {
        let ticket = self.store.begin_run(key, resume).await?;
        let resume = ticket.resume;
        let run = RunSpec {
            generation: ticket.generation,
            token: &ticket.token,
            resume,
            handled_through: ticket.handled_through,
            workspace: &loaded.workspace,
            backend_api_url: &self.config.backend_api_url,
            claude_bin: self.config.claude_bin.as_deref(),
            default_model: &self.config.default_model,
            credentials: &ticket.credentials,
            project_mcp_servers: ticket.project_mcp_servers.as_ref(),
        };
        let vars = runner_env(&loaded.session, &run);
        match spawn(&self.config.runner_bin, &loaded.workspace, &vars) {
            Ok((mut child, log_offset)) => {
                let pid = child.id().unwrap_or_default();
                let start_ticks = process::start_ticks(pid).unwrap_or_default();
                tracing::info!(session = %key, pid, generation = ticket.generation, resume, "runner started");
                self.procs.insert(
                    key.clone(),
                    Proc {
                        generation: ticket.generation,
                        pid,
                        log_offset,
                        exit: None,
                        stopping_since: None,
                        workspace: loaded.workspace.clone(),
                    },
                );
                let tx = self.tx.clone();
                let (k, generation) = (key.clone(), ticket.generation);
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
                        key: k,
                        generation,
                        exit,
                    });
                });
                self.store
                    .record_runner(key, ticket.generation, RunnerProcess { pid, start_ticks })
                    .await?;
            }
            Err(e) => {
                tracing::error!(session = %key, error = %e, "could not start the runner");
                self.procs.insert(
                    key.clone(),
                    Proc {
                        generation: ticket.generation,
                        pid: 0,
                        log_offset: 0,
                        exit: Some(Exit {
                            stderr_tail: vec![format!(
                                "could not start {}: {e}",
                                self.config.runner_bin.display()
                            )],
                            ..Exit::default()
                        }),
                        stopping_since: None,
                        workspace: loaded.workspace.clone(),
                    },
                );
                self.enqueue(key.clone());
            }
        }
        Ok(())
    }

    /// Watches a runner that is not our child: its exit status is unknowable, so the runner's
    /// exit record decides; without one it counts as lost.
    fn adopt(&mut self, key: &SessionKey, loaded: &Loaded, rp: RunnerProcess) {
        let generation = loaded.generation;
        let workspace = loaded.workspace.clone();
        let log_offset = std::fs::metadata(workspace.join(STATE_DIR).join(RUNNER_LOG_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        self.procs.insert(
            key.clone(),
            Proc {
                generation,
                pid: rp.pid,
                log_offset,
                exit: None,
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
            let exit = match read_exit_record(&workspace).filter(|r| r.generation == generation) {
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
                generation,
                exit,
            });
        });
    }

    fn stop(&mut self, key: &SessionKey) {
        let grace = self.config.stop_grace;
        let Some(p) = self.procs.get_mut(key).filter(|p| p.exit.is_none()) else {
            return;
        };
        match p.stopping_since {
            None => {
                tracing::info!(session = %key, pid = p.pid, "stopping the runner");
                p.stopping_since = Some(Instant::now());
                process::terminate(p.pid);
                self.requeue_after(key, grace);
            }
            Some(since) if since.elapsed() >= grace => {
                tracing::warn!(session = %key, pid = p.pid, "runner did not stop in time; killing it and its processes");
                process::kill_tree(p.pid);
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
) -> std::io::Result<(tokio::process::Child, u64)> {
    let state = workspace.join(STATE_DIR);
    std::fs::create_dir_all(&state)?;
    let _ = std::fs::remove_file(state.join(EXIT_RECORD_FILE));
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
    // The server's own credentials reach a runner only through `vars`, as resolved for its
    // project; nothing else of that kind is inherited.
    for name in INHERIT_BLOCKLIST {
        cmd.env_remove(name);
    }
    for (name, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
        if name.starts_with(model::validate::RESERVED_ENV_PREFIX) {
            cmd.env_remove(name);
        }
    }
    cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Ok((cmd.spawn()?, offset))
}

/// Variables of the server's environment a runner must not inherit.
const INHERIT_BLOCKLIST: &[&str] = &[
    model::runner_env::ANTHROPIC_API_KEY,
    model::runner_env::ANTHROPIC_AUTH_TOKEN,
    model::runner_env::ANTHROPIC_BASE_URL,
    model::runner_env::GITHUB_TOKEN,
    model::runner_env::GITLAB_TOKEN,
];

fn read_exit_record(workspace: &Path) -> Option<ExitRecord> {
    let text = std::fs::read_to_string(workspace.join(STATE_DIR).join(EXIT_RECORD_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
