//! A server process killed (SIGKILL) while a session runs loses nothing: its runner keeps
//! working, reconnects to the restarted server and re-sends what was not acknowledged; a
//! question its agent waits on is answered through the restarted server.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{bin_dir, call, claude_bin, exported_events, processes_in, runner_bin};
use model::protocol::SessionEvent;
use serde_json::json;

/// A `server` process (the real binary).
struct ServerProcess {
    child: Child,
    port: u16,
}

impl ServerProcess {
    fn start(data_dir: &Path, port: u16, mock_url: &str) -> ServerProcess {
        let bin = bin_dir().join("server");
        assert!(
            bin.is_file(),
            "{} is missing: build it with `cargo build -p server`",
            bin.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("server.log"))
            .unwrap();
        let child = Command::new(bin)
            .env("AMBIENT_DATA_DIR", data_dir)
            .env("AMBIENT_ADDR", format!("127.0.0.1:{port}"))
            .env("AMBIENT_RUNNER_BIN", runner_bin())
            .env("AMBIENT_CLAUDE_BIN", claude_bin())
            .env("AMBIENT_USER", "tester")
            .env("ANTHROPIC_BASE_URL", mock_url)
            .env("ANTHROPIC_API_KEY", "sk-test")
            .env("LEPTOS_OUTPUT_NAME", "ambient")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        ServerProcess { child, port }
    }

    async fn wait_ready(&self, http: &reqwest::Client) {
        for _ in 0..300 {
            if http
                .get(format!("http://127.0.0.1:{}/health", self.port))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not start");
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no graceful anything
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client for a server process, shaped like the in-process test server.
struct Client {
    http: reqwest::Client,
    port: u16,
}

impl Client {
    /// A client of the server whose data is in `data_dir`, signed in with its install secret.
    fn signed_in(data_dir: &Path, port: u16) -> Client {
        let key = testkit::install_secret(data_dir).expect("the install secret");
        Client {
            http: testkit::client_with_key(&key),
            port,
        }
    }

    fn as_test_server(&self) -> crate::common::TestServerView<'_> {
        crate::common::TestServerView {
            http: &self.http,
            addr: format!("127.0.0.1:{}", self.port),
        }
    }
}

async fn phase(c: &Client, name: &str) -> (String, serde_json::Value) {
    let v: serde_json::Value = c
        .http
        .get(format!(
            "http://127.0.0.1:{}/api/projects/default/agentic-sessions/{name}",
            c.port
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        v["status"]["phase"]
            .as_str()
            .unwrap_or("Pending")
            .to_owned(),
        v,
    )
}

async fn wait_for(c: &Client, name: &str, phases: &[&str], timeout: Duration) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (p, v) = phase(c, name).await;
        if phases.contains(&p.as_str()) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stayed {p}, wanted {phases:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create(c: &Client, prompt: &str) -> String {
    let resp = c
        .http
        .post(format!(
            "http://127.0.0.1:{}/api/projects/default/agentic-sessions",
            c.port
        ))
        .json(&json!({ "stopOnRunFinished": true, "initialPrompt": prompt }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json::<serde_json::Value>().await.unwrap()["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn deltas(c: &Client, name: &str) -> usize {
    let events = exported_events(&c.as_test_server(), name).await;
    events
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::AgentDelta(_)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_killed_server_with_all_its_events() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = ServerProcess::start(dir.path(), port, &mock.url());
    first.wait_ready(&reqwest::Client::new()).await;
    let c = Client::signed_in(dir.path(), port);

    let name = create(&c, "slow 30").await;
    wait_for(&c, &name, &["Running"], Duration::from_secs(30)).await;
    while deltas(&c, &name).await < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();
    // The agent keeps streaming into the runner's outbox meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !processes_in(&dir.path().join("workspaces/default").join(&name)).is_empty(),
        "the runner survives"
    );

    let second = ServerProcess::start(dir.path(), port, &mock.url());
    second.wait_ready(&c.http).await;
    let done = wait_for(&c, &name, &["Completed", "Failed"], Duration::from_secs(60)).await;
    assert_eq!(done["status"]["phase"], "Completed", "{done}");

    let events = exported_events(&c.as_test_server(), &name).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    // Every one of the 30 chunks arrived exactly once, in order.
    let streamed: String = events
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::AgentDelta(d) => Some(d.text.clone()),
            _ => None,
        })
        .collect();
    let expected: String = (1..=30).map(|i| format!("chunk {i} ")).collect();
    assert_eq!(streamed.trim_end(), expected.trim_end());
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::Result(r) if r.exit_code == 0))
    );
    second.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_died_while_the_server_was_down_fails_with_that_reason() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = ServerProcess::start(dir.path(), port, &mock.url());
    first.wait_ready(&reqwest::Client::new()).await;
    let c = Client::signed_in(dir.path(), port);
    let name = create(&c, "slow 200").await;
    wait_for(&c, &name, &["Running"], Duration::from_secs(30)).await;
    first.kill();

    // The runner dies too (as if the machine had trouble), without a word.
    let workspace = dir.path().join("workspaces/default").join(&name);
    let runner = processes_in(&workspace)
        .into_iter()
        .find(|(_, cmd)| {
            cmd.split(' ')
                .next()
                .is_some_and(|exe| exe.ends_with("/runner"))
        })
        .expect("the runner process");
    operator::local::kill_tree(runner.0, operator::local::start_ticks(runner.0).unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;

    let second = ServerProcess::start(dir.path(), port, &mock.url());
    second.wait_ready(&c.http).await;
    let failed = wait_for(&c, &name, &["Failed", "Completed"], Duration::from_secs(30)).await;
    assert_eq!(failed["status"]["phase"], "Failed");
    let ready = failed["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "RunnerLost");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("while the server was not running"),
        "{message}"
    );
    let (_, body) = call(
        &c.as_test_server(),
        "GET",
        &format!("/api/projects/default/agentic-sessions/{name}/export"),
        None,
    )
    .await;
    let last = body["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["type"], "phase");
    assert_eq!(last["event"]["phase"], "Failed");
    second.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_names_a_command_that_prints_a_login_link() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let server = ServerProcess::start(dir.path(), port, &mock.url());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    server.wait_ready(&http).await;
    let page = http
        .get(format!("http://127.0.0.1:{port}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The command in the page's words, run as a person would copy it.
    let command = page
        .split("<code>")
        .filter_map(|c| c.split("</code>").next())
        .find(|c| c.ends_with("--login-url"))
        .unwrap_or_else(|| panic!("no command in {page}"))
        .replace("&#x2F;", "/")
        .replace("&amp;", "&");
    let (program, flag) = command.rsplit_once(' ').unwrap();
    assert_eq!(
        std::fs::canonicalize(program).unwrap(),
        std::fs::canonicalize(bin_dir().join("server")).unwrap(),
        "the page names this binary by its path: {command}"
    );
    let out = Command::new(program)
        .arg(flag)
        .env("AMBIENT_DATA_DIR", dir.path())
        .env("AMBIENT_ADDR", format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let resp = http.get(&link).send().await.unwrap();
    assert_eq!(resp.status(), 303, "{link}");
    server.kill();
}

/// A question the agent asked is still there after the server was killed, and the answer
/// given to the restarted server reaches the waiting agent (the runner held the request; the
/// log kept the question; the hub learns it again when the runner reconnects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_pending_when_the_server_is_killed_is_answered_after_its_restart() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let first = ServerProcess::start(dir.path(), port, &mock.url());
    first.wait_ready(&reqwest::Client::new()).await;
    let c = Client::signed_in(dir.path(), port);
    let name = create(&c, "ask: Which color should the button be? | Red | Blue").await;
    let asked = |events: &[model::protocol::StoredEvent]| {
        events.iter().find_map(|e| match &e.event {
            SessionEvent::Ask(a) => Some(a.id.clone()),
            _ => None,
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let id = loop {
        if let Some(id) = asked(&exported_events(&c.as_test_server(), &name).await) {
            break id;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never asked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    first.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let second = ServerProcess::start(dir.path(), port, &mock.url());
    second.wait_ready(&c.http).await;
    // The reconnected runner's agent is known to wait for an answer, and the question is open.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = phase(&c, &name).await;
        if v["status"]["agentStatus"] == "waiting_input" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not waiting: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = format!("/api/projects/default/agentic-sessions/{name}");
    let (st, open) = call(&c.as_test_server(), "GET", &format!("{at}/asks"), None).await;
    assert_eq!(st, 200, "{open}");
    assert_eq!(open["items"][0]["id"], id.as_str(), "{open}");
    let (st, body) = call(
        &c.as_test_server(),
        "POST",
        &format!("{at}/answers"),
        Some(json!({"id": id, "answers": {"Which color should the button be?": "Blue"}})),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    let done = wait_for(&c, &name, &["Completed", "Failed"], Duration::from_secs(60)).await;
    assert_eq!(done["status"]["phase"], "Completed", "{done}");
    let events = exported_events(&c.as_test_server(), &name).await;
    assert!(
        events.iter().any(|e| matches!(&e.event,
            SessionEvent::AgentMessage(m) if m.text.contains("Got your answer") && m.text.contains("Blue"))),
        "{events:?}"
    );
    second.kill();
}
