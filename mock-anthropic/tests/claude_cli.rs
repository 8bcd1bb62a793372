//! The real `claude` CLI against the mock, fully offline.
//!
//! The CLI is the version pinned in `tools/claude-code` (installed by `make setup`). These
//! tests fail, rather than skip, when it is missing: they are the proof that the mock speaks
//! the protocol the CLI expects.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mock_anthropic::{MockConfig, MockHandle, start};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

/// Generous: the CLI starts in about a second, but CI machines are slow and shared.
const TIMEOUT: Duration = Duration::from_secs(60);

fn claude_bin() -> PathBuf {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tools/claude-code/node_modules/.bin/claude"
    ));
    assert!(
        path.exists(),
        "the pinned claude CLI is missing at {}: run `make setup` first",
        path.display()
    );
    path.to_owned()
}

/// A workspace and a private config directory for one CLI run.
struct Sandbox {
    workspace: TempDir,
    config: TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            workspace: TempDir::new().expect("workspace dir"),
            config: TempDir::new().expect("config dir"),
        }
    }

    /// The CLI, talking only to `mock`, with bypassed permissions (allowed as root only
    /// with `IS_SANDBOX=1` exactly).
    fn claude(&self, mock: &MockHandle, args: &[&str]) -> Command {
        let mut command = Command::new(claude_bin());
        command
            .args(args)
            .args(["--output-format", "stream-json", "--verbose"])
            .args(["--permission-mode", "bypassPermissions"])
            .current_dir(self.workspace.path())
            .env("IS_SANDBOX", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("ANTHROPIC_BASE_URL", mock.url())
            .env("ANTHROPIC_API_KEY", "sk-dummy")
            .env("CLAUDE_CONFIG_DIR", self.config.path())
            .env_remove("ANTHROPIC_AUTH_TOKEN")
            .env_remove("CLAUDECODE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// Runs a `-p` prompt to completion and returns its stream-json lines.
async fn print_mode(
    sandbox: &Sandbox,
    mock: &MockHandle,
    prompt: &str,
    env: &[(&str, &str)],
) -> Vec<Value> {
    let mut command = sandbox.claude(mock, &["-p", prompt]);
    command.stdin(Stdio::null()).envs(env.iter().copied());
    let output = tokio::time::timeout(TIMEOUT, command.output())
        .await
        .expect("claude finished in time")
        .expect("claude runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("bad line {line:?}: {err}"))
        })
        .collect();
    assert!(
        lines.iter().any(|line| line["type"] == "result"),
        "no result line; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    lines
}

fn results(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|line| line["type"] == "result")
        .collect()
}

/// Reads stdout lines until `count` more `result` lines arrived; returns those results.
async fn read_results(lines: &mut Lines<BufReader<ChildStdout>>, count: usize) -> Vec<Value> {
    let read = async {
        let mut found = Vec::new();
        while found.len() < count {
            let line = lines
                .next_line()
                .await
                .expect("read stdout")
                .expect("claude exited early");
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|err| panic!("bad line {line:?}: {err}"));
            if value["type"] == "result" {
                found.push(value);
            }
        }
        found
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .expect("results in time")
}

#[tokio::test]
async fn print_mode_runs_a_write_tool_loop() {
    let mock = start(MockConfig::default()).await.expect("mock starts");
    let sandbox = Sandbox::new();
    let lines = print_mode(&sandbox, &mock, "create hello.txt", &[]).await;

    let content = std::fs::read_to_string(sandbox.workspace.path().join("hello.txt"))
        .expect("hello.txt written");
    assert_eq!(content, "Hello from the mock Anthropic API!\n");
    let results = results(&lines);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["is_error"], false, "{}", results[0]);
    assert_eq!(results[0]["result"], "Done: Write finished.");
    let tool_use = lines
        .iter()
        .filter(|line| line["type"] == "assistant")
        .flat_map(|line| {
            line["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|block| block["type"] == "tool_use")
        .expect("the Write call is reported");
    assert_eq!(tool_use["name"], "Write");

    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "one request per model turn");
    assert!(
        requests
            .iter()
            .all(|r| r.path.starts_with("/v1/messages") && r.body["stream"] == true)
    );
    assert!(
        requests[0]
            .user_texts()
            .iter()
            .any(|text| text == "create hello.txt")
    );
}

#[tokio::test]
async fn streaming_input_keeps_context_across_turns() {
    let mock = start(MockConfig::default()).await.expect("mock starts");
    let sandbox = Sandbox::new();
    let mut child = sandbox
        .claude(&mock, &["--input-format", "stream-json"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("claude starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();

    let mut results = Vec::new();
    for text in ["remember the word pineapple", "recall"] {
        let message = json!({"type": "user", "message": {"role": "user", "content": text}});
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .expect("write prompt");
        stdin.flush().await.expect("flush");
        results.extend(read_results(&mut lines, 1).await);
    }
    drop(stdin);
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("exit in time")
        .expect("wait");
    assert!(status.success(), "{status}");

    assert!(
        results.iter().all(|result| result["is_error"] == false),
        "{results:?}"
    );
    assert_eq!(results[0]["session_id"], results[1]["session_id"]);
    assert_eq!(
        results[1]["result"],
        "I remember: remember the word pineapple"
    );
    let last = mock.requests().pop().expect("requests were made");
    let texts = last.user_texts();
    assert!(
        texts
            .iter()
            .any(|text| text == "remember the word pineapple"),
        "{texts:?}"
    );
    assert_eq!(texts.last().map(String::as_str), Some("recall"));
}

#[tokio::test]
async fn api_errors_end_the_turn_with_is_error() {
    let mock = start(MockConfig::default()).await.expect("mock starts");
    let sandbox = Sandbox::new();
    let lines = print_mode(
        &sandbox,
        &mock,
        "fail 500",
        &[("CLAUDE_CODE_MAX_RETRIES", "0")],
    )
    .await;
    let results = results(&lines);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["is_error"], true, "{}", results[0]);
    assert_eq!(results[0]["api_error_status"], 500, "{}", results[0]);
    assert_eq!(
        mock.requests().len(),
        1,
        "no retries with CLAUDE_CODE_MAX_RETRIES=0"
    );
}
