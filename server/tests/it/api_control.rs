//! Steering sessions through the real router: messages, continue, interrupt, stop, export.

use std::time::Duration;

use crate::common::{assert_error, call, exported_events, processes_in, with_mock};
use model::protocol::SessionEvent;
use serde_json::json;

const SESSIONS: &str = "/api/projects/default/agentic-sessions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_finished_session_continues_its_conversation() {
    let (s, mock, _dir) = with_mock().await;
    let name = s.create_session("remember the word pineapple").await;
    s.wait_phase(&name, &["Completed"], Duration::from_secs(60))
        .await;
    let path = format!("{SESSIONS}/{name}");

    let (st, accepted) = call(
        &s,
        "POST",
        &format!("{path}/messages"),
        Some(json!({"text": "recall"})),
    )
    .await;
    assert_eq!(st, 202, "{accepted}");
    let seq = accepted["seq"].as_u64().unwrap();
    // It runs again and completes again.
    s.wait_phase(&name, &["Creating", "Running"], Duration::from_secs(30))
        .await;
    s.wait_phase(&name, &["Completed"], Duration::from_secs(60))
        .await;
    let events = exported_events(&s, &name).await;
    let answer = events
        .iter()
        .filter(|e| e.seq > seq)
        .find_map(|e| match &e.event {
            SessionEvent::AgentMessage(m) => Some(m.text.clone()),
            _ => None,
        })
        .expect("an answer after the message");
    // The model saw the earlier turn: the conversation was resumed, not restarted.
    assert_eq!(answer, "I remember: remember the word pineapple");
    let last = mock
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.starts_with("/v1/messages"))
        .unwrap();
    assert!(last.user_texts().iter().any(|t| t.contains("pineapple")));
    let session = s.session(&name).await;
    assert_eq!(session["status"]["sdkRestartCount"], 1);

    assert_error(
        &call(
            &s,
            "POST",
            &format!("{path}/messages"),
            Some(json!({"text": " "})),
        )
        .await,
        400,
        "invalid",
        "text",
    );
    assert_error(
        &call(&s, "POST", &format!("{path}/messages"), Some(json!({}))).await,
        400,
        "invalid",
        "text",
    );
    assert_error(
        &call(
            &s,
            "POST",
            &format!("{SESSIONS}/session-x/messages"),
            Some(json!({"text": "hi"})),
        )
        .await,
        404,
        "not_found",
        "session-x",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_stops_the_turn_not_the_session() {
    let (s, _mock, _dir) = with_mock().await;
    let name = s.create_session("slow 200").await;
    let path = format!("{SESSIONS}/{name}");
    s.wait_phase(&name, &["Running"], Duration::from_secs(30))
        .await;
    // Wait for the stream to have started.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !exported_events(&s, &name)
        .await
        .iter()
        .any(|e| matches!(e.event, SessionEvent::AgentDelta(_)))
    {
        assert!(tokio::time::Instant::now() < deadline, "no text streamed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, _) = call(&s, "POST", &format!("{path}/interrupt"), None).await;
    assert_eq!(st, 202);
    // The turn ends at once (a 200-chunk stream would take 50 s) and the session completes.
    s.wait_phase(&name, &["Completed"], Duration::from_secs(20))
        .await;
    let events = exported_events(&s, &name).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::Interrupt(c) if c.sender == "tester"))
    );
    assert!(events.iter().any(
        |e| matches!(&e.event, SessionEvent::TurnResult(t) if t.subtype == "error_during_execution")
    ));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.event, SessionEvent::Error(_))),
        "an interrupt is not an error"
    );
    assert_error(
        &call(&s, "POST", &format!("{path}/interrupt"), None).await,
        409,
        "conflict",
        "not running",
    );
    assert_error(
        &call(&s, "POST", &format!("{SESSIONS}/session-x/interrupt"), None).await,
        404,
        "not_found",
        "session-x",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_leaves_no_process_of_the_session() {
    let (s, _mock, _dir) = with_mock().await;
    let name = s.create_session("run: echo started; sleep 600").await;
    let path = format!("{SESSIONS}/{name}");
    let workspace = s.workspace(&name);
    // Wait until the agent's Bash is sleeping.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !processes_in(&workspace)
        .iter()
        .any(|(_, cmd)| cmd.contains("sleep 600"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sleep never started: {:?}",
            processes_in(&workspace)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_error(
        &call(&s, "POST", &format!("{path}/start"), None).await,
        409,
        "conflict",
        "Running",
    );
    let (st, _) = call(&s, "POST", &format!("{path}/stop"), None).await;
    assert_eq!(st, 202);
    s.wait_phase(&name, &["Stopped"], Duration::from_secs(30))
        .await;
    let left = processes_in(&workspace);
    assert!(
        left.is_empty(),
        "processes of the session survived the stop: {left:?}"
    );
    let session = s.session(&name).await;
    assert_eq!(session["status"]["stoppedReason"], "user");
    assert!(session["status"]["completionTime"].is_string());
    assert!(
        session["metadata"]["annotations"]
            .get("ambient-code.io/desired-phase")
            .is_none(),
        "the request was taken"
    );
    let events = exported_events(&s, &name).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::StopRequested(c) if c.sender == "tester"))
    );

    assert_error(
        &call(&s, "POST", &format!("{path}/stop"), None).await,
        409,
        "conflict",
        "already Stopped",
    );
    assert_error(
        &call(&s, "POST", &format!("{SESSIONS}/session-x/stop"), None).await,
        404,
        "not_found",
        "session-x",
    );
    assert_error(
        &call(&s, "POST", &format!("{SESSIONS}/session-x/start"), None).await,
        404,
        "not_found",
        "session-x",
    );
    assert_error(
        &call(&s, "GET", &format!("{SESSIONS}/session-x/export"), None).await,
        404,
        "not_found",
        "session-x",
    );

    // Continue after the stop: the agent is told to go on, in the same conversation.
    let (st, _) = call(&s, "POST", &format!("{path}/start"), None).await;
    assert_eq!(st, 202);
    s.wait_phase(&name, &["Creating", "Running"], Duration::from_secs(30))
        .await;
    let events = exported_events(&s, &name).await;
    assert!(events.iter().any(|e| matches!(&e.event, SessionEvent::UserMessage(m) if m.text == "Continue where you left off.")));
    call(&s, "POST", &format!("{path}/stop"), None).await;
    s.wait_phase(&name, &["Stopped"], Duration::from_secs(30))
        .await;
    crate::common::assert_no_process_in(&workspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactivity_and_timeout_stop_sessions_with_their_reason() {
    let (s, _mock, _dir) = with_mock().await;
    let create = |body: serde_json::Value| {
        let s = &s;
        async move {
            let (st, b) = call(s, "POST", SESSIONS, Some(body)).await;
            assert_eq!(st, 201, "{b}");
            b["name"].as_str().unwrap().to_owned()
        }
    };
    // Silent for longer than its inactivity timeout: a sleeping command emits nothing. (Claude
    // Code refuses a bare long `sleep`, so the command starts with an echo.)
    let idle =
        create(json!({"stopOnRunFinished": true, "initialPrompt": "run: echo started; sleep 120", "inactivityTimeout": 2}))
            .await;
    // Busy (text streams all the time) but past its timeout.
    let long =
        create(json!({"stopOnRunFinished": true, "initialPrompt": "slow 400", "timeout": 3})).await;
    s.wait_phase(&idle, &["Stopped"], Duration::from_secs(40))
        .await;
    s.wait_phase(&long, &["Stopped"], Duration::from_secs(40))
        .await;
    assert_eq!(
        s.session(&idle).await["status"]["stoppedReason"],
        "inactivity"
    );
    assert_eq!(s.session(&long).await["status"]["stoppedReason"], "timeout");
    let ready = |v: serde_json::Value| {
        v["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()["reason"]
            .clone()
    };
    assert_eq!(ready(s.session(&idle).await), "InactivityTimeout");
    assert_eq!(ready(s.session(&long).await), "Timeout");
    assert!(processes_in(&s.workspace(&idle)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_has_the_whole_log() {
    let (s, _mock, _dir) = with_mock().await;
    let name = s.create_session("create notes.md").await;
    s.wait_phase(&name, &["Completed"], Duration::from_secs(60))
        .await;
    let (st, body) = call(&s, "GET", &format!("{SESSIONS}/{name}/export"), None).await;
    assert_eq!(st, 200);
    assert_eq!(
        (body["sessionId"].as_str(), body["projectName"].as_str()),
        (Some(name.as_str()), Some("default"))
    );
    assert_eq!(body["session"]["metadata"]["name"], name);
    let events = body["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .any(|e| e["event"]["type"] == "tool_use" && e["event"]["name"] == "Write")
    );
}
