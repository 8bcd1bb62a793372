//! Control-plane benchmarks (`make bench`, or `cargo bench -p server --bench control_plane`):
//!
//! 1. session list latency through the real HTTP router with 10,000 sessions in the store
//!    (first page, a search, a deep page);
//! 2. create-to-runner-connected latency in local mode: from the create request to the
//!    `Running` phase event seen by a viewer, with a stand-in for `claude` (`cat`) so the
//!    figure excludes the CLI's own start-up;
//! 3. the page of a session with 200,000 events (server-rendered, the latest events only)
//!    and its streamed export.
//!
//! Prints one line per figure; BENCHMARKS.md records them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use model::protocol::{
    AgentMessage, RunnerEvent, ServerToBrowser, SessionEvent, Thinking, ToolResult, ToolUse,
    UserMessage,
};
use model::runner_env::Credentials;
use model::session::{AgenticSessionSpec, AgenticSessionStatus};
use model::{AgenticSession, Phase};
use platform::records::NewProject;
use server::config::Resolved;

use testkit::report;

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
    let http = testkit::client_with_key(&testkit::install_secret(dir.path()).unwrap());
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
    let key = testkit::install_secret(dir.path()).unwrap();
    let http = testkit::client_with_key(&key);
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
        let mut ws = testkit::ViewerClient::connect(&addr, &key, "default", &name, 0)
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

/// The page of a session with 200,000 events: what the server renders (the latest events)
/// and the streamed export of the whole log.
async fn long_session_page() {
    const EVENTS: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), 1).await;
    let services = testkit::local_services(dir.path()).unwrap();
    let log = services.log.find("uid-00000000").await.unwrap().unwrap();
    services.log.begin_run(log, 1, false).await.unwrap();
    let t = Instant::now();
    let mut rseq = 0;
    while rseq < EVENTS {
        let batch: Vec<RunnerEvent> = (0..1000)
            .map(|_| {
                rseq += 1;
                let event = match rseq % 4 {
                    0 => SessionEvent::AgentMessage(AgentMessage {
                        message_id: None,
                        text: format!("Step {rseq}: I looked at the module and **changed** `foo()`; see [the docs](https://example.com/{rseq})."),
                        parent_tool_use_id: None,
                    }),
                    1 => SessionEvent::ToolUse(ToolUse {
                        id: format!("t{rseq}"),
                        name: "Bash".into(),
                        input: serde_json::json!({"command": format!("cargo test -p crate{rseq}")}),
                        parent_tool_use_id: None,
                    }),
                    2 => SessionEvent::ToolResult(ToolResult {
                        tool_use_id: format!("t{}", rseq - 1),
                        content: "test result: ok. 12 passed; 0 failed".repeat(3),
                        is_error: false,
                    }),
                    _ => SessionEvent::Thinking(Thinking {
                        message_id: None,
                        text: "Next I should check the error handling of the parser.".into(),
                    }),
                };
                RunnerEvent { rseq, ts: 0, event }
            })
            .collect();
        services
            .log
            .append_runner_events(log, 1, batch, |_| {})
            .await
            .unwrap();
    }
    println!(
        "seeded one session with {EVENTS} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    drop(services);
    let (addr, stop) = start(config(dir.path().to_owned(), None, Credentials::default())).await;
    let http = testkit::client_with_key(&testkit::install_secret(dir.path()).unwrap());
    let page = format!("http://{addr}/projects/default/sessions/session-00000000");
    let mut bytes = 0;
    for _ in 0..10 {
        bytes = http
            .get(&page)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .len();
    }
    let mut samples = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let resp = http.get(&page).send().await.unwrap();
        assert!(resp.status().is_success());
        resp.bytes().await.unwrap();
        samples.push(t.elapsed());
    }
    report(
        &format!("session page, {EVENTS} events ({bytes} bytes of HTML)"),
        samples,
    );
    let export =
        format!("http://{addr}/api/projects/default/agentic-sessions/session-00000000/export");
    let t = Instant::now();
    let mut body = http.get(&export).send().await.unwrap().bytes_stream();
    let mut total = 0;
    while let Some(chunk) = body.next().await {
        total += chunk.unwrap().len();
    }
    println!(
        "export of {EVENTS} events: {:.2} s, {:.1} MB streamed",
        t.elapsed().as_secs_f64(),
        total as f64 / 1e6
    );
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
    long_session_page().await;
}
