//! Control-plane benchmarks (`make bench`, or `cargo bench -p server --bench control_plane`):
//!
//! 1. session list latency through the real HTTP router with 10,000 sessions in the store
//!    (first page, a search, a deep page);
//! 2. create-to-runner-connected latency in local mode: from the create request to the
//!    `Running` phase event seen by a viewer, with a stand-in for `claude` (`cat`) so the
//!    figure excludes the CLI's own start-up.
//!
//! Prints one line per figure; BENCHMARKS.md records them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use model::protocol::UserMessage;
use model::protocol::{Frame, ServerToBrowser, SessionEvent};
use model::runner_env::Credentials;
use model::session::{AgenticSessionSpec, AgenticSessionStatus};
use model::{AgenticSession, Phase};
use platform::records::NewProject;
use server::config::Resolved;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

fn release_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: `cargo build --release -p {name}` first (make bench does)",
        p.display()
    );
    p
}

fn config(data_dir: PathBuf, claude: Option<PathBuf>, credentials: Credentials) -> Resolved {
    let mut config = testkit::config(data_dir, release_bin("runner"));
    config.claude_bin = claude;
    config.models = vec!["claude-sonnet-4-6".into()];
    config.user = "bench".into();
    config.credentials = credentials;
    config
}

async fn start(config: Resolved) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spawned = testkit::spawn(config, testkit::leptos_options(), listener).await;
    (spawned.addr.to_string(), spawned.stop)
}

/// Fills the store with finished sessions (the driver has nothing to do with them).
async fn seed(data_dir: &std::path::Path, n: usize) {
    let services = testkit::local_services(data_dir).unwrap();
    let caller = platform::Caller::system();
    let project = NewProject {
        name: "default".into(),
        display_name: "Default".into(),
        description: String::new(),
    };
    services
        .records
        .create_project(&caller, project)
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..n {
        let mut s = AgenticSession::new(
            &format!("session-{i:08}"),
            AgenticSessionSpec {
                initial_prompt: Some(format!(
                    "task number {i}: refactor module {} and add tests",
                    i % 97
                )),
                display_name: Some(format!("Task {i}")),
                ..Default::default()
            },
        );
        s.metadata = ObjectMeta {
            name: s.metadata.name.clone(),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{i:08}")),
            creation_timestamp: Some(Time(Timestamp::now())),
            generation: Some(1),
            ..Default::default()
        };
        s.status = Some(AgenticSessionStatus {
            phase: Phase::Completed,
            ..Default::default()
        });
        let (services, caller) = (services.clone(), caller.clone());
        pending.push(tokio::spawn(async move {
            // As the server creates them: the record, then the prompt as the log's first event.
            let prompt = UserMessage {
                text: s.spec.initial_prompt.clone().unwrap_or_default(),
                sender: "bench".into(),
            };
            let uid = s.metadata.uid.clone().unwrap_or_default();
            services.records.create_session(&caller, s).await.unwrap();
            let log = services.log.open(&uid).await.unwrap();
            let event = SessionEvent::UserMessage(prompt);
            services.log.append(log, event).await.unwrap();
        }));
        if pending.len() == 256 {
            for p in pending.drain(..) {
                p.await.unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap();
    }
}

async fn list_latency() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    seed(dir.path(), 10_000).await;
    println!(
        "seeded 10,000 sessions in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (addr, stop) = start(config(dir.path().to_owned(), None, Credentials::default())).await;
    let http = reqwest::Client::new();
    for (what, query) in [
        ("list first page (limit 20)", "limit=20"),
        ("list with search (limit 20)", "search=module%2042&limit=20"),
        (
            "list deep page (offset 9000, limit 100)",
            "offset=9000&limit=100",
        ),
    ] {
        let url = format!("http://{addr}/api/projects/default/agentic-sessions?{query}");
        for _ in 0..50 {
            http.get(&url).send().await.unwrap().bytes().await.unwrap();
        }
        let mut samples = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let t = Instant::now();
            let resp = http.get(&url).send().await.unwrap();
            assert!(resp.status().is_success());
            resp.bytes().await.unwrap();
            samples.push(t.elapsed());
        }
        report(what, samples);
    }
    let _ = stop.send(());
}

async fn create_to_connected() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in for claude that starts instantly and never answers, so the figure is the
    // platform's own path (store, driver, spawn, runner start-up, WebSocket, hello).
    let claude = dir.path().join("fake-claude");
    std::fs::write(&claude, "#!/bin/sh\nexec cat > /dev/null\n").unwrap();
    std::fs::set_permissions(&claude, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let creds = Credentials {
        anthropic_api_key: Some("sk-bench".into()),
        ..Credentials::default()
    };
    let (addr, stop) = start(config(dir.path().to_owned(), Some(claude), creds)).await;
    let http = reqwest::Client::new();
    let mut samples = Vec::new();
    for i in 0..40 {
        let t = Instant::now();
        let resp = http
            .post(format!(
                "http://{addr}/api/projects/default/agentic-sessions"
            ))
            .json(&serde_json::json!({ "initialPrompt": format!("bench {i}") }))
            .send()
            .await
            .unwrap();
        let name = resp.json::<serde_json::Value>().await.unwrap()["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let url = format!("ws://{addr}/api/projects/default/agentic-sessions/{name}/ws?after=0");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        loop {
            let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = ws.next().await
            else {
                panic!("closed")
            };
            if let Ok(ServerToBrowser::Event(e)) = ServerToBrowser::decode(&text)
                && matches!(&e.event, SessionEvent::Phase(p) if p.phase == Phase::Running)
            {
                break;
            }
        }
        samples.push(t.elapsed());
        http.post(format!(
            "http://{addr}/api/projects/default/agentic-sessions/{name}/stop"
        ))
        .send()
        .await
        .unwrap();
    }
    report("create to runner connected (claude excluded)", samples);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(());
}

#[tokio::main]
async fn main() {
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    list_latency().await;
    create_to_connected().await;
}
