//! Interactive sessions (the default): the agent answers, the session stays `Running` with
//! its `claude` process warm, a follow-up is answered by that same process, and the session
//! stops by the inactivity timeout (reason `inactivity`), to be continued, resumed, by the
//! next message. Through the `ambient` CLI and the REST API, in local mode (Kubernetes mode:
//! `kubernetes::an_interactive_session_keeps_its_agent_warm_in_its_pod_between_turns`).

use std::time::Duration;

use model::protocol::SessionEvent;
use serde_json::{Value, json};

use crate::cli::{login, run, text};
use crate::common::{call, with_mock};

const SESSIONS: &str = "/api/projects/default/agentic-sessions";

/// The log's events, from the export.
async fn events(s: &crate::common::TestServer, name: &str) -> Vec<model::protocol::StoredEvent> {
    let (st, export) = call(s, "GET", &format!("{SESSIONS}/{name}/export"), None).await;
    assert_eq!(st, 200, "{export}");
    serde_json::from_value(export["events"].clone()).unwrap()
}

fn count(events: &[model::protocol::StoredEvent], what: impl Fn(&SessionEvent) -> bool) -> usize {
    events.iter().filter(|e| what(&e.event)).count()
}

/// The name `ambient sessions create` printed.
fn created(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Stops a session and waits until it is Stopped.
async fn stop(s: &crate::common::TestServer, name: &str) {
    let (st, body) = call(s, "POST", &format!("{SESSIONS}/{name}/stop"), None).await;
    assert_eq!(st, 202, "{body}");
    s.wait_phase(name, &["Stopped"], Duration::from_secs(30))
        .await;
}

/// Waits until `cond` holds of the session as the API shows it.
async fn until_session(
    s: &crate::common::TestServer,
    name: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = s.session(name).await;
        if cond(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the session is {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_session_answers_follow_ups_from_its_warm_agent_and_waits_for_a_person() {
    let (s, _mock, dir) = with_mock().await;
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key).await;

    // Created without --batch: interactive. `logs -f --turn` ends (0) once it has answered.
    let out = run(&config, &["sessions", "create", "create hello.txt"]).await;
    let name = created(out);
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let first = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(first.contains("tool Write"), "{}", text(&out));
    assert!(!first.contains("phase Completed"), "{}", text(&out));

    // Still running, its agent waiting for a person: the API, `list` and `list --waiting`
    // say so, and the agent (the same process) is alive.
    let got = until_session(&s, &name, "waiting", |v| {
        v["status"]["agentStatus"] == "idle"
    })
    .await;
    assert_eq!(got["status"]["phase"], "Running", "{got}");
    let workspace = dir.path().join("workspaces/default").join(&name);
    let agents = crate::common::processes_in(&workspace);
    assert!(
        agents.iter().any(|(_, cmd)| cmd.contains("claude")),
        "the agent stays warm between turns: {agents:?}"
    );
    let out = run(&config, &["sessions", "list", "--waiting"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let waiting = String::from_utf8_lossy(&out.stdout).to_string();
    let row = waiting
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("listed as waiting: {waiting}"));
    assert!(row.contains("Running") && row.contains("waiting"), "{row}");
    let (st, body) = call(
        &s,
        "GET",
        &format!("{SESSIONS}?waiting=true&limit=5&search=HELLO"),
        None,
    )
    .await;
    assert_eq!((st, body["totalCount"].as_u64()), (200, Some(1)), "{body}");
    let (_, body) = call(
        &s,
        "GET",
        &format!("{SESSIONS}?waiting=true&search=nothing-like-it"),
        None,
    )
    .await;
    assert_eq!(body["totalCount"], 0, "{body}");

    // A follow-up: answered by the warm agent (no new conversation, no resume, no run
    // ended), then waiting again.
    let last = events(&s, &name).await.last().unwrap().seq;
    let out = run(&config, &["send", &name, "remember the word pineapple"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let (st, list) = call(&s, "GET", SESSIONS, None).await;
    assert_eq!(st, 200);
    let out = run(
        &config,
        &["logs", "-f", "--turn", "--after", &last.to_string(), &name],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pineapple"),
        "{}",
        text(&out)
    );
    let log = events(&s, &name).await;
    assert_eq!(
        count(&log, |e| matches!(e, SessionEvent::AgentStarted(_))),
        1,
        "one conversation, one process: {log:?}"
    );
    assert_eq!(count(&log, |e| matches!(e, SessionEvent::TurnResult(_))), 2);
    assert_eq!(
        count(&log, |e| matches!(e, SessionEvent::Result(_))),
        0,
        "no run ended"
    );
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["metadata"]["name"] == name.as_str())
    );
    until_session(&s, &name, "waiting again", |v| {
        v["status"]["agentStatus"] == "idle"
    })
    .await;

    // Stopped by a person: the run ends (its work delivered), nothing is left running.
    let out = run(&config, &["stop", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    s.wait_phase(&name, &["Stopped"], Duration::from_secs(30))
        .await;
    let got = s.session(&name).await;
    assert_eq!(got["status"]["stoppedReason"], "user", "{got}");
    assert!(got["status"]["agentStatus"].is_null(), "{got}");
    let out = run(&config, &["sessions", "list", "--waiting"]).await;
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&name),
        "{}",
        text(&out)
    );
    crate::common::assert_no_process_in(&workspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_interactive_session_stops_by_inactivity_and_a_message_resumes_it() {
    let (s, _mock, _dir) = with_mock().await;
    let (st, created) = call(
        &s,
        "POST",
        SESSIONS,
        Some(json!({"initialPrompt": "create hello.txt", "inactivityTimeout": 3})),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let name = created["name"].as_str().unwrap().to_owned();
    until_session(&s, &name, "answered", |v| {
        v["status"]["agentStatus"] == "idle"
    })
    .await;
    // Nothing happens for longer than the timeout: stopped, for inactivity.
    s.wait_phase(&name, &["Stopped"], Duration::from_secs(40))
        .await;
    let got = s.session(&name).await;
    assert_eq!(got["status"]["stoppedReason"], "inactivity", "{got}");

    // A message continues it: a new run that resumes the conversation and answers.
    let (st, body) = call(
        &s,
        "POST",
        &format!("{SESSIONS}/{name}/messages"),
        Some(json!({"text": "recall"})),
    )
    .await;
    assert!(st == 200 || st == 202, "{st} {body}");
    until_session(&s, &name, "answered after resuming", |v| {
        v["status"]["phase"] == "Running" && v["status"]["agentStatus"] == "idle"
    })
    .await;
    let log = events(&s, &name).await;
    let started: Vec<bool> = log
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::AgentStarted(a) => Some(a.resumed),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [false, true],
        "the conversation was resumed: {log:?}"
    );
    assert!(
        log.iter().any(|e| matches!(&e.event, SessionEvent::AgentMessage(m) if m.text.contains("I remember: create hello.txt"))),
        "the resumed agent knows the first turn: {log:?}"
    );
    stop(&s, &name).await;
}

/// At the cap on running sessions, a session that would wait for a slot takes the slot of the
/// session whose agent has waited for a person the longest: that one stops with reason
/// `capacity`, and a message later continues it (taking, in turn, the slot of the other,
/// now waiting too). A working agent is never stopped for room
/// (`session_e2e::beyond_the_cap_a_session_waits_in_pending_then_runs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_session_waiting_longest_for_a_person_makes_room() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = crate::common::Options::new(dir.path()).with_mock(&mock.url());
    opts.max_running = 1;
    let s = crate::common::TestServer::start(opts).await;
    let create = |prompt: &'static str| {
        let s = &s;
        async move {
            let (st, b) = call(
                s,
                "POST",
                SESSIONS,
                Some(json!({ "initialPrompt": prompt })),
            )
            .await;
            assert_eq!(st, 201, "{b}");
            b["name"].as_str().unwrap().to_owned()
        }
    };
    let first = create("say one").await;
    until_session(&s, &first, "the first answered", |v| {
        v["status"]["agentStatus"] == "idle"
    })
    .await;
    let second = create("say two").await;
    until_session(&s, &second, "the second answered", |v| {
        v["status"]["agentStatus"] == "idle"
    })
    .await;
    let got = s.session(&first).await;
    assert_eq!(
        (
            got["status"]["phase"].as_str(),
            got["status"]["stoppedReason"].as_str()
        ),
        (Some("Stopped"), Some("capacity")),
        "{got}"
    );

    // A message to the first continues it; the second, waiting now, makes the room.
    let (st, body) = call(
        &s,
        "POST",
        &format!("{SESSIONS}/{first}/messages"),
        Some(json!({"text": "recall"})),
    )
    .await;
    assert!(st == 200 || st == 202, "{st} {body}");
    until_session(&s, &first, "the first answered again", |v| {
        v["status"]["phase"] == "Running" && v["status"]["agentStatus"] == "idle"
    })
    .await;
    let got = s.session(&second).await;
    assert_eq!(got["status"]["stoppedReason"], "capacity", "{got}");
    assert!(
        events(&s, &first).await.iter().any(|e| matches!(&e.event, SessionEvent::AgentMessage(m) if m.text.contains("I remember: say one"))),
        "resumed with its conversation"
    );
    stop(&s, &first).await;
}

/// The model of the last streaming request the mock received.
fn last_model(mock: &mock_anthropic::MockHandle) -> Option<String> {
    mock.requests()
        .iter()
        .rev()
        .find(|r| r.body["stream"] == true)
        .and_then(|r| r.body["model"].as_str().map(str::to_owned))
}

/// `ambient model S M` switches a running agent's model at once (its next request uses it,
/// the transcript says who chose it) and keeps it for the session's later runs; a model the
/// platform does not offer is refused (7, nothing changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_switches_in_the_running_agent_and_stays_for_later_runs() {
    let (s, mock, _dir) = with_mock().await;
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key).await;
    let out = run(
        &config,
        &[
            "sessions",
            "create",
            "--model",
            "claude-sonnet-4-6",
            "say hi",
        ],
    )
    .await;
    let name = created(out);
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(last_model(&mock).as_deref(), Some("claude-sonnet-4-6"));

    let out = run(&config, &["model", &name, "gpt-5"]).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let out = run(&config, &["model", &name, "claude-opus-4-6"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("claude-opus-4-6"));
    let last = events(&s, &name).await.last().unwrap().seq;
    let out = run(&config, &["send", &name, "and now?"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &config,
        &["logs", "-f", "--turn", "--after", &last.to_string(), &name],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        last_model(&mock).as_deref(),
        Some("claude-opus-4-6"),
        "the warm agent's next request uses the new model"
    );
    let log = events(&s, &name).await;
    assert!(
        log.iter().any(|e| matches!(&e.event, SessionEvent::ModelChanged(m) if m.model == "claude-opus-4-6" && m.sender == "tester")),
        "{log:?}"
    );
    assert_eq!(
        count(&log, |e| matches!(e, SessionEvent::AgentStarted(_))),
        1,
        "switched in place, not restarted"
    );
    assert!(
        !log.iter()
            .any(|e| matches!(&e.event, SessionEvent::Error(_))),
        "{log:?}"
    );
    let got = s.session(&name).await;
    assert_eq!(
        got["spec"]["llmSettings"]["model"], "claude-opus-4-6",
        "{got}"
    );
    stop(&s, &name).await;
}

/// The agent asks (`AskUserQuestion`): the session waits for a person (`asking`, listed as
/// waiting), `ambient asks` shows the question and its options, `ambient answer` gives the
/// answer to the waiting agent, which goes on with it in the same turn; what does not answer
/// an open question is refused, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_of_the_agent_waits_for_a_person_and_the_answer_goes_on() {
    let (s, _mock, _dir) = with_mock().await;
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key).await;
    let out = run(
        &config,
        &[
            "sessions",
            "create",
            "ask: Which color should the button be? | Red | Blue",
        ],
    )
    .await;
    let name = created(out);
    let got = until_session(&s, &name, "the agent asking", |v| {
        v["status"]["agentStatus"] == "waiting_input"
    })
    .await;
    assert_eq!(got["status"]["phase"], "Running");
    let out = run(&config, &["sessions", "list", "--waiting"]).await;
    let waiting = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        waiting
            .lines()
            .any(|l| l.starts_with(&name) && l.contains("asking")),
        "{waiting}"
    );
    let out = run(&config, &["asks", &name, "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let asks: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ask = &asks["items"][0];
    assert_eq!(ask["tool"], "AskUserQuestion", "{asks}");
    assert_eq!(
        ask["input"]["questions"][0]["options"][1]["label"], "Blue",
        "{asks}"
    );
    let id = ask["id"].as_str().unwrap().to_owned();

    // Refused: an unknown id (6), the wrong number of answers (2), a question not asked
    // (400), a blank answer (400).
    let out = run(&config, &["answer", &name, "nope", "Blue"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let out = run(&config, &["answer", &name, &id, "Blue", "Red"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let path = format!("{SESSIONS}/{name}/answers");
    let (st, body) = call(
        &s,
        "POST",
        &path,
        Some(json!({"id": id, "answers": {"Other?": "x"}})),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = call(
        &s,
        "POST",
        &path,
        Some(json!({"id": id, "answers": {"Which color should the button be?": " "}})),
    )
    .await;
    assert_eq!(st, 400, "{body}");

    let out = run(&config, &["answer", &name, &id, "Blue"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        printed.contains(&format!("answered {id}: Blue")),
        "{printed}"
    );
    let log = events(&s, &name).await;
    assert!(
        log.iter().any(|e| matches!(&e.event, SessionEvent::AgentMessage(m) if m.text.contains("Got your answer") && m.text.contains("Blue"))),
        "the agent got the answer: {log:?}"
    );
    assert_eq!(
        count(&log, |e| matches!(e, SessionEvent::TurnResult(_))),
        1,
        "one turn"
    );
    // Answered once: a second answer is refused.
    let out = run(&config, &["answer", &name, &id, "Red"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let out = run(&config, &["asks", &name]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "{}",
        text(&out)
    );
    stop(&s, &name).await;
}

/// A session that asks before acting (`--permission-mode ask`): each edit waits for a
/// person. Denied, the agent is told why and nothing is written; allowed once, it is
/// written; allowed for the session, the next edit goes through without asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_session_that_asks_each_edit_waits_for_approval() {
    let (s, _mock, dir) = with_mock().await;
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key).await;
    let out = run(
        &config,
        &[
            "sessions",
            "create",
            "--permission-mode",
            "ask",
            "create denied.txt",
        ],
    )
    .await;
    let name = created(out);
    let artifacts = dir
        .path()
        .join("workspaces/default")
        .join(&name)
        .join("artifacts");
    let got = s.session(&name).await;
    assert_eq!(got["spec"]["permissionMode"], "ask", "{got}");

    // The next ask of the agent, once it waits for it.
    let next_ask = || {
        let (s, config, name) = (&s, &config, &name);
        async move {
            until_session(s, name, "an approval asked", |v| {
                v["status"]["agentStatus"] == "waiting_input"
            })
            .await;
            let out = run(config, &["asks", name, "-o", "json"]).await;
            assert!(out.status.success(), "{}", text(&out));
            let asks: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(asks["items"][0]["tool"], "Write", "{asks}");
            asks["items"][0]["id"].as_str().unwrap().to_owned()
        }
    };
    let id = next_ask().await;
    let out = run(&config, &["asks", &name]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("use Write: "),
        "{}",
        text(&out)
    );
    // A question's answer is no approval.
    let out = run(&config, &["answer", &name, &id, "yes"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(
        &config,
        &["answer", &name, &id, "--deny", "--reason", "not this file"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let log = events(&s, &name).await;
    assert!(
        log.iter().any(|e| matches!(&e.event, SessionEvent::ToolResult(r) if r.is_error && r.content.contains("not this file"))),
        "the agent was told why: {log:?}"
    );
    assert!(!artifacts.join("denied.txt").exists());

    // Allowed once.
    let out = run(&config, &["send", &name, "create once.txt"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let id = next_ask().await;
    let out = run(&config, &["answer", &name, &id]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(artifacts.join("once.txt").exists());

    // Allowed for the session: the next edit is not asked about.
    let out = run(&config, &["send", &name, "create always.txt"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let id = next_ask().await;
    let out = run(&config, &["answer", &name, &id, "--always"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let asked = count(&events(&s, &name).await, |e| {
        matches!(e, SessionEvent::Ask(_))
    });
    let out = run(&config, &["send", &name, "create unasked.txt"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(artifacts.join("always.txt").exists() && artifacts.join("unasked.txt").exists());
    assert_eq!(
        count(&events(&s, &name).await, |e| matches!(
            e,
            SessionEvent::Ask(_)
        )),
        asked,
        "no new ask"
    );
    stop(&s, &name).await;
}

/// A session in plan mode: the agent's plan (`ExitPlanMode`) waits for a person's approval;
/// once approved, the agent acts without asking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_plan_mode_the_plan_waits_for_approval_then_the_agent_acts() {
    let (s, _mock, dir) = with_mock().await;
    let (st, created) = call(
        &s,
        "POST",
        SESSIONS,
        Some(json!({"initialPrompt": "propose: 1. write plan.txt", "permissionMode": "plan"})),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let name = created["name"].as_str().unwrap().to_owned();
    until_session(&s, &name, "the plan offered", |v| {
        v["status"]["agentStatus"] == "waiting_input"
    })
    .await;
    let (st, asks) = call(&s, "GET", &format!("{SESSIONS}/{name}/asks"), None).await;
    assert_eq!(st, 200, "{asks}");
    assert_eq!(asks["items"][0]["tool"], "ExitPlanMode", "{asks}");
    assert_eq!(asks["items"][0]["input"]["plan"], "1. write plan.txt");
    let id = asks["items"][0]["id"].clone();
    let (st, body) = call(
        &s,
        "POST",
        &format!("{SESSIONS}/{name}/answers"),
        Some(json!({"id": id})),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    until_session(&s, &name, "the plan's turn over", |v| {
        v["status"]["agentStatus"] == "idle"
    })
    .await;
    let (st, _) = call(
        &s,
        "POST",
        &format!("{SESSIONS}/{name}/messages"),
        Some(json!({"text": "create plan.txt"})),
    )
    .await;
    assert_eq!(st, 202);
    let file = dir
        .path()
        .join("workspaces/default")
        .join(&name)
        .join("artifacts/plan.txt");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !file.exists() {
        let got = s.session(&name).await;
        assert!(
            got["status"]["agentStatus"] != "waiting_input",
            "asked again after the plan was approved: {got}"
        );
        assert!(tokio::time::Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(&s, &name).await;
}
