//! Each way a run can fail ends with an error event whose reason a person can act on, the
//! right exit code, and the session Failed — never a hang.

use std::path::Path;
use std::time::Duration;

use crate::common::forge::bare_repo;
use crate::common::{Options, TestServer, call, exported_events};
use model::protocol::SessionEvent;
use serde_json::json;

/// Runs one session to its end; returns (its error events as (code, message), the Ready
/// condition's reason, the runner's exit code).
async fn failure(
    server: &TestServer,
    body: serde_json::Value,
) -> (Vec<(String, String)>, String, Option<i64>) {
    let (st, created) = call(
        server,
        "POST",
        "/api/projects/default/agentic-sessions",
        Some(body),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let name = created["name"].as_str().unwrap().to_owned();
    let phase = server
        .wait_phase(
            &name,
            &["Failed", "Completed", "Stopped"],
            Duration::from_secs(90),
        )
        .await;
    assert_eq!(phase, "Failed");
    let events = exported_events(server, &name).await;
    let errors = events
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::Error(err) => {
                Some((err.code.clone().unwrap_or_default(), err.message.clone()))
            }
            _ => None,
        })
        .collect();
    let session = server.session(&name).await;
    let ready = session["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    (
        errors,
        ready,
        session["status"]["result"]["exitCode"].as_i64(),
    )
}

async fn with_mock(dir: &Path) -> (TestServer, mock_anthropic::MockHandle) {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    (
        TestServer::start(Options::new(dir).with_mock(&mock.url())).await,
        mock,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_api_errors_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _mock) = with_mock(dir.path()).await;
    // No retries, so the failure comes at once.
    let env = json!({"CLAUDE_CODE_MAX_RETRIES": "0"});
    for (status, hint) in [
        ("401", "refused"),
        ("429", "rate limited"),
        ("500", "failed"),
    ] {
        let (errors, ready, code) = failure(
            &s,
            json!({"stopOnRunFinished": true, "initialPrompt": format!("fail {status}"), "environmentVariables": env}),
        )
        .await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "api_error");
        assert!(
            errors[0].1.contains(status) && errors[0].1.contains(hint),
            "{status}: {}",
            errors[0].1
        );
        assert_eq!((ready.as_str(), code), ("RunnerExit", Some(1)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaching_max_turns_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _mock) = with_mock(dir.path()).await;
    let (errors, ready, code) = failure(
        &s,
        json!({"stopOnRunFinished": true, "initialPrompt": "loop", "environmentVariables": {"MAX_TURNS": "2"}}),
    )
    .await;
    assert_eq!(errors[0].0, "max_turns", "{errors:?}");
    assert!(
        errors[0].1.contains("maximum number of turns"),
        "{}",
        errors[0].1
    );
    assert_eq!((ready.as_str(), code), ("RunnerExit", Some(1)));
    // A bad value is a configuration error: one line, prerequisite failure.
    let (_, ready, _) = failure(
        &s,
        json!({"stopOnRunFinished": true, "initialPrompt": "hi", "environmentVariables": {"MAX_TURNS": "many"}}),
    )
    .await;
    assert_eq!(ready, "PrerequisiteFailed");
    let name = call(
        &s,
        "GET",
        "/api/projects/default/agentic-sessions?limit=1",
        None,
    )
    .await
    .1["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let message = s.session(&name).await["status"]["conditions"].to_string();
    assert!(
        message.contains("MAX_TURNS must be a positive number"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_failure_names_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _mock) = with_mock(dir.path()).await;
    let (errors, ready, code) = failure(
        &s,
        json!({"stopOnRunFinished": true, "initialPrompt": "hi", "repos": [{"url": "file:///nonexistent/acme/gone.git"}]}),
    )
    .await;
    assert_eq!(errors[0].0, "clone_failed");
    assert!(
        errors[0].1.contains("file:///nonexistent/acme/gone.git")
            && errors[0].1.contains("repos/gone"),
        "{}",
        errors[0].1
    );
    assert_eq!((ready.as_str(), code), ("PrerequisiteFailed", Some(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_crashing_claude_is_reported_with_its_last_words() {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    // No such executable.
    let mut opts = Options::new(&dir.path().join("a")).with_mock(&mock.url());
    opts.claude_bin = Some(dir.path().join("no-claude-here"));
    let s = TestServer::start(opts).await;
    let (errors, ready, code) = failure(
        &s,
        json!({"stopOnRunFinished": true, "initialPrompt": "hi"}),
    )
    .await;
    assert_eq!(errors[0].0, "claude_missing");
    assert!(errors[0].1.contains("no-claude-here"), "{}", errors[0].1);
    assert_eq!((ready.as_str(), code), ("PrerequisiteFailed", Some(2)));
    s.stop().await;

    // A CLI that dies at once, saying why on its standard error.
    let crash = dir.path().join("crashing-claude");
    std::fs::write(
        &crash,
        "#!/bin/sh\necho 'fatal: simulated crash in the CLI' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&crash, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut opts = Options::new(&dir.path().join("b")).with_mock(&mock.url());
    opts.claude_bin = Some(crash);
    let s = TestServer::start(opts).await;
    let (errors, ready, code) = failure(
        &s,
        json!({"stopOnRunFinished": true, "initialPrompt": "hi"}),
    )
    .await;
    assert_eq!(errors[0].0, "claude_crashed");
    assert!(
        errors[0].1.contains("exited with code 3") && errors[0].1.contains("simulated crash"),
        "{}",
        errors[0].1
    );
    assert_eq!((ready.as_str(), code), ("RunnerExit", Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Workspaces on a 2 MiB filesystem; the repository to clone is bigger.
    let workspaces = dir.path().join("workspaces");
    std::fs::create_dir_all(&workspaces).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&workspaces)
        .status()
        .expect("mount runs");
    assert!(
        mounted.success(),
        "this test needs to mount a tmpfs (it runs as root in CI)"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(workspaces.clone());
    let repos = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let url = bare_repo(repos.path(), "acme", "big", Some(("blob.bin", big)));
    let (s, _mock) = with_mock(dir.path()).await;
    let (errors, ready, _) = failure(
        &s,
        json!({"stopOnRunFinished": true, "initialPrompt": "hi", "repos": [{"url": url}]}),
    )
    .await;
    assert!(
        errors
            .iter()
            .any(|(code, message)| code == "clone_failed" && message.contains("disk is full")),
        "{errors:?}"
    );
    assert_eq!(ready, "PrerequisiteFailed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_cannot_start_fails_the_session_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    // A file that is not executable: spawning it fails.
    let runner = dir.path().join("not-a-runner");
    std::fs::write(&runner, "not a program").unwrap();
    let mut opts = Options::new(dir.path());
    opts.runner_bin = Some(runner.clone());
    let s = TestServer::start(opts).await;
    let (errors, ready, code) = failure(
        &s,
        json!({"stopOnRunFinished": true, "initialPrompt": "hi"}),
    )
    .await;
    // The runner never ran: no error event of its own, no exit code.
    assert_eq!(
        (ready.as_str(), errors.len(), code),
        ("RunnerNotStarted", 0, None)
    );
    let (_, list) = call(&s, "GET", "/api/projects/default/agentic-sessions", None).await;
    let message = list["items"][0]["status"]["conditions"].to_string();
    assert!(
        message.contains("could not start") && message.contains("not-a-runner"),
        "{message}"
    );
}
