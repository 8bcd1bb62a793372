//! "Run N", through the `ambient` CLI and the real `claude` against the mock model, with
//! real git: three attempts at one prompt each commit their work and report it, and push
//! nothing; the comparison shows what each changed; keeping one pushes its branch (and only
//! its), stops the others, and a group keeps one attempt only. Bad requests are refused
//! with their reason. Kubernetes mode:
//! `kubernetes::attempts_hold_their_work_in_their_pods_until_one_is_kept`.

use std::time::Duration;

use model::protocol::{RepoChanges, SessionEvent};
use serde_json::json;

use crate::cli::{login, run, text};
use crate::common::forge::{bare_repo, branches};
use crate::common::{Options, TestServer, assert_error, call, exported_events, project_key};

const ATTEMPTS: &str = "/api/projects/default/attempts";

fn changes_of(events: &[model::protocol::StoredEvent]) -> Vec<RepoChanges> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::Changes(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_hold_their_work_until_one_is_kept_and_only_its_work_is_pushed() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut opts = Options::new(data.path()).with_mock(&mock.url());
    opts.stop_runners_on_exit = true;
    let s = TestServer::start(opts).await;
    let repos = tempfile::tempdir().unwrap();
    let app = bare_repo(repos.path(), "acme", "app", None);
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key).await;

    // What cannot be started is refused before any session is made.
    for (body, field) in [
        (
            json!({"attempts": 1, "session": {"initialPrompt": "x"}}),
            "attempts",
        ),
        (
            json!({"attempts": 6, "session": {"initialPrompt": "x"}}),
            "attempts",
        ),
        (
            json!({"attempts": 2, "session": {"initialPrompt": " "}}),
            "initialPrompt",
        ),
        (
            json!({"attempts": 2, "session": {"initialPrompt": "x"}, "extra": 1}),
            "extra",
        ),
    ] {
        assert_error(
            &call(&s, "POST", ATTEMPTS, Some(body)).await,
            400,
            "invalid",
            field,
        );
    }
    let (_, list) = call(&s, "GET", "/api/projects/default/agentic-sessions", None).await;
    assert_eq!(list["totalCount"], 0, "{list}");
    let http = testkit::client_with_key(&project_key(&s, "v", "view").await);
    let viewer = crate::common::TestServerView {
        http: &http,
        addr: s.addr.to_string(),
    };
    let got = call(
        &viewer,
        "POST",
        ATTEMPTS,
        Some(json!({"attempts": 2, "session": {"initialPrompt": "x"}})),
    )
    .await;
    assert_eq!(got.0, 403, "{}", got.1);
    for group in ["attempts-00000000", "session-x", "attempts-..%2F..%2Fx"] {
        let (st, body) = call(&s, "GET", &format!("{ATTEMPTS}/{group}"), None).await;
        assert_eq!(st, 404, "{group}: {body}");
    }

    // Three attempts at one prompt: the CLI prints the group alone.
    let out = run(
        &config,
        &[
            "sessions",
            "create",
            "--attempts",
            "3",
            "--push",
            "--repo",
            &app,
            "Please create notes.md",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let group = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(group.starts_with("attempts-"), "{group}");
    let names: Vec<String> = (1..=3).map(|i| format!("{group}-{i}")).collect();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&names.join(" ")),
        "{}",
        text(&out)
    );
    for name in &names {
        let phase = s
            .wait_phase(name, &["Completed", "Failed"], Duration::from_secs(120))
            .await;
        assert_eq!(phase, "Completed", "{name}");
        let session = s.session(name).await;
        assert_eq!(
            session["spec"]["stopOnRunFinished"], true,
            "a batch session"
        );
        assert_eq!(session["spec"]["attempt"]["group"], group.as_str());
    }

    // Each committed its work and reported it, held; nothing was pushed.
    assert_eq!(branches(&app), vec!["main".to_owned()], "an attempt pushed");
    for name in &names {
        let events = exported_events(&s, name).await;
        let changes = changes_of(&events);
        assert_eq!(changes.len(), 1, "{name}: {changes:?}");
        let c = &changes[0];
        assert!(c.held, "{c:?}");
        assert_eq!(
            (c.repo.as_str(), c.branch.clone(), c.base.as_str()),
            ("app", format!("ambient/{name}"), "main")
        );
        assert!(c.files >= 1 && c.insertions >= 1, "{c:?}");
        assert!(c.diff.contains("notes.md"), "{}", c.diff);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.event, SessionEvent::GitPush(_))),
            "{name} pushed"
        );
    }

    // Side by side, through the API and the CLI.
    let (st, g) = call(&s, "GET", &format!("{ATTEMPTS}/{group}"), None).await;
    assert_eq!(st, 200, "{g}");
    assert_eq!(g["prompt"], "Please create notes.md");
    assert!(g.get("kept").is_none(), "{g}");
    let attempts = g["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{g}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["index"], i + 1);
        assert_eq!(a["phase"], "Completed");
        assert!(a["turns"].as_u64().unwrap() >= 1, "{a}");
        assert!(
            a["changes"][0]["diff"]
                .as_str()
                .unwrap()
                .contains("notes.md")
        );
    }
    let out = run(&config, &["attempts", "show", &group]).await;
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        names.iter().all(|n| table
            .lines()
            .any(|l| l.starts_with(n.as_str()) && l.contains("app: 1 files +"))),
        "{table}"
    );

    // Keep the second: it alone is pushed.
    let keep = format!("{ATTEMPTS}/{group}/keep");
    assert_error(
        &call(&s, "POST", &keep, Some(json!({"session": "session-other"}))).await,
        400,
        "invalid",
        "session",
    );
    let got = call(&viewer, "POST", &keep, Some(json!({"session": names[1]}))).await;
    assert_eq!(got.0, 403, "{}", got.1);
    let out = run(&config, &["attempts", "keep", &group, &names[1]]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), names[1]);
    let again = call(&s, "POST", &keep, Some(json!({"session": names[2]}))).await;
    assert_error(&again, 409, "conflict", "");
    assert!(again.1.to_string().contains("kept already"), "{}", again.1);

    let branch = format!("ambient/{}", names[1]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !branches(&app).contains(&branch) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kept attempt was not pushed: {:?}",
            exported_events(&s, &names[1]).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let phase = s
        .wait_phase(&names[1], &["Completed", "Failed"], Duration::from_secs(60))
        .await;
    assert_eq!(phase, "Completed");
    assert_eq!(branches(&app), vec![branch.clone(), "main".to_owned()]);
    let events = exported_events(&s, &names[1]).await;
    let last = changes_of(&events).pop().unwrap();
    assert!(
        !last.held,
        "the kept run's report says it was delivered: {last:?}"
    );
    // Nothing more was asked of its agent: the run only delivered.
    let messages = events
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::UserMessage(_)))
        .count();
    assert_eq!(messages, 1, "{events:?}");

    let (_, g) = call(&s, "GET", &format!("{ATTEMPTS}/{group}"), None).await;
    assert_eq!(g["kept"], names[1].as_str(), "{g}");
    assert_eq!(g["attempts"][1]["kept"], true);
    assert_eq!(g["attempts"][0]["kept"], false);
}
