//! Roles in local mode: the owner makes project keys with a role (view, edit, admin) and an
//! optional expiry; each key opens its project only, does what its role allows and gets 403
//! (saying what is missing) for the rest, over REST and over the viewer WebSocket; a
//! revoked or expired key is 401 at once, a browser signed in with a key has the key's
//! access and loses it with the key, and viewer sockets opened with either close soon after.
//! A key that expires makes no key that outlives it.

use std::time::Duration;

use model::protocol::{BrowserToServer, SendMessage, ServerToBrowser, close};
use serde_json::{Value, json};

use crate::common::{Api, Options, TestServer, assert_error, call};

/// A client holding one key.
struct As<'a> {
    server: &'a TestServer,
    http: reqwest::Client,
    key: String,
}

impl Api for As<'_> {
    fn client(&self) -> &reqwest::Client {
        &self.http
    }
    fn at(&self, path: &str) -> String {
        self.server.url(path)
    }
}

/// Makes a key of `project` with `role` (as the owner); returns a client holding it.
async fn key<'a>(s: &'a TestServer, project: &str, role: &str) -> (As<'a>, i64) {
    let (st, body) = call(
        s,
        "POST",
        &format!("/api/projects/{project}/keys"),
        Some(json!({"name": format!("{role} key"), "role": role})),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["accessKey"]["role"], role, "{body}");
    assert_eq!(body["accessKey"]["project"], project, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    (
        As {
            server: s,
            http: testkit::client_with_key(&key),
            key,
        },
        body["accessKey"]["id"].as_i64().unwrap(),
    )
}

/// A server with the mock model whose runners end with it (a session of these tests may
/// still run when they end).
async fn server() -> (TestServer, mock_anthropic::MockHandle, tempfile::TempDir) {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path()).with_mock(&mock.url());
    opts.stop_runners_on_exit = true;
    (TestServer::start(opts).await, mock, dir)
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_does_what_it_may_and_is_told_what_it_may_not() {
    let (s, _mock, _dir) = server().await;
    for p in ["alpha", "beta"] {
        let (st, body) = call(&s, "POST", "/api/projects", Some(json!({"name": p}))).await;
        assert_eq!(st, 201, "{body}");
    }
    let running = {
        let (st, body) = call(
            &s,
            "POST",
            "/api/projects/alpha/agentic-sessions",
            Some(json!({"stopOnRunFinished": true, "initialPrompt": "slow 300"})),
        )
        .await;
        assert_eq!(st, 201, "{body}");
        body["name"].as_str().unwrap().to_owned()
    };
    let session = format!("/api/projects/alpha/agentic-sessions/{running}");
    let (view, _) = key(&s, "alpha", "view").await;
    let (edit, _) = key(&s, "alpha", "edit").await;
    let (admin, _) = key(&s, "alpha", "admin").await;

    // Each key sees its project only; the other is 403, and not listed.
    for k in [&view, &edit, &admin] {
        let (st, list) = call(k, "GET", "/api/projects", None).await;
        assert_eq!(st, 200, "{list}");
        assert_eq!(names(&list), ["alpha"]);
        assert_eq!(list["totalCount"], 1);
        assert_error(
            &call(k, "GET", "/api/projects/beta", None).await,
            403,
            "forbidden",
            "no access to project beta",
        );
        assert_error(
            &call(k, "GET", "/api/projects/beta/agentic-sessions", None).await,
            403,
            "forbidden",
            "no access to project beta",
        );
        let (_, searched) = call(k, "GET", "/api/projects?search=zzz", None).await;
        assert!(names(&searched).is_empty(), "{searched}");
        // Only the owner makes projects and the owner's keys.
        assert_error(
            &call(k, "POST", "/api/projects", Some(json!({"name": "gamma"}))).await,
            403,
            "forbidden",
            "only the installation's owner can create projects",
        );
        assert_error(
            &call(k, "GET", "/api/keys", None).await,
            403,
            "forbidden",
            "owner",
        );
    }

    // view: reads sessions, transcripts and settings; changes nothing.
    assert_eq!(call(&view, "GET", &session, None).await.0, 200);
    assert_eq!(
        call(&view, "GET", "/api/projects/alpha/agentic-sessions", None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&view, "GET", &format!("{session}/export"), None)
            .await
            .0,
        200
    );
    let (st, access) = call(&view, "GET", "/api/projects/alpha/access", None).await;
    assert_eq!(
        (st, &access["userRole"], &access["owner"]),
        (200, &json!("view"), &json!(false))
    );
    let (_, no) = call(&view, "GET", "/api/projects/beta/access", None).await;
    assert_eq!(no["allowed"], false, "{no}");
    for (method, path, body) in [
        (
            "POST",
            "/api/projects/alpha/agentic-sessions".to_owned(),
            Some(json!({"stopOnRunFinished": true, "initialPrompt": "x"})),
        ),
        (
            "POST",
            format!("{session}/messages"),
            Some(json!({"text": "hi"})),
        ),
        ("POST", format!("{session}/interrupt"), None),
        ("POST", format!("{session}/stop"), None),
        ("POST", format!("{session}/start"), None),
        ("DELETE", session.clone(), None),
        ("GET", "/api/projects/alpha/runner-secrets".to_owned(), None),
    ] {
        assert_error(
            &call(&view, method, &path, body).await,
            403,
            "forbidden",
            "you need edit on project alpha (you have view)",
        );
    }
    // Watching is view; what a viewer sends is edit, refused on the open socket.
    let mut ws =
        testkit::ViewerClient::connect(&s.addr.to_string(), &view.key, "alpha", &running, 0)
            .await
            .expect("a view key watches");
    ws.send(&BrowserToServer::SendMessage(SendMessage {
        text: "hi".into(),
    }))
    .await
    .unwrap();
    let refused = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.recv()).await {
            Ok(Ok(ServerToBrowser::Error(r))) => break r,
            Ok(Ok(_)) => {}
            other => panic!("no refusal: {other:?}"),
        }
    };
    assert_eq!(refused.error, "forbidden");
    assert!(
        refused.message.contains("you need edit"),
        "{}",
        refused.message
    );
    // Another project's socket is refused before the upgrade.
    assert!(
        testkit::ViewerClient::connect(&s.addr.to_string(), &view.key, "beta", "x", 0)
            .await
            .is_err()
    );

    // edit: steers sessions, sets credentials; not settings, not keys, not deletion.
    let (st, body) = call(
        &edit,
        "POST",
        &format!("{session}/messages"),
        Some(json!({"text": "and then?"})),
    )
    .await;
    assert!(st < 300, "{body}");
    let (st, body) = call(
        &edit,
        "PUT",
        "/api/projects/alpha/runner-secrets",
        Some(json!({"data": {"ANTHROPIC_API_KEY": "sk-edit"}})),
    )
    .await;
    assert!(st < 300, "{body}");
    for (method, path, body) in [
        (
            "PUT",
            "/api/projects/alpha".to_owned(),
            Some(json!({"displayName": "A"})),
        ),
        (
            "PUT",
            "/api/projects/alpha/settings".to_owned(),
            Some(json!({})),
        ),
        ("GET", "/api/projects/alpha/keys".to_owned(), None),
        (
            "POST",
            "/api/projects/alpha/keys".to_owned(),
            Some(json!({"name": "x"})),
        ),
        ("DELETE", "/api/projects/alpha".to_owned(), None),
    ] {
        assert_error(
            &call(&edit, method, &path, body).await,
            403,
            "forbidden",
            "you need admin on project alpha (you have edit)",
        );
    }
    let (st, body) = call(&edit, "POST", &format!("{session}/stop"), None).await;
    assert!(st < 300, "{body}");

    // admin: settings and the project's keys, of its project only.
    let (st, body) = call(
        &admin,
        "PUT",
        "/api/projects/alpha",
        Some(json!({"displayName": "Alpha"})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, made) = call(
        &admin,
        "POST",
        "/api/projects/alpha/keys",
        Some(json!({"name": "ci", "role": "view", "expirationSeconds": 3600})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    assert!(made["accessKey"]["expires"].is_string(), "{made}");
    assert_eq!(made["accessKey"]["createdBy"], "admin key (admin key)");
    let (_, listed) = call(&admin, "GET", "/api/projects/alpha/keys", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 4, "{listed}");
    assert!(
        listed.to_string().contains("\"lastUsed\""),
        "last use listed: {listed}"
    );
    assert!(!listed.to_string().contains(made["key"].as_str().unwrap()));
    assert_error(
        &call(
            &admin,
            "POST",
            "/api/projects/beta/keys",
            Some(json!({"name": "x"})),
        )
        .await,
        403,
        "forbidden",
        "no access to project beta",
    );
    // Bad input is named.
    for (body, needle) in [
        (json!({"name": "x", "role": "root"}), "role"),
        (
            json!({"name": "x", "expirationSeconds": 0}),
            "expirationSeconds",
        ),
        (
            json!({"name": "x", "expirationSeconds": 400_000_000}),
            "expirationSeconds",
        ),
        (json!({"name": ""}), "name"),
    ] {
        assert_error(
            &call(&admin, "POST", "/api/projects/alpha/keys", Some(body)).await,
            400,
            "invalid",
            needle,
        );
    }
    assert_error(
        &call(
            &s,
            "POST",
            "/api/keys",
            Some(json!({"name": "x", "role": "view"})),
        )
        .await,
        400,
        "invalid",
        "role",
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_expired_key_is_refused_at_once_and_so_is_its_browser() {
    let (s, _mock, _dir) = server().await;
    let (view, id) = key(&s, "default", "view").await;
    assert_eq!(
        call(&view, "GET", "/api/projects/default", None).await.0,
        200
    );

    // A browser signed in with the key has the key's role, not the owner's.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser
        .post(s.url("/login"))
        .header("Origin", format!("http://{}", s.addr))
        .form(&[("key", view.key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "signed in");
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let with_cookie = |method: reqwest::Method, path: &str| {
        browser
            .request(method, s.url(path))
            .header("Cookie", &cookie)
            .header("Origin", format!("http://{}", s.addr))
    };
    let access: Value = with_cookie(reqwest::Method::GET, "/api/projects/default/access")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(access["userRole"], "view", "{access}");
    let refused = with_cookie(
        reqwest::Method::POST,
        "/api/projects/default/agentic-sessions",
    )
    .json(&json!({"stopOnRunFinished": true, "initialPrompt": "x"}))
    .send()
    .await
    .unwrap();
    assert_eq!(refused.status(), 403);

    // Revoked: the key and its browser are refused from the next request on.
    let (st, _) = call(
        &s,
        "DELETE",
        &format!("/api/projects/default/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    assert_error(
        &call(&view, "GET", "/api/projects/default", None).await,
        401,
        "unauthorized",
        "revoked, expired",
    );
    let after = with_cookie(reqwest::Method::GET, "/api/projects/default/access")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    assert_error(
        &call(
            &s,
            "DELETE",
            &format!("/api/projects/default/keys/{id}"),
            None,
        )
        .await,
        404,
        "not_found",
        "access key",
    );

    // Expired: a key of one second stops at its second.
    let (st, made) = call(
        &s,
        "POST",
        "/api/projects/default/keys",
        Some(json!({"name": "brief", "role": "edit", "expirationSeconds": 1})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    let brief = testkit::client_with_key(made["key"].as_str().unwrap());
    let brief = As {
        server: &s,
        http: brief,
        key: String::new(),
    };
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_error(
        &call(&brief, "GET", "/api/projects/default", None).await,
        401,
        "unauthorized",
        "expired",
    );

    // A deleted project's keys go with it.
    let (st, _) = call(&s, "POST", "/api/projects", Some(json!({"name": "temp"}))).await;
    assert_eq!(st, 201);
    let (temp, _) = key(&s, "temp", "admin").await;
    let (st, body) = call(&temp, "DELETE", "/api/projects/temp", None).await;
    assert!(st < 300, "{body}");
    let (st, _) = call(&s, "POST", "/api/projects", Some(json!({"name": "temp"}))).await;
    assert_eq!(st, 201);
    assert_eq!(call(&temp, "GET", "/api/projects/temp", None).await.0, 401);
    s.stop().await;
}

/// A server whose sessions nobody runs (the keys are what is tested).
async fn server_without_runners() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.local_driver = false;
    (TestServer::start(opts).await, dir)
}

/// A client holding the key of a `POST .../keys` answer.
fn holding<'a>(s: &'a TestServer, made: &Value) -> As<'a> {
    let key = made["key"].as_str().expect("the key").to_owned();
    As {
        server: s,
        http: testkit::client_with_key(&key),
        key,
    }
}

/// The seconds a refusal for outliving its maker allows at most.
fn at_most(refused: &(u16, Value)) -> i64 {
    let message = refused.1["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("expirationSeconds:"), "{message}");
    let seconds: Option<i64> = message
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok());
    assert!(seconds.is_some(), "no 'at most <n>' in {message:?}");
    seconds.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_expires_makes_no_key_that_outlives_it() {
    let (s, _dir) = server_without_runners().await;
    // A project's admin key of an hour.
    let (st, made) = call(
        &s,
        "POST",
        "/api/projects/default/keys",
        Some(json!({"name": "brief admin", "role": "admin", "expirationSeconds": 3600})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    let admin = holding(&s, &made);
    // Neither a key that never expires (an admin one least of all) nor one of a day.
    for body in [
        json!({"name": "forever", "role": "admin"}),
        json!({"name": "a day", "role": "view", "expirationSeconds": 86_400}),
        json!({"name": "an hour and a bit", "role": "edit", "expirationSeconds": 3700}),
    ] {
        let refused = call(&admin, "POST", "/api/projects/default/keys", Some(body)).await;
        assert_error(
            &refused,
            400,
            "invalid",
            "may not outlive the key that creates it",
        );
        let most = at_most(&refused);
        assert!((3500..=3600).contains(&most), "{most}");
    }
    // Within its own time it makes keys as before.
    let (st, body) = call(
        &admin,
        "POST",
        "/api/projects/default/keys",
        Some(json!({"name": "a minute", "role": "view", "expirationSeconds": 60})),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (_, listed) = call(&s, "GET", "/api/projects/default/keys", None).await;
    let mut names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a minute", "brief admin"], "nothing else was made");

    // The owner's key of an hour: no owner's key, nor project key, that never expires.
    let (st, made) = call(
        &s,
        "POST",
        "/api/keys",
        Some(json!({"name": "brief owner", "expirationSeconds": 3600})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    let owner = holding(&s, &made);
    for (path, body) in [
        ("/api/keys", json!({"name": "forever"})),
        (
            "/api/projects/default/keys",
            json!({"name": "forever", "role": "admin"}),
        ),
    ] {
        assert_error(
            &call(&owner, "POST", path, Some(body)).await,
            400,
            "invalid",
            "may not outlive the key that creates it",
        );
    }
    // The install secret (which never expires) still makes keys that never expire.
    let (st, body) = call(&s, "POST", "/api/keys", Some(json!({"name": "forever"}))).await;
    assert_eq!(st, 201, "{body}");
}

/// The cluster's own groups (`system:authenticated` is every identity of the cluster) are
/// given no role, whoever asks (the REST API here; the Sharing page's server function calls
/// the same service): 400 naming the field, before anything is looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_own_groups_are_given_no_role() {
    let (s, _dir) = server_without_runners().await;
    for group in [
        "system:authenticated",
        "system:masters",
        " system:serviceaccounts",
    ] {
        assert_error(
            &call(
                &s,
                "POST",
                "/api/projects/default/permissions",
                Some(json!({"subjectType": "group", "subjectName": group, "role": "view"})),
            )
            .await,
            400,
            "invalid",
            "subjectName: the cluster's system: users and groups cannot be given a role",
        );
    }
    // Another group passes the check (and finds no people to share with in local mode).
    let (st, body) = call(
        &s,
        "POST",
        "/api/projects/default/permissions",
        Some(json!({"subjectType": "group", "subjectName": "team-x", "role": "view"})),
    )
    .await;
    assert_eq!(st, 404, "{body}");
}

/// Reads a viewer socket until the server closes it; its close code and reason. Fails when it
/// is still open after `wait`, or drops without a close frame.
async fn closed_within(v: &mut testkit::ViewerClient, wait: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, v.recv()).await {
            Ok(Ok(_)) => {}
            Ok(Err(testkit::Closed::Code(code, reason))) => return (code, reason),
            Ok(Err(other)) => panic!("closed without a close frame: {other:?}"),
            Err(_) => panic!("still open after {wait:?}"),
        }
    }
}

/// A viewer socket lasts no longer than the key that opened it: revoked, the key's sockets
/// close (the key's own and its browser's), and an expiring key's socket closes at its end,
/// each within the recheck time (the tests' servers ask every second); the owner's stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_expired_key_closes_its_open_viewer_sockets() {
    let (s, _dir) = server_without_runners().await;
    let name = s.create_session("hello").await;
    let addr = s.addr.to_string();
    let (view, id) = key(&s, "default", "view").await;
    let mut by_key = testkit::ViewerClient::connect(&addr, &view.key, "default", &name, 0)
        .await
        .expect("a view key watches");
    // A browser signed in with the key watches too.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(s.url("/login"))
        .header("Origin", format!("http://{addr}"))
        .form(&[("key", view.key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "signed in");
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let url = format!("ws://{addr}/api/projects/default/agentic-sessions/{name}/ws");
    let headers = [("cookie", cookie), ("origin", format!("http://{addr}"))];
    let mut by_browser = testkit::ViewerClient {
        conn: testkit::Connection::open_with(&url, &headers, 8192)
            .await
            .expect("the key's browser watches"),
    };
    // A key of three seconds.
    let (st, made) = call(
        &s,
        "POST",
        "/api/projects/default/keys",
        Some(json!({"name": "brief", "role": "view", "expirationSeconds": 3})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    let brief = holding(&s, &made);
    let mut by_brief = testkit::ViewerClient::connect(&addr, &brief.key, "default", &name, 0)
        .await
        .expect("a key watches until it expires");
    let mut owners = s.viewer(&name, 0).await;

    let (st, _) = call(
        &s,
        "DELETE",
        &format!("/api/projects/default/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    for v in [&mut by_key, &mut by_browser, &mut by_brief] {
        let (code, reason) = closed_within(v, Duration::from_secs(10)).await;
        assert_eq!(code, close::UNAUTHORIZED, "{reason}");
        assert!(reason.contains("revoked or has expired"), "{reason}");
    }
    // The owner's socket was asked again as often, and stays.
    owners.client.send(&BrowserToServer::Ping).await.unwrap();
    loop {
        match owners.next(Duration::from_secs(5)).await {
            Some(ServerToBrowser::Pong) => break,
            Some(_) => {}
            None => panic!("the owner's socket closed"),
        }
    }
}

/// A project key acts as the project: it may not point a session at an ssh or `file://`
/// remote (those reach with the owner's ssh keys and the owner's files), in its repositories
/// or its workflow; https remotes it may. The owner may use any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_key_gets_none_of_the_owners_own_identities() {
    let (s, _dir) = server_without_runners().await;
    let (edit, _) = key(&s, "default", "edit").await;
    let sessions = "/api/projects/default/agentic-sessions";
    for (body, field) in [
        (
            json!({"stopOnRunFinished": true, "initialPrompt": "x", "repos": [{"url": "file:///root/.ssh"}]}),
            "repos[0].url",
        ),
        (
            json!({"stopOnRunFinished": true, "initialPrompt": "x", "repos": [{"url": "https://example.com/o/r.git"}, {"url": "git@github.com:owner/private.git"}]}),
            "repos[1].url",
        ),
        (
            json!({"stopOnRunFinished": true, "initialPrompt": "x", "repos": [{"url": "ssh://git@host/o/r.git"}]}),
            "repos[0].url",
        ),
        (
            json!({"stopOnRunFinished": true, "initialPrompt": "x", "activeWorkflow": {"gitUrl": "file:///etc"}}),
            "activeWorkflow.gitUrl",
        ),
    ] {
        assert_error(
            &call(&edit, "POST", sessions, Some(body)).await,
            400,
            "invalid",
            field,
        );
    }
    let (_, list) = call(&s, "GET", sessions, None).await;
    assert_eq!(
        list["items"],
        json!([]),
        "a refused session was stored: {list}"
    );
    let https = json!({"stopOnRunFinished": true, "initialPrompt": "x", "repos": [{"url": "https://example.com/o/r.git"}]});
    assert_eq!(call(&edit, "POST", sessions, Some(https)).await.0, 201);
    let owners = json!({"stopOnRunFinished": true, "initialPrompt": "x", "repos": [{"url": "file:///srv/repos/app.git"}]});
    assert_eq!(call(&s, "POST", sessions, Some(owners)).await.0, 201);
    s.stop().await;
}
