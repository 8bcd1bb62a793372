//! The local driver: runs each session's runner as a child process with its own workspace.
//!
//! One task owns all runner bookkeeping. It plans a session whenever it is notified (a
//! change in the store, a runner connecting, a process exiting) or a planned deadline
//! passes, and applies the plan: spawn, stop, kill. Runners live in their own process
//! group and write their output to a log file in the workspace, so they survive a server
//! restart; the next server adopts them by pid (checked against their start time) and they
//! reconnect by themselves.
//!
//! Layout: this file the driver (its handle, its task, planning each session); [`spawn`] the
//! runner processes (observing, starting, adopting, stopping); [`files`] the files runners
//! (a stopped session's workspace, served); [`state`] what a run leaves in its
//! workspace's state folder; [`process`] the process-tree helpers (`hostproc`); [`store`] the platform
//! as the driver sees it.

/// The process-tree helpers and the sandbox probe (their own crate: the runner uses them too).
pub use hostproc as process;
mod files;
mod spawn;
mod state;
mod store;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use model::runner_env::{EXIT_RECORD_FILE, ExitRecord, RUNNER_LOG_FILE, STATE_DIR};
use model::session::SessionKey;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::lifecycle::{self, Action, Context, Exit, Runner};
use crate::runner_env::{RunSpec, runner_env};
use model::runner_env::SandboxMode;

pub use process::{
    descendants, kill_descendants, kill_tree, probe_sandbox, probe_sandbox_with, start_ticks,
};
pub use state::{MAX_RUNNER_LOG, rotate_log};
use state::{RUNNER_RECORD_FILE, RunnerRecord, read_json, write_json};
pub use store::{Loaded, RunTicket, SessionStore, StoreError};

/// Folder under the workspaces where deleted sessions' workspaces wait for removal (a name
/// no project can have).
const TRASH_DIR: &str = ".deleted";

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
    /// Someone wants the files of a session without a run.
    Files(SessionKey),
    FilesExited {
        key: SessionKey,
        pid: u32,
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
            evicting: HashSet::new(),
            files: HashMap::new(),
            files_wanted: HashSet::new(),
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

    /// Someone wants the files of a session without a run: start a files runner on its
    /// workspace (see `files`).
    pub fn serve_files(&self, key: SessionKey) {
        let _ = self.tx.send(Msg::Files(key));
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
    /// Running sessions whose agent waits for a person, being stopped to give their slot to
    /// a session that waits for one.
    evicting: HashSet<SessionKey>,
    /// Files runners (stopped sessions' workspaces, served to the Files panel).
    files: HashMap<SessionKey, files::FilesProc>,
    /// Sessions whose files were asked for since they were last looked at.
    files_wanted: HashSet<SessionKey>,
}

impl<S: SessionStore> DriverTask<S> {
    /// Runs until `shutdown` resolves. Runners are left running on shutdown (the next server
    /// adopts them), unless [`LocalConfig::stop_runners_on_exit`] says otherwise.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        self.serve(shutdown).await;
        // A files runner serves this server only: the next one starts its own when asked.
        self.end_all_files();
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
            Msg::Files(key) => {
                self.files_wanted.insert(key.clone());
                self.enqueue(key);
            }
            Msg::FilesExited { key, pid } => self.files_exited(&key, pid),
            Msg::Deleted(key) => {
                self.end_files(&key);
                self.files_wanted.remove(&key);
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

    /// Frees slots for the sessions waiting for one: stops the running sessions whose agent
    /// has waited for a person the longest (never one that works), as many as the sessions
    /// in line need beyond the stops under way. What waits for a person costs a resume later
    /// (about a second); what waits for a slot has not started at all.
    fn make_room(&mut self) {
        let procs = &self.procs;
        self.evicting
            .retain(|k| procs.get(k).is_some_and(|p| p.is_running()));
        let needed = (self.running() + self.waiting.len())
            .saturating_sub(self.config.max_running)
            .saturating_sub(self.evicting.len());
        if needed == 0 {
            return;
        }
        let mut idle = self.store.idle_agents();
        idle.sort_by_key(|(_, since)| *since);
        let victims: Vec<SessionKey> = idle
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| {
                !self.evicting.contains(k)
                    && self
                        .procs
                        .get(k)
                        .is_some_and(|p| p.is_running() && p.stopping_since.is_none())
            })
            .take(needed)
            .collect();
        for victim in victims {
            tracing::info!(session = %victim, "stopping a session waiting for a person to make room");
            self.evicting.insert(victim.clone());
            self.enqueue(victim);
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
                && p.is_running()
            {
                process::kill_tree(p.pid, p.ticks);
            }
            self.due.remove(key);
            self.end_files(key);
            self.files_wanted.remove(key);
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
            make_room: false,
        };
        // Its slot is wanted and its agent still waits for a person (not a message that
        // arrived since it was chosen).
        ctx.make_room =
            self.evicting.contains(key) && self.store.idle_agents().iter().any(|(k, _)| k == key);
        let mut plan = lifecycle::plan(&loaded.session, &runner, &ctx);
        if matches!(plan.action, Some(Action::Start { .. })) {
            ctx.no_room = self.no_room(key);
            if ctx.no_room.is_some() {
                plan = lifecycle::plan(&loaded.session, &runner, &ctx);
                self.make_room();
            }
        }
        if !matches!(plan.action, Some(Action::Stop { .. }))
            && !ctx.make_room
            && self.evicting.remove(key)
        {
            // It went back to work before its stop: another must make the room.
            self.make_room();
        }
        if ctx.no_room.is_none() {
            // Starting, or not asking to: out of the line.
            self.waiting.retain(|k| k != key);
        }
        if plan.status.is_some() || plan.clear_desired_phase || plan.event.is_some() {
            self.store.save(&loaded, &plan).await?;
        }
        match &plan.action {
            Some(Action::Start { resume }) => {
                // The run's runner serves the files from now on, and owns the workspace.
                self.end_files(key);
                self.files_wanted.remove(key);
                self.start(key, &loaded, *resume).await?
            }
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
        if plan.action.is_none() && self.files_wanted.contains(key) {
            self.start_files(key, &loaded).await?;
            self.files_wanted.remove(key);
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
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
