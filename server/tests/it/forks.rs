//! Forks, through the `ambient` CLI and the real `claude` against the mock model: a
//! session forked after its first turn continues that conversation without what came after
//! it, in a copy of its workspace, and each of the two goes on apart; what cannot be
//! forked is refused with its reason. Kubernetes mode:
//! `kubernetes::an_interactive_session_keeps_its_agent_warm_in_its_pod_between_turns`.

use model::protocol::{SessionEvent, StoredEvent};
use serde_json::json;

use crate::cli::{login, run, text};
use crate::common::{Options, TestServer, assert_error, call, exported_events, project_key};

const SESSIONS: &str = "/api/projects/default/agentic-sessions";

/// The text of the session's last turn.
fn last_answer(events: &[StoredEvent]) -> String {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            SessionEvent::TurnResult(t) => t.text.clone(),
            _ => None,
        })
        .unwrap_or_default()
}

/// Sends `message` and waits for its answer, through the CLI.
async fn say(config: &std::path::Path, name: &str, message: &str) {
    let out = run(config, &["send", name, message]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(config, &["logs", "-f", "--turn", name]).await;
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_continues_the_conversation_after_its_turn_in_a_copy_of_the_workspace() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut opts = Options::new(data.path()).with_mock(&mock.url());
    opts.stop_runners_on_exit = true;
    let s = TestServer::start(opts).await;
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key).await;

    // Two turns: the first writes a file, the second says something the fork must not know.
    let out = run(&config, &["sessions", "create", "create notes.txt"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let source = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = run(&config, &["logs", "-f", "--turn", &source]).await;
    assert!(out.status.success(), "{}", text(&out));
    say(&config, &source, "the second thing").await;
    let notes = s.workspace(&source).join("artifacts/notes.txt");
    assert!(notes.exists(), "the first turn wrote no file");

    // Its turns, each forkable, listed with the start of its answer.
    let out = run(&config, &["sessions", "turns", &source]).await;
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(
        rows[0].starts_with('1') && rows[0].contains("yes"),
        "{listed}"
    );
    assert!(rows[1].contains("You said: the second thing"), "{listed}");

    // What cannot be forked is refused, naming why.
    let path = format!("{SESSIONS}/{source}/fork");
    for (body, field, needle) in [
        (
            json!({"prompt": "x", "turn": 3}),
            "turn",
            "2 finished turns",
        ),
        (json!({"prompt": "x", "turn": 0}), "turn", "1 or more"),
        (json!({"prompt": " "}), "prompt", "empty"),
        (
            json!({"prompt": "x", "displayName": "a\u{7}"}),
            "displayName",
            "control",
        ),
    ] {
        let got = call(&s, "POST", &path, Some(body)).await;
        assert_error(&got, 400, "invalid", field);
        assert!(got.1.to_string().contains(needle), "{}", got.1);
    }
    assert_error(
        &call(&s, "POST", &path, Some(json!({"prompt": "x", "at": 1}))).await,
        400,
        "invalid",
        "at",
    );
    let (st, _) = call(
        &s,
        "POST",
        &format!("{SESSIONS}/session-none/fork"),
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(st, 404);
    let http = testkit::client_with_key(&project_key(&s, "v", "view").await);
    let viewer = crate::common::TestServerView {
        http: &http,
        addr: s.addr.to_string(),
    };
    let got = call(&viewer, "POST", &path, Some(json!({"prompt": "x"}))).await;
    assert_eq!(got.0, 403, "{}", got.1);

    // Forked after turn 1: the fork knows the first turn, not the second, and has the
    // file the first turn wrote.
    let out = run(
        &config,
        &["sessions", "fork", &source, "--turn", "1", "recall"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let fork = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(fork.starts_with("session-") && fork != source, "{fork}");
    let out = run(&config, &["logs", "-f", "--turn", &fork]).await;
    assert!(out.status.success(), "{}", text(&out));
    let answer = last_answer(&exported_events(&s, &fork).await);
    assert_eq!(answer, "I remember: create notes.txt", "the fork's memory");
    let copied = s.workspace(&fork).join("artifacts/notes.txt");
    assert_eq!(
        std::fs::read(&copied).ok(),
        std::fs::read(&notes).ok(),
        "the fork has no copy of the file"
    );
    let spec = &s.session(&fork).await["spec"];
    assert_eq!(
        (&spec["fork"]["session"], &spec["fork"]["turn"]),
        (&json!(source), &json!(1)),
        "{spec}"
    );
    assert!(
        spec["displayName"]
            .as_str()
            .is_some_and(|d| d.ends_with("(fork after turn 1)")),
        "{spec}"
    );

    // Each goes on apart: the fork in its own conversation (no second fork of it), the
    // source in its own, which never heard the fork.
    say(&config, &fork, "a fork's own thing").await;
    say(&config, &fork, "recall").await;
    assert_eq!(
        last_answer(&exported_events(&s, &fork).await),
        "I remember: create notes.txt | recall | a fork's own thing"
    );
    say(&config, &source, "recall").await;
    assert_eq!(
        last_answer(&exported_events(&s, &source).await),
        "I remember: create notes.txt | the second thing"
    );
    // The fork's files are its own.
    std::fs::write(&copied, "changed in the fork").unwrap();
    assert_ne!(std::fs::read(&notes).unwrap(), b"changed in the fork");

    // A fork of the source after its last turn (the default) knows all of it.
    let out = run(&config, &["sessions", "fork", &source, "recall"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let last = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = run(&config, &["logs", "-f", "--turn", &last]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        last_answer(&exported_events(&s, &last).await),
        "I remember: create notes.txt | the second thing | recall"
    );
    s.stop().await;
}
