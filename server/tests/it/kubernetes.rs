//! Kubernetes mode end to end on the test API server (`make unit` starts it; its kubeconfig
//! in `AMBIENT_TEST_KUBECONFIG`): the REST API writes `AgenticSession` resources, the
//! operator (in this process, watching one namespace) makes each run's Job, the test plays
//! the kubelet (it reports the pod's state) and the runner (a fake runner with the token
//! from the run's Secret, as the runner container reads it), and a viewer sees it all.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use model::AgenticSession;
use model::protocol::{AgentMessage, ServerToBrowser, SessionEvent};
use model::session::AgenticSessionSpec;
use operator::cluster::build::{RUN_LABEL, SESSION_LABEL, job_name, token_secret_name};
use operator::cluster::{ClusterConfig, controller};
use serde_json::json;
use testkit::{FakeRunner, Seeded};

use crate::common::{Options, TestServer, is_phase};

const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn kubeconfig() -> std::path::PathBuf {
    std::env::var_os("AMBIENT_TEST_KUBECONFIG")
        .unwrap_or_else(|| {
            panic!(
                "AMBIENT_TEST_KUBECONFIG is not set: this test needs the test API server; \
                 run it with `make unit` (or start it with tools/k8s/testenv.sh)"
            )
        })
        .into()
}

/// A client of the test API server, with the platform's CRDs applied for real.
pub(crate) async fn client() -> Client {
    let client = operator::cluster::connect(Some(&kubeconfig()))
        .await
        .expect("a client of the test API server");
    operator::crd::apply(&client, "ambient-tests")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    operator::cluster::project::apply_project_roles(&client, "ambient-tests")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
}

pub(crate) async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reports the runner container's state, as the kubelet would.
async fn report(pods: &Api<Pod>, pod: &str, phase: &str, state: serde_json::Value) {
    let patch = json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "runner", "image": "localhost/ambient-runner:latest", "imageID": "",
        "ready": phase == "Running", "restartCount": 0, "state": state,
    }]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_runs_through_the_cluster_and_its_viewer_sees_every_event() {
    let client = client().await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path());
    opts.local_driver = false;
    opts.kubeconfig = Some(kubeconfig());
    let metrics = crate::metrics::free_port();
    opts.metrics_addr = Some(metrics);
    let server = TestServer::start(opts).await;
    let project = format!("k8s-e2e-{}", std::process::id() % 100_000);

    // A project is a managed namespace.
    let resp = server
        .http
        .post(server.url("/api/projects"))
        .json(&json!({"name": project, "displayName": "Cluster project"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let (stop_operator, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(controller::run(
        client.clone(),
        ClusterConfig {
            watch_namespace: Some(project.clone()),
            server_api_url: server.url("/api"),
            ..ClusterConfig::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));

    // A session made through the API is a resource in the namespace.
    let resp = server
        .http
        .post(server.url(&format!("/api/projects/{project}/agentic-sessions")))
        .json(&json!({"stopOnRunFinished": true, "initialPrompt": "say hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let name = resp.json::<serde_json::Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let sessions: Api<AgenticSession> = Api::namespaced(client.clone(), &project);
    assert!(sessions.get(&name).await.is_ok());
    let mut viewer =
        testkit::ViewerClient::connect(&server.addr.to_string(), &server.key, &project, &name, 0)
            .await
            .unwrap();

    // The operator made the run; the kubelet starts its pod.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &project);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &project);
    until("the run's Job", || {
        let jobs = jobs.clone();
        let job = job_name(&name, 1);
        async move { jobs.get_opt(&job).await.ok()? }
    })
    .await;
    let selector = format!("{SESSION_LABEL}={name},{RUN_LABEL}=1");
    let pod = until("the run's pod", || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            pods.list(&ListParams::default().labels(&selector))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        }
    })
    .await;
    report(&pods, &pod.name_any(), "Running", json!({"running": {}})).await;
    let secret = Api::<Secret>::namespaced(client.clone(), &project)
        .get(&token_secret_name(&name))
        .await
        .unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();

    // The runner connects with its token: the server records it, the operator sees it.
    let seeded = Seeded {
        project: project.clone(),
        name: name.clone(),
        generation: 1,
        token: token.clone(),
    };
    let mut runner = FakeRunner::connect(&server.addr.to_string(), &seeded, 0)
        .await
        .expect("the run's token is accepted");
    until("Running", || {
        let sessions = sessions.clone();
        let name = name.clone();
        async move {
            let s = sessions.get(&name).await.ok()?;
            (s.phase() == model::Phase::Running).then_some(())
        }
    })
    .await;
    runner
        .send(SessionEvent::AgentMessage(AgentMessage {
            message_id: None,
            text: "Hello from the cluster".into(),
            parent_tool_use_id: None,
        }))
        .await
        .unwrap();
    runner.wait_ack(1).await.unwrap();
    // The runner exits 0; the kubelet says so.
    drop(runner);
    report(
        &pods,
        &pod.name_any(),
        "Succeeded",
        json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
    )
    .await;

    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.iter().any(|e| is_phase(e, &["Completed"])) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, viewer.recv()).await {
            Ok(Ok(ServerToBrowser::Event(e))) => seen.push(e),
            Ok(Ok(_)) => {}
            other => panic!("the viewer saw {seen:?}, then {other:?}"),
        }
    }
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    for phase in ["Creating", "Running", "Completed"] {
        assert!(
            seen.iter().any(|e| is_phase(e, &[phase])),
            "{phase} in {seen:?}"
        );
    }
    assert!(seen.iter().any(|e| matches!(&e.event,
        SessionEvent::AgentMessage(m) if m.text == "Hello from the cluster")));

    // The metrics count the session in its project and phase, as the cluster has it.
    let mut counted = None;
    for _ in 0..100 {
        let s = crate::metrics::scrape(metrics).await;
        let labels = [("project", project.as_str()), ("phase", "Completed")];
        counted = crate::metrics::value(&s, "ambient_sessions", &labels);
        if counted == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(counted, Some(1.0), "the completed session in its project");

    // The run has ended: its token opens nothing any more.
    let refused = FakeRunner::connect_once(&server.addr.to_string(), &seeded, 0).await;
    assert!(refused.is_err(), "a finished run's token is refused");

    // A session applied straight to the cluster is listed like any other.
    let applied = AgenticSession::new(
        "from-kubectl",
        AgenticSessionSpec {
            initial_prompt: Some("made with kubectl".into()),
            ..AgenticSessionSpec::default()
        },
    );
    sessions
        .create(&PostParams::default(), &applied)
        .await
        .unwrap();
    let listed: serde_json::Value = server
        .http
        .get(server.url(&format!("/api/projects/{project}/agentic-sessions")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert!(names.contains(&"from-kubectl"), "{names:?}");

    // Deleted in the cluster: its viewers are told, its log goes.
    let mut viewer = testkit::ViewerClient::connect(
        &server.addr.to_string(),
        &server.key,
        &project,
        &name,
        seqs.len() as u64,
    )
    .await
    .unwrap();
    sessions
        .delete(&name, &DeleteParams::background())
        .await
        .unwrap();
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            if viewer.recv().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the viewer of a deleted session is closed");

    let _ = stop_operator.send(());
    let _ = operator.await;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&project, &DeleteParams::default())
        .await;
    server.stop().await;
}

/// A project with its operator and kubelet, for scenarios with the real runner.
pub(crate) struct Cluster {
    pub(crate) client: Client,
    pub(crate) server: TestServer,
    pub(crate) project: String,
    kubelet: testkit::kubelet::Kubelet,
    stop_operator: Option<tokio::sync::oneshot::Sender<()>>,
    operator: Option<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
    /// The runner image the operator's Jobs name.
    image: String,
    /// The server's API as the operator tells runners.
    server_api_url: String,
}

/// The server's Service name in `deploy/base` (what the operator hands runners there).
const SERVER_SERVICE: &str = "ambient-server.ambient-code.svc";

impl Cluster {
    pub(crate) async fn start(prefix: &str, mock_url: Option<&str>) -> Cluster {
        Self::start_with(
            prefix,
            mock_url,
            &ClusterConfig::default().runner_image,
            None,
        )
        .await
    }

    /// [`Cluster::start`] with runner pods run as containers from the runner image that
    /// `make images` built, reaching the server by its Service name (resolving to loopback,
    /// where the test's server listens); `mounts`: host directories they see (git remotes).
    pub(crate) async fn in_containers(prefix: &str, mounts: Vec<std::path::PathBuf>) -> Cluster {
        let image = ClusterConfig::default().runner_image;
        let present = std::process::Command::new("podman")
            .args(["image", "exists", &image])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            present,
            "the runner image {image} is missing: `make images` builds it (make test does, before these tests)"
        );
        let containers = testkit::kubelet::Containers {
            hosts: vec![(SERVER_SERVICE.into(), "127.0.0.1".into())],
            mounts,
            env: Vec::new(),
        };
        Self::start_with(prefix, None, &image, Some(containers)).await
    }

    /// [`Cluster::start`] with an operator whose Jobs name `image`, pods run in
    /// `containers` when given.
    async fn start_with(
        prefix: &str,
        mock_url: Option<&str>,
        image: &str,
        containers: Option<testkit::kubelet::Containers>,
    ) -> Cluster {
        let client = client().await;
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(dir.path());
        opts.local_driver = false;
        opts.kubeconfig = Some(kubeconfig());
        let server = TestServer::start(opts).await;
        let project = format!("{prefix}-{}", std::process::id() % 100_000);
        let resp = server
            .http
            .post(server.url("/api/projects"))
            .json(&json!({"name": project}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        if let Some(url) = mock_url {
            let resp = server
                .http
                .put(server.url(&format!("/api/projects/{project}/runner-secrets")))
                .json(&json!({"data": {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-test"}}))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        }
        let kubelet = testkit::kubelet::Kubelet::start(
            client.clone(),
            testkit::kubelet::KubeletConfig {
                namespace: project.clone(),
                image: ClusterConfig::default().runner_image,
                runner_bin: crate::common::runner_bin(),
                extra_env: vec![(
                    "AMBIENT_CLAUDE_BIN".into(),
                    crate::common::claude_bin().display().to_string(),
                )],
                root: dir.path().join("kubelet"),
                containers: containers.clone(),
            },
        );
        // Runner pods in containers reach the server as in a cluster: by its Service name.
        let server_api_url = match containers {
            Some(_) => format!("http://{SERVER_SERVICE}:{}/api", server.addr.port()),
            None => server.url("/api"),
        };
        let mut c = Cluster {
            client,
            server,
            project,
            kubelet,
            stop_operator: None,
            operator: None,
            dir,
            image: image.to_owned(),
            server_api_url,
        };
        c.start_operator();
        c
    }

    fn start_operator(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.operator = Some(tokio::spawn(controller::run(
            self.client.clone(),
            ClusterConfig {
                watch_namespace: Some(self.project.clone()),
                server_api_url: self.server_api_url.clone(),
                stop_grace_seconds: 5,
                runner_image: self.image.clone(),
                ..ClusterConfig::default()
            },
            async move {
                let _ = rx.await;
            },
        )));
        self.stop_operator = Some(tx);
    }

    async fn stop_operator(&mut self) {
        if let Some(tx) = self.stop_operator.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.operator.take() {
            let _ = task.await;
        }
    }

    /// Stops the server and starts another on the same address and data (runners keep
    /// running and reconnect).
    async fn restart_server(&mut self) {
        let addr = self.server.addr;
        let mut opts = Options::new(self.dir.path());
        opts.local_driver = false;
        opts.kubeconfig = Some(kubeconfig());
        opts.addr = Some(addr);
        self.server.halt().await;
        self.server = TestServer::start(opts).await;
    }

    async fn pods_of(&self, name: &str) -> Vec<Pod> {
        Api::<Pod>::namespaced(self.client.clone(), &self.project)
            .list(&ListParams::default().labels(&format!("{SESSION_LABEL}={name}")))
            .await
            .unwrap()
            .items
    }

    /// The running pod of `name` (its runner started).
    async fn running_pod(&self, name: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for p in self.pods_of(name).await {
                if self.kubelet.pid(&p.name_any()).is_some() {
                    return p.name_any();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no runner of {name} runs"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready(&self, name: &str) -> (String, String) {
        let s = self.session(name).await;
        let c = s
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .expect("a Ready condition");
        (c.reason, c.message)
    }

    fn path(&self, rest: &str) -> String {
        self.server.url(&format!(
            "/api/projects/{}/agentic-sessions{rest}",
            self.project
        ))
    }

    /// Sets the project's runner secrets (`{"NAME": "value"}`).
    async fn put_runner_secrets(&self, data: serde_json::Value) {
        let resp = self
            .server
            .http
            .put(
                self.server
                    .url(&format!("/api/projects/{}/runner-secrets", self.project)),
            )
            .json(&json!({ "data": data }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }

    /// Creates a batch session (it completes once its agent has answered).
    async fn create(&self, prompt: &str) -> String {
        self.create_with(json!({"stopOnRunFinished": true, "initialPrompt": prompt}))
            .await
    }

    async fn create_with(&self, body: serde_json::Value) -> String {
        let resp = self
            .server
            .http
            .post(self.path(""))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        resp.json::<serde_json::Value>().await.unwrap()["name"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn viewer(&self, name: &str, after: u64) -> crate::common::Viewer {
        crate::common::Viewer {
            client: testkit::ViewerClient::connect(
                &self.server.addr.to_string(),
                &self.server.key,
                &self.project,
                name,
                after,
            )
            .await
            .unwrap(),
        }
    }

    async fn session(&self, name: &str) -> AgenticSession {
        Api::<AgenticSession>::namespaced(self.client.clone(), &self.project)
            .get(name)
            .await
            .unwrap()
    }

    pub(crate) async fn finish(mut self) {
        // Every session of these tests has ended: nothing may still run in a "pod".
        let root = self.dir.path().join("kubelet");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut left = crate::common::processes_in(&root);
            left.extend(self.kubelet.running_pods().into_iter().map(|pod| (0, pod)));
            if left.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "processes left behind by runner pods: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop_operator().await;
        let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
            .delete(&self.project, &DeleteParams::default())
            .await;
        self.server.stop().await;
    }
}

fn gap_free(events: &[model::protocol::StoredEvent]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
}

/// Scenarios 1 and 3: a session runs in a pod (the real runner, the real `claude`, the mock
/// model), writes a file into its workspace claim and completes; continued, it runs a second
/// Job that resumes the conversation in the same workspace, and the first run's token is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_runs_in_a_pod_and_continues_in_a_second_one() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let c = Cluster::start("k8s-run", Some(&mock.url())).await;
    let name = c.create("Please create hello.txt").await;
    let mut viewer = c.viewer(&name, 0).await;
    let events = viewer
        .events_until(Duration::from_secs(90), |e| {
            is_phase(e, &["Completed", "Failed"])
        })
        .await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind()).collect();
    assert!(
        is_phase(events.last().unwrap(), &["Completed"]),
        "{events:?}"
    );
    gap_free(&events);
    for phase in ["Creating", "Running"] {
        assert!(
            events.iter().any(|e| is_phase(e, &[phase])),
            "{phase}: {kinds:?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::ToolUse(t) if t.name == "Write")),
        "{kinds:?}"
    );
    let claim = c
        .kubelet
        .workspace_dir(&operator::cluster::build::workspace_claim_name(&name));
    assert_eq!(
        std::fs::read_to_string(claim.join("artifacts/hello.txt")).unwrap(),
        "Hello from the mock Anthropic API!\n"
    );
    let s = c.session(&name).await;
    let st = s.status.clone().unwrap();
    assert_eq!(st.result.as_ref().and_then(|r| r.exit_code), Some(0));
    assert!(st.result.as_ref().is_some_and(|r| r.turns >= 1), "{st:?}");
    assert!(s.has_conversation(), "the server recorded the conversation");
    let first_token = String::from_utf8(
        Api::<Secret>::namespaced(c.client.clone(), &c.project)
            .get(&token_secret_name(&name))
            .await
            .unwrap()
            .data
            .unwrap()["token"]
            .0
            .clone(),
    )
    .unwrap();

    // Continue: a second Job, resuming, on the same claim.
    let resp = c
        .server
        .http
        .post(c.path(&format!("/{name}/start")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), &c.project);
    let job = until("the second Job", || {
        let jobs = jobs.clone();
        let job = job_name(&name, 2);
        async move { jobs.get_opt(&job).await.ok()? }
    })
    .await;
    let env = job.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "IS_RESUME" && e.value.as_deref() == Some("true"))
    );
    let more = viewer
        .events_until(Duration::from_secs(90), |e| {
            is_phase(e, &["Completed", "Failed"])
        })
        .await;
    assert!(is_phase(more.last().unwrap(), &["Completed"]), "{more:?}");
    let s = c.session(&name).await;
    assert_eq!(s.status.unwrap().run_generation, Some(2));
    let seeded = Seeded {
        project: c.project.clone(),
        name: name.clone(),
        generation: 1,
        token: first_token,
    };
    assert!(
        FakeRunner::connect_once(&c.server.addr.to_string(), &seeded, 0)
            .await
            .is_err(),
        "the first run's token is refused"
    );
    c.finish().await;
}

/// An interactive session (the default) keeps its agent warm in its pod between turns: the
/// first answer leaves it Running and waiting for a person, a follow-up is answered by the
/// same agent in the same pod (no second Job, no resumed conversation), and a stop ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_session_keeps_its_agent_warm_in_its_pod_between_turns() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let c = Cluster::start("k8s-warm", Some(&mock.url())).await;
    // An HTTP MCP server with a project credential: in a pod the keeper's proxy adds it.
    let (tracker, seen) = crate::mcp::http_server("Bearer tok-pod-credential-0001").await;
    for (path, body) in [
        ("settings", crate::mcp::project_servers(&tracker)),
        (
            "runner-secrets",
            json!({"data": {"MCP_TRACKER_TOKEN": "tok-pod-credential-0001"}}),
        ),
    ] {
        let resp = c
            .server
            .http
            .put(c.server.url(&format!("/api/projects/{}/{path}", c.project)))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }
    let name = c
        .create_with(json!({"initialPrompt": "Please create hello.txt"}))
        .await;
    let mut viewer = c.viewer(&name, 0).await;
    let answered =
        |e: &model::protocol::StoredEvent| matches!(e.event, SessionEvent::TurnResult(_));
    let first = viewer.events_until(Duration::from_secs(90), answered).await;
    let waiting = until("the agent waiting for a person", || {
        let http = c.server.http.clone();
        let url = c.path(&format!("/{name}"));
        async move {
            let s: serde_json::Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            (s["status"]["agentStatus"] == "idle").then_some(s)
        }
    })
    .await;
    assert_eq!(waiting["status"]["phase"], "Running", "{waiting}");
    let pod = c.running_pod(&name).await;

    // The model switches in the warm agent: its next request uses it.
    let resp = c
        .server
        .http
        .put(c.path(&format!("/{name}/model")))
        .json(&json!({"model": "claude-opus-4-6"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let resp = c
        .server
        .http
        .post(c.path(&format!("/{name}/messages")))
        .json(&json!({"text": "recall"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let more = viewer.events_until(Duration::from_secs(60), answered).await;
    assert!(
        more.iter().any(|e| matches!(&e.event, SessionEvent::AgentMessage(m) if m.text.contains("I remember: Please create hello.txt"))),
        "{more:?}"
    );
    let all: Vec<_> = first.iter().chain(&more).cloned().collect();
    gap_free(&all);
    let started = all
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::AgentStarted(_)))
        .count();
    assert_eq!(started, 1, "one agent for both turns: {all:?}");
    assert!(
        all.iter().any(
            |e| matches!(&e.event, SessionEvent::ModelChanged(m) if m.model == "claude-opus-4-6")
        ),
        "{all:?}"
    );
    let model = mock
        .requests()
        .iter()
        .rev()
        .find(|r| r.body["stream"] == true)
        .and_then(|r| r.body["model"].as_str().map(str::to_owned));
    assert_eq!(model.as_deref(), Some("claude-opus-4-6"));
    assert!(
        !all.iter()
            .any(|e| is_phase(e, &["Completed", "Stopped", "Failed"]))
    );
    assert_eq!(c.running_pod(&name).await, pod, "the same pod answered");

    // A question of the agent in the pod waits for a person; the answer goes on.
    let resp = c
        .server
        .http
        .post(c.path(&format!("/{name}/messages")))
        .json(&json!({"text": "ask: Which one? | A | B"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let asked = viewer
        .events_until(Duration::from_secs(60), |e| {
            matches!(e.event, SessionEvent::Ask(_))
        })
        .await;
    let Some(SessionEvent::Ask(ask)) = asked.last().map(|e| e.event.clone()) else {
        panic!("{asked:?}");
    };
    let resp = c
        .server
        .http
        .post(c.path(&format!("/{name}/answers")))
        .json(&json!({"id": ask.id, "answers": {"Which one?": "B"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    let answered = viewer.events_until(Duration::from_secs(60), answered).await;
    assert!(
        answered.iter().any(|e| matches!(&e.event, SessionEvent::AgentMessage(m) if m.text.contains("Got your answer") && m.text.contains("\"B\""))),
        "{answered:?}"
    );
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), &c.project);
    assert!(jobs.get_opt(&job_name(&name, 2)).await.unwrap().is_none());

    // The agent in the pod calls the MCP server's tool; the server got the credential from
    // the keeper's proxy, never the proxy's token.
    let resp = c
        .server
        .http
        .post(c.path(&format!("/{name}/messages")))
        .json(&json!({"text": "call: mcp__tracker__echo {\"text\": \"pod\"}"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let called = viewer
        .events_until(Duration::from_secs(60), |e| {
            matches!(e.event, SessionEvent::TurnResult(_))
        })
        .await;
    assert!(
        called.iter().any(|e| matches!(&e.event, SessionEvent::AgentMessage(m) if m.text.contains("said: echo: pod"))),
        "{called:?}"
    );
    let status: serde_json::Value = c
        .server
        .http
        .get(c.path(&format!("/{name}/mcp/status")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        status["servers"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["name"] == "tracker" && s["status"] == "connected")),
        "{status}"
    );
    let seen = seen.0.lock().unwrap().clone();
    assert!(
        !seen.is_empty()
            && seen.iter().all(|(auth, proxy_token)| auth.as_deref()
                == Some("Bearer tok-pod-credential-0001")
                && !proxy_token),
        "{seen:?}"
    );

    // The workspace, through the runner in the pod (the server has no path to its volume):
    // listed, read, uploaded to, archived.
    let http = &c.server.http;
    let root: serde_json::Value = http
        .get(c.path(&format!("/{name}/workspace?path=artifacts")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        root["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|e| e["name"] == "hello.txt")),
        "{root}"
    );
    let resp = http
        .get(c.path(&format!("/{name}/workspace/artifacts/hello.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.bytes().await.unwrap().is_empty());
    let resp = http
        .put(c.path(&format!("/{name}/workspace/file-uploads/data.csv")))
        .body("a,b\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = http
        .get(c.path(&format!("/{name}/workspace.tar.gz")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let gz = resp.bytes().await.unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
    let paths: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        paths.iter().any(|p| p == "file-uploads/data.csv"),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p == "artifacts/hello.txt"),
        "{paths:?}"
    );

    // A switch of workflow: the session restarts (a new Job, the same claim) in the new
    // workflow, cloned by the keeper, its conversation resumed and the workflow's startup
    // prompt given; its commands are listed.
    let flows = tempfile::tempdir().unwrap();
    let flows_url = crate::workflows::repo(
        flows.path(),
        "flows",
        &[
            (
                "review/.ambient/ambient.json",
                r#"{"name":"Review","startupPrompt":"Startup of the review workflow in a pod."}"#,
            ),
            ("review/.claude/commands/check.md", "Check the change\n"),
        ],
    );
    let resp = http
        .post(c.path(&format!("/{name}/workflow")))
        .json(&json!({"gitUrl": flows_url, "path": "review"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let switched = viewer
        .events_until(
            Duration::from_secs(90),
            |e| matches!(&e.event, SessionEvent::Workflow(w) if w.name == "Review" && w.started),
        )
        .await;
    let switched_on = viewer
        .events_until(Duration::from_secs(60), |e| {
            matches!(e.event, SessionEvent::TurnResult(_))
        })
        .await;
    assert!(
        switched
            .iter()
            .chain(&switched_on)
            .any(|e| matches!(&e.event, SessionEvent::AgentStarted(a) if a.resumed)),
        "{switched:?}"
    );
    assert!(
        !switched
            .iter()
            .any(|e| is_phase(e, &["Stopped", "Failed", "Completed"])),
        "{switched:?}"
    );
    assert!(jobs.get_opt(&job_name(&name, 2)).await.unwrap().is_some());
    assert!(mock.requests().iter().any(|r| {
        let body = r.body.to_string();
        body.contains("Startup of the review workflow in a pod.")
            && body.contains("Please create hello.txt")
    }));
    let meta: serde_json::Value = http
        .get(c.path(&format!("/{name}/workflow/metadata")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["commands"][0]["name"], "check", "{meta}");

    // Forked after its first turn: the fork's claim is a clone of the session's (the
    // kubelet copies it, as a CSI driver clones a volume), and its agent knows that turn
    // and nothing after it.
    let resp = http
        .post(c.path(&format!("/{name}/fork")))
        .json(&json!({"turn": 1, "prompt": "recall"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let fork = resp.json::<serde_json::Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut fork_viewer = c.viewer(&fork, 0).await;
    let forked = fork_viewer
        .events_until(Duration::from_secs(90), |e| {
            matches!(e.event, SessionEvent::TurnResult(_))
        })
        .await;
    assert!(
        forked
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::TurnResult(t)
            if t.text.as_deref() == Some("I remember: Please create hello.txt"))),
        "{forked:?}"
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), &c.project);
    let claim_name = operator::cluster::build::workspace_claim_name(&fork);
    let source = claims
        .get(&claim_name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .data_source;
    assert_eq!(
        source.map(|s| s.name),
        Some(operator::cluster::build::workspace_claim_name(&name))
    );
    assert!(
        c.kubelet
            .workspace_dir(&claim_name)
            .join("artifacts/hello.txt")
            .exists()
    );
    let resp = http
        .post(c.path(&format!("/{fork}/stop")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());

    let resp = c
        .server
        .http
        .post(c.path(&format!("/{name}/stop")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let end = viewer
        .events_until(Duration::from_secs(90), |e| {
            is_phase(e, &["Stopped", "Failed", "Completed"])
        })
        .await;
    assert!(is_phase(end.last().unwrap(), &["Stopped"]), "{end:?}");
    assert_eq!(
        c.session(&name).await.status.unwrap().stopped_reason,
        Some(model::session::StoppedReason::User)
    );
    c.finish().await;
}

/// Waits until the viewer has seen some of the agent's streamed text.
async fn until_streaming(viewer: &mut crate::common::Viewer) -> Vec<model::protocol::StoredEvent> {
    viewer
        .events_until(WAIT, |e| matches!(e.event, SessionEvent::AgentDelta(_)))
        .await
}

/// Scenario 2: stopped during a slow reply, the session is Stopped once no pod is left; its
/// workspace claim stays, and its files are served by a files runner started on demand
/// (one container, no credentials) until the session runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_a_slow_reply_ends_the_pod_and_keeps_the_workspace() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let c = Cluster::start("k8s-stop", Some(&mock.url())).await;
    let name = c.create("slow 400").await;
    let mut viewer = c.viewer(&name, 0).await;
    until_streaming(&mut viewer).await;
    let pod = c.running_pod(&name).await;
    let resp = c
        .server
        .http
        .post(c.path(&format!("/{name}/stop")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let events = viewer
        .events_until(WAIT, |e| is_phase(e, &["Stopped", "Failed", "Completed"]))
        .await;
    assert!(is_phase(events.last().unwrap(), &["Stopped"]), "{events:?}");
    assert!(c.kubelet.pid(&pod).is_none(), "the runner process ended");
    until("no pod left", || async {
        c.pods_of(&name).await.is_empty().then_some(())
    })
    .await;
    let claim = operator::cluster::build::workspace_claim_name(&name);
    assert!(
        Api::<PersistentVolumeClaim>::namespaced(c.client.clone(), &c.project)
            .get_opt(&claim)
            .await
            .unwrap()
            .is_some()
    );
    let kept = std::fs::read_dir(c.kubelet.claim_dir(&claim))
        .unwrap()
        .count();
    assert!(kept > 0, "the workspace's files stay");

    // Its files are still served: the request starts a files runner on the claim (a Job of
    // one container, no credentials keeper), and waits for it.
    let http = &c.server.http;
    let resp = http
        .get(c.path(&format!("/{name}/workspace")))
        .send()
        .await
        .unwrap();
    if resp.status() != 200 {
        let jobs =
            Api::<k8s_openapi::api::batch::v1::Job>::namespaced(c.client.clone(), &c.project)
                .list(&Default::default())
                .await
                .unwrap();
        panic!(
            "{}: {}; annotations {:?}, status {:?}, jobs {:?}",
            resp.status(),
            resp.text().await.unwrap(),
            c.session(&name).await.metadata.annotations,
            c.pods_of(&name)
                .await
                .iter()
                .map(|p| c.kubelet.log(&p.uid().unwrap_or_default(), "runner"))
                .collect::<Vec<_>>(),
            jobs.items
                .iter()
                .map(|j| (j.name_any(), j.status.clone()))
                .collect::<Vec<_>>(),
        );
    }
    let root: serde_json::Value = resp.json().await.unwrap();
    assert!(
        root["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|e| e["name"] == "artifacts")),
        "{root}"
    );
    let files_pods: Vec<Pod> = c
        .pods_of(&name)
        .await
        .into_iter()
        .filter(|p| {
            p.labels()
                .contains_key(operator::cluster::build::FILES_LABEL)
        })
        .collect();
    assert_eq!(files_pods.len(), 1, "one files runner");
    let spec = files_pods[0].spec.clone().unwrap();
    assert_eq!(spec.containers.len(), 1, "no credentials keeper");
    assert_eq!(
        spec.containers[0].args.as_deref(),
        Some(&["files".to_owned()][..])
    );
    let env: Vec<String> = spec.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert!(
        !env.iter()
            .any(|n| n.contains("API_KEY") || n.contains("KEEPER") || n.contains("GITHUB")),
        "{env:?}"
    );
    let resp = http
        .put(c.path(&format!("/{name}/workspace/file-uploads/later.txt")))
        .body("mango\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    assert_eq!(
        std::fs::read(
            c.kubelet
                .workspace_dir(&claim)
                .join("file-uploads/later.txt")
        )
        .unwrap(),
        b"mango\n"
    );
    assert_eq!(c.session(&name).await.phase(), model::Phase::Stopped);
    let export: serde_json::Value = http
        .get(c.path(&format!("/{name}/export")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seen = export["events"].as_array().map_or(0, Vec::len) as u64;
    // Continued, the session's run serves its files: the files runner's Job goes.
    let resp = http
        .post(c.path(&format!("/{name}/messages")))
        .json(&serde_json::json!({"text": "hello again"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let mut viewer = c.viewer(&name, seen).await;
    let events = viewer
        .events_until(WAIT, |e| {
            matches!(&e.event, model::protocol::SessionEvent::TurnResult(_))
                || is_phase(e, &["Failed", "Completed"])
        })
        .await;
    assert!(
        matches!(
            events.last().map(|e| &e.event),
            Some(model::protocol::SessionEvent::TurnResult(_))
        ),
        "the continued run answers: {events:?}"
    );
    until("the files runner's Job gone", || async {
        let jobs =
            Api::<k8s_openapi::api::batch::v1::Job>::namespaced(c.client.clone(), &c.project)
                .list(
                    &kube::api::ListParams::default().labels(operator::cluster::build::FILES_LABEL),
                )
                .await
                .unwrap();
        jobs.items.is_empty().then_some(())
    })
    .await;
    let files_uid = files_pods[0].uid().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c
        .kubelet
        .running_pods()
        .iter()
        .any(|p| p.contains("-files-"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the files runner still runs: {}",
            c.kubelet.log(&files_uid, "runner")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.finish().await;
}

/// Scenario 4: a runner killed, one killed for memory, and one without credentials each
/// fail with their reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_oom_and_unconfigured_runners_fail_with_their_reasons() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let c = Cluster::start("k8s-fail", Some(&mock.url())).await;
    let killed = c.create("slow 400").await;
    let mut viewer = c.viewer(&killed, 0).await;
    until_streaming(&mut viewer).await;
    let pod = c.running_pod(&killed).await;
    assert!(c.kubelet.kill(&pod));
    let events = viewer
        .events_until(WAIT, |e| is_phase(e, &["Failed", "Completed"]))
        .await;
    assert!(is_phase(events.last().unwrap(), &["Failed"]), "{events:?}");
    let (reason, message) = c.ready(&killed).await;
    assert_eq!(reason, "RunnerExit");
    assert!(message.contains("code 137"), "{message}");

    // A timeout stops a running agent, saying so.
    let resp = c
        .server
        .http
        .post(c.path(""))
        .json(&json!({"stopOnRunFinished": true, "initialPrompt": "slow 400", "timeout": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let late = resp.json::<serde_json::Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();

    let oom = c.create("slow 400").await;
    let mut viewer = c.viewer(&oom, 0).await;
    until_streaming(&mut viewer).await;
    let pod = c.running_pod(&oom).await;
    assert!(c.kubelet.oom(&pod));
    viewer
        .events_until(WAIT, |e| is_phase(e, &["Failed", "Completed"]))
        .await;
    assert_eq!(c.ready(&oom).await.0, "OOMKilled");
    let mut viewer = c.viewer(&late, 0).await;
    viewer
        .events_until(WAIT, |e| is_phase(e, &["Stopped", "Failed", "Completed"]))
        .await;
    let s = c.session(&late).await;
    assert_eq!(s.phase(), model::Phase::Stopped);
    assert_eq!(
        s.status.unwrap().stopped_reason,
        Some(model::session::StoppedReason::Timeout)
    );
    c.finish().await;

    // An image the kubelet cannot pull: Failed with the kubelet's reason.
    let unpullable = Cluster::start_with(
        "k8s-image",
        Some(&mock.url()),
        "localhost/no-such-image:latest",
        None,
    )
    .await;
    let name = unpullable.create("say hi").await;
    let mut viewer = unpullable.viewer(&name, 0).await;
    viewer
        .events_until(WAIT, |e| is_phase(e, &["Failed", "Completed"]))
        .await;
    let (reason, message) = unpullable.ready(&name).await;
    assert_eq!(reason, "ImagePullBackOff", "{message}");
    assert!(message.contains("no-such-image"), "{message}");
    unpullable.finish().await;

    // A project without model credentials: the runner stops at once, saying so.
    let bare = Cluster::start("k8s-bare", None).await;
    let name = bare.create("say hi").await;
    let mut viewer = bare.viewer(&name, 0).await;
    viewer
        .events_until(WAIT, |e| is_phase(e, &["Failed", "Completed"]))
        .await;
    let (reason, message) = bare.ready(&name).await;
    assert_eq!(reason, "PrerequisiteFailed", "{message}");
    assert!(
        message.contains("ANTHROPIC"),
        "the log's tail says what is missing: {message}"
    );
    bare.finish().await;
}

/// Scenario 6: the operator restarted mid-run makes no second Job; the server restarted
/// mid-run loses and repeats no event (the runner reconnects and re-sends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_the_operator_and_the_server_lose_nothing() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let mut c = Cluster::start("k8s-restart", Some(&mock.url())).await;
    let name = c.create("slow 24").await;
    let mut viewer = c.viewer(&name, 0).await;
    until_streaming(&mut viewer).await;
    c.stop_operator().await;
    c.start_operator();
    c.restart_server().await;
    let mut viewer = c.viewer(&name, 0).await;
    let events = viewer
        .events_until(Duration::from_secs(60), |e| {
            is_phase(e, &["Completed", "Failed", "Stopped"])
        })
        .await;
    assert!(
        is_phase(events.last().unwrap(), &["Completed"]),
        "{events:?}"
    );
    gap_free(&events);
    let chunks: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::AgentDelta(d) => Some(d.text.as_str()),
            _ => None,
        })
        .collect();
    let text = chunks.concat();
    for i in 1..=24 {
        assert_eq!(
            text.matches(&format!("chunk {i} ")).count(),
            1,
            "chunk {i} once in {text:?}"
        );
    }
    let jobs = Api::<Job>::namespaced(c.client.clone(), &c.project)
        .list(&ListParams::default().labels(&format!("{SESSION_LABEL}={name}")))
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1, "one Job for the one run");
    c.finish().await;
}

/// A message sent as a run ends (its runner gone, the operator not yet told) is answered by
/// the next run: the server, which keeps the log, says in the status that a message waits;
/// the operator's plan (the same rule as local mode's) continues the Completed session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_as_a_run_ends_is_answered_by_the_next_run() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let mut c = Cluster::start("k8s-late", Some(&mock.url())).await;
    let name = c.create("Say hello").await;
    let mut viewer = c.viewer(&name, 0).await;
    viewer
        .events_until(Duration::from_secs(60), |e| is_phase(e, &["Running"]))
        .await;
    let pod = c.running_pod(&name).await;
    c.stop_operator().await;
    // The runner ends its turn and exits; nobody tells the session yet.
    until("the first runner's exit", || {
        let gone = c.kubelet.pid(&pod).is_none();
        async move { gone.then_some(()) }
    })
    .await;
    let resp = c
        .server
        .http
        .post(c.path(&format!("/{name}/messages")))
        .json(&json!({"text": "And one more thing"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let sent: u64 = resp.json::<serde_json::Value>().await.unwrap()["seq"]
        .as_u64()
        .expect("the message's seq");
    c.start_operator();
    let first = viewer
        .events_until(Duration::from_secs(60), |e| {
            is_phase(e, &["Completed", "Failed"])
        })
        .await;
    assert!(is_phase(first.last().unwrap(), &["Completed"]), "{first:?}");
    let next = viewer
        .events_until(Duration::from_secs(90), |e| {
            is_phase(e, &["Completed", "Failed"])
        })
        .await;
    assert!(is_phase(next.last().unwrap(), &["Completed"]), "{next:?}");
    assert!(
        next.iter().any(|e| e.seq > sent
            && matches!(
                &e.event,
                SessionEvent::AgentMessage(_) | SessionEvent::AgentDelta(_)
            )),
        "the next run answered the message: {next:?}"
    );
    let st = c.session(&name).await.status.unwrap();
    assert_eq!(st.run_generation, Some(2));
    assert_eq!(st.unhandled_messages, None);
    c.finish().await;
}

/// Scenario 7: a session applied with kubectl runs like one made in the UI; deleting it
/// removes its Job, pods, Secret and claim, and closes its viewers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_applied_with_kubectl_runs_and_its_deletion_removes_everything() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let c = Cluster::start("k8s-apply", Some(&mock.url())).await;
    let manifest = c.dir.path().join("session.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: vteam.ambient-code/v1alpha1\nkind: AgenticSession\nmetadata:\n  name: applied\n  namespace: {}\nspec:\n  stopOnRunFinished: true\n  initialPrompt: Please create hello.txt\n",
            c.project
        ),
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig())
            .args(args)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    let mut viewer = c.viewer("applied", 0).await;
    let events = viewer
        .events_until(Duration::from_secs(90), |e| {
            is_phase(e, &["Completed", "Failed"])
        })
        .await;
    assert!(
        is_phase(events.last().unwrap(), &["Completed"]),
        "{events:?}"
    );
    let claim = operator::cluster::build::workspace_claim_name("applied");
    assert!(
        c.kubelet
            .workspace_dir(&claim)
            .join("artifacts/hello.txt")
            .is_file()
    );

    kubectl(&[
        "delete",
        "-n",
        &c.project,
        "agenticsession",
        "applied",
        "--wait=false",
    ]);
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            if viewer.client.recv().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the viewer is closed");
    let (jobs, secrets, claims) = (
        Api::<Job>::namespaced(c.client.clone(), &c.project),
        Api::<Secret>::namespaced(c.client.clone(), &c.project),
        Api::<PersistentVolumeClaim>::namespaced(c.client.clone(), &c.project),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let job = jobs.get_opt(&job_name("applied", 1)).await.unwrap();
        let secret = secrets
            .get_opt(&token_secret_name("applied"))
            .await
            .unwrap();
        let pvc = claims.get_opt(&claim).await.unwrap();
        let pods = c.pods_of("applied").await;
        if job.is_none() && secret.is_none() && pvc.is_none() && pods.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left: job {} secret {} pvc {} pods {}",
            job.is_some(),
            secret.is_some(),
            pvc.is_some(),
            pods.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.finish().await;
}

/// The command-line client and a project's view key against Kubernetes mode: the same
/// commands as in local mode (create, follow the log until Completed, export), and the
/// same refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_a_view_key_work_in_kubernetes_mode() {
    use crate::cli::{login, run, text};
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let c = Cluster::start("k8s-cli", Some(&mock.url())).await;
    let home = tempfile::tempdir().unwrap();
    let config = login(&c.server, home.path(), &c.server.key).await;
    let p = c.project.as_str();

    let out = run(
        &config,
        &[
            "-p",
            p,
            "sessions",
            "create",
            "--batch",
            "create hello.txt",
            "-o",
            "json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let name = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run(&config, &["-p", p, "logs", "-f", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("phase Creating") && printed.contains("phase Completed"),
        "{}",
        text(&out)
    );
    let out = run(&config, &["-p", p, "export", &name]).await;
    let export: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        export["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{}",
        text(&out)
    );

    // A view key of this project: reads, is refused what edit may do, sees no other project.
    let made: serde_json::Value = c
        .server
        .http
        .post(c.server.url(&format!("/api/projects/{p}/keys")))
        .json(&json!({"name": "carol", "role": "view"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let carol_home = tempfile::tempdir().unwrap();
    let carol = login(&c.server, carol_home.path(), made["key"].as_str().unwrap()).await;
    let out = run(&carol, &["-p", p, "sessions", "list"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&name),
        "{}",
        text(&out)
    );
    let out = run(&carol, &["-p", p, "logs", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    for refused in [
        vec!["-p", p, "stop", &name],
        vec!["-p", p, "send", &name, "hello"],
        vec!["-p", p, "continue", &name],
    ] {
        let out = run(&carol, &refused).await;
        assert_eq!(out.status.code(), Some(4), "{refused:?}: {}", text(&out));
    }
    let out = run(&carol, &["-p", "default", "sessions", "list"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = run(&carol, &["projects", "list", "-o", "json"]).await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    c.finish().await;
}

/// The credentials of a runner pod live in its second container. The agent (a scripted
/// model running shell commands in the runner's container) reads every process environment
/// and command line it can see, its own environment, and calls the keeper's interface
/// without the keeper token: no model key, no git token, no keeper process, a refusal. Its
/// work still reaches the remote and a pull request through the keeper (which cloned the
/// repository with the token and pushed from its own repository), and the keeper exits
/// with its runner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_pod_the_agent_finds_no_credential_and_the_keeper_delivers_its_work() {
    agent_in_a_pod(false).await;
}

/// The same in containers from the runner image `make images` built, under the pod's
/// security context (uid 1000, read-only root, no capabilities, no privilege escalation,
/// the default seccomp profile, memory limits), each container in its own process
/// namespace, the runner reaching the server by its Service name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_containers_the_agent_finds_no_credential_and_the_keeper_delivers_its_work() {
    agent_in_a_pod(true).await;
}

async fn agent_in_a_pod(containers: bool) {
    use crate::common::forge::{ForgeMock, bare_path, bare_repo, branches, git};
    const MODEL_KEY: &str = "sk-keeper-test-0123456789";
    const GIT_TOKEN: &str = "ghp_keeper_test_0123456789";
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let repos = tempfile::tempdir().unwrap();
    let c = if containers {
        Cluster::in_containers("k8s-pod", vec![repos.path().to_owned()]).await
    } else {
        Cluster::start("k8s-keeper", None).await
    };
    let forge = ForgeMock::start().await;
    c.put_runner_secrets(json!({
        "ANTHROPIC_BASE_URL": mock.url(), "ANTHROPIC_API_KEY": MODEL_KEY,
        "GITHUB_TOKEN": GIT_TOKEN, "GITHUB_API_URL": forge.url,
    }))
    .await;
    let app = bare_repo(repos.path(), "acme", "app", None);
    if containers {
        // The keeper runs as the pod's uid, as it would against a forge's repository.
        let chown = std::process::Command::new("chown")
            .args(["-R", "1000:1000"])
            .arg(repos.path())
            .status()
            .unwrap();
        assert!(chown.success());
    }
    // Every environment and command line it can read; then every port listening on
    // loopback, asked for the keeper's interface without its token (the agent has no
    // curl in the runner image: node, which it has).
    let scan = r#"node -e 'const fs=require("fs");const ports=new Set();for(const l of fs.readFileSync("/proc/net/tcp","utf8").split("\n").slice(1)){const f=l.trim().split(/\s+/);if(f[3]==="0A"&&(f[1].startsWith("0100007F:")||f[1].startsWith("00000000:")))ports.add(parseInt(f[1].split(":")[1],16));}(async()=>{for(const p of ports){const u="http://127.0.0.1:"+p;const code=async(path,opt)=>{try{const r=await fetch(u+path,{...opt,signal:AbortSignal.timeout(2000)});return r.status}catch(e){return 0}};const c=await code("/v1/clone",{method:"POST",headers:{"content-type":"application/json"},body:JSON.stringify({source:{repo:0}})});console.log("port "+p+" hello="+await code("/v1/hello")+" clone="+c)}})()'"#;
    let command = format!(
        "echo work > notes.md; echo UID $(id -u); \
        echo ENVIRON; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do \
          echo \"== $f\"; tr '\\0' '\\n' < $f; echo; done 2>&1; echo END-PROC; \
        echo ENV; env; \
        echo KEEPER; {scan}; \
        echo PROCS; ls /proc | grep -c '^[0-9]'"
    );
    let resp = c
        .server
        .http
        .post(c.path(""))
        .json(&json!({
            "stopOnRunFinished": true,
            "initialPrompt": format!("run: {command}"),
            "repos": [{"url": app, "autoPush": true, "provider": "github"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let name = resp.json::<serde_json::Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut viewer = c.viewer(&name, 0).await;
    let events = viewer
        .events_until(Duration::from_secs(120), |e| {
            is_phase(e, &["Completed", "Failed"])
        })
        .await;
    assert!(
        is_phase(events.last().unwrap(), &["Completed"]),
        "{events:?}"
    );
    let out: String = events
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::ToolResult(r) => Some(r.content.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(out.contains("END-PROC") && out.contains("PROCS"), "{out}");
    // No credential anywhere the agent looks.
    for secret in [
        MODEL_KEY,
        GIT_TOKEN,
        "GITHUB_TOKEN=",
        "ANTHROPIC_AUTH_TOKEN=",
    ] {
        assert!(!out.contains(secret), "the agent saw {secret}:\n{out}");
    }
    // The keeper's process is in another process namespace: not among those it sees.
    // (The prompt itself, in the runner's environment, holds "END-PROC" too.)
    let procs = out.split("\nEND-PROC\n").next().unwrap_or_default();
    assert!(procs.contains("== /proc/1/cmdline"), "{out}");
    assert!(
        !procs.lines().any(|l| l.trim() == "keeper"),
        "the agent sees the keeper's process:\n{procs}"
    );
    // Its interface, wherever the agent looks for it, refuses whoever lacks the keeper
    // token; nothing on loopback hands out the proxy's token or clones for it.
    let pod = c.pods_of(&name).await.remove(0).name_any();
    let keeper = c.kubelet.keeper_port(&pod).expect("the pod's keeper port");
    assert!(
        out.lines()
            .any(|l| l == format!("port {keeper} hello=401 clone=401")),
        "keeper on {keeper}:\n{out}"
    );
    assert!(
        !out
            .lines()
            .any(|l| l.starts_with("port ") && (l.contains("hello=200") || l.contains("clone=200"))),
        "{out}"
    );
    if containers {
        // Its container runs as the pod's uid, and the runner (pid 1 there) is not
        // dumpable: its environment is closed to the agent.
        assert!(out.contains("UID 1000"), "{out}");
        let runner = procs
            .split("== /proc/1/environ")
            .nth(1)
            .and_then(|rest| rest.lines().nth(1))
            .unwrap_or_default();
        assert!(runner.contains("Permission denied"), "{procs}");
    }

    // The work was pushed and proposed by the keeper, with the token.
    let branch = format!("ambient/{name}");
    assert_eq!(branches(&app), vec![branch.clone(), "main".to_owned()]);
    let files = git(&bare_path(&app), &["ls-tree", "--name-only", &branch]);
    assert!(files.lines().any(|l| l == "notes.md"), "{files}");
    let push = events.iter().find_map(|e| match &e.event {
        SessionEvent::GitPush(p) => Some(p.clone()),
        _ => None,
    });
    assert_eq!(
        push.expect("a push event").commit,
        git(&bare_path(&app), &["rev-parse", &branch]).trim()
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::PullRequest(p) if p.number == 42)),
        "{events:?}"
    );
    let calls = forge.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].headers["authorization"].to_str().unwrap(),
        format!("Bearer {GIT_TOKEN}")
    );
    // Both containers ended, the keeper with its runner.
    let pod = until("the pod's containers end", || async {
        let pods = c.pods_of(&name).await;
        let pod = pods.into_iter().next()?;
        let statuses = pod.status.as_ref()?.container_statuses.clone()?;
        let ended = statuses.len() == 2
            && statuses
                .iter()
                .all(|s| s.state.as_ref().is_some_and(|st| st.terminated.is_some()));
        ended.then_some(pod)
    })
    .await;
    let statuses = pod.status.unwrap().container_statuses.unwrap();
    for s in &statuses {
        let code = s
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code;
        assert_eq!(code, 0, "{} exited {code}", s.name);
    }
    c.finish().await;
}

/// "Run N" in a cluster: each attempt's pod commits its work and reports it, and pushes
/// nothing; keeping one marks it kept (a spec change through the API server) and starts
/// its next pod without the hold, whose keeper pushes and proposes the work. The other is
/// left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_hold_their_work_in_their_pods_until_one_is_kept() {
    use crate::common::forge::{ForgeMock, bare_repo, branches};
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let repos = tempfile::tempdir().unwrap();
    let c = Cluster::start("k8s-attempts", None).await;
    let forge = ForgeMock::start().await;
    c.put_runner_secrets(json!({
        "ANTHROPIC_BASE_URL": mock.url(), "ANTHROPIC_API_KEY": "sk-attempts",
        "GITHUB_TOKEN": "ghp_attempts_0123456789", "GITHUB_API_URL": forge.url,
    }))
    .await;
    let app = bare_repo(repos.path(), "acme", "app", None);
    let attempts = c
        .server
        .url(&format!("/api/projects/{}/attempts", c.project));
    let resp = c
        .server
        .http
        .post(&attempts)
        .json(&json!({"attempts": 2, "session": {
            "initialPrompt": "Please create notes.md",
            "repos": [{"url": app, "autoPush": true, "provider": "github"}],
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let created: model::api::AttemptsCreated = resp.json().await.unwrap();
    assert_eq!(created.sessions.len(), 2);
    for name in &created.sessions {
        let mut viewer = c.viewer(name, 0).await;
        let events = viewer
            .events_until(Duration::from_secs(120), |e| {
                is_phase(e, &["Completed", "Failed"])
            })
            .await;
        assert!(
            is_phase(events.last().unwrap(), &["Completed"]),
            "{events:?}"
        );
        let held = events.iter().find_map(|e| match &e.event {
            SessionEvent::Changes(ch) => Some(ch.clone()),
            _ => None,
        });
        let held = held.unwrap_or_else(|| panic!("{name} reported no changes: {events:?}"));
        assert!(held.held && held.diff.contains("notes.md"), "{held:?}");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.event, SessionEvent::GitPush(_))),
            "{events:?}"
        );
    }
    assert_eq!(branches(&app), vec!["main".to_owned()], "an attempt pushed");
    assert!(forge.calls().is_empty());

    let kept = created.sessions[0].clone();
    let resp = c
        .server
        .http
        .post(format!("{attempts}/{}/keep", created.group))
        .json(&json!({"session": kept}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let group: model::api::AttemptGroup = resp.json().await.unwrap();
    assert_eq!(group.kept.as_deref(), Some(kept.as_str()));
    let mut viewer = c.viewer(&kept, 0).await;
    let events = viewer
        .events_until(Duration::from_secs(120), |e| {
            matches!(e.event, SessionEvent::PullRequest(_))
        })
        .await;
    let branch = format!("ambient/{kept}");
    assert_eq!(branches(&app), vec![branch, "main".to_owned()]);
    assert_eq!(forge.calls().len(), 1);
    let spec = c.session(&kept).await.spec;
    assert!(spec.attempt.is_some_and(|a| a.kept), "kept in its spec");
    assert!(
        events
            .iter()
            .filter(|e| matches!(e.event, SessionEvent::UserMessage(_)))
            .count()
            == 1,
        "the delivering run was asked nothing: {events:?}"
    );
    c.finish().await;
}
