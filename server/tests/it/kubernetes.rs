//! Kubernetes mode end to end on the test API server (`make unit` starts it; its kubeconfig
//! in `AMBIENT_TEST_KUBECONFIG`): the REST API writes `AgenticSession` resources, the
//! operator (in this process, watching one namespace) makes each run's Job, the test plays
//! the kubelet (it reports the pod's state) and the runner (a fake runner with the token
//! from the run's Secret, as the runner container reads it), and a viewer sees it all.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
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

fn kubeconfig() -> std::path::PathBuf {
    std::env::var_os("AMBIENT_TEST_KUBECONFIG")
        .unwrap_or_else(|| {
            panic!(
                "AMBIENT_TEST_KUBECONFIG is not set: this test needs the test API server; \
                 run it with `make unit` (or start it with tools/k8s/testenv.sh)"
            )
        })
        .into()
}

async fn client() -> Client {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig()).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = Client::try_from(config).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in operator::crd::crds() {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("ambient-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("the CRDs");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    client
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
        .json(&json!({"initialPrompt": "say hello"}))
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
