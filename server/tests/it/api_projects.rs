//! Projects, their credentials and settings, through the real router: success and bad input.

use crate::common::{Options, TestServer, assert_error, call};
use serde_json::json;

async fn server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestServer::start(Options::new(dir.path())).await, dir)
}

#[tokio::test]
async fn projects_crud() {
    let (s, _dir) = server().await;
    let (st, p) = call(
        &s,
        "POST",
        "/api/projects",
        Some(json!({"name": "team-a", "displayName": "Team A", "description": "d"})),
    )
    .await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(
        (
            p["name"].as_str(),
            p["displayName"].as_str(),
            p["sessionCount"].as_u64()
        ),
        (Some("team-a"), Some("Team A"), Some(0))
    );
    let (st, p) = call(&s, "POST", "/api/projects", Some(json!({"name": "team-b"}))).await;
    assert_eq!(
        (st, p["displayName"].as_str()),
        (201, Some("team-b")),
        "display name defaults to the name"
    );

    let (st, list) = call(&s, "GET", "/api/projects", None).await;
    assert_eq!(st, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "team-a", "team-b"]);
    let (_, page) = call(
        &s,
        "GET",
        "/api/projects?search=TEAM&limit=1&offset=1",
        None,
    )
    .await;
    assert_eq!(
        (
            page["totalCount"].as_u64(),
            page["items"][0]["name"].as_str(),
            page["hasMore"].as_bool()
        ),
        (Some(2), Some("team-b"), Some(false))
    );

    let (st, p) = call(&s, "GET", "/api/projects/team-a", None).await;
    assert_eq!((st, p["description"].as_str()), (200, Some("d")));
    let (st, p) = call(
        &s,
        "PUT",
        "/api/projects/team-a",
        Some(json!({"displayName": "Team Alpha"})),
    )
    .await;
    assert_eq!(
        (st, p["displayName"].as_str(), p["description"].as_str()),
        (200, Some("Team Alpha"), Some("d"))
    );
    let (st, _) = call(&s, "DELETE", "/api/projects/team-b", None).await;
    assert_eq!(st, 204);
    assert_error(
        &call(&s, "GET", "/api/projects/team-b", None).await,
        404,
        "not_found",
        "team-b",
    );
}

#[tokio::test]
async fn project_bad_input() {
    let (s, _dir) = server().await;
    assert_error(
        &call(
            &s,
            "POST",
            "/api/projects",
            Some(json!({"name": "Bad_Name"})),
        )
        .await,
        400,
        "invalid",
        "name",
    );
    assert_error(
        &call(&s, "POST", "/api/projects", Some(json!({"name": ""}))).await,
        400,
        "invalid",
        "empty",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/api/projects",
            Some(json!({"name": "kube-system"})),
        )
        .await,
        400,
        "invalid",
        "reserved",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/api/projects",
            Some(json!({"name": "x", "bogus": 1})),
        )
        .await,
        400,
        "invalid",
        "bogus",
    );
    assert_error(
        &call(
            &s,
            "POST",
            "/api/projects",
            Some(json!({"name": "default"})),
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
            "/api/projects",
            Some(json!({"name": "x", "description": "d".repeat(3000)})),
        )
        .await,
        400,
        "invalid",
        "description",
    );
    // Not JSON, wrong type, too large.
    let resp = s
        .http
        .post(s.url("/api/projects"))
        .body("{\"name\":")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = s
        .http
        .post(s.url("/api/projects"))
        .body("name=x")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "unsupported_media_type"
    );
    let huge = json!({"name": "x", "description": "d".repeat(2 * 1024 * 1024)});
    let resp = s
        .http
        .post(s.url("/api/projects"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Lists: bad paging.
    assert_error(
        &call(&s, "GET", "/api/projects?limit=0", None).await,
        400,
        "invalid",
        "limit",
    );
    assert_error(
        &call(&s, "GET", "/api/projects?limit=abc", None).await,
        400,
        "invalid",
        "limit",
    );
    assert_error(
        &call(&s, "GET", "/api/projects?sort=name", None).await,
        400,
        "invalid",
        "sort",
    );
    // Updates and deletes of unknown projects, empty names.
    assert_error(
        &call(
            &s,
            "PUT",
            "/api/projects/nope",
            Some(json!({"displayName": "x"})),
        )
        .await,
        404,
        "not_found",
        "nope",
    );
    assert_error(
        &call(
            &s,
            "PUT",
            "/api/projects/default",
            Some(json!({"displayName": " "})),
        )
        .await,
        400,
        "invalid",
        "displayName",
    );
    assert_error(
        &call(&s, "DELETE", "/api/projects/nope", None).await,
        404,
        "not_found",
        "nope",
    );
}

#[tokio::test]
async fn runner_secrets_are_masked_and_validated() {
    let (s, _dir) = server().await;
    let key = "sk-ant-api03-0123456789abcdef";
    let (st, body) = call(
        &s,
        "PUT",
        "/api/projects/default/runner-secrets",
        Some(json!({"data": {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/v"}})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(
        !body.to_string().contains(key),
        "the key is never returned in plain text: {body}"
    );
    let items = body["items"].as_array().unwrap();
    assert_eq!(items[0]["key"], "ANTHROPIC_API_KEY");
    assert_eq!(items[0]["masked"], "…cdef");
    assert_eq!(items[1]["masked"], "http://127.0.0.1:9/v");
    let (_, again) = call(&s, "GET", "/api/projects/default/runner-secrets", None).await;
    assert!(!again.to_string().contains(key));
    // Other credentials stay when one is written.
    let (_, body) = call(
        &s,
        "PUT",
        "/api/projects/default/runner-secrets",
        Some(json!({"data": {"GITHUB_TOKEN": "ghp_admins_token", "GITHUB_API_URL": "https://ghe.corp/api/v3"}})),
    )
    .await;
    assert_eq!(body["items"].as_array().unwrap().len(), 4, "{body}");
    // A token and its address are one credential: whoever points the address elsewhere
    // (an editor, say) does not take the stored token along, and neither does a removal.
    let (st, body) = call(
        &s,
        "PUT",
        "/api/projects/default/runner-secrets",
        Some(json!({"data": {"GITHUB_API_URL": "https://evil.example/api/v3"}})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let keys: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        ["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "GITHUB_API_URL"],
        "{body}"
    );
    let (_, body) = call(
        &s,
        "PUT",
        "/api/projects/default/runner-secrets",
        Some(json!({"data": {"ANTHROPIC_BASE_URL": null}})),
    )
    .await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["items"][0]["key"], "GITHUB_API_URL", "{body}");
    // Bad input.
    assert_error(
        &call(
            &s,
            "PUT",
            "/api/projects/default/runner-secrets",
            Some(json!({"data": {"AWS_SECRET": "x"}})),
        )
        .await,
        400,
        "invalid",
        "unknown key",
    );
    assert_error(
        &call(
            &s,
            "PUT",
            "/api/projects/default/runner-secrets",
            Some(json!({"data": {"ANTHROPIC_BASE_URL": "ftp://x"}})),
        )
        .await,
        400,
        "invalid",
        "http",
    );
    assert_error(
        &call(
            &s,
            "PUT",
            "/api/projects/default/runner-secrets",
            Some(json!({"secrets": {}})),
        )
        .await,
        400,
        "invalid",
        "data",
    );
    assert_error(
        &call(&s, "GET", "/api/projects/nope/runner-secrets", None).await,
        404,
        "not_found",
        "nope",
    );
    assert_error(
        &call(
            &s,
            "PUT",
            "/api/projects/nope/runner-secrets",
            Some(json!({"data": {"GITHUB_TOKEN": "ghp_x"}})),
        )
        .await,
        404,
        "not_found",
        "nope",
    );
    // The database holding them is private to its owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.data_dir.join("ambient.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn project_settings_round_trip_and_validate() {
    let (s, _dir) = server().await;
    let (st, body) = call(&s, "GET", "/api/projects/default/settings", None).await;
    assert_eq!(
        (st, body["inactivityTimeoutSeconds"].clone()),
        (200, serde_json::Value::Null)
    );
    let (st, body) = call(
        &s,
        "PUT",
        "/api/projects/default/settings",
        Some(json!({"inactivityTimeoutSeconds": 600, "mcpServers": {"disabled": ["webfetch"]}})),
    )
    .await;
    assert_eq!(
        (st, body["inactivityTimeoutSeconds"].as_i64()),
        (200, Some(600))
    );
    let (_, body) = call(&s, "GET", "/api/projects/default/settings", None).await;
    assert_eq!(body["mcpServers"]["disabled"][0], "webfetch");
    assert_error(
        &call(
            &s,
            "PUT",
            "/api/projects/default/settings",
            Some(json!({"inactivityTimeoutSeconds": -1})),
        )
        .await,
        400,
        "invalid",
        "inactivityTimeoutSeconds",
    );
    assert_error(
        &call(&s, "PUT", "/api/projects/nope/settings", Some(json!({}))).await,
        404,
        "not_found",
        "nope",
    );
    assert_error(
        &call(&s, "GET", "/api/projects/nope/settings", None).await,
        404,
        "not_found",
        "nope",
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let (s, _dir) = server().await;
    assert_error(
        &call(&s, "GET", "/api/nothing/here", None).await,
        404,
        "not_found",
        "/api/nothing/here",
    );
    let (st, body) = call(&s, "PATCH", "/api/projects", None).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (st, body) = call(&s, "GET", "/health", None).await;
    assert_eq!((st, body), (200, json!("ok")));
    let (st, body) = call(&s, "GET", "/api/version", None).await;
    assert_eq!((st, body["version"].is_string()), (200, true));
}
