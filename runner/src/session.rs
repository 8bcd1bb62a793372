//! One run of a session: prepare the workspace, drive the agent through the user's messages,
//! deliver the work, report the result, exit with a code the operator understands.
//!
//! The agent is idle when every message it was given has its turn result. The runner then
//! tells the server, which either sends more work or says finish.

use std::time::{Duration, Instant};

use model::protocol::{ErrorEvent, LogLevel, LogLine, RunResult, SessionEvent};
use model::runner_env::{EXIT_RECORD_FILE, ExitRecord, STATE_DIR};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::claude::{self, Claude, Spec};
use crate::config::Config;
use crate::deliver::{self, Summary};
use crate::link::{Down, Link, LinkConfig};
use crate::translate::{Output, Translator};
use crate::workspace::Workspace;

/// Exit codes (the original operator's convention).
pub mod exit {
    /// The run succeeded (or was stopped on request).
    pub const OK: i32 = 0;
    /// The agent or the run failed.
    pub const FAILED: i32 = 1;
    /// Configuration or prerequisites are missing.
    pub const PREREQUISITE: i32 = 2;
}

/// How long the runner waits for the server to take its last events before exiting.
const FINAL_FLUSH: Duration = Duration::from_secs(120);
/// How long the CLI gets to exit after its input is closed, or after an interrupt on stop.
const CLI_GRACE: Duration = Duration::from_secs(5);
/// Time for delivering the work after a normal end, and after a stop (the operator kills the
/// runner a little later).
const DELIVERY_BUDGET: Duration = Duration::from_secs(300);
const STOP_DELIVERY_BUDGET: Duration = Duration::from_secs(7);

/// A failure that ends the run, with the code to exit with.
struct Failure {
    code: i32,
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(code: i32, kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            kind,
            message: message.into(),
        }
    }
}

/// How the agent's part ended.
struct Ended {
    code: i32,
    /// Stopped on request: deliver quickly.
    stopped: bool,
    /// The server refused this runner: another one owns the workspace now; touch nothing.
    refused: bool,
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
    let mut summary = Summary::default();
    let logger = link.clone();
    let code = match Workspace::prepare(&config, |m| log(&logger, LogLevel::Info, m)).await {
        Err(e) => fail(&link, Failure::new(exit::PREREQUISITE, e.kind, e.message)),
        Ok(ws) => {
            let ended = match drive(
                &config,
                &ws,
                &link,
                &mut down,
                &mut translator,
                &mut summary,
            )
            .await
            {
                Ok(ended) => ended,
                Err(f) => Ended {
                    code: fail(&link, f),
                    stopped: false,
                    refused: false,
                },
            };
            if !ended.refused {
                summary.turns = translator.totals.num_turns;
                summary.cost_usd = translator.totals.usage.cost_usd;
                summary.result = translator.totals.last_text.clone();
                let budget = if ended.stopped {
                    STOP_DELIVERY_BUDGET
                } else {
                    DELIVERY_BUDGET
                };
                if tokio::time::timeout(budget, deliver::deliver(&config, &ws, &link, &summary))
                    .await
                    .is_err()
                {
                    fail(
                        &link,
                        Failure::new(
                            ended.code,
                            "delivery_timeout",
                            "delivering the work took too long; it was left in the workspace",
                        ),
                    );
                }
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

/// Reports a failure as an event; returns its exit code.
fn fail(link: &Link, f: Failure) -> i32 {
    tracing::error!(kind = f.kind, "{}", f.message);
    link.emit(SessionEvent::Error(ErrorEvent {
        message: f.message,
        code: Some(f.kind.into()),
    }));
    f.code
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

async fn drive(
    config: &Config,
    ws: &Workspace,
    link: &Link,
    down: &mut mpsc::UnboundedReceiver<Down>,
    tr: &mut Translator,
    summary: &mut Summary,
) -> Result<Ended, Failure> {
    let Some(credentials) = &config.credentials else {
        return Err(Failure::new(
            exit::PREREQUISITE,
            "no_credentials",
            "No model credentials: set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL for an Anthropic-compatible endpoint) \
             in the project's settings or in the server's environment, then continue the session.",
        ));
    };
    let resume = if config.resume {
        ws.claude_session_id()
    } else {
        None
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
        partial_messages: config.partial_messages,
        append_system_prompt: ws.system_prompt(config),
        add_dirs: ws.add_dirs.clone(),
        mcp_config: config.mcp_config.clone(),
        max_turns: config.max_turns,
        env: claude_env(ws, &credentials.env),
    };
    let (mut claude, mut lines) = Claude::spawn(&spec).map_err(|e| {
        Failure::new(
            exit::PREREQUISITE,
            "claude_missing",
            format!("could not start {}: {e}", config.claude_bin.display()),
        )
    })?;
    *tr = Translator::new(resume.is_some());

    let mut handled = config.handled_through;
    let mut pending_turns = 0u32;
    if let Some(prompt) = config.initial_prompt.as_deref().filter(|_| !config.resume) {
        send(&mut claude, prompt).await?;
        summary.last_request = Some(prompt.to_owned());
        pending_turns = 1;
    } else {
        link.idle(true);
    }
    let signal_failure = |e: std::io::Error| Failure::new(exit::FAILED, "signals", e.to_string());
    let mut term = signal(SignalKind::terminate()).map_err(signal_failure)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_failure)?;
    let mut finishing = false;
    let stopped = |code| {
        Ok(Ended {
            code,
            stopped: true,
            refused: false,
        })
    };

    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    for out in tr.line(&line) {
                        match out {
                            Output::Event(event) => {
                                if let SessionEvent::AgentStarted(a) = &event
                                    && let Err(why) = ws.save_claude_session_id(&a.claude_session_id)
                                {
                                    link.emit(SessionEvent::Error(ErrorEvent { message: why, code: Some("workspace".into()) }));
                                }
                                link.emit(event);
                            }
                            Output::TurnEnded { .. } => {
                                pending_turns = pending_turns.saturating_sub(1);
                                if pending_turns == 0 {
                                    link.idle(true);
                                }
                            }
                            Output::ControlRequest { request_id, subtype, request } => {
                                let answer = claude::answer_for(&subtype, &request);
                                if let Err(e) = claude.answer(&request_id, answer).await {
                                    tracing::warn!(error = %e, "could not answer a control request");
                                }
                            }
                            Output::ControlResponse { .. } => {}
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    if finishing {
                        let _ = tokio::time::timeout(CLI_GRACE, claude.wait()).await;
                        break;
                    }
                    return Err(Failure::new(exit::FAILED, "claude_crashed", claude.exit_report().await));
                }
            },
            cmd = down.recv() => match cmd {
                Some(Down::User { seq, text, sender }) => {
                    if seq <= handled {
                        continue; // a re-delivery after a reconnect
                    }
                    tracing::debug!(seq, sender, "message for the agent");
                    send(&mut claude, &text).await?;
                    summary.last_request = Some(text);
                    handled = seq;
                    link.handled(seq);
                    link.idle(false);
                    pending_turns += 1;
                }
                Some(Down::Interrupt) => {
                    if pending_turns > 0 && let Err(e) = claude.interrupt().await {
                        tracing::warn!(error = %e, "could not interrupt claude");
                    }
                }
                Some(Down::Finish) if pending_turns == 0 => {
                    finishing = true;
                    claude.close_input();
                }
                Some(Down::Finish) => {}
                Some(Down::Stop) | None => {
                    stop(&mut claude, pending_turns > 0).await;
                    return stopped(exit::OK);
                }
                Some(Down::Fatal(why)) => {
                    claude.kill();
                    fail(link, Failure::new(exit::FAILED, "server_refused", why));
                    return Ok(Ended { code: exit::FAILED, stopped: false, refused: true });
                }
            },
            _ = term.recv() => {
                log(link, LogLevel::Info, "stopping: the runner was asked to terminate");
                stop(&mut claude, pending_turns > 0).await;
                return stopped(exit::OK);
            }
            _ = int.recv() => {
                stop(&mut claude, pending_turns > 0).await;
                return stopped(exit::OK);
            }
        }
    }
    let code = if tr.totals.last_error {
        exit::FAILED
    } else {
        exit::OK
    };
    Ok(Ended {
        code,
        stopped: false,
        refused: false,
    })
}

/// Gives the agent a message. A write that fails means the CLI is gone: its exit and last
/// words are the reason, not the broken pipe.
async fn send(claude: &mut Claude, text: &str) -> Result<(), Failure> {
    match claude.send_user(text).await {
        Ok(()) => Ok(()),
        Err(_) => Err(Failure::new(
            exit::FAILED,
            "claude_crashed",
            claude.exit_report().await,
        )),
    }
}

/// Stops the agent: interrupts the running turn so the conversation is saved, closes its
/// input, and kills whatever is left of it.
async fn stop(claude: &mut Claude, busy: bool) {
    if busy {
        let _ = claude.interrupt().await;
    }
    claude.close_input();
    if tokio::time::timeout(CLI_GRACE, claude.wait())
        .await
        .is_err()
    {
        tracing::warn!("claude did not exit in time; killing it");
    }
    // Whatever it started and left behind (a detached command) goes too.
    claude.kill();
    operator::local::kill_descendants(std::process::id());
}

/// The CLI's environment: the runner's, without the platform's secrets (runner token, model
/// and git credentials), plus what the CLI needs to run headless in the workspace.
fn claude_env(ws: &Workspace, credentials: &[(String, String)]) -> Vec<(String, String)> {
    let blocked = |k: &str| {
        k.starts_with(model::validate::RESERVED_ENV_PREFIX)
            || k.starts_with("ANTHROPIC_")
            || matches!(
                k,
                "GITHUB_TOKEN" | "GITLAB_TOKEN" | "CLAUDECODE" | "IS_SANDBOX"
            )
    };
    let mut env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| !blocked(k)).collect();
    env.extend(credentials.iter().cloned());
    for (k, v) in [
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("DISABLE_AUTOUPDATER", "1".to_owned()),
        // Required for bypassPermissions as root; the workspace is the sandbox.
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
