//! Kubernetes mode on the test API server (`make bench-k8s`): from the create request to
//! the `Running` phase event seen by a viewer, through the AgenticSession, the operator (in
//! this process), the Job, the test kubelet starting the real runner in its "pod", the
//! runner's connection with its token from the run's Secret, the server recording it and the
//! operator reading it. `claude` is a stand-in (`cat`), so its own start-up is excluded, as
//! in the local figure (`BENCH_CONTAINERS=1`: the pods run as containers from the runner
//! image, `make images`, reaching the server by its Service name), and that time cut into
//! its stages as watches of the run's Job and Pod see them. Then what a Kubernetes identity costs a request: listing the
//! project's sessions with the owner's key, with a user's Kubernetes token (its review and
//! role kept, the default), and with nothing kept (a TokenReview and the access reviews on
//! every request). Needs `AMBIENT_TEST_KUBECONFIG`.

use std::collections::HashMap;
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
    // When each run's Job and Pod first appear and the Pod is first Running, as watches of
    // this bench see them: where the time between create and connected goes.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<String, Marks>::new()));
    let marks = tokio::spawn(mark_stages(client.clone(), project.clone(), seen.clone()));
    let mut samples = Vec::new();
    let mut stages: [Vec<Duration>; 5] = Default::default();
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
        let created = Instant::now();
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
        let connected = Instant::now();
        samples.push(connected - t);
        let m = seen.lock().unwrap().get(&name).cloned().unwrap_or_default();
        if let (Some(job), Some(pod), Some(running)) = (m.job, m.pod, m.running) {
            let steps = [t, created, job, pod, running, connected];
            for (k, w) in steps.windows(2).enumerate() {
                stages[k].push(w[1].saturating_duration_since(w[0]));
            }
        }
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
    for (what, samples) in [
        "  1. create request answered (the AgenticSession made)",
        "  2. then the Job seen (the operator's reconcile)",
        "  3. then its Pod seen (the cluster's Job controller)",
        "  4. then the Pod Running (the test kubelet started its containers)",
        "  5. then the runner connected (runner start-up, its connection, the phase recorded)",
    ]
    .into_iter()
    .zip(stages)
    {
        if !samples.is_empty() {
            testkit::report(what, samples);
        }
    }
    marks.abort();
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

/// When a session's run was first seen at each stage.
#[derive(Clone, Copy, Default)]
struct Marks {
    job: Option<Instant>,
    pod: Option<Instant>,
    running: Option<Instant>,
}

/// Watches the project's Jobs and Pods and marks, per session, the first sight of each.
async fn mark_stages(
    client: kube::Client,
    project: String,
    seen: std::sync::Arc<std::sync::Mutex<HashMap<String, Marks>>>,
) {
    use futures::StreamExt;
    use kube::ResourceExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let label = operator::cluster::build::SESSION_LABEL;
    let config = watcher::Config::default().labels(label);
    let jobs = watcher(
        kube::Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client.clone(), &project),
        config.clone(),
    )
    .applied_objects()
    .map(|j| j.map(|j| (j.labels().get(label).cloned(), None)));
    let pods = watcher(
        kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client, &project),
        config,
    )
    .applied_objects()
    .map(|p| {
        p.map(|p| {
            let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
            (
                p.metadata.labels.and_then(|l| l.get(label).cloned()),
                Some(phase),
            )
        })
    });
    let mut both = std::pin::pin!(futures::stream::select(jobs, pods));
    while let Some(item) = both.next().await {
        let Ok((Some(session), pod_phase)) = item else {
            continue;
        };
        let now = Instant::now();
        let mut seen = seen.lock().unwrap();
        let m = seen.entry(session).or_default();
        match pod_phase {
            None => {
                m.job.get_or_insert(now);
            }
            Some(phase) => {
                m.pod.get_or_insert(now);
                if phase == "Running" {
                    m.running.get_or_insert(now);
                }
            }
        }
    }
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
