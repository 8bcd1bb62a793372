//! Sessions through the real router: every route, success and bad input.

use std::time::Duration;

use crate::common::{Options, TestServer, assert_error, call, with_mock};
use serde_json::json;

const SESSIONS: &str = "/api/projects/default/agentic-sessions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_list_search_page() {
    let (s, _mock, _dir) = with_mock().await;
    let (st, created) = call(
        &s,
        "POST",
        SESSIONS,
        Some(json!({
            "stopOnRunFinished": true,
            "initialPrompt": "hello world",
            "displayName": "Greeting",
            "llmSettings": {"model": "claude-opus-4-6"},
            "repos": [{"url": "https://github.com/o/r.git", "branch": "dev", "autoPush": true}],
            "environmentVariables": {"LOG_LEVEL": "debug"},
            "inactivityTimeout": 120,
            "labels": {"team": "a"}
        })),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let name = created["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("session-") && name.len() == "session-".len() + 36);
    assert_eq!(created["autoBranch"], format!("ambient/{name}"));
    assert_eq!(created["message"], "Agentic session created successfully");

    let (st, got) = call(&s, "GET", &format!("{SESSIONS}/{name}"), None).await;
    assert_eq!(st, 200);
    assert_eq!(got["apiVersion"], "vteam.ambient-code/v1alpha1");
    assert_eq!(got["kind"], "AgenticSession");
    assert_eq!(got["metadata"]["namespace"], "default");
    assert_eq!(got["metadata"]["labels"]["team"], "a");
    assert_eq!(got["spec"]["displayName"], "Greeting");
    assert_eq!(got["spec"]["llmSettings"]["model"], "claude-opus-4-6");
    assert_eq!(got["spec"]["repos"][0]["autoPush"], true);
    assert_eq!(got["spec"]["userContext"]["userId"], "tester");
    s.wait_phase(&name, &["Completed", "Failed"], Duration::from_secs(60))
        .await;

    // Two more; newest first, search over prompt and display name, paging.
    let second = s.create_session("refactor the parser").await;
    let third = s.create_session("write docs for the parser").await;
    let (_, list) = call(&s, "GET", SESSIONS, None).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [third.as_str(), second.as_str(), name.as_str()]);
    let (_, found) = call(&s, "GET", &format!("{SESSIONS}?search=PARSER"), None).await;
    assert_eq!(found["totalCount"], 2);
    let (_, found) = call(&s, "GET", &format!("{SESSIONS}?search=greet"), None).await;
    assert_eq!(found["items"][0]["metadata"]["name"], name);
    let (_, page) = call(&s, "GET", &format!("{SESSIONS}?limit=1&offset=1"), None).await;
    assert_eq!(
        (
            page["items"][0]["metadata"]["name"].as_str(),
            page["hasMore"].as_bool()
        ),
        (Some(second.as_str()), Some(true))
    );
    // A search for LIKE's wildcards finds them literally.
    let (_, none) = call(&s, "GET", &format!("{SESSIONS}?search=%25"), None).await;
    assert_eq!(none["totalCount"], 0);
    for n in [&second, &third] {
        s.wait_phase(n, &["Completed", "Failed"], Duration::from_secs(60))
            .await;
    }
}

#[tokio::test]
async fn create_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(Options::new(dir.path())).await;
    let bad = |body: serde_json::Value| call(&s, "POST", SESSIONS, Some(body));
    assert_error(
        &bad(json!({"initialPrompt": "  "})).await,
        400,
        "invalid",
        "initialPrompt",
    );
    assert_error(&bad(json!({})).await, 400, "invalid", "initialPrompt");
    assert_error(
        &bad(json!({"initialPrompt": "x".repeat(100 * 1024 + 1)})).await,
        400,
        "invalid",
        "limit",
    );
    assert_error(
        &bad(json!({"initialPrompt": "x", "repos": [{"url": "github.com/o/r"}]})).await,
        400,
        "invalid",
        "repos[0].url",
    );
    assert_error(
        &bad(json!({"initialPrompt": "x", "repos": [{"url": "https://u:p@github.com/o/r"}]})).await,
        400,
        "invalid",
        "credentials",
    );
    assert_error(&bad(json!({"initialPrompt": "x", "repos": [{"url": "https://github.com/o/r", "branch": "a..b"}]})).await, 400, "invalid", "repos[0].branch");
    assert_error(
        &bad(json!({"initialPrompt": "x", "llmSettings": {"model": "gpt-5"}})).await,
        400,
        "invalid",
        "unknown model",
    );
    assert_error(
        &bad(json!({"initialPrompt": "x", "environmentVariables": {"1BAD": "v"}})).await,
        400,
        "invalid",
        "1BAD",
    );
    assert_error(
        &bad(json!({"initialPrompt": "x", "environmentVariables": {"AMBIENT_RUNNER_TOKEN": "v"}}))
            .await,
        400,
        "invalid",
        "reserved",
    );
    // Every variable that would rewire the runner or what it runs is refused, by name:
    // the runner contract, loader and shell variables, git and ssh, credentials.
    for name in [
        "WORKSPACE_PATH",
        "REPOS_JSON",
        "INITIAL_PROMPT",
        "BACKEND_API_URL",
        "GITHUB_API_URL",
        "GITLAB_API_URL",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
        "GITHUB_TOKEN",
        "GITLAB_TOKEN",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PATH",
        "HOME",
        "SHELL",
        "BASH_ENV",
        "ENV",
        "GIT_CONFIG_COUNT",
        "GIT_SSH_COMMAND",
        "SSH_AUTH_SOCK",
        "CLAUDE_CONFIG_DIR",
        "AMBIENT_SANDBOX",
    ] {
        assert_error(
            &bad(json!({"initialPrompt": "x", "environmentVariables": {name: "v"}})).await,
            400,
            "invalid",
            name,
        );
    }
    for name in model::runner_env::CONTRACT {
        let got = bad(json!({"initialPrompt": "x", "environmentVariables": {name: "v"}})).await;
        assert_error(&got, 400, "invalid", "reserved");
    }
    assert_error(
        &bad(json!({"initialPrompt": "x", "timeout": -5})).await,
        400,
        "invalid",
        "timeout",
    );
    // Numbers beyond any sensible duration (they overflowed the lifecycle's arithmetic).
    for field in ["timeout", "inactivityTimeout"] {
        assert_error(
            &bad(json!({"initialPrompt": "x", field: i64::MAX})).await,
            400,
            "invalid",
            field,
        );
    }
    assert_error(
        &bad(json!({"initialPrompt": "x", "repos": "nope"})).await,
        400,
        "invalid",
        "repos",
    );
    assert_error(
        &bad(json!({"initialPrompt": "x", "project": "p"})).await,
        400,
        "invalid",
        "project",
    );
    assert_error(
        &bad(json!({"initialPrompt": "x", "displayName": "a\u{7}b"})).await,
        400,
        "invalid",
        "control",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/api/projects/nope/agentic-sessions",
            Some(json!({"stopOnRunFinished": true, "initialPrompt": "x"})),
        )
        .await,
        404,
        "not_found",
        "nope",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/api/projects/Bad_Project/agentic-sessions",
            Some(json!({"stopOnRunFinished": true, "initialPrompt": "x"})),
        )
        .await,
        400,
        "invalid",
        "project",
    );
    let resp = s
        .http
        .post(s.url(SESSIONS))
        .body("initialPrompt=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let resp = s
        .http
        .post(s.url(SESSIONS))
        .json(&json!({"stopOnRunFinished": true, "initialPrompt": "x".repeat(1_100_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Reads of things that do not exist.
    assert_error(
        &call(&s, "GET", &format!("{SESSIONS}/session-nope"), None).await,
        404,
        "not_found",
        "session-nope",
    );
    assert_error(
        &call(&s, "GET", "/api/projects/nope/agentic-sessions", None).await,
        404,
        "not_found",
        "nope",
    );
    assert_error(
        &call(&s, "GET", &format!("{SESSIONS}?limit=101"), None).await,
        400,
        "invalid",
        "limit",
    );
    assert_error(
        &call(&s, "GET", &format!("{SESSIONS}?offset=-1"), None).await,
        400,
        "invalid",
        "offset",
    );
    assert_error(
        &call(
            &s,
            "GET",
            &format!("{SESSIONS}?offset=18446744073709551615"),
            None,
        )
        .await,
        400,
        "invalid",
        "offset",
    );
    assert_error(
        &call(
            &s,
            "GET",
            &format!("/api/projects?offset={}", u64::MAX),
            None,
        )
        .await,
        400,
        "invalid",
        "offset",
    );
    assert_error(
        &call(
            &s,
            "GET",
            &format!("{SESSIONS}?search={}", "x".repeat(201)),
            None,
        )
        .await,
        400,
        "invalid",
        "search",
    );
    // Nothing was stored by the refused requests.
    let (_, list) = call(&s, "GET", SESSIONS, None).await;
    assert_eq!(list["totalCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_rename_clone_delete() {
    let (s, _mock, _dir) = with_mock().await;
    let name = s.create_session("slow 40").await;
    s.wait_phase(&name, &["Running"], Duration::from_secs(30))
        .await;
    let path = format!("{SESSIONS}/{name}");
    // Updates are refused while it runs; renames are not.
    assert_error(
        &call(&s, "PUT", &path, Some(json!({"timeout": 60}))).await,
        409,
        "conflict",
        "Running",
    );
    let (st, renamed) = call(
        &s,
        "PUT",
        &format!("{path}/displayname"),
        Some(json!({"displayName": "Slow one"})),
    )
    .await;
    assert_eq!(
        (st, renamed["spec"]["displayName"].as_str()),
        (200, Some("Slow one"))
    );
    assert_error(
        &call(
            &s,
            "PUT",
            &format!("{path}/displayname"),
            Some(json!({"displayName": ""})),
        )
        .await,
        400,
        "invalid",
        "displayName",
    );
    assert_error(
        &call(
            &s,
            "PUT",
            &format!("{SESSIONS}/session-x/displayname"),
            Some(json!({"displayName": "y"})),
        )
        .await,
        404,
        "not_found",
        "session-x",
    );

    let (st, _) = call(&s, "POST", &format!("{path}/stop"), None).await;
    assert_eq!(st, 202);
    s.wait_phase(&name, &["Stopped"], Duration::from_secs(30))
        .await;
    let (st, updated) = call(
        &s,
        "PUT",
        &path,
        Some(json!({"initialPrompt": "hello", "llmSettings": {"model": "claude-opus-4-6"}, "timeout": 600, "inactivityTimeout": 0})),
    )
    .await;
    assert_eq!(st, 200, "{updated}");
    assert_eq!(updated["spec"]["initialPrompt"], "hello");
    assert_eq!(updated["spec"]["llmSettings"]["model"], "claude-opus-4-6");
    assert_eq!(
        (
            updated["spec"]["timeout"].as_i64(),
            updated["spec"]["inactivityTimeout"].as_i64()
        ),
        (Some(600), Some(0))
    );
    // Created at 1; the rename and this update each changed the spec.
    assert_eq!(
        updated["metadata"]["generation"], 3,
        "spec changes bump the generation"
    );
    assert_error(
        &call(
            &s,
            "PUT",
            &path,
            Some(json!({"llmSettings": {"model": "nope"}})),
        )
        .await,
        400,
        "invalid",
        "unknown model",
    );
    assert_error(
        &call(&s, "PUT", &path, Some(json!({"initialPrompt": ""}))).await,
        400,
        "invalid",
        "initialPrompt",
    );
    assert_error(
        &call(&s, "PUT", &path, Some(json!({"phase": "Running"}))).await,
        400,
        "invalid",
        "phase",
    );
    assert_error(
        &call(&s, "PUT", &format!("{SESSIONS}/session-x"), Some(json!({}))).await,
        404,
        "not_found",
        "session-x",
    );

    // Clone into another project, then into this one with a chosen name.
    call(&s, "POST", "/api/projects", Some(json!({"name": "other"}))).await;
    let (st, copy) = call(
        &s,
        "POST",
        &format!("{path}/clone"),
        Some(json!({"targetProject": "other"})),
    )
    .await;
    assert_eq!(st, 201, "{copy}");
    let copy_name = copy["name"].as_str().unwrap();
    let (_, c) = call(
        &s,
        "GET",
        &format!("/api/projects/other/agentic-sessions/{copy_name}"),
        None,
    )
    .await;
    assert_eq!(c["spec"]["initialPrompt"], "hello");
    assert_eq!(c["spec"]["displayName"], "Slow one (copy)");
    assert_eq!(
        c["metadata"]["annotations"]["vteam.ambient-code/parent-session-id"],
        name
    );
    let (st, named) = call(
        &s,
        "POST",
        &format!("{path}/clone"),
        Some(json!({"newSessionName": "my-copy"})),
    )
    .await;
    assert_eq!((st, named["name"].as_str()), (201, Some("my-copy")));
    assert_error(
        &call(
            &s,
            "POST",
            &format!("{path}/clone"),
            Some(json!({"newSessionName": "my-copy"})),
        )
        .await,
        409,
        "conflict",
        "already exists",
    );
    assert_error(
        &call(
            &s,
            "POST",
            &format!("{path}/clone"),
            Some(json!({"newSessionName": "Bad Name"})),
        )
        .await,
        400,
        "invalid",
        "newSessionName",
    );
    assert_error(
        &call(
            &s,
            "POST",
            &format!("{path}/clone"),
            Some(json!({"targetProject": "nope"})),
        )
        .await,
        404,
        "not_found",
        "nope",
    );
    assert_error(
        &call(
            &s,
            "POST",
            &format!("{SESSIONS}/session-x/clone"),
            Some(json!({})),
        )
        .await,
        404,
        "not_found",
        "session-x",
    );

    // Delete removes the session, its events and its workspace.
    let workspace = s.workspace(&name);
    assert!(workspace.exists());
    let (st, _) = call(&s, "DELETE", &path, None).await;
    assert_eq!(st, 204);
    assert_error(&call(&s, "GET", &path, None).await, 404, "not_found", &name);
    assert_error(
        &call(&s, "DELETE", &path, None).await,
        404,
        "not_found",
        &name,
    );
    for _ in 0..100 {
        if !workspace.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!workspace.exists(), "the workspace is removed");
    for n in [copy_name, "my-copy"] {
        let project = if n == "my-copy" { "default" } else { "other" };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, sess) = call(
                &s,
                "GET",
                &format!("/api/projects/{project}/agentic-sessions/{n}"),
                None,
            )
            .await;
            if matches!(
                sess["status"]["phase"].as_str(),
                Some("Completed" | "Failed")
            ) || tokio::time::Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Logs are keyed by the session's uid: a session deleted and created again under its old
/// name starts with a log of its own, and a viewer holding the old log's cursor is told to
/// start over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_created_again_under_an_old_name_gets_a_new_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.local_driver = false;
    let s = TestServer::start(opts).await;
    let source = s.create_session("first task").await;
    let clone = |prompt: &'static str| {
        let s = &s;
        let source = source.clone();
        async move {
            let path = format!("{SESSIONS}/{source}");
            let (st, _) = call(s, "PUT", &path, Some(json!({"initialPrompt": prompt}))).await;
            assert_eq!(st, 200);
            let (st, body) = call(
                s,
                "POST",
                &format!("{path}/clone"),
                Some(json!({"newSessionName": "again"})),
            )
            .await;
            assert_eq!(st, 201, "{body}");
            body["uid"].as_str().unwrap().to_owned()
        }
    };
    let first_uid = clone("old prompt").await;
    for text in ["one", "two"] {
        let (st, _) = call(
            &s,
            "POST",
            &format!("{SESSIONS}/again/messages"),
            Some(json!({"text": text})),
        )
        .await;
        assert_eq!(st, 202);
    }
    assert_eq!(crate::common::exported_events(&s, "again").await.len(), 3);
    let (st, _) = call(&s, "DELETE", &format!("{SESSIONS}/again"), None).await;
    assert_eq!(st, 204);

    let second_uid = clone("new prompt").await;
    assert_ne!(first_uid, second_uid);
    let events = crate::common::exported_events(&s, "again").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(&events[0].event, model::protocol::SessionEvent::UserMessage(m) if m.text == "new prompt")
    );
    let mut viewer =
        testkit::ViewerClient::connect(&s.addr.to_string(), &s.key, "default", "again", 3)
            .await
            .unwrap();
    assert!(matches!(
        viewer.recv().await,
        Err(testkit::Closed::Code(
            model::protocol::close::CURSOR_AHEAD,
            _
        ))
    ));
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(Options::new(dir.path())).await;
    let (st, doc) = call(&s, "GET", "/api/openapi.json", None).await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("get", "/health"),
        ("get", "/api/version"),
        ("get", "/api/projects"),
        ("post", "/api/projects"),
        ("get", "/api/projects/{project}"),
        ("put", "/api/projects/{project}"),
        ("delete", "/api/projects/{project}"),
        ("get", "/api/projects/{project}/runner-secrets"),
        ("put", "/api/projects/{project}/runner-secrets"),
        ("get", "/api/projects/{project}/settings"),
        ("put", "/api/projects/{project}/settings"),
        ("get", "/api/projects/{project}/agentic-sessions"),
        ("post", "/api/projects/{project}/agentic-sessions"),
        ("get", "/api/projects/{project}/agentic-sessions/{session}"),
        ("put", "/api/projects/{project}/agentic-sessions/{session}"),
        (
            "delete",
            "/api/projects/{project}/agentic-sessions/{session}",
        ),
        (
            "put",
            "/api/projects/{project}/agentic-sessions/{session}/displayname",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/clone",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/fork",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/turns",
        ),
        ("post", "/api/projects/{project}/attempts"),
        ("get", "/api/projects/{project}/attempts/{group}"),
        ("post", "/api/projects/{project}/attempts/{group}/keep"),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/start",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/stop",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/interrupt",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/messages",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/export",
        ),
        (
            "put",
            "/api/projects/{project}/agentic-sessions/{session}/model",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/asks",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/answers",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/workspace",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/workspace/{path}",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/workspace/file-uploads/{name}",
        ),
        (
            "put",
            "/api/projects/{project}/agentic-sessions/{session}/workspace/file-uploads/{name}",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/workspace.tar.gz",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/git/status",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/mcp/status",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/workflow/metadata",
        ),
        (
            "post",
            "/api/projects/{project}/agentic-sessions/{session}/workflow",
        ),
        (
            "delete",
            "/api/projects/{project}/agentic-sessions/{session}/workflow",
        ),
        ("get", "/api/workflows/ootb"),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/ws",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/runner/ws",
        ),
        (
            "get",
            "/api/projects/{project}/agentic-sessions/{session}/files-runner/ws",
        ),
        ("get", "/api/keys"),
        ("post", "/api/keys"),
        ("delete", "/api/keys/{id}"),
        ("get", "/api/projects/{project}/keys"),
        ("post", "/api/projects/{project}/keys"),
        ("delete", "/api/projects/{project}/keys/{id}"),
        ("get", "/api/projects/{project}/access"),
        ("get", "/api/projects/{project}/permissions"),
        ("post", "/api/projects/{project}/permissions"),
        (
            "delete",
            "/api/projects/{project}/permissions/{subjectType}/{subjectName}",
        ),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let documented: usize = paths
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    for (method, path) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not in the document"
        );
    }
    assert_eq!(
        documented,
        expected.len(),
        "the document has routes this test does not know: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    // Every documented operation is routed (a missing route would answer the JSON 404
    // "no API route"; a missing method would answer 405).
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{project}", "default")
                .replace("{session}", "session-none")
                .replace("{group}", "attempts-00000000");
            let (st, body) = call(&s, &method.to_uppercase(), &concrete, None).await;
            assert_ne!(st, 405, "{method} {path}: {body}");
            assert!(
                !body.to_string().contains("no API route"),
                "{method} {path} is documented but not routed"
            );
        }
    }
    assert!(doc["components"]["schemas"]["AgenticSession"]["properties"]["spec"].is_object());
    assert!(
        doc["components"]["schemas"]["CreateSessionRequest"]["properties"]["initialPrompt"]
            .is_object()
    );
}
