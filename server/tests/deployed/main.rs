//! The platform deployed as a user deploys it: `kubectl apply -k deploy/overlays/dev` on the
//! test API server (`make unit` starts it; `AMBIENT_TEST_KUBECONFIG`), the server and
//! operator Deployments brought up by the cluster's deployment and replicaset controllers
//! and run by the test kubelet as containers from the images `make images` built, with
//! in-cluster configuration (their ServiceAccounts' tokens, `KUBERNETES_SERVICE_HOST`) and
//! the manifests' security contexts; runner pods in containers from the runner image,
//! reaching the server by its Service name. The test then uses the deployed server through
//! its Service's port as a person would (a Kubernetes token, a project, sessions watched
//! live, a follow-up, stop, continue, delete), against the mock model.
//!
//! A test binary of its own: the deployed operator watches every project of the cluster,
//! so it must not run beside the other suites' operators (cargo runs test binaries one at
//! a time).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use model::protocol::{ServerToBrowser, SessionEvent, StoredEvent};
use serde_json::json;

/// Where the deployed server's Service port lands on this machine (host network).
const SERVER: &str = "127.0.0.1:3000";
/// Its Service's name, as the operator hands it to runners.
const SERVICE: &str = "ambient-server.ambient-code.svc";
const WAIT: Duration = Duration::from_secs(120);

fn kubeconfig() -> PathBuf {
    std::env::var_os("AMBIENT_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .expect(
            "AMBIENT_TEST_KUBECONFIG: run through `make unit`, which starts the test API server",
        )
}

async fn admin() -> Client {
    let config = operator::cluster::config(Some(&kubeconfig()))
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The token of a test user (`tools/k8s/testenv.sh` wrote it next to the kubeconfig).
fn token(user: &str) -> String {
    let file = kubeconfig().with_file_name("tokens.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    text.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&user))
        .map(|f| f[0].to_owned())
        .unwrap_or_else(|| panic!("no user {user} in {}", file.display()))
}

/// The API server's port, from the kubeconfig.
fn api_port() -> String {
    let text = std::fs::read_to_string(kubeconfig()).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: https://127.0.0.1:"))
        .expect("the test API server's address")
        .to_owned()
}

fn kubectl(args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A kubelet running a namespace's pods as containers, with this cluster's names.
fn kubelet(client: &Client, namespace: &str, root: &Path) -> testkit::kubelet::Kubelet {
    testkit::kubelet::Kubelet::start(
        client.clone(),
        testkit::kubelet::KubeletConfig {
            namespace: namespace.to_owned(),
            image: String::new(),
            runner_bin: PathBuf::new(),
            extra_env: Vec::new(),
            root: root.join(namespace),
            containers: Some(testkit::kubelet::Containers {
                hosts: vec![(SERVICE.into(), "127.0.0.1".into())],
                mounts: Vec::new(),
                env: vec![
                    ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
                    ("KUBERNETES_SERVICE_PORT".into(), api_port()),
                ],
            }),
        },
    )
}

fn is_phase(e: &StoredEvent, phases: &[&str]) -> bool {
    matches!(&e.event, SessionEvent::Phase(p) if phases.contains(&p.phase.as_str()))
}

/// Events of a viewer until `stop` says so.
async fn watch(
    viewer: &mut testkit::ViewerClient,
    mut stop: impl FnMut(&StoredEvent) -> bool,
) -> Vec<StoredEvent> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, viewer.recv()).await {
            Ok(Ok(ServerToBrowser::Event(e))) => {
                let done = stop(&e);
                out.push(e);
                if done {
                    return out;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(closed)) => panic!("the viewer closed: {closed:?} after {out:?}"),
            Err(_) => panic!("no end in time: {out:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_deployed_from_its_manifests_runs_sessions_in_containers() {
    for image in ["server", "operator", "runner"] {
        let image = format!("localhost/ambient-{image}:latest");
        let present = std::process::Command::new("podman")
            .args(["image", "exists", &image])
            .status()
            .is_ok_and(|s| s.success());
        assert!(present, "{image} is missing: `make images` builds it");
    }
    assert!(
        std::net::TcpListener::bind(SERVER).is_ok(),
        "{SERVER} is taken: the deployed server's Service port needs it"
    );
    let client = admin().await;
    let root = tempfile::tempdir().unwrap();
    let mock = mock_anthropic::start(Default::default()).await.unwrap();

    // As the README says.
    kubectl(&["apply", "-k", "deploy/overlays/dev"]);
    let platform = kubelet(&client, "ambient-code", root.path());
    let http = reqwest::Client::new();
    until("the deployed server answers on its Service's port", || {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://{SERVER}/health"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;

    // A person with a Kubernetes token, allowed to make projects.
    let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "ambient-deployed-creator-alice"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ambient-project-creator"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
        .patch(
            &binding.name_any(),
            &PatchParams::apply("ambient-tests").force(),
            &Patch::Apply(&binding),
        )
        .await
        .unwrap();
    let alice_token = token("alice");
    // In a browser: the sign-in page takes her token and gives a cookie that opens the
    // pages (the Service's port, as `kubectl port-forward` brings it to localhost).
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = browser
        .post(format!("http://{SERVER}/login"))
        .header("origin", format!("http://{SERVER}"))
        .form(&[("key", alice_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        signed_in.status(),
        303,
        "{}",
        signed_in.text().await.unwrap()
    );
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = browser
        .get(format!("http://{SERVER}/projects"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // Scripts and the CLI: her token as a bearer.
    let alice = testkit::client_with_key(&alice_token);
    let project = format!("deployed-{}", std::process::id() % 100_000);
    let url = |rest: &str| format!("http://{SERVER}/api/projects/{project}{rest}");
    let resp = alice
        .post(format!("http://{SERVER}/api/projects"))
        .json(&json!({"name": project}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let runners = kubelet(&client, &project, root.path());
    let resp = alice
        .put(url("/runner-secrets"))
        .json(&json!({"data": {"ANTHROPIC_BASE_URL": mock.url(), "ANTHROPIC_API_KEY": "sk-deployed"}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let create = |prompt: &str| {
        let alice = alice.clone();
        let at = url("/agentic-sessions");
        let prompt = prompt.to_owned();
        async move {
            let resp = alice
                .post(at)
                .json(&json!({"stopOnRunFinished": true, "initialPrompt": prompt}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
            resp.json::<serde_json::Value>().await.unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let viewer = |name: String| {
        let project = project.clone();
        let token = alice_token.clone();
        async move {
            testkit::ViewerClient::connect(SERVER, &token, &project, &name, 0)
                .await
                .expect("a viewer socket")
        }
    };

    // A session, watched live: the runner pod in its containers, the agent's tool call.
    let first = create("create hello.txt").await;
    let mut live = viewer(first.clone()).await;
    let events = watch(&mut live, |e| is_phase(e, &["Completed", "Failed"])).await;
    assert!(
        is_phase(events.last().unwrap(), &["Completed"]),
        "{events:?}"
    );
    for phase in ["Creating", "Running"] {
        assert!(
            events.iter().any(|e| is_phase(e, &[phase])),
            "{phase}: {events:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::ToolUse(t) if t.name == "Write")),
        "{events:?}"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gap-free: {seqs:?}"
    );

    // A follow-up continues it in a second pod; the same viewer sees it.
    let resp = alice
        .post(url(&format!("/agentic-sessions/{first}/messages")))
        .json(&json!({"text": "run: echo follow-up-ran"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    let more = watch(&mut live, |e| is_phase(e, &["Completed", "Failed"])).await;
    assert!(is_phase(more.last().unwrap(), &["Completed"]), "{more:?}");
    assert!(
        more.iter().any(
            |e| matches!(&e.event, SessionEvent::ToolResult(r) if r.content.contains("follow-up-ran"))
        ),
        "{more:?}"
    );

    // Completed, its files are still served: by a files runner, a Job of one container from
    // the runner image on the session's claim, reaching the server by the runner Service
    // with a token of its own.
    let resp = alice
        .get(url(&format!(
            "/agentic-sessions/{first}/workspace?path=artifacts"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let listing: serde_json::Value = resp.json().await.unwrap();
    assert!(
        listing["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|e| e["name"] == "hello.txt")),
        "{listing}"
    );

    // A long answer stopped while it streams, then continued.
    let second = create("slow 80").await;
    let mut live2 = viewer(second.clone()).await;
    watch(&mut live2, |e| {
        matches!(e.event, SessionEvent::AgentDelta(_))
    })
    .await;
    let resp = alice
        .post(url(&format!("/agentic-sessions/{second}/stop")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let stopped = watch(&mut live2, |e| {
        is_phase(e, &["Stopped", "Completed", "Failed"])
    })
    .await;
    assert!(
        is_phase(stopped.last().unwrap(), &["Stopped"]),
        "{stopped:?}"
    );
    let resp = alice
        .post(url(&format!("/agentic-sessions/{second}/start")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let resumed = watch(&mut live2, |e| is_phase(e, &["Running"])).await;
    assert!(
        is_phase(resumed.last().unwrap(), &["Running"]),
        "{resumed:?}"
    );
    let resp = alice
        .post(url(&format!("/agentic-sessions/{second}/stop")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    watch(&mut live2, |e| {
        is_phase(e, &["Stopped", "Completed", "Failed"])
    })
    .await;

    // Faults. The server's pod deleted while an answer streams: its Deployment starts
    // another on the same volume; the viewer reconnects from the last event it saw and
    // misses nothing, and the runner goes on sending to the new server.
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client.clone(), "ambient-code");
    let pod_of = |app: &'static str| {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/name={app}")))
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| p.name_any())
                .collect::<Vec<_>>()
        }
    };
    let third = create("slow 24").await;
    let mut live3 = viewer(third.clone()).await;
    let mut seen = watch(&mut live3, |e| {
        matches!(e.event, SessionEvent::AgentDelta(_))
    })
    .await;
    // While it streams, its workspace through the runner in its container, which reached
    // the server by the runner Service: listed, and archived in chunks.
    let listing: serde_json::Value = alice
        .get(url(&format!("/agentic-sessions/{third}/workspace")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listing["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|e| e["name"] == "artifacts")),
        "{listing}"
    );
    let archive = alice
        .get(url(&format!("/agentic-sessions/{third}/workspace.tar.gz")))
        .send()
        .await
        .unwrap();
    assert_eq!(archive.status(), 200);
    assert!(!archive.bytes().await.unwrap().is_empty());
    let old_server = pod_of("ambient-server").await;
    assert_eq!(old_server.len(), 1, "{old_server:?}");
    pods.delete(&old_server[0], &DeleteParams::default())
        .await
        .unwrap();
    // The socket ends with the old server; a new pod answers.
    while let Ok(Ok(ServerToBrowser::Event(e))) = tokio::time::timeout(WAIT, live3.recv()).await {
        seen.push(e);
    }
    until("a new server pod answers", || {
        let http = http.clone();
        let old = old_server[0].clone();
        async move {
            let now = pod_of("ambient-server").await;
            if now.is_empty() || now.contains(&old) {
                return None;
            }
            let r = http
                .get(format!("http://{SERVER}/health"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
    let last = seen.last().map(|e| e.seq).unwrap_or(0);
    let mut resumed = until("the viewer reconnects", || {
        let project = project.clone();
        let token = alice_token.clone();
        let third = third.clone();
        async move {
            testkit::ViewerClient::connect(SERVER, &token, &project, &third, last)
                .await
                .ok()
        }
    })
    .await;
    seen.extend(watch(&mut resumed, |e| is_phase(e, &["Completed", "Failed"])).await);
    assert!(is_phase(seen.last().unwrap(), &["Completed"]), "{seen:?}");
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "nothing missed across the server's replacement: {seqs:?}"
    );
    let deltas = seen
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::AgentDelta(_)))
        .count();
    assert_eq!(deltas, 24, "every chunk of the answer, once");

    // The operator's pod deleted while a session runs: its successor makes no second Job.
    let fourth = create("slow 12").await;
    let mut live4 = viewer(fourth.clone()).await;
    watch(&mut live4, |e| {
        matches!(e.event, SessionEvent::AgentDelta(_))
    })
    .await;
    let old_operator = pod_of("ambient-operator").await;
    assert_eq!(old_operator.len(), 1, "{old_operator:?}");
    pods.delete(&old_operator[0], &DeleteParams::default())
        .await
        .unwrap();
    let done = watch(&mut live4, |e| is_phase(e, &["Completed", "Failed"])).await;
    assert!(is_phase(done.last().unwrap(), &["Completed"]), "{done:?}");
    until("a new operator pod", || {
        let old = old_operator[0].clone();
        async move {
            let now = pod_of("ambient-operator").await;
            (!now.is_empty() && !now.contains(&old)).then_some(())
        }
    })
    .await;
    // Give the new operator time to reconcile what it found, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &project);
    let of_fourth = jobs
        .list(&ListParams::default().labels(&format!(
            "{}={fourth}",
            operator::cluster::build::SESSION_LABEL
        )))
        .await
        .unwrap()
        .items;
    assert_eq!(
        of_fourth.len(),
        1,
        "one Job for one run: {:?}",
        of_fourth.iter().map(|j| j.name_any()).collect::<Vec<_>>()
    );

    // A runner container over its memory limit. The operator is given a small limit for
    // runners (as an admin would, on its Deployment); the agent then allocates past it.
    // The kernel kills the largest process (the allocation), the kubelet the container
    // with it (`memory.oom.group`): the run is Failed, saying OOMKilled.
    let operator_now = pod_of("ambient-operator").await;
    kubectl(&[
        "set",
        "env",
        "-n",
        "ambient-code",
        "deployment/ambient-operator",
        "AMBIENT_RUNNER_MEMORY_LIMIT=640Mi",
    ]);
    until("the operator with the new limit", || {
        let before = operator_now.clone();
        let pod_of = &pod_of;
        async move {
            let now = pod_of("ambient-operator").await;
            (now.len() == 1 && !before.contains(&now[0])).then_some(())
        }
    })
    .await;
    // 2 GiB in 64 MiB steps, touched: far past 640 MiB, and bounded were it not enforced.
    let hog =
        create("run: node -e \"const a=[];for(let i=0;i<32;i++){a.push(Buffer.alloc(64<<20,1))}\"")
            .await;
    let mut live5 = viewer(hog.clone()).await;
    let ended = watch(&mut live5, |e| is_phase(e, &["Completed", "Failed"])).await;
    assert!(is_phase(ended.last().unwrap(), &["Failed"]), "{ended:?}");
    let session = Api::<model::AgenticSession>::namespaced(client.clone(), &project)
        .get(&hog)
        .await
        .unwrap();
    let ready = session
        .status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    assert_eq!(ready.reason, "OOMKilled", "{}", ready.message);
    let runner_pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client.clone(), &project);
    let killed = runner_pods
        .list(&ListParams::default().labels(&format!(
            "{}={hog}",
            operator::cluster::build::SESSION_LABEL
        )))
        .await
        .unwrap()
        .items;
    let runner = killed
        .iter()
        .flat_map(|p| p.status.iter())
        .flat_map(|s| s.container_statuses.iter().flatten())
        .find(|c| c.name == "runner")
        .and_then(|c| c.state.as_ref()?.terminated.clone())
        .expect("the runner container ended");
    assert_eq!(
        (runner.exit_code, runner.reason.as_deref()),
        (137, Some("OOMKilled"))
    );
    let limit = killed
        .iter()
        .flat_map(|p| p.spec.iter())
        .flat_map(|s| s.containers.iter())
        .find(|c| c.name == "runner")
        .and_then(|c| {
            c.resources
                .as_ref()?
                .limits
                .as_ref()?
                .get("memory")
                .cloned()
        });
    assert_eq!(limit.map(|q| q.0).as_deref(), Some("640Mi"));

    // Deleted: gone from the API, its Jobs with it.
    let resp = alice
        .delete(url(&format!("/agentic-sessions/{first}")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    until("the deleted session is gone", || {
        let alice = alice.clone();
        let at = url(&format!("/agentic-sessions/{first}"));
        async move { (alice.get(at).send().await.ok()?.status() == 404).then_some(()) }
    })
    .await;

    // Every pod of the platform ran in a container, under the manifests' security context.
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client.clone(), "ambient-code");
    let names: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("ambient-server-")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("ambient-operator-")),
        "{names:?}"
    );

    eprintln!(
        "deployed: pods {names:?}; first session {} events, its follow-up {}",
        events.len(),
        more.len()
    );

    // Taken down again, as a user would; the kubelets end the pods (the namespaces go only
    // when their pods have), so they stay until both namespaces are gone.
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    let _ = namespaces.delete(&project, &DeleteParams::default()).await;
    kubectl(&["delete", "-k", "deploy/overlays/dev", "--wait=false"]);
    for namespace in [project.as_str(), "ambient-code"] {
        until(&format!("namespace {namespace} deleted"), || {
            let namespaces = namespaces.clone();
            async move {
                namespaces
                    .get_opt(namespace)
                    .await
                    .ok()
                    .and_then(|n| n.is_none().then_some(()))
            }
        })
        .await;
    }
    drop(runners);
    drop(platform);
}
