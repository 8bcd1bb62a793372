//! The runner's own cost (`make bench`, or `cargo bench -p server --bench runner`): peak RSS
//! and CPU time of the runner process for a session of about 1,000 events, the `claude` CLI
//! excluded (the runner reports `getrusage(RUSAGE_SELF)` in its log when it exits).

use std::path::PathBuf;
use std::time::Duration;

use mock_anthropic::{MockConfig, Reply};
use server::config::Resolved;

fn release_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(|d| d.parent()).unwrap().join(name);
    assert!(
        p.is_file(),
        "{} is missing: `cargo build --release -p {name}` first (make bench does)",
        p.display()
    );
    p
}

fn field(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let claude = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/claude-code/node_modules/.bin/claude");
    let mock = mock_anthropic::start(MockConfig {
        script: vec![Reply::Slow {
            chunks: 1000,
            delay_ms: 1,
        }],
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Resolved {
        data_dir: dir.path().to_owned(),
        runner_bin: release_bin("runner"),
        claude_bin: Some(claude),
        default_model: "claude-sonnet-4-6".into(),
        models: vec!["claude-sonnet-4-6".into()],
        stop_grace: Duration::from_secs(5),
        inactivity_timeout_secs: 86_400,
        local_driver: true,
        user: "bench".into(),
        credentials: vec![
            ("ANTHROPIC_BASE_URL".into(), mock.url()),
            ("ANTHROPIC_API_KEY".into(), "sk-bench".into()),
        ],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let leptos = leptos::config::LeptosOptions::builder()
        .output_name("ambient")
        .build();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::run(config, leptos, listener, async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    while http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let created: serde_json::Value = http
        .post(format!(
            "http://{addr}/api/projects/default/agentic-sessions"
        ))
        .json(&serde_json::json!({"initialPrompt": "stream a long answer"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let name = created["name"].as_str().unwrap().to_owned();
    let url = format!("http://{addr}/api/projects/default/agentic-sessions/{name}");
    loop {
        let s: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        if matches!(s["status"]["phase"].as_str(), Some("Completed" | "Failed")) {
            assert_eq!(s["status"]["phase"], "Completed", "{s}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let export: serde_json::Value = http
        .get(format!("{url}/export"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = export["events"].as_array().map(Vec::len).unwrap_or(0);
    let log = std::fs::read_to_string(
        dir.path()
            .join("workspaces/default")
            .join(&name)
            .join(".ambient/runner.log"),
    )
    .unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("runner resource usage"))
        .expect("the runner reports its usage");
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "runner, session of {events} events: peak RSS {:.1} MiB (VmHWM; getrusage ru_maxrss says {:.1} MiB), CPU {} ms user + {} ms system (claude excluded)",
        field(line, "vm_hwm_kib").unwrap_or(0) as f64 / 1024.0,
        field(line, "max_rss_kib").unwrap_or(0) as f64 / 1024.0,
        field(line, "user_ms").unwrap_or(0),
        field(line, "system_ms").unwrap_or(0)
    );
    let _ = stop.send(());
}
