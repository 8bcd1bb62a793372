//! The local driver: runs each session's runner as a child process with its own workspace.
//!
//! One task owns all runner bookkeeping. It plans a session whenever it is notified (a
//! change in the store, a runner connecting, a process exiting) or a planned deadline
//! passes, and applies the plan: spawn, stop, kill. Runners live in their own process
//! group and write their output to a log file in the workspace, so they survive a server
//! restart; the next server adopts them by pid (checked against their start time) and they
//! reconnect by themselves.

pub mod process;
mod store;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use model::runner_env::{EXIT_RECORD_FILE, ExitRecord, RUNNER_LOG_FILE, STATE_DIR};
use model::session::SessionKey;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::lifecycle::{self, Action, Context, Exit, Runner};
use crate::runner_env::{RunSpec, runner_env};

pub use process::{
    descendants, kill_descendants, kill_tree, probe_sandbox, probe_sandbox_with, start_ticks,
};
pub use store::{Loaded, RunTicket, SessionStore, StoreError};

/// Folder under the workspaces where deleted sessions' workspaces wait for removal (a name
/// no project can have).
const TRASH_DIR: &str = ".deleted";

/// File in the workspace's state folder naming the runner process of the current run, so a
/// restarted server can adopt it.
const RUNNER_RECORD_FILE: &str = "runner.json";

/// The runner process of a run, as recorded when it was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunnerRecord {
    /// The run it belongs to.
    generation: u64,
    /// Process id.
    pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22), so that a reused
    /// pid is not mistaken for the runner.
    start_ticks: u64,
}

/// Configuration of the local driver.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The `runner` executable.
    pub runner_bin: PathBuf,
    /// Where workspaces live: `<workspaces>/<project>/<session>/`.
    pub workspaces: PathBuf,
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
    /// Stop every runner when the driver stops (test servers; normally runners outlive a
    /// server, and the next one adopts them).
    pub stop_runners_on_exit: bool,
    /// Run no agent outside its sandbox (a runner whose sandbox cannot run fails).
    pub require_sandbox: bool,
    /// Most runners alive at once; further sessions wait in `Pending`, first come first
    /// started (see [`default_max_running`]).
    pub max_running: usize,
}

/// Memory a session's runner and agent take, for the default cap (`claude` is ~300 MB).
pub const MEMORY_PER_SESSION: u64 = 512 * 1024 * 1024;

/// The default cap on running sessions: the memory available now, half a GiB per session,
/// at least one.
pub fn default_max_running() -> usize {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib.saturating_mul(1024))
        .unwrap_or(4 * 1024 * 1024 * 1024);
    usize::try_from(available / MEMORY_PER_SESSION)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Handle to the driver: tells it that a session needs attention.
#[derive(Clone, Debug)]
pub struct LocalDriver {
    tx: mpsc::UnboundedSender<Msg>,
}

#[derive(Debug)]
enum Msg {
    Notify(SessionKey),
    Deleted(SessionKey),
    Exited {
        key: SessionKey,
        generation: u64,
        exit: Exit,
    },
}

/// A driver whose handle exists but whose task has no store yet (the store may need the
/// handle: the server's services hold it).
pub struct Unstarted {
    config: LocalConfig,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
}

impl Unstarted {
    /// The driver's task over `store`; run it to make the driver work. Until it runs, what
    /// the handle is told waits.
    pub fn with_store<S: SessionStore>(self, store: S) -> DriverTask<S> {
        DriverTask {
            store,
            config: self.config,
            tx: self.tx,
            rx: self.rx,
            procs: HashMap::new(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            due: HashMap::new(),
            waiting: VecDeque::new(),
        }
    }
}

impl LocalDriver {
    /// Creates the driver's handle, and the task to give a store and run.
    pub fn new(config: LocalConfig) -> (LocalDriver, Unstarted) {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = LocalDriver { tx: tx.clone() };
        (driver, Unstarted { config, tx, rx })
    }

    /// Asks the driver to look at a session again.
    pub fn notify(&self, key: SessionKey) {
        let _ = self.tx.send(Msg::Notify(key));
    }

    /// A session was deleted: kill whatever of it runs and remove its workspace.
    pub fn delete(&self, key: SessionKey) {
        let _ = self.tx.send(Msg::Deleted(key));
    }
}

impl LocalConfig {
    /// The workspace directory of a session.
    pub fn workspace(&self, key: &SessionKey) -> PathBuf {
        self.workspaces.join(&key.project).join(&key.name)
    }
}

/// A runner process the driver knows of.
#[derive(Debug)]
struct Proc {
    generation: u64,
    pid: u32,
    /// The process's start time (see [`process::start_ticks`]): what tells it from a later
    /// process with the same pid.
    ticks: u64,
    /// Where this run's output starts in the log file.
    log_offset: u64,
    exit: Option<Exit>,
    /// Why it could not be started, when it could not.
    unstartable: Option<String>,
    /// When SIGTERM was sent.
    stopping_since: Option<Instant>,
    /// The session's workspace (holds the log and exit record).
    workspace: PathBuf,
}

impl Proc {
    /// Whether the process may still run.
    fn is_running(&self) -> bool {
        self.exit.is_none() && self.unstartable.is_none()
    }
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
    /// Sessions that would start but found no room, in the order they asked.
    waiting: VecDeque<SessionKey>,
}

impl<S: SessionStore> DriverTask<S> {
    /// Runs until `shutdown` resolves. Runners are left running on shutdown (the next server
    /// adopts them), unless [`LocalConfig::stop_runners_on_exit`] says otherwise.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        self.serve(shutdown).await;
        if self.config.stop_runners_on_exit {
            self.stop_all().await;
        }
    }

    /// Ends every runner this driver knows: SIGTERM, and after the grace period SIGKILL to
    /// whatever is left of each, its process group and its descendants.
    async fn stop_all(&mut self) {
        let running: Vec<(u32, u64)> = self
            .procs
            .values()
            .filter(|p| p.is_running() && process::is_alive(p.pid, p.ticks))
            .map(|p| (p.pid, p.ticks))
            .collect();
        for (pid, ticks) in &running {
            process::terminate(*pid, *ticks);
        }
        let deadline = Instant::now() + self.config.stop_grace;
        while Instant::now() < deadline
            && running
                .iter()
                .any(|(pid, ticks)| process::is_alive(*pid, *ticks))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (pid, ticks) in running {
            if process::is_alive(pid, ticks) {
                process::kill_tree(pid, ticks);
            }
        }
    }

    async fn serve(&mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(30));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // What an earlier server moved aside and had not removed yet.
        let trash = self.config.workspaces.join(TRASH_DIR);
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(trash));
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
                _ = housekeeping.tick() => self.rotate_logs(),
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
            Msg::Deleted(key) => {
                let workspace = self.config.workspace(&key);
                if let Some(p) = self.procs.remove(&key)
                    && p.is_running()
                {
                    process::kill_tree(p.pid, p.ticks);
                }
                self.due.remove(&key);
                self.waiting.retain(|k| *k != key);
                self.wake_waiting();
                // Moved aside at once, removed in the background: a session created next
                // under the same name gets a fresh workspace that no late removal touches.
                let trash = self.config.workspaces.join(TRASH_DIR).join(format!(
                    "{}-{}",
                    key.name,
                    Timestamp::now().as_nanosecond()
                ));
                if !workspace.exists() {
                    return;
                }
                let doomed = match std::fs::create_dir_all(self.config.workspaces.join(TRASH_DIR))
                    .and_then(|()| std::fs::rename(&workspace, &trash))
                {
                    Ok(()) => trash,
                    Err(e) => {
                        tracing::warn!(workspace = %workspace.display(), error = %e, "could not move a deleted session's workspace aside; removing it in place");
                        workspace
                    }
                };
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = std::fs::remove_dir_all(&doomed)
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(workspace = %doomed.display(), error = %e, "could not remove a deleted session's workspace");
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
                self.wake_waiting();
            }
        }
    }

    /// Rotates the logs of running runners that grew past [`MAX_RUNNER_LOG`].
    fn rotate_logs(&mut self) {
        for p in self.procs.values_mut().filter(|p| p.is_running()) {
            if rotate_log(&p.workspace.join(STATE_DIR).join(RUNNER_LOG_FILE)) {
                // This run's output now starts at the beginning.
                p.log_offset = 0;
            }
        }
    }

    /// Runners that may still run (a stopping one still holds its memory).
    fn running(&self) -> usize {
        self.procs.values().filter(|p| p.is_running()).count()
    }

    /// Plans the sessions first in line for the slots that are free.
    fn wake_waiting(&mut self) {
        let free = self.config.max_running.saturating_sub(self.running());
        let first: Vec<SessionKey> = self.waiting.iter().take(free).cloned().collect();
        first.into_iter().for_each(|k| self.enqueue(k));
    }

    /// Why `key` may not start a runner now, if it may not: the cap is reached, or the
    /// sessions that asked before it take the free slots.
    fn no_room(&mut self, key: &SessionKey) -> Option<String> {
        let running = self.running();
        let limit = self.config.max_running;
        let ahead = match self.waiting.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                self.waiting.push_back(key.clone());
                self.waiting.len() - 1
            }
        };
        if running + ahead < limit {
            return None;
        }
        let queue = match ahead {
            0 => "it is next".to_owned(),
            1 => "1 session is ahead of it".to_owned(),
            n => format!("{n} sessions are ahead of it"),
        };
        Some(format!(
            "waiting for a free slot: {running} of {limit} sessions are running (AMBIENT_MAX_RUNNING_SESSIONS); {queue}"
        ))
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
                && p.is_running()
            {
                process::kill_tree(p.pid, p.ticks);
            }
            self.due.remove(key);
            return Ok(());
        };
        let runner = self.observe(key, &loaded);
        let mut ctx = Context {
            now: Timestamp::now(),
            default_inactivity_timeout: self.config.default_inactivity_timeout,
            default_model: self.config.default_model.clone(),
            project_inactivity_timeout: loaded.project_inactivity_timeout,
            unhandled_messages: loaded.unhandled_messages,
            no_room: None,
        };
        let mut plan = lifecycle::plan(&loaded.session, &runner, &ctx);
        if matches!(plan.action, Some(Action::Start { .. })) {
            ctx.no_room = self.no_room(key);
            if ctx.no_room.is_some() {
                plan = lifecycle::plan(&loaded.session, &runner, &ctx);
            }
        }
        if ctx.no_room.is_none() {
            // Starting, or not asking to: out of the line.
            self.waiting.retain(|k| k != key);
        }
        if plan.status.is_some() || plan.clear_desired_phase || plan.event.is_some() {
            self.store.save(&loaded, &plan).await?;
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
        if phase.is_terminal() && self.procs.get(key).is_some_and(|p| !p.is_running()) {
            self.procs.remove(key);
        }
        if plan.event.is_some() {
            // What the plan read may have changed while it was saved (a message sent as the
            // run completed): look again now that the new phase is visible to everyone.
            self.enqueue(key.clone());
        } else if let Some(after) = plan.requeue_after {
            self.requeue_after(key, after);
        }
        Ok(())
    }

    /// What is known of the current generation's runner.
    fn observe(&mut self, key: &SessionKey, loaded: &Loaded) -> Runner {
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

    async fn start(
        &mut self,
        key: &SessionKey,
        loaded: &Loaded,
        resume: bool,
    ) -> Result<(), StoreError> {
        let ticket = self.store.begin_run(loaded, resume).await?;
        let workspace = self.config.workspace(key);
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
                "required"
            } else {
                "auto"
            },
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
    fn wait_for(&self, key: SessionKey, generation: u64, mut child: tokio::process::Child) {
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
    fn adopt(&mut self, key: &SessionKey, rp: RunnerRecord) {
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

    fn stop(&mut self, key: &SessionKey) {
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

/// Size past which a runner's log is rotated: at a run's start, and while it runs.
pub const MAX_RUNNER_LOG: u64 = 8 * 1024 * 1024;

/// Keeps a runner's log under [`MAX_RUNNER_LOG`]: past it, its content goes to
/// `runner.log.1` (replacing the one before) and the log starts over. The runner appends
/// (`O_APPEND`), so it goes on writing at the new end of the same file (what logrotate calls
/// copytruncate; a line written between the copy and the truncation is lost). Returns
/// whether it rotated.
pub fn rotate_log(log: &Path) -> bool {
    let big = std::fs::metadata(log).is_ok_and(|m| m.len() > MAX_RUNNER_LOG);
    if !big {
        return false;
    }
    let mut old = log.as_os_str().to_owned();
    old.push(".1");
    let rotated = std::fs::copy(log, &old).and_then(|_| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(log)
            .and_then(|f| f.set_len(0))
    });
    if let Err(e) = rotated {
        tracing::warn!(log = %log.display(), error = %e, "could not rotate a runner's log");
        return false;
    }
    true
}

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

/// A JSON file of the workspace's state folder; `None` when absent or unreadable.
fn read_json<T: serde::de::DeserializeOwned + StateFile>(workspace: &Path) -> Option<T> {
    let text = std::fs::read_to_string(workspace.join(STATE_DIR).join(T::NAME)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_json<T: Serialize>(workspace: &Path, name: &str, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    std::fs::write(workspace.join(STATE_DIR).join(name), text)
}

/// A file of the workspace's state folder.
trait StateFile {
    /// Its name.
    const NAME: &'static str;
}

impl StateFile for RunnerRecord {
    const NAME: &'static str = RUNNER_RECORD_FILE;
}

impl StateFile for ExitRecord {
    const NAME: &'static str = EXIT_RECORD_FILE;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

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

    /// A log past the limit starts over while its writer keeps writing to it, and what it
    /// held is kept in `runner.log.1`; a small log is left alone.
    #[test]
    fn a_runner_log_is_rotated_under_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(RUNNER_LOG_FILE);
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writer.write_all(b"small\n").unwrap();
        assert!(!rotate_log(&log));
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..9 {
            writer.write_all(&chunk).unwrap();
        }
        assert!(rotate_log(&log));
        writer.write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
        let old = dir.path().join(format!("{RUNNER_LOG_FILE}.1"));
        assert!(std::fs::metadata(&old).unwrap().len() > MAX_RUNNER_LOG);
    }
}
