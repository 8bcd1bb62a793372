//! The `mock-anthropic` binary: announces its URL, serves a script, stops on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[tokio::test]
async fn binary_serves_its_script_and_exits_on_sigterm() {
    let mut script = tempfile::NamedTempFile::new().expect("temp file");
    write!(script, r#"[{{"type":"text","text":"from the script"}}]"#).expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-anthropic"))
        .args(["--addr", "127.0.0.1:0", "--script"])
        .arg(script.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim_end()
        .strip_prefix("mock-anthropic listening on ")
        .expect("announcement line")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let body =
        json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let message: Value = reqwest::Client::new()
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", "k")
        .json(&body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(message["content"][0]["text"], "from the script");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "binary did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

#[test]
fn binary_refuses_a_bad_script_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_mock-anthropic"))
        .args(["--script", "/nonexistent/script.json"])
        .output()
        .expect("binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot read script"), "{stderr}");
}
