//! The `ambient` command-line client against a real server: a whole session (create, follow
//! its log until Completed, send, continue, export), the exit codes scripts rely on, and a
//! `logs -f` that resumes after the server restarts, printing every event exactly once.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{Options, TestServer, bin_dir, with_mock};

/// The client, with its configuration in `config` (never the user's own).
fn ambient(config: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin_dir().join("ambient"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AMBIENT_CONFIG", config)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `ambient args…` to its end (at most 120 s).
pub async fn run(config: &Path, args: &[&str]) -> Output {
    tokio::time::timeout(
        Duration::from_secs(120),
        ambient(config).args(args).output(),
    )
    .await
    .expect("ambient ends in time")
    .expect("ambient runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Signs in with `key`; returns the configuration file.
pub async fn login(s: &TestServer, dir: &Path, key: &str) -> PathBuf {
    let config = dir.join("ambient/config.json");
    let mut cmd = ambient(&config);
    cmd.args(["login", &s.url("")]).stdin(Stdio::piped());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{key}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    config
}

/// The sequence numbers `logs` printed (its lines start with them).
fn seqs(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_whole_session_and_says_what_failed_by_its_exit_code() {
    let (s, _mock, dir) = with_mock().await;
    let home = tempfile::tempdir().unwrap();

    // Not signed in: 3. A key that is refused is not stored.
    let config = home.path().join("ambient/config.json");
    let out = run(&config, &["sessions", "list"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let mut bad = ambient(&config);
    let out = bad
        .env("AMBIENT_KEY", "ak_not_a_key")
        .args(["login", &s.url("")])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!config.exists());

    let config = login(&s, home.path(), &s.key).await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");

    // create → logs -f until Completed (exit 0). In table output create prints the name
    // alone, as `S=$(ambient sessions create …)` needs.
    let out = run(
        &config,
        &["sessions", "create", "--batch", "create hello.txt"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let name = String::from_utf8(out.stdout.clone()).unwrap();
    let name = name
        .strip_suffix('\n')
        .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
        .unwrap_or_else(|| panic!("one name on one line: {}", text(&out)))
        .to_owned();
    let out = run(&config, &["sessions", "get", &name, "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["metadata"]["name"], name.as_str(), "{got}");
    let out = run(&config, &["logs", "-f", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("phase Completed"), "{}", text(&out));
    assert!(printed.contains("tool Write"), "{}", text(&out));
    let first = seqs(&out.stdout);
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {first:?}"
    );
    assert!(
        dir.path()
            .join("workspaces/default")
            .join(&name)
            .join("artifacts/hello.txt")
            .exists()
    );

    // send: the next turn; the log follows it to Completed again.
    let last = *first.last().unwrap();
    let out = run(&config, &["send", &name, "remember the word pineapple"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &config,
        &["logs", "-f", "--after", &last.to_string(), &name],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let second = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        second.contains("pineapple") && second.contains("phase Completed"),
        "{}",
        text(&out)
    );
    assert!(seqs(&out.stdout).iter().all(|s| *s > last));

    // continue: runs again; a second continue while it runs is a conflict (6).
    let out = run(&config, &["continue", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&config, &["logs", "-f", &name, "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["seq"].is_u64() && e["event"]["type"].is_string())
    );
    // It followed the continued run to its end, not the end of the one before.
    let completed = events
        .iter()
        .filter(|e| e["event"]["type"] == "phase" && e["event"]["phase"] == "Completed")
        .count();
    assert_eq!(completed, 3, "three runs: created, sent to, continued");

    // export: the session and every event, as JSON.
    let out = run(&config, &["export", &name]).await;
    assert!(out.status.success(), "{}", text(&out));
    let export: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(export["sessionId"], name.as_str());
    // What `logs -f` printed up to the end is the start of the log (the platform may add a
    // line after the final phase, which the export has too).
    let exported: Vec<&Value> = export["events"].as_array().unwrap().iter().collect();
    assert!(
        exported.len() >= events.len(),
        "{} < {}",
        exported.len(),
        events.len()
    );
    for (e, x) in events.iter().zip(&exported) {
        assert_eq!(e["seq"], x["seq"]);
    }

    // list and get, as a table and as YAML.
    let out = run(&config, &["sessions", "list"]).await;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.starts_with("NAME") && table.contains(&name) && table.contains("Completed"),
        "{table}"
    );
    let out = run(&config, &["sessions", "get", &name, "-o", "yaml"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("phase: Completed"),
        "{}",
        text(&out)
    );
    let out = run(&config, &["projects", "list", "-o", "json"]).await;
    let projects: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(projects["items"][0]["name"], "default");

    // Exit codes: not found 5, invalid 7 (and 2 before anything is sent), forbidden 4.
    let out = run(&config, &["sessions", "get", "session-none"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let out = run(&config, &["projects", "create", "-o", "json", "default"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let out = run(&config, &["sessions", "get", "Not_A_Name"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(&config, &["sessions", "create", "x", "--timeout=-5"]).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let watcher = crate::common::project_key(&s, "watcher", "view").await;
    let viewer_home = tempfile::tempdir().unwrap();
    let viewer = login(&s, viewer_home.path(), &watcher).await;
    let out = run(&viewer, &["stop", &name]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("you need edit"),
        "{}",
        text(&out)
    );
    let out = run(&viewer, &["logs", &name]).await;
    assert!(
        out.status.success(),
        "a viewer reads the log: {}",
        text(&out)
    );

    // Completions for the shells.
    let out = run(&config, &["completions", "bash"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("complete"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_resumes_after_the_server_restarts_and_prints_each_event_once() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(Options::new(dir.path()).with_mock(&mock.url())).await;
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key.clone()).await;
    let name = s.create_session("slow 24").await;
    s.wait_phase(&name, &["Running"], Duration::from_secs(60))
        .await;

    let follower = ambient(&config)
        .args(["logs", "-f", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The server goes away mid-run (its runner stays) and comes back on the same address.
    let addr = s.addr;
    s.halt().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut opts = Options::new(dir.path()).with_mock(&mock.url());
    opts.addr = Some(addr);
    let s = TestServer::start(opts).await;

    let out = tokio::time::timeout(Duration::from_secs(120), follower.wait_with_output())
        .await
        .expect("logs -f ends when the session does")
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connecting again"),
        "{}",
        text(&out)
    );
    let printed = seqs(&out.stdout);
    let export = crate::common::exported_events(&s, &name).await;
    // Up to the final phase, where `logs -f` ends (the platform may log a line after it).
    let last = export
        .iter()
        .rposition(|e| crate::common::is_phase(e, &["Completed"]))
        .expect("the session completed");
    let shown: Vec<u64> = export[..=last]
        .iter()
        .filter(|e| !matches!(e.event, model::protocol::SessionEvent::AgentDelta(_)))
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        printed,
        shown,
        "every event once, in order:\n{}",
        text(&out)
    );
}
