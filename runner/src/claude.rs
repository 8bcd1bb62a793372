//! The `claude` process: one long-lived CLI per run, in streaming-input mode.
//!
//! Input is one JSON object per line (user messages, control requests and responses); the
//! CLI dies on a malformed line, so every line is produced by `serde_json`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use model::protocol::Answer;
use model::session::PermissionMode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Lines of the CLI's standard error kept for error reports.
const STDERR_TAIL: usize = 50;

/// How to start the CLI.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The executable.
    pub bin: PathBuf,
    /// Working directory of the agent.
    pub cwd: PathBuf,
    /// Model, if not the CLI's default.
    pub model: Option<String>,
    /// Conversation to resume.
    pub resume: Option<String>,
    /// Resume it as a new conversation that keeps its messages up to this entry and no
    /// further (a fork's first run).
    pub fork_at: Option<String>,
    /// Stream partial text.
    pub partial_messages: bool,
    /// Appended to Claude Code's system prompt.
    pub append_system_prompt: String,
    /// Further directories the agent may use.
    pub add_dirs: Vec<PathBuf>,
    /// The `--mcp-config` file, if any MCP server is configured (a file: a long
    /// configuration must not go on the command line, where every process could read it
    /// and the kernel refuses more than 128 KiB).
    pub mcp_config: Option<PathBuf>,
    /// `--max-turns`, if limited.
    pub max_turns: Option<u32>,
    /// Environment, replacing the runner's entirely.
    pub env: Vec<(String, String)>,
    /// The session's workspace (what a sandbox lets the agent write).
    pub workspace: PathBuf,
    /// Sandboxed or not.
    pub isolation: crate::sandbox::Isolation,
    /// What the agent may do without asking.
    pub permission_mode: PermissionMode,
}

impl Spec {
    /// The command-line arguments.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--output-format",
            "stream-json",
            "--verbose",
            "--input-format",
            "stream-json",
            // What needs a person (a question of the agent's) is asked of the runner, over
            // the control protocol (`can_use_tool`), and waits for the person's answer.
            "--permission-prompt-tool",
            "stdio",
            // Project settings (CLAUDE.md, commands, agents of the repos) apply; the
            // machine's user settings do not.
            "--setting-sources=project",
        ]
        .map(String::from)
        .to_vec();
        // Autonomous: the workspace is the agent's own (inside its sandbox), nothing to ask
        // about. Otherwise every permission the CLI would ask comes to the runner.
        args.push(
            match self.permission_mode {
                PermissionMode::Autonomous => "--permission-mode=bypassPermissions",
                PermissionMode::Ask => "--permission-mode=default",
                PermissionMode::Plan => "--permission-mode=plan",
            }
            .into(),
        );
        if self.partial_messages {
            args.push("--include-partial-messages".into());
        }
        if let Some(model) = &self.model {
            args.push(format!("--model={model}"));
        }
        if let Some(id) = &self.resume {
            args.push(format!("--resume={id}"));
            if let Some(at) = &self.fork_at {
                args.push("--fork-session".into());
                args.push(format!("--resume-session-at={at}"));
            }
        }
        if !self.append_system_prompt.is_empty() {
            args.push("--append-system-prompt".into());
            args.push(self.append_system_prompt.clone());
        }
        for d in &self.add_dirs {
            args.push(format!("--add-dir={}", d.display()));
        }
        if let Some(mcp) = &self.mcp_config {
            args.push(format!("--mcp-config={}", mcp.display()));
        }
        if let Some(n) = self.max_turns {
            args.push(format!("--max-turns={n}"));
        }
        args
    }
}

/// A running CLI.
pub struct Claude {
    child: Child,
    /// Its own network, while it runs ([`crate::netns`]).
    _network: Option<crate::netns::Network>,
    stdin: Option<ChildStdin>,
    pid: u32,
    /// Its start time: after it is reaped, its pid may be another process's.
    ticks: u64,
    next_request: u64,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_done: Option<tokio::task::JoinHandle<()>>,
}

impl Claude {
    /// Starts the CLI in its own process group; returns it, its output lines and, when it
    /// has a network of its own, the listener on its loopback for the model proxy (the CLI
    /// starts only once that listener exists).
    pub async fn spawn(
        spec: &Spec,
    ) -> std::io::Result<(
        Claude,
        Lines<BufReader<ChildStdout>>,
        Option<std::net::TcpListener>,
    )> {
        let args = spec.args();
        let (mut cmd, pending) = crate::sandbox::command(
            &spec.isolation,
            &crate::sandbox::Agent {
                program: &spec.bin,
                args: &args,
                workspace: &spec.workspace,
                cwd: &spec.cwd,
                env: &spec.env,
                network: true,
            },
        )?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = crate::reap::spawn(&mut cmd)?;
        // The command holds bubblewrap's ends of the set-up descriptors: closed here.
        drop(cmd);
        let pid = child.id().unwrap_or_default();
        let (network, listener) = match pending {
            Some(pending) => match pending.finish().await {
                Ok((network, listener)) => (Some(network), Some(listener)),
                Err(e) => {
                    let _ = child.start_kill();
                    crate::reap::release(pid);
                    return Err(std::io::Error::other(format!(
                        "the sandbox's network could not be made: {e}"
                    )));
                }
            },
            None => (None, None),
        };
        let ticks = hostproc::start_ticks(pid).unwrap_or_default();
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let mut stderr_done = None;
        if let Some(err) = child.stderr.take() {
            let tail = stderr.clone();
            stderr_done = Some(tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(target: "claude", "{line}");
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }));
        }
        Ok((
            Claude {
                child,
                _network: network,
                stdin,
                pid,
                ticks,
                next_request: 0,
                stderr,
                stderr_done,
            },
            BufReader::new(stdout).lines(),
            listener,
        ))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    async fn write(&mut self, v: &Value) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("claude's input is closed"))?;
        let mut line = serde_json::to_vec(v)?;
        line.push(b'\n');
        stdin.write_all(&line).await?;
        stdin.flush().await
    }

    /// Gives the agent a user message.
    pub async fn send_user(&mut self, text: &str) -> std::io::Result<()> {
        self.write(&json!({"type": "user", "message": {"role": "user", "content": text}, "parent_tool_use_id": null}))
            .await
    }

    /// Asks the CLI to stop its current turn (it kills a running tool, Bash included).
    pub async fn interrupt(&mut self) -> std::io::Result<()> {
        self.request(json!({"subtype": "interrupt"}))
            .await
            .map(drop)
    }

    /// Switches the model (`set_model`): the CLI's next request uses it. Returns the
    /// request's id, which its answer carries.
    pub async fn set_model(&mut self, model: &str) -> std::io::Result<String> {
        self.request(json!({"subtype": "set_model", "model": model}))
            .await
    }

    /// Sends a control request; returns its id.
    async fn request(&mut self, request: Value) -> std::io::Result<String> {
        self.next_request += 1;
        let id = format!("runner_{}", self.next_request);
        self.write(&json!({"type": "control_request", "request_id": id, "request": request}))
            .await?;
        Ok(id)
    }

    /// Answers a control request of the CLI.
    pub async fn answer(
        &mut self,
        request_id: &str,
        outcome: Result<Value, String>,
    ) -> std::io::Result<()> {
        let response = match outcome {
            Ok(body) => json!({"subtype": "success", "request_id": request_id, "response": body}),
            Err(error) => json!({"subtype": "error", "request_id": request_id, "error": error}),
        };
        self.write(&json!({"type": "control_response", "response": response}))
            .await
    }

    /// Closes the CLI's input: it finishes what it is doing and exits.
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Waits for the CLI to exit; `None` if it was killed by a signal.
    pub async fn wait(&mut self) -> Option<i32> {
        let status = self.child.wait().await.ok();
        crate::reap::release(self.pid);
        status.and_then(|s| s.code())
    }

    /// Kills the CLI and everything it started.
    pub fn kill(&self) {
        hostproc::kill_tree(self.pid, self.ticks);
    }

    /// How the CLI ended, for a report: waits for it to exit (briefly) and for the last of its
    /// standard error, then says its exit code and last lines.
    pub async fn exit_report(&mut self) -> String {
        let status = tokio::time::timeout(std::time::Duration::from_secs(5), self.wait())
            .await
            .ok()
            .flatten();
        if let Some(done) = self.stderr_done.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), done).await;
        }
        let how = status.map_or_else(
            || "was killed".to_owned(),
            |c| format!("exited with code {c}"),
        );
        let tail = self.stderr_tail(20).join("\n");
        if tail.is_empty() {
            format!("claude {how} unexpectedly")
        } else {
            format!("claude {how} unexpectedly:\n{tail}")
        }
    }

    /// The last lines the CLI wrote to its standard error.
    pub fn stderr_tail(&self, lines: usize) -> Vec<String> {
        let t = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .skip(t.len().saturating_sub(lines))
            .cloned()
            .collect()
    }
}

use model::protocol::ASK_USER_QUESTION;

/// The plan tool: calling it, the agent asks to leave plan mode with its plan.
pub const EXIT_PLAN_MODE: &str = "ExitPlanMode";

/// Which permissions of the CLI a person gives, and which the runner gives alone.
#[derive(Debug, Clone)]
pub struct Permissions {
    mode: PermissionMode,
    /// Tools a person allowed for the rest of the session.
    always: std::collections::HashSet<String>,
    /// A person approved the plan: from then on the agent acts on its own.
    plan_approved: bool,
}

impl Permissions {
    /// The permissions of a session in `mode`.
    pub fn new(mode: PermissionMode) -> Permissions {
        Permissions {
            mode,
            always: Default::default(),
            plan_approved: false,
        }
    }

    /// Whether a control request of the CLI needs a person's answer: a question of the
    /// agent (`AskUserQuestion`, or any tool the CLI says needs a user's interaction)
    /// always; in a session that asks before acting, every tool call the CLI asks about
    /// (but those allowed for the session); in plan mode, until the plan is approved.
    pub fn needs_a_person(&self, subtype: &str, request: &Value) -> bool {
        if subtype != "can_use_tool" {
            return false;
        }
        let tool = request["tool_name"].as_str().unwrap_or_default();
        if tool == ASK_USER_QUESTION || request["requires_user_interaction"] == true {
            return true;
        }
        match self.mode {
            PermissionMode::Autonomous => false,
            PermissionMode::Plan if self.plan_approved => false,
            PermissionMode::Ask | PermissionMode::Plan => !self.always.contains(tool),
        }
    }

    /// The CLI's answer to what it asked a person: a question with the person's `answers`
    /// (none declines it); a tool call allowed (once, or for the session) or denied with
    /// the person's reason; a plan approved lets the agent act on its own.
    pub fn answered(&mut self, tool: &str, input: &Value, answer: &Answer) -> Value {
        if tool == ASK_USER_QUESTION {
            if answer.answers.is_empty() || answer.deny {
                return json!({"behavior": "deny", "message": "The person declined to answer."});
            }
            let mut input = input.clone();
            if let Some(object) = input.as_object_mut() {
                object.insert("answers".into(), json!(answer.answers));
            }
            return json!({"behavior": "allow", "updatedInput": input});
        }
        if answer.deny {
            let why = answer
                .message
                .clone()
                .unwrap_or_else(|| "The person denied it.".to_owned());
            return json!({"behavior": "deny", "message": why});
        }
        if answer.always {
            self.always.insert(tool.to_owned());
        }
        if tool == EXIT_PLAN_MODE {
            self.plan_approved = true;
        }
        json!({"behavior": "allow", "updatedInput": input})
    }
}

/// The answer to a control request the CLI sends the host.
pub fn answer_for(subtype: &str, request: &Value) -> Result<Value, String> {
    match subtype {
        // Only reached if a permission rule asks: the workspace is the agent's own.
        "can_use_tool" => {
            Ok(json!({"behavior": "allow", "updatedInput": request["input"].clone()}))
        }
        "hook_callback" => Ok(json!({"continue": true})),
        "mcp_message" => Err("no in-process MCP server is registered".into()),
        other => Err(format!("unsupported control request: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_use_equals_for_values_that_may_start_with_a_dash() {
        let spec = Spec {
            bin: "claude".into(),
            cwd: "/w".into(),
            model: Some("claude-sonnet-4-6".into()),
            resume: Some("-odd-id".into()),
            fork_at: Some("-entry".into()),
            partial_messages: true,
            append_system_prompt: "ctx".into(),
            add_dirs: vec!["/w/repos/b".into()],
            mcp_config: Some("/w/.claude/ambient-mcp.json".into()),
            max_turns: Some(3),
            env: vec![],
            workspace: "/w".into(),
            isolation: crate::sandbox::Isolation::None("test".into()),
            permission_mode: PermissionMode::Autonomous,
        };
        let args = spec.args();
        assert!(args.contains(&"--resume=-odd-id".to_owned()));
        assert!(args.contains(&"--fork-session".to_owned()));
        assert!(args.contains(&"--resume-session-at=-entry".to_owned()));
        assert!(args.contains(&"--model=claude-sonnet-4-6".to_owned()));
        assert!(args.contains(&"--include-partial-messages".to_owned()));
        assert!(args.contains(&"--add-dir=/w/repos/b".to_owned()));
        assert!(args.contains(&"--max-turns=3".to_owned()));
        assert!(args.contains(&"--mcp-config=/w/.claude/ambient-mcp.json".to_owned()));
        let i = args.iter().position(|a| a == "--input-format").unwrap();
        assert_eq!(args[i + 1], "stream-json");
    }

    #[test]
    fn a_question_is_answered_with_the_persons_words_or_declined() {
        let mut p = Permissions::new(PermissionMode::Autonomous);
        let request = json!({"tool_name": "AskUserQuestion", "input": {"questions": [{"question": "Which?"}]}});
        assert!(p.needs_a_person("can_use_tool", &request));
        assert!(!p.needs_a_person("can_use_tool", &json!({"tool_name": "Bash"})));
        assert!(!p.needs_a_person("hook_callback", &request));
        let answer = Answer {
            answers: [("Which?".to_owned(), "Blue".to_owned())].into(),
            ..Default::default()
        };
        let yes = p.answered(ASK_USER_QUESTION, &request["input"], &answer);
        assert_eq!(yes["behavior"], "allow");
        assert_eq!(yes["updatedInput"]["answers"]["Which?"], "Blue");
        assert_eq!(yes["updatedInput"]["questions"][0]["question"], "Which?");
        let no = p.answered(ASK_USER_QUESTION, &request["input"], &Answer::default());
        assert_eq!(no["behavior"], "deny");
    }

    #[test]
    fn asking_sessions_ask_for_each_tool_until_allowed_always_and_plans_once() {
        let bash = json!({"tool_name": "Bash", "input": {"command": "ls"}});
        let mut p = Permissions::new(PermissionMode::Ask);
        assert!(p.needs_a_person("can_use_tool", &bash));
        let denied = p.answered(
            "Bash",
            &bash["input"],
            &Answer {
                deny: true,
                message: Some("not now".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            (denied["behavior"].as_str(), denied["message"].as_str()),
            (Some("deny"), Some("not now"))
        );
        assert!(
            p.needs_a_person("can_use_tool", &bash),
            "a denial is for once"
        );
        let once = p.answered("Bash", &bash["input"], &Answer::default());
        assert_eq!(once["updatedInput"]["command"], "ls");
        assert!(p.needs_a_person("can_use_tool", &bash), "so is an approval");
        let always = Answer {
            always: true,
            ..Default::default()
        };
        p.answered("Bash", &bash["input"], &always);
        assert!(
            !p.needs_a_person("can_use_tool", &bash),
            "allowed for the session"
        );
        assert!(p.needs_a_person("can_use_tool", &json!({"tool_name": "Write"})));

        let mut plan = Permissions::new(PermissionMode::Plan);
        let exit = json!({"tool_name": "ExitPlanMode", "input": {"plan": "1. do it"}});
        assert!(plan.needs_a_person("can_use_tool", &exit));
        plan.answered(EXIT_PLAN_MODE, &exit["input"], &Answer::default());
        assert!(
            !plan.needs_a_person("can_use_tool", &bash),
            "the plan approved, it acts"
        );
    }

    #[test]
    fn control_requests_are_always_answered() {
        let allow = answer_for("can_use_tool", &json!({"input": {"command": "ls"}})).unwrap();
        assert_eq!(allow["behavior"], "allow");
        assert_eq!(allow["updatedInput"]["command"], "ls");
        assert!(answer_for("bogus", &json!({})).is_err());
    }
}
