//! Kubernetes mode on the test API server (`make bench-k8s`): from the create request to
//! the `Running` phase event seen by a viewer, through the AgenticSession, the operator (in
//! this process), the Job, the test kubelet starting the real runner in its "pod", the
//! runner's connection with its token from the run's Secret, the server recording it and the
//! operator reading it. `claude` is a stand-in (`cat`), so its own start-up is excluded, as
//! in the local figure. Needs `AMBIENT_TEST_KUBECONFIG`.

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
    let (stop_operator, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(controller::run(
        client.clone(),
        ClusterConfig {
            watch_namespace: Some(project.clone()),
            server_api_url: format!("http://{addr}/api"),
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
        "Kubernetes mode: create to runner connected (claude excluded)",
        samples,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(kubelet);
    let _ = stop_operator.send(());
    let _ = operator.await;
    let _ = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
        .delete(&project, &Default::default())
        .await;
    let _ = spawned.stop.send(());
}
