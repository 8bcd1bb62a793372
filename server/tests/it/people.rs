//! People in Kubernetes mode, on the test API server: alice, bob, carol and dave are users of
//! the cluster with their own tokens (`tools/k8s/testenv.sh` makes them; dave is in the group
//! `ambient-testers`). What each may do in a project is what the cluster's RBAC grants, as the
//! server finds out with access reviews: alice creates a project (she gets its admin
//! binding), bob may neither see nor touch it, carol with view reads and watches but may not
//! steer, and a group in the project's `groupAccess` grants its members edit until it is
//! removed.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use model::ProjectSettings;
use model::protocol::{BrowserToServer, SendMessage, ServerToBrowser};
use serde_json::json;

use app::pages::keys::{ListPeople, Share, Unshare};
use leptos::server_fn::ServerFn;

use crate::common::{Answer, Options, TestServer};
use crate::kubernetes::{Cluster, client, kubeconfig, until};

/// The token of a test user (`tools/k8s/testenv.sh` wrote it next to the kubeconfig).
fn token(user: &str) -> String {
    let file = kubeconfig().with_file_name("tokens.csv");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&user))
        .map(|f| f[0].to_owned())
        .unwrap_or_else(|| panic!("no user {user} in {}", file.display()))
}

/// Lets `user` make projects (the ClusterRole `ambient-project-creator`, as an
/// administrator binds it).
async fn may_create_projects(admin: &kube::Client, user: &str) {
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("ambient-tests-creator-{user}")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ambient-project-creator"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(
            &binding.name_any(),
            &PatchParams::apply("ambient-tests").force(),
            &Patch::Apply(&binding),
        )
        .await
        .unwrap();
}

fn as_user(user: &str) -> reqwest::Client {
    testkit::client_with_key(&token(user))
}

async fn status_and_body(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "text": text })),
    )
}

async fn start(opts_of: impl FnOnce(Options) -> Options) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.local_driver = false;
    opts.kubeconfig = Some(kubeconfig());
    (TestServer::start(opts_of(opts)).await, dir)
}

fn bind(name: &str, role: &str, user: &str) -> RoleBinding {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))
    .unwrap()
}

/// A Kubernetes-mode server and a project alice made there (an administrator let her).
struct AlicesProject {
    admin: kube::Client,
    server: TestServer,
    alice: reqwest::Client,
    p: String,
    _dir: tempfile::TempDir,
}

impl AlicesProject {
    async fn make(prefix: &str) -> AlicesProject {
        let admin = client().await;
        may_create_projects(&admin, "alice").await;
        let (server, _dir) = start(|o| o).await;
        let alice = as_user("alice");
        let p = format!("{prefix}-{}", std::process::id() % 100_000);
        let made = alice
            .post(server.url("/api/projects"))
            .json(&json!({ "name": p }))
            .code()
            .await;
        assert_eq!(made, 201);
        AlicesProject {
            admin,
            server,
            alice,
            p,
            _dir,
        }
    }

    /// `/api/projects/<p><rest>` on the server.
    fn url(&self, rest: &str) -> String {
        self.server.url(&format!("/api/projects/{}{rest}", self.p))
    }

    /// Alice deletes her project; the server stops.
    async fn finish(self) {
        assert!(self.alice.delete(self.url("")).succeeds().await);
        self.server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_get_what_their_roles_in_the_cluster_allow() {
    let admin = client().await;
    let (server, _dir) = start(|o| o).await;
    let (alice, bob, carol) = (as_user("alice"), as_user("bob"), as_user("carol"));
    let p = format!("people-{}", std::process::id() % 100_000);
    let url = |rest: &str| server.url(&format!("/api/projects/{p}{rest}"));

    // Bob may not make projects; alice, whom an administrator let, makes one: a managed
    // namespace, and she is its admin.
    may_create_projects(&admin, "alice").await;
    let (status, body) = status_and_body(
        bob.post(server.url("/api/projects"))
            .json(&json!({"name": format!("{p}-bob")}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ambient-project-creator"),
        "{body}"
    );
    let (status, made) = status_and_body(
        alice
            .post(server.url("/api/projects"))
            .json(&json!({"name": p}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["userRole"], "admin", "{made}");
    let ns = Api::<Namespace>::all(admin.clone()).get(&p).await.unwrap();
    assert_eq!(
        ns.labels()
            .get("ambient-code.io/managed")
            .map(String::as_str),
        Some("true")
    );
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &p);
    let hers = bindings.list(&Default::default()).await.unwrap().items;
    assert!(
        hers.iter()
            .any(|b| b.role_ref.name == "ambient-project-admin"
                && b.subjects
                    .iter()
                    .flatten()
                    .any(|s| s.kind == "User" && s.name == "alice")),
        "no admin binding for alice: {hers:?}"
    );

    // She sees it in her list; bob does not, and is refused it.
    let listed = |c: reqwest::Client| {
        let u = server.url("/api/projects");
        async move {
            let l: serde_json::Value = c.get(u).send().await.unwrap().json().await.unwrap();
            l["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert!(listed(alice.clone()).await.contains(&p));
    assert!(!listed(bob.clone()).await.contains(&p));
    for resp in [
        bob.get(url("")).send().await.unwrap(),
        bob.get(url("/agentic-sessions")).send().await.unwrap(),
        bob.post(url("/agentic-sessions"))
            .json(&json!({"stopOnRunFinished": true, "initialPrompt": "mine now"}))
            .send()
            .await
            .unwrap(),
        bob.delete(url("")).send().await.unwrap(),
    ] {
        let (status, body) = status_and_body(resp).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("no access to project {p}")),
            "{body}"
        );
    }

    // Alice starts a session; carol is given view (a RoleBinding, as `kubectl` or the
    // Sharing page makes it).
    let (status, session) = status_and_body(
        alice
            .post(url("/agentic-sessions"))
            .json(&json!({"stopOnRunFinished": true, "initialPrompt": "hello from alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let name = session["name"].as_str().unwrap().to_owned();
    bindings
        .create(
            &PostParams::default(),
            &bind("carol-view", "ambient-project-view", "carol"),
        )
        .await
        .unwrap();

    // Carol reads and watches ...
    let access = until("carol's view role", || {
        let c = carol.clone();
        let u = url("/access");
        async move {
            let a: serde_json::Value = c.get(u).send().await.ok()?.json().await.ok()?;
            (a["userRole"] == "view").then_some(a)
        }
    })
    .await;
    assert_eq!(access["allowed"], true, "{access}");
    assert!(listed(carol.clone()).await.contains(&p));
    let resp = carol
        .get(url(&format!("/agentic-sessions/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut viewer =
        testkit::ViewerClient::connect(&server.addr.to_string(), &token("carol"), &p, &name, 0)
            .await
            .expect("carol may watch");
    let first = tokio::time::timeout(Duration::from_secs(10), viewer.recv())
        .await
        .expect("an event")
        .expect("a frame");
    assert!(
        matches!(first, ServerToBrowser::Event(_) | ServerToBrowser::Live(_)),
        "{first:?}"
    );
    // ... but may not steer: not over REST, not over her viewer socket.
    for resp in [
        carol
            .post(url(&format!("/agentic-sessions/{name}/stop")))
            .send()
            .await
            .unwrap(),
        carol
            .post(url(&format!("/agentic-sessions/{name}/messages")))
            .json(&json!({"text": "stop that"}))
            .send()
            .await
            .unwrap(),
        carol
            .delete(url(&format!("/agentic-sessions/{name}")))
            .send()
            .await
            .unwrap(),
        carol
            .put(url("/runner-secrets"))
            .json(&json!({"data": {"GITHUB_TOKEN": "ghp_x"}}))
            .send()
            .await
            .unwrap(),
    ] {
        let (status, body) = status_and_body(resp).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("you need edit on project {p} (you have view)")),
            "{body}"
        );
    }
    viewer
        .send(&BrowserToServer::SendMessage(SendMessage {
            text: "from the socket".into(),
        }))
        .await
        .unwrap();
    let refused = loop {
        match tokio::time::timeout(Duration::from_secs(10), viewer.recv())
            .await
            .expect("an answer")
            .expect("a frame")
        {
            ServerToBrowser::Error(r) => break r,
            _ => continue,
        }
    };
    assert!(refused.message.contains("you need edit"), "{refused:?}");

    // The command-line client signs in with her Kubernetes token and gets the same.
    let home = tempfile::tempdir().unwrap();
    let cli = crate::cli::login(&server, home.path(), &token("carol")).await;
    let out = crate::cli::run(&cli, &["-p", &p, "sessions", "list"]).await;
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&name),
        "{}",
        crate::cli::text(&out)
    );
    let out = crate::cli::run(&cli, &["-p", &p, "stop", &name]).await;
    assert_eq!(out.status.code(), Some(4), "{}", crate::cli::text(&out));

    // A token the cluster does not know gets nothing.
    let resp = testkit::client_with_key("not-a-token")
        .get(url("/agentic-sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The sign-in page takes a Kubernetes token: the browser session is carol's.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser
        .post(server.url("/login"))
        .form(&[("key", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("Kubernetes token"));
    let resp = browser
        .post(server.url("/login"))
        .form(&[("key", token("carol"))])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("=ks_"), "{cookie}");
    let resp = browser
        .get(url("/agentic-sessions"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = browser
        .post(url(&format!("/agentic-sessions/{name}/stop")))
        .header("cookie", &cookie)
        .header("origin", server.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // An OAuth proxy's forwarded token is a token like any other; the user it names is
    // believed only by a server told to trust it.
    let resp = browser
        .get(url("/agentic-sessions"))
        .header("x-forwarded-access-token", token("carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = browser
        .get(url("/agentic-sessions"))
        .header("x-forwarded-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "an untrusted proxy header let someone in"
    );
    let (trusting, _dir2) = start(|mut o| {
        o.trust_proxy_headers = true;
        o
    })
    .await;
    let proxied = |user: &str| {
        browser
            .get(trusting.url(&format!("/api/projects/{p}/agentic-sessions")))
            .header("x-forwarded-user", user)
            .header("x-forwarded-groups", "staff, readers")
    };
    assert_eq!(proxied("carol").code().await, 200);
    assert_eq!(proxied("bob").code().await, 403);
    // Not even a trusted proxy makes anyone a system user or puts them in a system group.
    assert_eq!(proxied("system:admin").code().await, 401);
    let resp = browser
        .get(trusting.url(&format!("/api/projects/{p}/agentic-sessions")))
        .header("x-forwarded-user", "bob")
        .header("x-forwarded-groups", "system:masters")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    trusting.stop().await;

    // Her role taken away, her viewer is closed (its role is asked again as often as the
    // server keeps answers).
    bindings
        .delete("carol-view", &Default::default())
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if viewer.recv().await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "carol's viewer still open without her role");

    // Bob may not delete it; alice may.
    assert_eq!(bob.delete(url("")).code().await, 403);
    let resp = alice.delete(url("")).send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    server.stop().await;
}

/// A group in a project's `groupAccess` gives its members the group's role (the operator
/// turns it into a RoleBinding), and removing it takes the role away within the server's
/// cache time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_in_group_access_grants_its_members_and_removing_it_revokes() {
    let c = Cluster::start("groups-srv", None).await;
    let dave = as_user("dave");
    let p = c.project.clone();
    let access = |c: &Cluster| c.server.url(&format!("/api/projects/{p}/access"));
    let role_of_dave = || {
        let dave = dave.clone();
        let u = access(&c);
        async move {
            let a: serde_json::Value = dave.get(u).send().await.ok()?.json().await.ok()?;
            Some(a["userRole"].as_str().map(str::to_owned))
        }
    };
    assert_eq!(role_of_dave().await, Some(None));
    let create = || {
        dave.post(c.server.url(&format!("/api/projects/{p}/agentic-sessions")))
            .json(&json!({"stopOnRunFinished": true, "initialPrompt": "from the group"}))
            .send()
    };
    assert_eq!(create().await.unwrap().status(), 403);

    let settings: Api<ProjectSettings> = Api::namespaced(c.client.clone(), &p);
    until("the project's settings", || {
        let settings = settings.clone();
        async move { settings.get_opt("projectsettings").await.ok()? }
    })
    .await;
    let set = |groups: serde_json::Value| {
        let settings = settings.clone();
        async move {
            settings
                .patch(
                    "projectsettings",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"groupAccess": groups}})),
                )
                .await
                .unwrap();
        }
    };
    set(json!([{"groupName": "ambient-testers", "role": "edit"}])).await;
    until("dave's edit role through his group", || async {
        (role_of_dave().await? == Some("edit".into())).then_some(())
    })
    .await;
    let resp = create().await.unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    set(json!([])).await;
    until("dave's role gone with his group's", || async {
        role_of_dave().await?.is_none().then_some(())
    })
    .await;
    assert_eq!(create().await.unwrap().status(), 403);
    c.finish().await;
}

/// An admin shares a project on the Sharing page's API: users and groups get a role (a
/// RoleBinding), a second role replaces the first, removing it takes the role away, and what
/// another way gave (the creator's binding) is listed but not removed here. Non-admins may
/// neither see nor change it; local mode has no people to share with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_share_a_project_with_people_and_groups() {
    let t = AlicesProject::make("sharing").await;
    let (server, alice, p) = (&t.server, &t.alice, &t.p);
    let url = |rest: &str| t.url(rest);
    let (bob, carol, dave) = (as_user("bob"), as_user("carol"), as_user("dave"));
    let people = || async {
        let l: serde_json::Value = alice
            .get(url("/permissions"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        l.as_array().unwrap().clone()
    };
    let listed = people().await;
    assert!(
        listed.iter().any(|p| p["subjectName"] == "alice"
            && p["role"] == "admin"
            && p["source"] == "binding"),
        "{listed:?}"
    );
    assert_eq!(bob.get(url("/permissions")).code().await, 403);
    let role_of = |c: reqwest::Client| {
        let u = url("/access");
        async move {
            let a: serde_json::Value = c.get(u).send().await.ok()?.json().await.ok()?;
            Some(a["userRole"].as_str().map(str::to_owned))
        }
    };

    let grant = |who: &str, kind: &str, role: &str| {
        alice
            .post(url("/permissions"))
            .json(&json!({"subjectType": kind, "subjectName": who, "role": role}))
            .send()
    };
    let (status, given) = status_and_body(grant("carol", "user", "view").await.unwrap()).await;
    assert_eq!(status, 201, "{given}");
    assert_eq!(given["source"], "sharing");
    until("carol's view role", || async {
        (role_of(carol.clone()).await? == Some("view".into())).then_some(())
    })
    .await;
    // A second role replaces the first.
    assert_eq!(grant("carol", "user", "edit").await.unwrap().status(), 201);
    let carols: Vec<_> = people()
        .await
        .into_iter()
        .filter(|p| p["subjectName"] == "carol")
        .collect();
    assert_eq!(carols.len(), 1, "{carols:?}");
    assert_eq!(carols[0]["role"], "edit");
    until("carol's edit role", || async {
        (role_of(carol.clone()).await? == Some("edit".into())).then_some(())
    })
    .await;
    // Edit is not admin: carol may not share.
    let resp = carol
        .post(url("/permissions"))
        .json(&json!({"subjectType": "user", "subjectName": "bob", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A group's members get its role.
    assert_eq!(
        grant("ambient-testers", "group", "view")
            .await
            .unwrap()
            .status(),
        201
    );
    until("dave's view role through his group", || async {
        (role_of(dave.clone()).await? == Some("view".into())).then_some(())
    })
    .await;
    // The Sharing page's server functions: the list for an admin, a refusal for others,
    // and a role given from the page.
    let rpc = |c: &reqwest::Client, path: &str, body: serde_json::Value| {
        c.post(server.url(path)).json(&body).send()
    };
    let (status, page) = status_and_body(
        rpc(alice, ListPeople::PATH, json!({"project": p}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.as_array()
            .unwrap()
            .iter()
            .any(|p| p["subjectName"] == "ambient-testers"),
        "{page}"
    );
    let resp = rpc(&carol, ListPeople::PATH, json!({"project": p}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = rpc(
        alice,
        Share::PATH,
        json!({"project": p, "subject_type": "user", "subject_name": "bob", "role": "view"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    until("bob's view role from the page", || async {
        (role_of(bob.clone()).await? == Some("view".into())).then_some(())
    })
    .await;
    let resp = rpc(
        alice,
        Unshare::PATH,
        json!({"project": p, "subject_type": "user", "subject_name": "bob"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // Bad input is refused and changes nothing.
    for (body, status) in [
        (
            json!({"subjectType": "user", "subjectName": " ", "role": "view"}),
            400,
        ),
        (
            json!({"subjectType": "robot", "subjectName": "r2", "role": "view"}),
            400,
        ),
        (
            json!({"subjectType": "user", "subjectName": "x".repeat(300), "role": "view"}),
            400,
        ),
        (
            json!({"subjectType": "user", "subjectName": "eve", "role": "owner"}),
            400,
        ),
    ] {
        let resp = alice
            .post(url("/permissions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{body}");
    }

    // Removing takes the role away; what another way gave stays, and says where it is.
    let resp = alice
        .delete(url("/permissions/user/carol"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    until("carol's role gone", || async {
        role_of(carol.clone()).await?.is_none().then_some(())
    })
    .await;
    assert_eq!(
        alice.delete(url("/permissions/user/carol")).code().await,
        404
    );
    let (status, body) = status_and_body(
        alice
            .delete(url("/permissions/user/alice"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("change it there"),
        "{body}"
    );
    assert_eq!(alice.delete(url("/permissions/robot/r2")).code().await, 404);
    t.finish().await;

    // Local mode shares with project keys, not people.
    let dir = tempfile::tempdir().unwrap();
    let local = TestServer::start(Options::new(dir.path())).await;
    let (status, body) = status_and_body(
        local
            .http
            .get(local.url("/api/projects/default/permissions"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Kubernetes mode"),
        "{body}"
    );
    // ... and its Sharing page shows no people panel.
    let (status, page) = status_and_body(
        local
            .http
            .post(local.url(ListPeople::PATH))
            .json(&json!({"project": "default"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, page), (200, serde_json::Value::Null));
    local.stop().await;
}

/// In Kubernetes mode a key an admin makes is a ServiceAccount token with the key's role,
/// made with the admin's identity: it works as a bearer token with that role, is listed with
/// its last use, and is refused at once when revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_keys_are_service_account_tokens_revoked_at_once() {
    let t = AlicesProject::make("sakeys").await;
    let (admin, server, alice, p) = (&t.admin, &t.server, &t.alice, &t.p);
    let url = |rest: &str| t.url(rest);
    let (status, made) = status_and_body(
        alice
            .post(url("/keys"))
            .json(&json!({"name": "ci", "role": "view", "expirationSeconds": 3600}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    assert!(!key.starts_with("ak_"), "a server key was made: {made}");
    let id = made["accessKey"]["id"].as_i64().unwrap();
    assert_eq!(made["accessKey"]["role"], "view");
    assert_eq!(made["accessKey"]["createdBy"], "alice");
    // A ServiceAccount bound to the view role.
    let account = format!("ambient-key-{id}");
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), p)
        .get(&account)
        .await
        .expect("the key's ServiceAccount");
    let binding = Api::<RoleBinding>::namespaced(admin.clone(), p)
        .get(&account)
        .await
        .unwrap();
    assert_eq!(binding.role_ref.name, "ambient-project-view");

    // The key reads, and is refused what view may not do.
    let ci = testkit::client_with_key(&key);
    assert_eq!(ci.get(url("/agentic-sessions")).code().await, 200);
    let resp = ci
        .post(url("/agentic-sessions"))
        .json(&json!({"stopOnRunFinished": true, "initialPrompt": "no"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Listed with its last use, to alice and to the installation's owner.
    let listed = until("the key's last use", || async {
        let l: serde_json::Value = alice
            .get(url("/keys"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let k = l.as_array()?.iter().find(|k| k["id"] == id)?.clone();
        k.get("lastUsed").is_some().then_some(k)
    })
    .await;
    assert_eq!(listed["name"], "ci", "{listed}");
    assert!(listed["expires"].is_string(), "{listed}");
    let owner: serde_json::Value = server
        .http
        .get(url("/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        owner.as_array().unwrap().iter().any(|k| k["id"] == id),
        "{owner}"
    );

    // Revoked: refused from the next request on.
    let resp = alice
        .delete(url(&format!("/keys/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(ci.get(url("/agentic-sessions")).code().await, 401);
    assert_eq!(alice.delete(url(&format!("/keys/{id}"))).code().await, 404);
    t.finish().await;
}

/// The server's own keys of a project whose namespace was deleted with `kubectl` (which the
/// server does not see) do not open a new project made by the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_deleted_namespace_do_not_open_its_successor() {
    let admin = client().await;
    let (server, _dir) = start(|o| o).await;
    let p = format!("reborn-{}", std::process::id() % 100_000);
    let create = || {
        server
            .http
            .post(server.url("/api/projects"))
            .json(&json!({"name": p}))
            .send()
    };
    assert_eq!(create().await.unwrap().status(), 201);
    let made: serde_json::Value = server
        .http
        .post(server.url(&format!("/api/projects/{p}/keys")))
        .json(&json!({"name": "old", "role": "edit"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old = testkit::client_with_key(made["key"].as_str().unwrap());
    let sessions = server.url(&format!("/api/projects/{p}/agentic-sessions"));
    assert_eq!(old.get(&sessions).code().await, 200);
    let namespaces = Api::<Namespace>::all(admin);
    namespaces.delete(&p, &Default::default()).await.unwrap();
    until("the namespace gone", || {
        let namespaces = namespaces.clone();
        let p = p.clone();
        async move { namespaces.get_opt(&p).await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert_eq!(create().await.unwrap().status(), 201);
    assert_eq!(old.get(&sessions).code().await, 401);
    let _ = namespaces.delete(&p, &Default::default()).await;
    server.stop().await;
}
