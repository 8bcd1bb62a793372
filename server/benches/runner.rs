//! The runner's own cost (`make bench`, or `cargo bench -p server --bench runner`): peak RSS
//! and CPU time of the runner process for a session of about 1,000 events, the `claude` CLI
//! excluded (the runner reports `getrusage(RUSAGE_SELF)` in its log when it exits); and, over
//! `BENCH_RUNS` such sessions (default 10), create → the agent's first output and the relay of
//! its 1,000 chunks, written by the mock without pauses (from the events' own timestamps: the
//! first agent event to the last); then `BENCH_RUNS` sessions with one repository, the agent
//! writing a file: create → pushed, and the agent's last output → pushed (the delivery: commit,
//! transfer, push); then follow-ups to an interactive session: message → the agent's first
//! text while its agent is warm, and with the session stopped before each message (the message
//! starts a runner that resumes the conversation); then the workspace through the runner (a
//! 10,000-file tree's first level, a flat folder of 10,000, the archive), and forks of it; then,
//! the session stopped, its workspace through a files runner (the first request, which starts
//! it, and the ones after). `AMBIENT_BENCH_RUNNER` picks another runner binary (to compare
//! builds).

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

/// A bare repository at `path` whose `main` has one commit.
fn bare_repo_with_a_commit(path: &std::path::Path) {
    let git = |dir: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    let parent = path.parent().unwrap();
    git(
        parent,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            path.to_str().unwrap(),
        ],
    );
    let work = parent.join("seed");
    git(
        parent,
        &[
            "clone",
            "--quiet",
            path.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    std::fs::write(work.join("README.md"), "bench\n").unwrap();
    git(&work, &["add", "README.md"]);
    git(
        &work,
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "--quiet",
            "-m",
            "seed",
        ],
    );
    git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
}

fn field(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The events of the session at `url` (its export).
async fn exported(http: &reqwest::Client, url: &str) -> Vec<serde_json::Value> {
    let export: serde_json::Value = http
        .get(format!("{url}/export"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    export["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let claude = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/claude-code/node_modules/.bin/claude");
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
        .max(1);
    // One long answer per session (a scripted reply is used once), sent as fast as the mock
    // can write it: the relay's time is the platform's, not the mock's pauses.
    let mock = mock_anthropic::start(MockConfig {
        script: (0..runs)
            .map(|_| Reply::Slow {
                chunks: 1000,
                delay_ms: 0,
            })
            .collect(),
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let runner = std::env::var_os("AMBIENT_BENCH_RUNNER")
        .map(PathBuf::from)
        .unwrap_or_else(|| release_bin("runner"));
    let mut config = testkit::config(dir.path().to_owned(), runner);
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
    let (mut started, mut relayed) = (Vec::new(), Vec::new());
    let mut last = (String::new(), 0, Default::default());
    let session = |body: serde_json::Value| {
        let http = http.clone();
        async move {
            let created: serde_json::Value = http
                .post(format!(
                    "http://{addr}/api/projects/default/agentic-sessions"
                ))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let Some(name) = created["name"].as_str().map(str::to_owned) else {
                panic!("the session was not created: {created}");
            };
            let url = format!("http://{addr}/api/projects/default/agentic-sessions/{name}");
            loop {
                let s: serde_json::Value =
                    http.get(&url).send().await.unwrap().json().await.unwrap();
                if matches!(s["status"]["phase"].as_str(), Some("Completed" | "Failed")) {
                    assert_eq!(s["status"]["phase"], "Completed", "{s}");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (name, exported(&http, &url).await)
        }
    };
    let ts = |e: &serde_json::Value| e["ts"].as_i64().unwrap_or(0);
    let of_type = |events: &[serde_json::Value], prefix: &str| -> Vec<i64> {
        events
            .iter()
            .filter(|e| {
                e["event"]["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(prefix))
            })
            .map(ts)
            .collect()
    };
    for _ in 0..runs {
        let (name, events) = session(
            serde_json::json!({"initialPrompt": "stream a long answer", "stopOnRunFinished": true}),
        )
        .await;
        let agent = of_type(&events, "agent");
        let created_at = events.first().map(ts).unwrap_or(0);
        if let (Some(first), Some(end)) = (agent.first(), agent.last()) {
            started.push(first - created_at);
            relayed.push(end - first);
        }
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for e in &events {
            *kinds
                .entry(e["event"]["type"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        last = (name, events.len(), kinds);
    }
    let (name, events, kinds) = last;
    println!("the last session's events by type: {kinds:?}");
    let pct = |v: &mut Vec<i64>, p: f64| {
        v.sort_unstable();
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{runs} sessions of {events} events: create → agent's first output p50 {} / p90 {} ms; its 1,000-chunk relay p50 {} / p90 {} ms",
        pct(&mut started, 0.5),
        pct(&mut started, 0.9),
        pct(&mut relayed, 0.5),
        pct(&mut relayed, 0.9)
    );
    // Delivery: a session with one repository (a bare repository on disk, pushed to by the
    // runner), the agent writing one file; the end of its answer → the push recorded.
    let repo = dir.path().join("app.git");
    bare_repo_with_a_commit(&repo);
    let (mut created_pushed, mut delivered) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (_, events) = session(serde_json::json!({
            "initialPrompt": "create hello.txt",
            "stopOnRunFinished": true,
            "repos": [{"url": format!("file://{}", repo.display()), "branch": "main", "autoPush": true}],
        }))
        .await;
        let created_at = events.first().map(ts).unwrap_or(0);
        let agent = of_type(&events, "agent");
        let pushed = of_type(&events, "git_push");
        assert_eq!(pushed.len(), 1, "one push per session: {events:?}");
        created_pushed.push(pushed[0] - created_at);
        if let Some(answered) = agent.last() {
            delivered.push(pushed[0] - answered);
        }
    }
    println!(
        "{runs} sessions with one repository: create → pushed p50 {} / p90 {} ms; the agent's last output → pushed (commit, transfer, push) p50 {} / p90 {} ms",
        pct(&mut created_pushed, 0.5),
        pct(&mut created_pushed, 0.9),
        pct(&mut delivered, 0.5),
        pct(&mut delivered, 0.9)
    );
    // Follow-ups (the mock answers at once): to a warm interactive session, message → the
    // agent's first text, `BENCH_RUNS` times; then, as often, to the same session stopped
    // first, so that each message must start a runner that resumes the conversation. Both
    // from the log's own timestamps (the message's append → the first agent event).
    let base = format!("http://{addr}/api/projects/default/agentic-sessions");
    let created: serde_json::Value = http
        .post(&base)
        .json(&serde_json::json!({"initialPrompt": "hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let warm = created["name"].as_str().unwrap().to_owned();
    let url = format!("{base}/{warm}");
    let until = |want: fn(&serde_json::Value) -> bool| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            loop {
                let s: serde_json::Value =
                    http.get(&url).send().await.unwrap().json().await.unwrap();
                if want(&s) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let waiting = |s: &serde_json::Value| s["status"]["agentStatus"] == "idle";
    let stopped = |s: &serde_json::Value| s["status"]["phase"] == "Stopped";
    until(waiting).await;
    let send = |text: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let resp = http
                .post(format!("{url}/messages"))
                .json(&serde_json::json!({ "text": text }))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        }
    };
    for i in 0..runs {
        send(format!("warm follow-up {i}")).await;
        // The answer is in once the agent waits again (a fresh idle after this message).
        tokio::time::sleep(Duration::from_millis(5)).await;
        until(waiting).await;
    }
    for i in 0..runs {
        let resp = http.post(format!("{url}/stop")).send().await.unwrap();
        assert!(resp.status().is_success());
        until(stopped).await;
        send(format!("resumed follow-up {i}")).await;
        until(|s| s["status"]["phase"] == "Running" && s["status"]["agentStatus"] == "idle").await;
    }
    let followed = exported(&http, &url).await;
    let answer_after = |prefix: &str| -> Vec<i64> {
        let mut out = Vec::new();
        for (i, e) in followed.iter().enumerate() {
            let asked = e["event"]["type"] == "user_message"
                && e["event"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(prefix));
            if !asked {
                continue;
            }
            if let Some(answer) = followed[i + 1..].iter().find(|a| {
                a["event"]["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("agent_message") || t.starts_with("agent_delta"))
            }) {
                out.push(ts(answer) - ts(e));
            }
        }
        out
    };
    let (mut warm_ms, mut resumed_ms) = (answer_after("warm"), answer_after("resumed"));
    assert_eq!(
        (warm_ms.len(), resumed_ms.len()),
        (runs, runs),
        "{events:?}"
    );
    println!(
        "follow-ups, message → the agent's first text (mock without latency): warm session p50 {} / p90 {} ms; stopped session, resumed by the message, p50 {} / p90 {} ms ({runs} each)",
        pct(&mut warm_ms, 0.5),
        pct(&mut warm_ms, 0.9),
        pct(&mut resumed_ms, 0.5),
        pct(&mut resumed_ms, 0.9)
    );
    // The workspace through the runner: a tree of 10,000 files (100 folders of 100) and a
    // flat folder of 10,000 (listed up to 5,000, every entry stat'ed and sorted), made by the
    // agent in the warm session; request → answer over REST, `BENCH_RUNS` × 5 each.
    send("run: mkdir -p big flat && cd big && seq 1 100 | xargs -I{} mkdir d{} && for d in d*; do (cd $d && seq 1 100 | xargs touch); done && cd ../flat && seq 1 10000 | xargs touch".into()).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    until(waiting).await;
    let timed = |path: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let mut ms = Vec::new();
            let mut bytes = 0;
            for _ in 0..runs * 5 {
                let t = std::time::Instant::now();
                let resp = http.get(format!("{url}/{path}")).send().await.unwrap();
                assert!(resp.status().is_success(), "{path}: {}", resp.status());
                bytes = resp.bytes().await.unwrap().len();
                ms.push(t.elapsed().as_micros() as i64);
            }
            (ms, bytes)
        }
    };
    let (mut tree, _) = timed("workspace?path=artifacts/big".into()).await;
    let (mut flat, flat_bytes) = timed("workspace?path=artifacts/flat".into()).await;
    let (mut archive, archive_bytes) = timed("workspace.tar.gz".into()).await;
    println!(
        "workspace listing through the runner, request → answer: first level of a 10,000-file tree (100 folders) p50 {:.1} / p90 {:.1} ms; a flat folder of 10,000 files (5,000 listed, {flat_bytes} B of JSON) p50 {:.1} / p90 {:.1} ms; the workspace as .tar.gz ({archive_bytes} B) p50 {:.1} / p90 {:.1} ms ({} each)",
        pct(&mut tree, 0.5) as f64 / 1000.0,
        pct(&mut tree, 0.9) as f64 / 1000.0,
        pct(&mut flat, 0.5) as f64 / 1000.0,
        pct(&mut flat, 0.9) as f64 / 1000.0,
        pct(&mut archive, 0.5) as f64 / 1000.0,
        pct(&mut archive, 0.9) as f64 / 1000.0,
        runs * 5
    );
    // Forks of the warm session after its last turn (its workspace holds the 20,000 files
    // above), `BENCH_RUNS` of them, one after another: the fork's first message (appended
    // when it is made) → its agent's first text, from the fork's log. This covers the
    // runner's start, the copy of the workspace and `claude --resume --fork-session`.
    let (mut forked_ms, mut forks) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let made: serde_json::Value = http
            .post(format!("{url}/fork"))
            .json(&serde_json::json!({ "prompt": format!("forked {i}") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let fork = made["name"].as_str().expect("a fork").to_owned();
        let fork_url = format!("{base}/{fork}");
        let events = loop {
            let events = exported(&http, &fork_url).await;
            if events.iter().any(|e| e["event"]["type"] == "turn_result") {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let asked = events
            .iter()
            .find(|e| e["event"]["type"] == "user_message")
            .map(ts);
        let answered = events
            .iter()
            .find(|e| {
                e["event"]["type"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("agent_message") || t.starts_with("agent_delta"))
            })
            .map(ts);
        if let (Some(a), Some(b)) = (asked, answered) {
            forked_ms.push(b - a);
        }
        forks.push(fork_url);
    }
    assert_eq!(forked_ms.len(), runs);
    // Removed after, not between: a removal's deleting 20,000 files would weigh on the next.
    for fork_url in &forks {
        let resp = http.delete(fork_url).send().await.unwrap();
        assert!(resp.status().is_success());
    }
    println!(
        "forks of a session with 20,000 files, the fork's first message → its agent's first text: p50 {} / p90 {} ms ({runs})",
        pct(&mut forked_ms, 0.5),
        pct(&mut forked_ms, 0.9)
    );
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
    // Nothing of the bench outlives it: the forks gone (their runners killed with them),
    // the warm session stopped, before the server stops (an interactive session's runner
    // would go on without it).
    for fork_url in &forks {
        while http.get(fork_url).send().await.unwrap().status() != 404 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let resp = http.post(format!("{url}/stop")).send().await.unwrap();
    assert!(resp.status().is_success());
    until(stopped).await;
    // The stopped session's workspace, served by a files runner: the first request starts
    // it (request → whole answer, the runner's start included), the rest find it connected.
    let t = std::time::Instant::now();
    let resp = http
        .get(format!("{url}/workspace?path=artifacts/big"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let _ = resp.bytes().await.unwrap();
    let cold_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (mut stopped_tree, _) = timed("workspace?path=artifacts/big".into()).await;
    println!(
        "a stopped session's workspace through a files runner: first request (starts it) {cold_ms:.1} ms; then the first level of the 10,000-file tree p50 {:.1} / p90 {:.1} ms ({} each)",
        pct(&mut stopped_tree, 0.5) as f64 / 1000.0,
        pct(&mut stopped_tree, 0.9) as f64 / 1000.0,
        runs * 5
    );
    let _ = stop.send(());
}
