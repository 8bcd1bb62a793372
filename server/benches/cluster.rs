//! Kubernetes mode on the test API server (`make bench-k8s`): from the create request to
//! the `Running` phase event seen by a viewer, through the AgenticSession, the operator (in
//! this process), the Job, the test kubelet starting the real runner in its "pod", the
//! runner's connection with its token from the run's Secret, the server recording it and the
//! operator reading it. `claude` is a stand-in (`cat`), so its own start-up is excluded, as
//! in the local figure (`BENCH_CONTAINERS=1`: the pods run as containers from the runner
//! image, `make images`, reaching the server by its Service name). Then what a Kubernetes identity costs a request: listing the
//! project's sessions with the owner's key, with a user's Kubernetes token (its review and
//! role kept, the default), and with nothing kept (a TokenReview and the access reviews on
//! every request). Needs `AMBIENT_TEST_KUBECONFIG`.

use std::time::{Duration, Instant};

use model::Phase;
use model::protocol::{ServerToBrowser, SessionEvent};
use operator::cluster::{ClusterConfig, controller};

fn release_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|d| d.parent()).unwrap().join(name)
}

#[tokio::main]
async fn main() {
    let kubeconfig: std::path::PathBuf = std::env::var_os("AMBIENT_TEST_KUBECONFIG")
        .expect("AMBIENT_TEST_KUBECONFIG: run through `make bench-k8s`")
        .into();
    let client = operator::cluster::connect(Some(&kubeconfig)).await.unwrap();
    operator::crd::apply(&client, "bench").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let claude = dir.path().join("fake-claude");
    std::fs::write(&claude, "#!/bin/sh\nexec cat > /dev/null\n").unwrap();
    std::fs::set_permissions(&claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut config = testkit::config(dir.path().join("data"), release_bin("runner"));
    config.mode = server::config::Mode::Kubernetes {
        kubeconfig: Some(kubeconfig.clone()),
    };
    config.local_driver = false;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spawned = testkit::spawn(config, testkit::leptos_options(), listener).await;
    let addr = spawned.addr.to_string();
    let key = testkit::install_secret(&dir.path().join("data")).unwrap();
    let http = testkit::client_with_key(&key);
    let project = format!("bench-connect-{}", std::process::id());
    http.post(format!("http://{addr}/api/projects"))
        .json(&serde_json::json!({"name": project}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    http.put(format!(
        "http://{addr}/api/projects/{project}/runner-secrets"
    ))
    .json(&serde_json::json!({"data": {"ANTHROPIC_API_KEY": "sk-bench"}}))
    .send()
    .await
    .unwrap()
    .error_for_status()
    .unwrap();
    // BENCH_CONTAINERS=1: runner pods in containers from the runner image (`make images`),
    // reaching the server by its Service name; otherwise as host processes.
    let in_containers = std::env::var("BENCH_CONTAINERS").is_ok_and(|v| v == "1");
    let service = "ambient-server.ambient-code.svc";
    let server_api_url = if in_containers {
        format!("http://{service}:{}/api", spawned.addr.port())
    } else {
        format!("http://{addr}/api")
    };
    if in_containers {
        // The pods' uid runs the stand-in from this (mounted) folder.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let containers = in_containers.then(|| testkit::kubelet::Containers {
        hosts: vec![(service.into(), "127.0.0.1".into())],
        mounts: vec![dir.path().to_owned()],
        env: vec![("AMBIENT_CLAUDE_BIN".into(), claude.display().to_string())],
    });
    let (stop_operator, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(controller::run(
        client.clone(),
        ClusterConfig {
            watch_namespace: Some(project.clone()),
            server_api_url,
            stop_grace_seconds: 2,
            ..ClusterConfig::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let kubelet = testkit::kubelet::Kubelet::start(
        client.clone(),
        testkit::kubelet::KubeletConfig {
            namespace: project.clone(),
            image: ClusterConfig::default().runner_image,
            runner_bin: release_bin("runner"),
            extra_env: vec![("AMBIENT_CLAUDE_BIN".into(), claude.display().to_string())],
            root: dir.path().join("kubelet"),
            containers,
        },
    );
    let mut samples = Vec::new();
    for i in 0..40 {
        let t = Instant::now();
        let resp = http
            .post(format!(
                "http://{addr}/api/projects/{project}/agentic-sessions"
            ))
            .json(&serde_json::json!({ "initialPrompt": format!("bench {i}") }))
            .send()
            .await
            .unwrap();
        let name = resp.json::<serde_json::Value>().await.unwrap()["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut ws = testkit::ViewerClient::connect(&addr, &key, &project, &name, 0)
            .await
            .unwrap();
        loop {
            if let ServerToBrowser::Event(e) = ws.recv().await.expect("open")
                && matches!(&e.event, SessionEvent::Phase(p) if p.phase == Phase::Running)
            {
                break;
            }
        }
        samples.push(t.elapsed());
        http.post(format!(
            "http://{addr}/api/projects/{project}/agentic-sessions/{name}/stop"
        ))
        .send()
        .await
        .unwrap();
    }
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    testkit::report(
        if in_containers {
            "Kubernetes mode, runner pods in containers: create to runner connected (claude excluded)"
        } else {
            "Kubernetes mode, runner pods as host processes: create to runner connected (claude excluded)"
        },
        samples,
    );
    people(&client, &kubeconfig, &addr, &key, &project, dir.path()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(kubelet);
    let _ = stop_operator.send(());
    let _ = operator.await;
    let _ = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&project, &Default::default())
        .await;
    let _ = spawned.stop.send(());
}

/// Lists the project's sessions as the owner, as alice with her role cached, and as alice
/// with nothing cached.
async fn people(
    client: &kube::Client,
    kubeconfig: &std::path::Path,
    addr: &str,
    owner_key: &str,
    project: &str,
    dir: &std::path::Path,
) {
    operator::cluster::project::apply_project_roles(client, "bench")
        .await
        .unwrap();
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench-alice"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ambient-project-edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), project)
        .create(&Default::default(), &binding)
        .await
        .unwrap();
    let tokens = std::fs::read_to_string(kubeconfig.with_file_name("tokens.csv")).unwrap();
    let alice = tokens
        .lines()
        .find(|l| l.split(',').nth(1) == Some("alice"))
        .and_then(|l| l.split(',').next())
        .expect("alice's token")
        .to_owned();
    let list = format!("http://{addr}/api/projects/{project}/agentic-sessions?limit=10");
    let measure = |http: reqwest::Client, url: String, n: usize| async move {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let resp = http.get(&url).send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.bytes().await.unwrap();
            samples.push(t.elapsed());
        }
        samples
    };
    // Warm up both identities (one review each), then measure.
    let owner = testkit::client_with_key(owner_key);
    let user = testkit::client_with_key(&alice);
    measure(owner.clone(), list.clone(), 5).await;
    measure(user.clone(), list.clone(), 5).await;
    testkit::report(
        "list 10 sessions, owner's key",
        measure(owner, list.clone(), 200).await,
    );
    testkit::report(
        "list 10 sessions, Kubernetes token, review and role kept",
        measure(user.clone(), list, 200).await,
    );
    // A second server that keeps nothing: every request is reviewed and its role asked.
    let mut config = testkit::config(dir.join("data-uncached"), release_bin("runner"));
    config.mode = server::config::Mode::Kubernetes {
        kubeconfig: Some(kubeconfig.to_owned()),
    };
    config.local_driver = false;
    config.access_cache = Duration::ZERO;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uncached = testkit::spawn(config, testkit::leptos_options(), listener).await;
    let url = format!(
        "http://{}/api/projects/{project}/agentic-sessions?limit=10",
        uncached.addr
    );
    measure(user.clone(), url.clone(), 5).await;
    testkit::report(
        "list 10 sessions, Kubernetes token, nothing kept (TokenReview + access reviews each time)",
        measure(user, url, 100).await,
    );
    let _ = uncached.stop.send(());
}
