//! Whole sessions in local mode: server, local driver, runner, the real `claude` CLI and a
//! mock Anthropic API.

use std::time::Duration;

use crate::common::{Options, TestServer, is_phase, processes_in};
use model::protocol::{ServerToBrowser, SessionEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_writes_a_file_and_completes() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Options::new(dir.path()).with_mock(&mock.url())).await;

    let name = server.create_session("Please create hello.txt").await;
    let mut viewer = server.viewer(&name, 0).await;
    let events = viewer
        .events_until(Duration::from_secs(60), |e| {
            is_phase(e, &["Completed", "Failed"])
        })
        .await;

    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind()).collect();
    let last = events.last().expect("events");
    assert!(
        is_phase(last, &["Completed"]),
        "ended with {:?}; events: {kinds:?}",
        last.event
    );
    // Sequence numbers are gap-free from 1.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "{kinds:?}");
    }
    assert!(
        matches!(&events[0].event, SessionEvent::UserMessage(m) if m.text == "Please create hello.txt" && m.sender == "tester")
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::ToolUse(t) if t.name == "Write")),
        "{kinds:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::ToolResult(r) if !r.is_error)),
        "{kinds:?}"
    );
    assert!(events.iter().any(
        |e| matches!(&e.event, SessionEvent::AgentMessage(m) if m.text.contains("create hello.txt"))
    ));
    assert!(events.iter().any(
        |e| matches!(&e.event, SessionEvent::Result(r) if r.exit_code == 0 && r.num_turns >= 2)
    ));

    let file = server.workspace(&name).join("artifacts/hello.txt");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "Hello from the mock Anthropic API!\n"
    );

    let session = server.session(&name).await;
    assert_eq!(session["status"]["phase"], "Completed");
    assert_eq!(session["status"]["result"]["exitCode"], 0);
    assert!(session["status"]["sdkSessionId"].is_string());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_credentials_fails_fast_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Options::new(dir.path())).await;
    let name = server.create_session("create hello.txt").await;
    let mut viewer = server.viewer(&name, 0).await;
    let events = viewer
        .events_until(Duration::from_secs(20), |e| {
            is_phase(e, &["Completed", "Failed"])
        })
        .await;
    let last = events.last().unwrap();
    assert!(is_phase(last, &["Failed"]), "{last:?}");
    let error = events
        .iter()
        .find_map(|e| match &e.event {
            SessionEvent::Error(err) => Some(err.clone()),
            _ => None,
        })
        .expect("an error event");
    assert_eq!(error.code.as_deref(), Some("no_credentials"));
    assert!(
        error.message.contains("ANTHROPIC_API_KEY"),
        "{}",
        error.message
    );
    let session = server.session(&name).await;
    let ready = session["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "PrerequisiteFailed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_viewer_gets_the_whole_log_then_live() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Options::new(dir.path()).with_mock(&mock.url())).await;
    let name = server.create_session("hello there").await;
    server
        .wait_phase(&name, &["Completed", "Failed"], Duration::from_secs(60))
        .await;

    let mut viewer = server.viewer(&name, 0).await;
    let mut seqs = Vec::new();
    loop {
        match viewer.next(Duration::from_secs(5)).await {
            Some(ServerToBrowser::Event(e)) => seqs.push(e.seq),
            Some(ServerToBrowser::Live(l)) => {
                assert_eq!(l.seq, *seqs.last().unwrap());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // From a cursor: exactly the rest.
    let mut late = server.viewer(&name, 3).await;
    match late.next(Duration::from_secs(5)).await {
        Some(ServerToBrowser::Event(e)) => assert_eq!(e.seq, 4),
        other => panic!("unexpected {other:?}"),
    }
    server.stop().await;
}

/// A test server told so stops the runners it started when it stops: a suite leaves no
/// process behind (normally runners outlive a server, which the restart tests show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_its_runners_leaves_no_process() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path()).with_mock(&mock.url());
    opts.stop_runners_on_exit = true;
    opts.stop_grace = Duration::from_secs(2);
    let server = TestServer::start(opts).await;
    let name = server.create_session("slow 60").await;
    server
        .wait_phase(&name, &["Running"], Duration::from_secs(30))
        .await;
    let workspaces = dir.path().join("workspaces");
    assert!(!processes_in(&workspaces).is_empty(), "the runner runs");
    server.stop().await;
    // A runner given its grace may still be ending as the server returns (on a loaded
    // machine the server's own shutdown can outlast the helper's wait): allowed a few
    // seconds; one that stays is a leak.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let left = loop {
        let left = processes_in(&workspaces);
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// With a cap of N running sessions, session N+1 waits in Pending saying why, and starts
/// when a slot frees (each `claude` takes ~300 MB: without a cap, enough sessions exhaust
/// the machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_cap_a_session_waits_in_pending_then_runs() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path()).with_mock(&mock.url());
    opts.max_running = 1;
    let server = TestServer::start(opts).await;
    let first = server.create_session("run: sleep 3").await;
    server
        .wait_phase(&first, &["Running"], Duration::from_secs(60))
        .await;
    let second = server.create_session("create second.txt").await;
    // It waits, and says why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let s = server.session(&second).await;
        let ready = s["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .cloned();
        if let Some(c) = ready {
            break (s["status"]["phase"].clone(), c);
        }
        assert!(tokio::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(waiting.0, "Pending");
    assert_eq!(waiting.1["reason"], "WaitingForCapacity");
    let message = waiting.1["message"].as_str().unwrap();
    assert!(message.contains("1 of 1 sessions are running"), "{message}");
    assert_eq!(server.phase(&first).await, "Running");
    // Never run yet, it has no files to serve (and no files runner is started for it).
    let got = crate::common::call(
        &server,
        "GET",
        &format!("/api/projects/default/agentic-sessions/{second}/workspace"),
        None,
    )
    .await;
    crate::common::assert_error(&got, 409, "conflict", "has not run yet");
    // When the first ends, the second runs to its end.
    server
        .wait_phase(&first, &["Completed"], Duration::from_secs(60))
        .await;
    server
        .wait_phase(&second, &["Completed"], Duration::from_secs(60))
        .await;
    let ended = server.session(&first).await["status"]["completionTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = server.session(&second).await["status"]["startTime"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(started >= ended, "started {started} before {ended}");
    assert!(
        server
            .workspace(&second)
            .join("artifacts/second.txt")
            .exists()
    );
}
