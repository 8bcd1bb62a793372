//! The operator at scale, on the test API server (`make bench-k8s`): `BENCH_SESSIONS`
//! (default 5,000) AgenticSessions created at once in one project (sixteen creates in
//! flight); the time until every one has its Job and has left `Pending`, the operator's peak
//! RSS (the `operator` binary in its own process, its `VmHWM` read from /proc), and the
//! warnings and errors it logged. A fast kubelet (in this process) ends every runner pod the
//! Job controller makes as a run that succeeded (each container exit 0), so the sessions go
//! on to `Completed`; then the steady state: the operator's CPU time over 30 s with every
//! session finished, and its RSS. Needs `AMBIENT_TEST_KUBECONFIG` (the Makefile starts the
//! test API server).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use model::session::AgenticSessionSpec;
use model::{AgenticSession, Phase};

/// The operator's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14, stime 15.
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// Ends every runner pod of `ns` as a successful run: each container exits 0.
async fn fast_kubelet(pods: Api<Pod>) {
    let mut events = std::pin::pin!(
        watcher(pods.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    let mut done = std::collections::HashSet::new();
    // Sixteen status writes in flight.
    let writes = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    while let Some(Ok(pod)) = events.next().await {
        if !done.insert(pod.name_any()) {
            continue;
        }
        let Ok(permit) = writes.clone().acquire_owned().await else {
            break;
        };
        let pods = pods.clone();
        tokio::spawn(async move {
            let statuses: Vec<serde_json::Value> = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .map(|c| {
                    serde_json::json!({
                        "name": c.name, "image": "", "imageID": "", "ready": false, "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    })
                })
                .collect();
            let patch = serde_json::json!({"status": {"phase": "Succeeded", "containerStatuses": statuses}});
            let _ = pods
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
            drop(permit);
        });
    }
}

/// When the watches first saw each mark, from the start of the creates.
#[derive(Clone, Copy, Default)]
struct Marks {
    jobs_made: Option<Duration>,
    started: Option<Duration>,
    completed: Option<Duration>,
    jobs_finished: Option<Duration>,
}

/// Sets `mark` once `count` reaches `n`.
fn mark(
    marks: &Mutex<Marks>,
    at: Instant,
    count: usize,
    n: usize,
    mark: fn(&mut Marks) -> &mut Option<Duration>,
) {
    if count >= n {
        let mut m = marks.lock().unwrap();
        mark(&mut m).get_or_insert_with(|| at.elapsed());
    }
}

/// Follows the sessions' phases: past `Pending`, and `Completed` (a `Failed` one fails the
/// bench).
async fn observe_sessions(
    api: Api<AgenticSession>,
    n: usize,
    start: Instant,
    marks: Arc<Mutex<Marks>>,
) {
    let mut events = std::pin::pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    let mut phases: std::collections::HashMap<String, Phase> = Default::default();
    while let Some(Ok(s)) = events.next().await {
        let phase = s.phase();
        assert_ne!(phase, Phase::Failed, "session {} failed", s.name_any());
        phases.insert(s.name_any(), phase);
        let started = phases.values().filter(|p| **p != Phase::Pending).count();
        let completed = phases.values().filter(|p| **p == Phase::Completed).count();
        mark(&marks, start, started, n, |m| &mut m.started);
        mark(&marks, start, completed, n, |m| &mut m.completed);
    }
}

/// Follows the runs' Jobs: made, and finished (`completionTime` set).
async fn observe_jobs(api: Api<Job>, n: usize, start: Instant, marks: Arc<Mutex<Marks>>) {
    let mut events = std::pin::pin!(
        watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    let mut finished: std::collections::HashMap<String, bool> = Default::default();
    while let Some(Ok(j)) = events.next().await {
        let done = j
            .status
            .as_ref()
            .and_then(|s| s.completion_time.as_ref())
            .is_some();
        finished.insert(j.name_any(), done);
        mark(&marks, start, finished.len(), n, |m| &mut m.jobs_made);
        mark(
            &marks,
            start,
            finished.values().filter(|d| **d).count(),
            n,
            |m| &mut m.jobs_finished,
        );
    }
}

/// Waits until `what` of the marks is set, failing after `limit_s`.
async fn wait_for(
    marks: &Mutex<Marks>,
    start: Instant,
    limit_s: u64,
    what: impl Fn(&Marks) -> Option<Duration>,
    name: &str,
) -> Duration {
    loop {
        if let Some(at) = what(&marks.lock().unwrap()) {
            return at;
        }
        assert!(
            start.elapsed() < Duration::from_secs(limit_s),
            "stuck before {name}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    let sessions_n: usize = std::env::var("BENCH_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000);
    let log_path = std::env::temp_dir().join(format!("operator-bench-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut operator = tokio::process::Command::new(&bin)
        .env("KUBECONFIG", &path)
        .env("AMBIENT_WATCH_NAMESPACE", &ns)
        .env("RUST_LOG", "warn")
        .stderr(log.try_clone().unwrap())
        .stdout(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = operator.id().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = vm_hwm_kib(pid);

    let sessions: Api<AgenticSession> = Api::namespaced(client.clone(), &ns);
    let kubelet = tokio::spawn(fast_kubelet(Api::namespaced(client.clone(), &ns)));
    let marks = Arc::new(Mutex::new(Marks::default()));
    let ticks_at_start = cpu_ticks(pid);
    let start = Instant::now();
    let observers = [
        tokio::spawn(observe_sessions(
            sessions.clone(),
            sessions_n,
            start,
            marks.clone(),
        )),
        tokio::spawn(observe_jobs(
            Api::namespaced(client.clone(), &ns),
            sessions_n,
            start,
            marks.clone(),
        )),
    ];
    // Created as clients would, sixteen at a time.
    let names: Vec<String> = (0..sessions_n).map(|i| format!("s-{i:05}")).collect();
    for chunk in names.chunks(16) {
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
    // Every session with its Job and past Pending (Creating, or further on already), as
    // the watches see it: listing 5,000 sessions and Jobs every quarter second would be a
    // load on the two cores of its own, measured as the operator's.
    let all_jobs = wait_for(
        &marks,
        start,
        900,
        |m| m.jobs_made.zip(m.started).map(|(a, b)| a.max(b)),
        "every Job",
    )
    .await;
    let peak_burst = vm_hwm_kib(pid);
    let burst_ticks = cpu_ticks(pid) - ticks_at_start;
    let all_completed = wait_for(&marks, start, 1800, |m| m.completed, "every Completed").await;
    // The steady state: nothing left to do once the cluster's Job controller has marked
    // every Job finished (each of those changes is an event the operator reconciles).
    wait_for(
        &marks,
        start,
        1800,
        |m| m.jobs_finished,
        "every Job finished",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ticks_before = cpu_ticks(pid);
    let idle_window = Duration::from_secs(30);
    tokio::time::sleep(idle_window).await;
    let idle_ticks = cpu_ticks(pid) - ticks_before;
    let tick_hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let steady_rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let peak = vm_hwm_kib(pid);
    let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
    let errors = logged.lines().filter(|l| l.contains("ERROR")).count();
    let warnings = logged.lines().filter(|l| l.contains("WARN")).count();
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let m = *marks.lock().unwrap();
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    println!(
        "{sessions_n} sessions created in {:.1} s; every one with its Job after {:.1} s and past Pending after {:.1} s ({:.1} s); all Completed after {:.1} s",
        created.as_secs_f64(),
        secs(m.jobs_made),
        secs(m.started),
        all_jobs.as_secs_f64(),
        all_completed.as_secs_f64()
    );
    println!(
        "operator CPU in the burst: {:.1} s over {:.1} s",
        burst_ticks as f64 / tick_hz,
        all_jobs.as_secs_f64()
    );
    println!(
        "operator peak RSS (VmHWM): {:.1} MiB by the burst's end, {:.1} MiB overall (idle before {:.1} MiB); RSS in the steady state {:.1} MiB",
        peak_burst as f64 / 1024.0,
        peak as f64 / 1024.0,
        idle as f64 / 1024.0,
        steady_rss as f64 / 1024.0
    );
    println!(
        "operator CPU in the steady state ({sessions_n} Completed): {:.0} ms over {} s ({:.2} %)",
        idle_ticks as f64 / tick_hz * 1000.0,
        idle_window.as_secs(),
        idle_ticks as f64 / tick_hz / idle_window.as_secs_f64() * 100.0
    );
    println!(
        "operator log: {errors} errors, {warnings} warnings ({})",
        log_path.display()
    );
    kubelet.abort();
    for o in observers {
        o.abort();
    }
    let _ = operator.start_kill();
    let _ = operator.wait().await;
    let _ = Api::<Namespace>::all(client)
        .delete(&ns, &Default::default())
        .await;
}
