//! Workflows, through the `ambient` CLI and the real `claude` against the mock model: the
//! catalogue (`ambient workflows`), a session started in a workflow (its `ambient.json`'s
//! system prompt and startup prompt reach the model, its commands are listed and run as
//! slash commands), a switch of workflow on the running session (refused while the agent
//! works; then the session restarts in the new workflow with its conversation, and the new
//! startup prompt is given), and leaving it. Kubernetes mode:
//! `kubernetes::an_interactive_session_keeps_its_agent_warm_in_its_pod_between_turns`.

use std::path::Path;
use std::time::Duration;

use model::protocol::{SessionEvent, StoredEvent};
use serde_json::{Value, json};

use crate::cli::{login, run, text};
use crate::common::{Options, TestServer, assert_error, call};

const SESSIONS: &str = "/api/projects/default/agentic-sessions";

/// A git repository (not bare: cloned from its `file://` URL) holding `files` on `main`.
pub(crate) fn repo(root: &Path, name: &str, files: &[(&str, &str)]) -> String {
    let dir = root.join(name);
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    crate::common::forge::git(&dir, &["init", "--quiet", "--initial-branch=main"]);
    crate::common::forge::commit_all(&dir, "workflows");
    format!("file://{}", dir.display())
}

async fn events(s: &TestServer, name: &str) -> Vec<StoredEvent> {
    let (st, export) = call(s, "GET", &format!("{SESSIONS}/{name}/export"), None).await;
    assert_eq!(st, 200, "{export}");
    serde_json::from_value(export["events"].clone()).unwrap()
}

/// Waits until `cond` holds of the session's log.
async fn until_events(
    s: &TestServer,
    name: &str,
    what: &str,
    cond: impl Fn(&[StoredEvent]) -> bool,
) -> Vec<StoredEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let got = events(s, name).await;
        if cond(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the log is {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `cond` holds of the session as the API shows it.
async fn until_session(s: &TestServer, name: &str, what: &str, cond: impl Fn(&Value) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = s.session(name).await;
        if cond(&got) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the session is {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether any request the model received holds all of `needles`.
fn model_saw(mock: &mock_anthropic::MockHandle, needles: &[&str]) -> bool {
    mock.requests().iter().any(|r| {
        let body = r.body.to_string();
        needles
            .iter()
            .all(|n| body.contains(&n.replace('\n', "\\n")))
    })
}

fn turns(events: &[StoredEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::TurnResult(_)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_follows_its_workflow_runs_its_commands_and_switches_to_another() {
    let repos = tempfile::tempdir().unwrap();
    let url = repo(
        repos.path(),
        "flows",
        &[
            (
                "workflows/bugfix/.ambient/ambient.json",
                r#"{"name":"Bug fix","description":"Fix a bug.","systemPrompt":"WORKFLOW-RULE: reproduce first.","startupPrompt":"Startup of the bug fix workflow."}"#,
            ),
            (
                "workflows/bugfix/.claude/commands/triage.md",
                "---\ndescription: Sort the bugs\n---\nTriage these bugs: $ARGUMENTS\n",
            ),
            (
                "workflows/bugfix/.claude/commands/rfe/create.md",
                "# Write an RFE\nWrite an RFE about $ARGUMENTS\n",
            ),
            (
                "workflows/review/.ambient/ambient.json",
                r#"{"name":"Review","startupPrompt":"Startup of the review workflow."}"#,
            ),
            (
                "workflows/review/.claude/commands/check.md",
                "Check the change: $ARGUMENTS\n",
            ),
            (
                "workflows/retired/.ambient/ambient.json",
                r#"{"name":"Retired","enabled":false}"#,
            ),
        ],
    );
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut opts = Options::new(data.path()).with_mock(&mock.url());
    opts.stop_runners_on_exit = true;
    opts.catalogue = Some(platform::catalogue::Source {
        git_url: url.clone(),
        branch: "main".into(),
    });
    let s = TestServer::start(opts).await;
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key).await;

    // The catalogue: its enabled workflows, by name.
    let out = run(&config, &["workflows"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(
        rows[0].starts_with("bugfix") && rows[0].contains("Bug fix"),
        "{listed}"
    );
    assert!(rows[0].contains("workflows/bugfix") && rows[1].starts_with("review"));

    // A session in the bug fix workflow: the model gets the workflow's system prompt, and
    // its startup prompt before the session's own.
    let out = run(
        &config,
        &[
            "sessions",
            "create",
            "hello there",
            "--workflow",
            &url,
            "--workflow-path",
            "workflows/bugfix",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let name = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        log.contains("workflow Bug fix: /rfe:create /triage (started)"),
        "{log}"
    );
    assert!(
        model_saw(
            &mock,
            &[
                "WORKFLOW-RULE: reproduce first.",
                "Startup of the bug fix workflow.\n\nhello there"
            ]
        ),
        "the model saw neither the workflow's system prompt nor its startup prompt: {:#?}",
        mock.requests()
            .iter()
            .map(|r| r.user_texts())
            .collect::<Vec<_>>()
    );

    // Its commands, and one run as a slash command: claude expands it for the model.
    let out = run(&config, &["workflow", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let commands = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        commands.contains("/rfe:create") && commands.contains("Write an RFE"),
        "{commands}"
    );
    assert!(
        commands.contains("/triage") && commands.contains("Sort the bugs"),
        "{commands}"
    );
    let (st, meta) = call(
        &s,
        "GET",
        &format!("{SESSIONS}/{name}/workflow/metadata"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{meta}");
    assert_eq!(
        (&meta["name"], &meta["path"], &meta["systemPrompt"]),
        (&json!("Bug fix"), &json!("workflows/bugfix"), &json!(true)),
        "{meta}"
    );
    let before = events(&s, &name).await;
    let out = run(&config, &["send", &name, "/triage the login bug"]).await;
    assert!(out.status.success(), "{}", text(&out));
    until_events(&s, &name, "the command's turn", |e| {
        turns(e) > turns(&before)
    })
    .await;
    assert!(
        model_saw(&mock, &["Triage these bugs: the login bug"]),
        "the slash command was not expanded: {:#?}",
        mock.requests().last().map(|r| r.user_texts())
    );

    // A switch while the agent works is refused (its turn would be lost).
    let path = format!("{SESSIONS}/{name}/workflow");
    let review = json!({"gitUrl": url, "path": "workflows/review/"});
    let out = run(&config, &["send", &name, "slow 30"]).await;
    assert!(out.status.success(), "{}", text(&out));
    until_session(&s, &name, "working", |v| {
        v["status"]["agentStatus"] == "working"
    })
    .await;
    assert_error(
        &call(&s, "POST", &path, Some(review.clone())).await,
        409,
        "conflict",
        "middle of a turn",
    );
    let out = run(&config, &["interrupt", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    until_session(&s, &name, "idle", |v| v["status"]["agentStatus"] == "idle").await;

    // Bad workflows are refused, naming the field; a view key may not switch.
    for (body, field) in [
        (json!({"gitUrl": url, "path": "../../etc"}), "workflow.path"),
        (json!({"gitUrl": "", "path": "x"}), "workflow.gitUrl"),
        (json!({"gitUrl": url, "branch": "-x"}), "workflow.branch"),
    ] {
        assert_error(
            &call(&s, "POST", &path, Some(body)).await,
            400,
            "invalid",
            field,
        );
    }
    let (st, made) = call(
        &s,
        "POST",
        "/api/projects/default/keys",
        Some(json!({"name": "viewer", "role": "view"})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    let http = testkit::client_with_key(made["key"].as_str().unwrap());
    let viewer = crate::common::TestServerView {
        http: &http,
        addr: s.url("").trim_start_matches("http://").to_owned(),
    };
    assert_eq!(
        call(&viewer, "POST", &path, Some(review.clone())).await.0,
        403
    );
    let (st, meta) = call(&viewer, "GET", &format!("{path}/metadata"), None).await;
    assert_eq!((st, &meta["name"]), (200, &json!("Bug fix")), "{meta}");

    // The switch: the session restarts in the review workflow, its conversation resumed,
    // and the new workflow's startup prompt is given.
    let before = events(&s, &name).await;
    let out = run(
        &config,
        &[
            "workflow",
            &name,
            "--set",
            &url,
            "--path",
            "workflows/review/",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let after = until_events(&s, &name, "the review workflow's first turn", |e| {
        let new = &e[before.len()..];
        let reported = new.iter().position(
            |e| matches!(&e.event, SessionEvent::Workflow(w) if w.name == "Review" && w.started),
        );
        reported.is_some_and(|i| {
            new[i..]
                .iter()
                .any(|e| matches!(e.event, SessionEvent::TurnResult(_)))
        })
    })
    .await;
    let new = &after[before.len()..];
    assert!(
        new.iter()
            .any(|e| matches!(&e.event, SessionEvent::WorkflowChanged(c)
            if c.workflow.as_ref().is_some_and(|w| w.path.as_deref() == Some("workflows/review")))),
        "{new:#?}"
    );
    assert!(
        new.iter()
            .any(|e| matches!(&e.event, SessionEvent::AgentStarted(a) if a.resumed)),
        "the conversation goes on: {new:#?}"
    );
    assert!(
        !new.iter().any(|e| matches!(&e.event, SessionEvent::Phase(p)
            if p.phase == model::Phase::Stopped || p.phase == model::Phase::Failed)),
        "a restart is never Stopped: {new:#?}"
    );
    assert!(
        model_saw(&mock, &["hello there", "Startup of the review workflow."]),
        "the review workflow's startup prompt, in the same conversation"
    );
    let session = s.session(&name).await;
    assert_eq!(session["status"]["phase"], "Running", "{session}");
    assert_eq!(
        session["spec"]["activeWorkflow"],
        json!({"gitUrl": url, "path": "workflows/review"}),
        "{session}"
    );
    let out = run(&config, &["workflow", &name]).await;
    let commands = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        commands.contains("/check") && !commands.contains("/triage"),
        "{}",
        text(&out)
    );
    // The same workflow again (however spelt) changes nothing.
    let count = events(&s, &name).await.len();
    let (st, _) = call(&s, "POST", &path, Some(review)).await;
    assert_eq!(st, 200);
    let spelt = json!({"gitUrl": url, "branch": "main", "path": "workflows/review"});
    let (st, _) = call(&s, "POST", &path, Some(spelt)).await;
    assert_eq!(st, 200);
    assert_eq!(events(&s, &name).await.len(), count, "no event, no restart");

    // Leaving it: the session goes on without a workflow.
    until_session(&s, &name, "idle", |v| v["status"]["agentStatus"] == "idle").await;
    let out = run(&config, &["workflow", &name, "--leave"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let (_, meta) = call(&s, "GET", &format!("{path}/metadata"), None).await;
    assert_eq!(meta["gitUrl"], "", "{meta}");
    until_session(&s, &name, "running again", |v| {
        v["spec"]["activeWorkflow"].is_null() && v["status"]["phase"] == "Running"
    })
    .await;

    // An agent plants a folder where a workflow's clone would go, with its own
    // instructions: a switch to that workflow clones it anew, and the agent's folder is
    // never taken for it.
    let planted = "cd .. && mkdir -p workflows/flows/workflows/review/.ambient && \
        echo '{\"name\":\"Planted\",\"systemPrompt\":\"PLANTED-RULE\"}' > workflows/flows/workflows/review/.ambient/ambient.json";
    let out = run(&config, &["sessions", "create", &format!("run: {planted}")]).await;
    assert!(out.status.success(), "{}", text(&out));
    let other = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = run(&config, &["logs", "-f", "--turn", &other]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        data.path()
            .join("workspaces/default")
            .join(&other)
            .join("workflows/flows/workflows/review/.ambient/ambient.json")
            .is_file(),
        "the agent planted its folder"
    );
    until_session(&s, &other, "idle", |v| v["status"]["agentStatus"] == "idle").await;
    let out = run(
        &config,
        &[
            "workflow",
            &other,
            "--set",
            &url,
            "--path",
            "workflows/review",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let log = until_events(&s, &other, "the switch's workflow", |e| {
        e.iter()
            .any(|e| matches!(e.event, SessionEvent::Workflow(_)))
    })
    .await;
    let reported: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::Workflow(w) => Some(w.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reported, ["Review"], "{log:#?}");
    assert!(
        !mock
            .requests()
            .iter()
            .any(|r| r.body["system"].to_string().contains("PLANTED-RULE")),
        "the planted system prompt reached the model"
    );
    s.stop().await;
}
