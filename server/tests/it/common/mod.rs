//! A real server on a loopback port for tests, with its own data directory, the real runner
//! binary and the real `claude` CLI pointed at a mock Anthropic API.

pub mod forge;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use model::protocol::{ServerToBrowser, SessionEvent, StoredEvent};
use testkit::ViewerClient;
use tokio::net::TcpListener;

/// The workspace's target directory for the current profile (where `runner` is built).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned()
}

/// The runner binary; tests fail with a clear message if it was not built.
pub fn runner_bin() -> PathBuf {
    let p = bin_dir().join("runner");
    assert!(
        p.is_file(),
        "{} is missing: build it first with `cargo build -p runner` (make test does)",
        p.display()
    );
    p
}

/// The pinned claude CLI.
pub fn claude_bin() -> PathBuf {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/claude-code/node_modules/.bin/claude");
    assert!(p.exists(), "{} is missing: run `make setup`", p.display());
    p
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The owner's access key (the install secret); `http` sends it.
    pub key: String,
    pub data_dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub http: reqwest::Client,
}

/// Options of a test server.
pub struct Options {
    pub credentials: Vec<(String, String)>,
    pub data_dir: PathBuf,
    pub addr: Option<SocketAddr>,
    pub stop_grace: Duration,
    /// Run sessions with the local driver (off: fake runners drive them).
    pub local_driver: bool,
    /// The `claude` executable runners use.
    pub claude_bin: Option<PathBuf>,
    /// The runner executable (default: the one this build made).
    pub runner_bin: Option<PathBuf>,
    /// Stop the runners when the server stops.
    pub stop_runners_on_exit: bool,
    /// Where the UI's assets are (`<site_root>/pkg`). Default: Leptos' default.
    pub site_root: Option<PathBuf>,
    /// Most sessions running at once.
    pub max_running: usize,
    /// Kubernetes mode, with this kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes mode: how long access reviews are kept; both modes: how often open viewer
    /// sockets ask again whether their caller may still watch.
    pub access_cache: Duration,
    /// Kubernetes mode: believe an OAuth proxy's identity headers.
    pub trust_proxy_headers: bool,
    /// Where people reach the server (`AMBIENT_PUBLIC_URL`).
    pub public_url: Option<url::Url>,
    /// The runners' own address (`AMBIENT_RUNNER_ADDR`).
    pub runner_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// The workflow catalogue (`AMBIENT_WORKFLOW_CATALOGUE`).
    pub catalogue: Option<platform::catalogue::Source>,
}

impl Options {
    pub fn new(data_dir: &Path) -> Self {
        Options {
            credentials: Vec::new(),
            data_dir: data_dir.to_owned(),
            addr: None,
            stop_grace: Duration::from_secs(5),
            local_driver: true,
            claude_bin: Some(claude_bin()),
            runner_bin: None,
            stop_runners_on_exit: false,
            site_root: None,
            max_running: 64,
            kubeconfig: None,
            access_cache: Duration::from_secs(1),
            trust_proxy_headers: false,
            public_url: None,
            runner_addr: None,
            metrics_addr: None,
            catalogue: None,
        }
    }

    /// Model credentials pointing at a mock.
    pub fn with_mock(mut self, url: &str) -> Self {
        self.credentials = vec![
            ("ANTHROPIC_BASE_URL".into(), url.into()),
            ("ANTHROPIC_API_KEY".into(), "sk-test".into()),
        ];
        self
    }
}

/// A server in a fresh directory whose sessions use a fresh mock model.
pub async fn with_mock() -> (TestServer, mock_anthropic::MockHandle, tempfile::TempDir) {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(Options::new(dir.path()).with_mock(&mock.url())).await;
    (server, mock, dir)
}

impl TestServer {
    pub async fn start(opts: Options) -> TestServer {
        let listener =
            TcpListener::bind(opts.addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
        let runner = opts.runner_bin.clone().unwrap_or_else(runner_bin);
        let mut config = testkit::config(opts.data_dir.clone(), runner);
        config.claude_bin = opts.claude_bin;
        config.stop_grace = opts.stop_grace;
        config.local_driver = opts.local_driver;
        config.stop_runners_on_exit = opts.stop_runners_on_exit;
        config.max_running = opts.max_running;
        config.access_cache = opts.access_cache;
        config.trust_proxy_headers = opts.trust_proxy_headers;
        config.public_url = opts.public_url;
        config.runner_addr = opts.runner_addr;
        config.metrics_addr = opts.metrics_addr;
        config.workflow_catalogue = opts.catalogue;
        if let Some(kubeconfig) = &opts.kubeconfig {
            config.mode = server::config::Mode::Kubernetes {
                kubeconfig: Some(kubeconfig.clone()),
            };
        }
        for (k, v) in &opts.credentials {
            config
                .credentials
                .set(k, Some(v.clone()))
                .expect("a credential variable");
        }
        let mut leptos = testkit::leptos_options();
        if let Some(root) = &opts.site_root {
            leptos.site_root = root.to_string_lossy().into_owned().into();
        }
        let spawned = testkit::spawn(config, leptos, listener).await;
        // Bound to a wildcard address, it is reached (like its runners reach it) on loopback.
        let (addr, tx, task) = (server::reachable(spawned.addr), spawned.stop, spawned.task);
        let key = testkit::install_secret(&opts.data_dir).expect("the server's install secret");
        TestServer {
            addr,
            data_dir: opts.data_dir,
            shutdown: Some(tx),
            task: Some(task),
            http: testkit::client_with_key(&key),
            key,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server (runners keep running) and waits for it to finish.
    pub async fn stop(mut self) {
        self.halt().await;
    }

    /// [`TestServer::stop`] in place (to start another on its address).
    pub async fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Creates a session in the default project; returns its name.
    pub async fn create_session(&self, prompt: &str) -> String {
        let resp = self
            .http
            .post(self.url("/api/projects/default/agentic-sessions"))
            .json(&serde_json::json!({ "stopOnRunFinished": true, "initialPrompt": prompt }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            201,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        resp.json::<serde_json::Value>().await.unwrap()["name"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn session(&self, name: &str) -> serde_json::Value {
        self.http
            .get(self.url(&format!("/api/projects/default/agentic-sessions/{name}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn phase(&self, name: &str) -> String {
        self.session(name).await["status"]["phase"]
            .as_str()
            .unwrap_or("Pending")
            .to_owned()
    }

    /// Polls until the session reaches `phase`, failing after `timeout`.
    pub async fn wait_phase(&self, name: &str, phases: &[&str], timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let p = self.phase(name).await;
            if phases.contains(&p.as_str()) {
                return p;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {name} stayed {p}, wanted {phases:?}; {}",
                self.session(name).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn workspace(&self, name: &str) -> PathBuf {
        self.data_dir.join("workspaces/default").join(name)
    }

    pub async fn viewer(&self, name: &str, after: u64) -> Viewer {
        let client =
            ViewerClient::connect(&self.addr.to_string(), &self.key, "default", name, after)
                .await
                .expect("viewer connects");
        Viewer { client }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A viewer WebSocket.
pub struct Viewer {
    pub client: ViewerClient,
}

impl Viewer {
    /// The next message from the server, or `None` when the socket closes.
    pub async fn next(&mut self, timeout: Duration) -> Option<ServerToBrowser> {
        tokio::time::timeout(timeout, self.client.recv())
            .await
            .expect("a message in time")
            .ok()
    }

    /// Collects events until `stop` says so.
    pub async fn events_until(
        &mut self,
        timeout: Duration,
        mut stop: impl FnMut(&StoredEvent) -> bool,
    ) -> Vec<StoredEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(ServerToBrowser::Event(e)) => {
                    let done = stop(&e);
                    out.push(e);
                    if done {
                        return out;
                    }
                }
                Some(_) => {}
                None => return out,
            }
        }
    }
}

/// Whether an event is a phase change to one of `phases`.
pub fn is_phase(e: &StoredEvent, phases: &[&str]) -> bool {
    matches!(&e.event, SessionEvent::Phase(p) if phases.contains(&p.phase.as_str()))
}

/// Something that answers the API: the in-process server, or a server process.
pub trait Api {
    /// The HTTP client.
    fn client(&self) -> &reqwest::Client;
    /// `http://host:port` + path.
    fn at(&self, path: &str) -> String;
}

impl Api for TestServer {
    fn client(&self) -> &reqwest::Client {
        &self.http
    }
    fn at(&self, path: &str) -> String {
        self.url(path)
    }
}

/// A server reached over HTTP only.
pub struct TestServerView<'a> {
    pub http: &'a reqwest::Client,
    pub addr: String,
}

impl Api for TestServerView<'_> {
    fn client(&self) -> &reqwest::Client {
        self.http
    }
    fn at(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A JSON request helper: method, path, optional body; returns (status, JSON body).
pub async fn call(
    server: &impl Api,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = server.client().request(method, server.at(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    (status, json)
}

/// A new access key of the default project with `role` (`view`, `edit`, `admin`): its
/// secret.
pub async fn project_key(s: &TestServer, name: &str, role: &str) -> String {
    let (st, made) = call(
        s,
        "POST",
        "/api/projects/default/keys",
        Some(serde_json::json!({"name": name, "role": role})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    made["key"].as_str().expect("the key's secret").to_owned()
}

/// Asserts an error answer: its status, its kind, and a message mentioning `needle`.
pub fn assert_error(got: &(u16, serde_json::Value), status: u16, kind: &str, needle: &str) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["error"], kind, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "message {message:?} should mention {needle:?}"
    );
}

/// Processes whose working directory is inside `dir` (the agent, its shells, its commands),
/// as (pid, command line).
pub fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if cwd.starts_with(dir) && !zombie {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// Asserts that no process is left in `dir`: one that is ending as its session stops
/// (killed, not yet reaped) has 5 s to go; what stays is listed.
pub async fn assert_no_process_in(dir: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_in(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes left in {}: {left:?}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events of a session from the export endpoint.
pub async fn exported_events(server: &impl Api, name: &str) -> Vec<StoredEvent> {
    let (_, body) = call(
        server,
        "GET",
        &format!("/api/projects/default/agentic-sessions/{name}/export"),
        None,
    )
    .await;
    serde_json::from_value(body["events"].clone()).expect("events")
}

/// A request's answer, for tests that look only at its status.
pub trait Answer {
    /// Sends it; its status code.
    fn code(self) -> impl std::future::Future<Output = u16>;
    /// Sends it; whether it succeeded (2xx).
    fn succeeds(self) -> impl std::future::Future<Output = bool>;
}

impl Answer for reqwest::RequestBuilder {
    async fn code(self) -> u16 {
        self.send().await.unwrap().status().as_u16()
    }

    async fn succeeds(self) -> bool {
        self.send().await.unwrap().status().is_success()
    }
}
