//! The operator at scale, on the test API server (`make bench-k8s`): 1,000 AgenticSessions
//! created at once in one project; the time until every one has its Job and the phase
//! `Creating`, and the operator's peak RSS (the `operator` binary in its own process, its
//! `VmHWM` read from /proc when the sessions are all created). Needs
//! `AMBIENT_TEST_KUBECONFIG` (the Makefile starts the test API server).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, PostParams};
use model::session::AgenticSessionSpec;
use model::{AgenticSession, Phase};

const SESSIONS: usize = 1000;

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let path = std::env::var("AMBIENT_TEST_KUBECONFIG")
        .expect("AMBIENT_TEST_KUBECONFIG: run through `make bench-k8s`");
    let client = operator::cluster::connect(Some(std::path::Path::new(&path)))
        .await
        .unwrap();
    operator::crd::apply(&client, "bench").await.unwrap();
    let ns = format!("bench-{}", std::process::id());
    let mut n = Namespace::default();
    n.metadata.name = Some(ns.clone());
    n.metadata.labels = Some(BTreeMap::from([(
        "ambient-code.io/managed".into(),
        "true".into(),
    )]));
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &n)
        .await
        .unwrap();

    let exe = std::env::current_exe().unwrap();
    let bin: PathBuf = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("operator");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build --release -p operator",
        bin.display()
    );
    let mut operator = tokio::process::Command::new(&bin)
        .env("KUBECONFIG", &path)
        .env("AMBIENT_WATCH_NAMESPACE", &ns)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = operator.id().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = vm_hwm_kib(pid);

    let sessions: Api<AgenticSession> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let start = Instant::now();
    // Created as a client would, eight at a time.
    let names: Vec<String> = (0..SESSIONS).map(|i| format!("s-{i:04}")).collect();
    for chunk in names.chunks(8) {
        let mut creates = Vec::new();
        for name in chunk {
            let s = AgenticSession::new(
                name,
                AgenticSessionSpec {
                    initial_prompt: Some(format!("task {name}")),
                    ..AgenticSessionSpec::default()
                },
            );
            let sessions = sessions.clone();
            creates.push(async move { sessions.create(&PostParams::default(), &s).await });
        }
        for r in futures::future::join_all(creates).await {
            r.unwrap();
        }
    }
    let created = start.elapsed();
    let done = loop {
        let jobs_made = jobs.list(&ListParams::default()).await.unwrap().items.len();
        let creating = sessions
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|s| s.phase() == Phase::Creating)
            .count();
        if jobs_made >= SESSIONS && creating >= SESSIONS {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "stuck: {jobs_made} Jobs, {creating} Creating"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let peak = vm_hwm_kib(pid);
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "{SESSIONS} sessions created in {:.1} s; every one with its Job and phase Creating after {:.1} s",
        created.as_secs_f64(),
        done.as_secs_f64()
    );
    println!(
        "operator peak RSS (VmHWM): {:.1} MiB (idle {:.1} MiB)",
        peak as f64 / 1024.0,
        idle as f64 / 1024.0
    );
    let _ = operator.start_kill();
    let _ = operator.wait().await;
    let _ = Api::<Namespace>::all(client)
        .delete(&ns, &Default::default())
        .await;
}
