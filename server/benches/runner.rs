//! The runner's own cost (`make bench`, or `cargo bench -p server --bench runner`): peak RSS
//! and CPU time of the runner process for a session of about 1,000 events, the `claude` CLI
//! excluded (the runner reports `getrusage(RUSAGE_SELF)` in its log when it exits).

use std::path::PathBuf;
use std::time::Duration;

use mock_anthropic::{MockConfig, Reply};

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
    let mut config = testkit::config(dir.path().to_owned(), release_bin("runner"));
    config.claude_bin = Some(claude);
    config.user = "bench".into();
    config.credentials = model::runner_env::Credentials {
        anthropic_base_url: Some(mock.url()),
        anthropic_api_key: Some("sk-bench".into()),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spawned = testkit::spawn(config, testkit::leptos_options(), listener).await;
    let (addr, stop) = (spawned.addr, spawned.stop);
    let http = testkit::client_with_key(&testkit::install_secret(dir.path()).unwrap());
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
