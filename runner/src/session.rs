//! One run of a session: prepare the workspace, drive the agent through the user's messages,
//! deliver the work, report the result, exit with a code the operator understands.
//!
//! The agent is idle when every message it was given has its turn result. The runner then
//! tells the server, which either sends more work or says finish.

use std::time::{Duration, Instant};

use model::protocol::{ErrorEvent, LogLevel, LogLine, RunResult, SessionEvent};
use model::runner_env::{EXIT_RECORD_FILE, ExitRecord, STATE_DIR, exit};
use tokio::io::{BufReader, Lines};
use tokio::process::ChildStdout;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::claude::{self, Claude, Spec};
use crate::config::Config;
use crate::deliver::{self, Summary};
use crate::error::Error;
use crate::keeper::Keeper;
use crate::link::{Down, Link, LinkConfig};
use crate::proxy::ModelProxy;
use crate::sandbox::Isolation;
use crate::translate::{Output, Translator};
use crate::workspace::Workspace;

/// How long the runner waits for the server to take its last events before exiting.
const FINAL_FLUSH: Duration = Duration::from_secs(120);
/// How long the CLI gets to exit after its input is closed, or after an interrupt on stop.
const CLI_GRACE: Duration = Duration::from_secs(5);
/// Time for delivering the work after a normal end, and after a stop (the operator kills the
/// runner a little later).
const DELIVERY_BUDGET: Duration = Duration::from_secs(300);
const STOP_DELIVERY_BUDGET: Duration = Duration::from_secs(7);

/// How the agent's part ended.
struct Ended {
    code: i32,
    /// Stopped on request: deliver quickly.
    stopped: bool,
    /// The server refused this runner: another one owns the workspace now; touch nothing.
    refused: bool,
}

impl Ended {
    fn stopped() -> Ended {
        Ended {
            code: exit::OK,
            stopped: true,
            refused: false,
        }
    }
}

/// Runs the session; returns the process exit code.
pub async fn run(config: Config) -> i32 {
    let started = Instant::now();
    let (link, mut down) = Link::start(LinkConfig {
        url: config.ws_url.clone(),
        token: config.token.clone(),
        generation: config.generation,
        handled_through: config.handled_through,
        give_up_after: Duration::from_secs(15 * 60),
    });
    let mut translator = Translator::new(config.resume);
    let logger = link.clone();
    let prepared = async {
        let keeper = Keeper::open(&config).await?;
        let isolation = isolation(&config, &link).await?;
        let ws = Workspace::prepare(&config, &keeper, isolation, |m| {
            log(&logger, LogLevel::Info, m)
        })
        .await?;
        Ok::<_, Error>((keeper, ws))
    };
    let code = match prepared.await {
        Err(e) => fail(&link, e),
        Ok((keeper, ws)) => {
            link.serve_files(ws.files.clone());
            let mut summary = Summary::default();
            let ended = match drive(
                &config,
                &keeper,
                &ws,
                &link,
                &mut down,
                &mut translator,
                &mut summary,
            )
            .await
            {
                Ok(ended) => ended,
                Err(e) => Ended {
                    code: fail(&link, e),
                    stopped: false,
                    refused: false,
                },
            };
            if !ended.refused {
                deliver_work(&config, &ws, &keeper, &link, &translator, summary, &ended).await;
            }
            ended.code
        }
    };
    let totals = translator.totals;
    link.emit(SessionEvent::Result(RunResult {
        exit_code: code,
        is_error: code != exit::OK,
        num_turns: totals.num_turns,
        duration_ms: started.elapsed().as_millis() as u64,
        usage: totals.usage,
        text: totals.last_text,
    }));
    if !link.flush(FINAL_FLUSH).await {
        tracing::error!("the server did not take the last events; they are lost with this runner");
    }
    record_exit(&config.workspace, config.generation, code);
    report_usage();
    code
}

/// Commits, pushes and proposes the agent's work, within a budget (a short one after a
/// stop: the operator kills the runner soon after).
async fn deliver_work(
    config: &Config,
    ws: &Workspace,
    keeper: &Keeper,
    link: &Link,
    translator: &Translator,
    mut summary: Summary,
    ended: &Ended,
) {
    summary.turns = translator.totals.num_turns;
    summary.cost_usd = translator.totals.usage.cost_usd;
    summary.result = translator.totals.last_text.clone();
    let budget = if ended.stopped {
        STOP_DELIVERY_BUDGET
    } else {
        DELIVERY_BUDGET
    };
    let delivery = deliver::deliver(config, ws, keeper, link, &summary);
    if tokio::time::timeout(budget, delivery).await.is_err() {
        fail(link, Error::DeliveryTimeout);
    }
}

/// How the agent (and git on its repositories) is confined in this run: the sandbox when it
/// can run here (or as `AMBIENT_SANDBOX` requires), else none, with a warning.
async fn isolation(config: &Config, link: &Link) -> Result<Isolation, Error> {
    // Off the runtime's one thread: the probe starts a process and waits for it, and the
    // link to the server must not wait meanwhile.
    let mode = config.sandbox;
    let isolation = tokio::task::spawn_blocking(move || crate::sandbox::probe(mode))
        .await
        .map_err(|e| Error::Sandbox(format!("the sandbox probe failed: {e}")))?
        .map_err(Error::Sandbox)?;
    if let Isolation::None(why) = &isolation
        && config.sandbox != crate::sandbox::Mode::Off
    {
        log(
            link,
            LogLevel::Warn,
            format!("the agent runs without a sandbox: {why}"),
        );
    }
    if let Some(why) = isolation.shared_network() {
        log(
            link,
            LogLevel::Warn,
            format!(
                "the agent shares this machine's network (its loopback services included): {why}"
            ),
        );
    }
    Ok(isolation)
}

/// Reports a failure as an event; returns its exit code.
fn fail(link: &Link, e: Error) -> i32 {
    tracing::error!(kind = e.kind(), "{e}");
    link.emit(SessionEvent::Error(ErrorEvent {
        message: e.to_string(),
        code: Some(e.kind().into()),
    }));
    e.exit_code()
}

fn record_exit(workspace: &std::path::Path, generation: u64, code: i32) {
    let record = ExitRecord {
        generation,
        exit_code: code,
    };
    let path = workspace.join(STATE_DIR).join(EXIT_RECORD_FILE);
    if let Err(e) = std::fs::write(&path, serde_json::to_vec(&record).unwrap_or_default()) {
        tracing::warn!(path = %path.display(), error = %e, "could not write the exit record");
    }
}

/// Logs the runner's own peak memory and CPU time (its children excluded).
fn report_usage() {
    use nix::sys::resource::{UsageWho, getrusage};
    if let Ok(u) = getrusage(UsageWho::RUSAGE_SELF) {
        let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e3 + t.tv_usec() as f64 / 1e3;
        // The kernel's high-water mark of this process's resident set.
        let hwm_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        tracing::info!(
            vm_hwm_kib = hwm_kib,
            max_rss_kib = u.max_rss(),
            user_ms = ms(u.user_time()) as u64,
            system_ms = ms(u.system_time()) as u64,
            "runner resource usage"
        );
    }
}

fn log(link: &Link, level: LogLevel, message: impl Into<String>) {
    link.emit(SessionEvent::Log(LogLine {
        level,
        message: message.into(),
    }));
}

/// Starts the agent and takes it through the user's messages until it finishes, is stopped
/// or fails.
async fn drive(
    config: &Config,
    keeper: &Keeper,
    ws: &Workspace,
    link: &Link,
    down: &mut mpsc::UnboundedReceiver<Down>,
    tr: &mut Translator,
    summary: &mut Summary,
) -> Result<Ended, Error> {
    let (mut agent, mut lines) = Agent::start(config, keeper, ws, link, tr, summary).await?;
    let signal_failure = |e: std::io::Error| Error::Signals(e.to_string());
    let mut term = signal(SignalKind::terminate()).map_err(signal_failure)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_failure)?;
    loop {
        let step = tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => agent.output(&line, tr).await,
                Ok(None) | Err(_) => agent.output_closed(tr).await,
            },
            cmd = down.recv() => agent.command(cmd, summary).await,
            _ = term.recv() => {
                log(link, LogLevel::Info, "stopping: the runner was asked to terminate");
                agent.stop().await
            }
            _ = int.recv() => agent.stop().await,
        };
        if let Some(ended) = step? {
            return Ok(ended);
        }
    }
}

/// The running agent: the CLI and what the runner knows of its turns.
struct Agent<'a> {
    claude: Claude,
    link: &'a Link,
    ws: &'a Workspace,
    /// Highest user message given to the agent.
    handled: u64,
    /// Messages given whose turn has not ended.
    pending_turns: u32,
    /// The server said finish and the CLI's input is closed.
    finishing: bool,
    /// Model switches sent to the CLI and not yet answered, by request id.
    model_switches: std::collections::HashMap<String, String>,
    /// The CLI's requests that wait for a person's answer, by id: their tool and input.
    asks: std::collections::HashMap<String, (String, serde_json::Value)>,
    /// What a person decides, and what the runner allows alone.
    permissions: claude::Permissions,
    /// The inputs of the current turn's tool calls, by id: what an ask shows when the CLI
    /// asks with an empty input (`ExitPlanMode`, whose plan is in its call).
    tool_inputs: std::collections::HashMap<String, serde_json::Value>,
}

impl<'a> Agent<'a> {
    /// Starts the CLI (resuming the conversation when asked and possible) and gives it the
    /// initial prompt of a fresh session.
    async fn start(
        config: &Config,
        keeper: &Keeper,
        ws: &'a Workspace,
        link: &'a Link,
        tr: &mut Translator,
        summary: &mut Summary,
    ) -> Result<(Agent<'a>, Lines<BufReader<ChildStdout>>), Error> {
        if !keeper.has_model() {
            return Err(Error::NoCredentials);
        }
        let isolation = ws.confinement.isolation.clone();
        let proxy_failed =
            |e: std::io::Error| Error::Workspace(format!("cannot start the model proxy: {e}"));
        // With a network of its own, the agent finds the proxy on its own loopback (it
        // listens there once the sandbox exists); otherwise on this machine's.
        // The proxy relays the run's HTTP MCP servers too, with their credentials (here, when
        // this runner holds them; in a pod, the keeper builds the same routes).
        let mcp_routes = || {
            let (routes, warnings) =
                crate::mcp::Routes::new(&config.mcp_servers, &config.credentials);
            for w in warnings {
                log(link, LogLevel::Warn, &w);
            }
            routes
        };
        let (proxy_url, proxy_token, own_network_token) =
            if let Some(remote) = keeper.remote_proxy() {
                // The keeper of the pod runs the proxy, on the pod's loopback.
                (remote.proxy_url.clone(), remote.proxy_token.clone(), None)
            } else if isolation.own_network() {
                let token = crate::proxy::new_token();
                let url = format!("http://127.0.0.1:{}", crate::netns::PROXY_PORT);
                (url, token.clone(), Some(token))
            } else {
                let proxy = ModelProxy::start(&config.credentials, mcp_routes())
                    .await
                    .map_err(proxy_failed)?;
                (proxy.base_url, proxy.token, None)
            };
        let proxy_env = ModelProxy::env_for(&proxy_url, &proxy_token);
        let mcp_config =
            match crate::mcp::agent_config(&config.mcp_servers, &proxy_url, &proxy_token) {
                Some(json) => {
                    let path = ws.claude_config_dir().join("ambient-mcp.json");
                    ws.write(&path, json.as_bytes())?;
                    Some(path)
                }
                None => None,
            };
        // A fork's conversation is its source's, cut after the chosen turn, until its own
        // first run has saved the one that makes (taking the workspace over cleared the
        // source's).
        let saved = ws.claude_session_id();
        let fork = config
            .fork
            .as_ref()
            .map(|f| &f.source)
            .filter(|_| saved.is_none());
        let (resume, fork_at) = match fork {
            Some(f) if !ws.has_conversation(&f.conversation_id) => {
                return Err(Error::Workspace(format!(
                    "the conversation of {} this session was forked from is not in its workspace (a workspace that is not kept, or storage that did not clone it)",
                    f.session
                )));
            }
            Some(f) => (Some(f.conversation_id.clone()), Some(f.resume_at.clone())),
            None if config.resume => (saved, None),
            None => (None, None),
        };
        if config.resume && resume.is_none() {
            log(
                link,
                LogLevel::Warn,
                "no earlier conversation was found in the workspace; starting a new one",
            );
        }
        let spec = Spec {
            bin: config.claude_bin.clone(),
            cwd: ws.cwd.clone(),
            model: config.model.clone(),
            resume: resume.clone(),
            fork_at,
            partial_messages: config.partial_messages,
            append_system_prompt: ws.system_prompt(config),
            add_dirs: ws.add_dirs.clone(),
            mcp_config,
            max_turns: config.max_turns.map(|n| n.get()),
            env: claude_env(ws, proxy_env, &isolation),
            workspace: ws.root.clone(),
            isolation,
            permission_mode: config.permission_mode,
        };
        let (claude, lines, listener) =
            Claude::spawn(&spec)
                .await
                .map_err(|e| Error::ClaudeMissing {
                    bin: config.claude_bin.display().to_string(),
                    reason: e.to_string(),
                })?;
        if let (Some(listener), Some(token)) = (listener, own_network_token) {
            ModelProxy::start_on(&config.credentials, mcp_routes(), listener, token)
                .map_err(proxy_failed)?;
        }
        *tr = Translator::new(resume.is_some());
        let mut agent = Agent {
            claude,
            link,
            ws,
            handled: config.handled_through,
            pending_turns: 0,
            finishing: false,
            model_switches: Default::default(),
            asks: Default::default(),
            permissions: claude::Permissions::new(config.permission_mode),
            tool_inputs: Default::default(),
        };
        // A workflow's startup prompt opens the conversation in it (a fresh one, or one
        // continued after a switch), before the session's own first message.
        let startup = ws.workflow_startup(resume.is_some()).map(str::to_owned);
        if let Some(wf) = &ws.workflow {
            let mut state = wf.state.clone();
            state.started = startup.is_some();
            link.emit(SessionEvent::Workflow(state));
        }
        let initial = config.initial_prompt.as_deref().filter(|_| !config.resume);
        let first = match (startup.as_deref(), initial) {
            (Some(s), Some(p)) => Some(format!("{s}\n\n{p}")),
            (Some(s), None) => Some(s.to_owned()),
            (None, Some(p)) => Some(p.to_owned()),
            (None, None) => None,
        };
        match first {
            Some(prompt) => {
                agent.send(&prompt).await?;
                summary.last_request = Some(prompt);
                agent.pending_turns = 1;
            }
            None => link.idle(true),
        }
        if let Err(e) = ws.record_workflow() {
            log(link, LogLevel::Warn, e.to_string());
        }
        Ok((agent, lines))
    }

    /// A line of the CLI's output: events for the log, turn ends, control requests.
    async fn output(&mut self, line: &str, tr: &mut Translator) -> Result<Option<Ended>, Error> {
        for out in tr.line(line) {
            match out {
                Output::Event(event) => {
                    if let SessionEvent::ToolUse(t) = &event {
                        self.tool_inputs.insert(t.id.clone(), t.input.clone());
                    }
                    if let SessionEvent::AgentStarted(a) = &event
                        && let Err(why) = self.ws.save_claude_session_id(&a.claude_session_id)
                    {
                        self.link.emit(SessionEvent::Error(ErrorEvent {
                            message: why,
                            code: Some("workspace".into()),
                        }));
                    }
                    self.link.emit(event);
                }
                Output::TurnEnded { .. } => {
                    self.tool_inputs.clear();
                    self.pending_turns = self.pending_turns.saturating_sub(1);
                    if self.pending_turns == 0 {
                        self.link.idle(true);
                    }
                }
                Output::ControlRequest {
                    request_id,
                    subtype,
                    request,
                } if self.permissions.needs_a_person(&subtype, &request) => {
                    // Held until a person answers (the turn waits, the CLI with it).
                    let input = request["input"].clone();
                    let tool = request["tool_name"].as_str().unwrap_or_default().to_owned();
                    // What the person sees: the input, or the call's own when the CLI asks
                    // with none (a plan).
                    let shown = match input.as_object() {
                        Some(o) if o.is_empty() => request["tool_use_id"]
                            .as_str()
                            .and_then(|id| self.tool_inputs.get(id).cloned())
                            .unwrap_or_else(|| input.clone()),
                        _ => input.clone(),
                    };
                    self.link.emit(SessionEvent::Ask(model::protocol::Ask {
                        id: request_id.clone(),
                        tool: tool.clone(),
                        input: shown,
                    }));
                    self.asks.insert(request_id, (tool, input));
                }
                Output::ControlRequest {
                    request_id,
                    subtype,
                    request,
                } => {
                    let answer = claude::answer_for(&subtype, &request);
                    if let Err(e) = self.claude.answer(&request_id, answer).await {
                        tracing::warn!(error = %e, "could not answer a control request");
                    }
                }
                Output::ControlResponse { request_id, error } => {
                    let model = self.model_switches.remove(&request_id);
                    if let (Some(model), Some(why)) = (model, error) {
                        self.link.emit(SessionEvent::Error(ErrorEvent {
                            message: format!("the agent could not switch to model {model}: {why}"),
                            code: Some("model".into()),
                        }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// The CLI's output ended: the run is over if it was told to finish (failed if its last
    /// turn did), else it crashed.
    async fn output_closed(&mut self, tr: &Translator) -> Result<Option<Ended>, Error> {
        if !self.finishing {
            return Err(Error::ClaudeCrashed(self.claude.exit_report().await));
        }
        let _ = tokio::time::timeout(CLI_GRACE, self.claude.wait()).await;
        Ok(Some(Ended {
            code: if tr.totals.last_error {
                exit::FAILED
            } else {
                exit::OK
            },
            stopped: false,
            refused: false,
        }))
    }

    /// Work or a control from the server.
    async fn command(
        &mut self,
        cmd: Option<Down>,
        summary: &mut Summary,
    ) -> Result<Option<Ended>, Error> {
        match cmd {
            Some(Down::User { seq, text, sender }) => {
                if seq <= self.handled {
                    return Ok(None); // a re-delivery after a reconnect
                }
                tracing::debug!(seq, sender, "message for the agent");
                self.send(&text).await?;
                summary.last_request = Some(text);
                self.handled = seq;
                self.link.handled(seq);
                self.link.idle(false);
                self.pending_turns += 1;
                Ok(None)
            }
            Some(Down::Answer(answer)) => {
                // Unknown: answered already (sent again after a reconnect), or gone with
                // an interrupted turn.
                if let Some((tool, input)) = self.asks.remove(&answer.id) {
                    let reply = self.permissions.answered(&tool, &input, &answer);
                    if let Err(e) = self.claude.answer(&answer.id, Ok(reply)).await {
                        tracing::warn!(error = %e, "could not give claude the answer");
                    }
                }
                Ok(None)
            }
            Some(Down::SetModel(model)) => {
                match self.claude.set_model(&model).await {
                    Ok(id) => {
                        self.model_switches.insert(id, model);
                    }
                    Err(e) => tracing::warn!(error = %e, "could not switch claude's model"),
                }
                Ok(None)
            }
            Some(Down::Interrupt) => {
                if self.pending_turns > 0
                    && let Err(e) = self.claude.interrupt().await
                {
                    tracing::warn!(error = %e, "could not interrupt claude");
                }
                Ok(None)
            }
            Some(Down::Finish) if self.pending_turns == 0 => {
                self.finishing = true;
                self.claude.close_input();
                Ok(None)
            }
            Some(Down::Finish) => Ok(None),
            Some(Down::Stop) | None => self.stop().await,
            Some(Down::Fatal(why)) => {
                self.claude.kill();
                let code = fail(self.link, Error::ServerRefused(why));
                Ok(Some(Ended {
                    code,
                    stopped: false,
                    refused: true,
                }))
            }
        }
    }

    /// Gives the agent a message. A write that fails means the CLI is gone: its exit and last
    /// words are the reason, not the broken pipe.
    async fn send(&mut self, text: &str) -> Result<(), Error> {
        // Files a person uploaded since the last message: the agent is told with this one.
        let noted;
        let text = match self.ws.files.take_note() {
            Some(note) => {
                noted = note + text;
                noted.as_str()
            }
            None => text,
        };
        match self.claude.send_user(text).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::ClaudeCrashed(self.claude.exit_report().await)),
        }
    }

    /// Stops the agent: interrupts the running turn so the conversation is saved, closes its
    /// input, and kills whatever is left of it.
    async fn stop(&mut self) -> Result<Option<Ended>, Error> {
        if self.pending_turns > 0 {
            let _ = self.claude.interrupt().await;
        }
        self.claude.close_input();
        if tokio::time::timeout(CLI_GRACE, self.claude.wait())
            .await
            .is_err()
        {
            tracing::warn!("claude did not exit in time; killing it");
        }
        // Whatever it started and left behind (a detached command) goes too.
        self.claude.kill();
        hostproc::kill_descendants(std::process::id());
        Ok(Some(Ended::stopped()))
    }
}

/// The CLI's whole environment, holding no secret: the session's own variables (what is not
/// reserved: the runner's contract, credentials, loader and shell are not passed on), a
/// `PATH` and a home, the model proxy, and what the CLI needs to run headless in the
/// workspace.
fn claude_env(
    ws: &Workspace,
    proxy_env: Vec<(String, String)>,
    isolation: &Isolation,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !model::runner_env::is_reserved(k))
        .collect();
    let home = match isolation {
        Isolation::Sandbox(_) => crate::sandbox::HOME.to_owned(),
        Isolation::None(_) => std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
    };
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    env.extend([("PATH".to_owned(), path), ("HOME".to_owned(), home)]);
    env.extend(proxy_env);
    for (k, v) in [
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("DISABLE_AUTOUPDATER", "1".to_owned()),
        // Required for bypassPermissions as root; the agent is confined to the workspace.
        ("IS_SANDBOX", "1".to_owned()),
        ("CLAUDE_CODE_ENTRYPOINT", "ambient-runner".to_owned()),
        (
            "CLAUDE_CONFIG_DIR",
            ws.claude_config_dir().display().to_string(),
        ),
    ] {
        env.push((k.to_owned(), v));
    }
    env
}
