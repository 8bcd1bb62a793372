//! Test scaffolding of the server's tests, its benchmarks and the load generator (`loadgen`);
//! nothing here ships. Simulated peers: sessions seeded with runner tokens, a runner that
//! speaks the protocol by hand, and a viewer client, over real WebSockets on loopback (the
//! runner's own [`Connection`]): only the agent behind the runner is missing. In-process
//! servers: [`config`], [`spawn`]. A kubelet for the test API server: [`kubelet`].

pub mod kubelet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use model::protocol::{
    BrowserToServer, PROTOCOL_VERSION, RunnerEvent, RunnerHello, RunnerToServer, ServerToBrowser,
    ServerToRunner, SessionEvent, UserMessage, close,
};
use model::session::{AgenticSessionSpec, AgenticSessionStatus, SessionKey};
use model::{AgenticSession, Phase};
use platform::db::now_ms;
use platform::local::{LocalSessions, new_token, token_hash};
use platform::records::{NewProject, RecordsError, Run};
use platform::{ApiError, Caller, Services};
pub use runner::link::{Down, Link, LinkConfig};
pub use ws_client::{Closed, Connection, ReadError};

/// Read buffer of simulated peers: small, as there are thousands of them.
const READ_BUFFER: usize = 8 * 1024;

/// A session prepared for a simulated runner.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Project.
    pub project: String,
    /// Session name.
    pub name: String,
    /// Current runner generation.
    pub generation: u64,
    /// Its runner token.
    pub token: String,
}

/// Creates `n` sessions in `project` already `Running`, each with a runner generation and
/// token and its prompt as the first event, without any runner process (run the server
/// without the local driver).
pub async fn seed_running(
    local: &LocalSessions,
    project: &str,
    n: usize,
) -> Result<Vec<Seeded>, ApiError> {
    let services = &local.services;
    let caller = Caller::system();
    let new_project = NewProject {
        name: project.to_owned(),
        display_name: project.to_owned(),
        description: String::new(),
    };
    match services.records.create_project(&caller, new_project).await {
        Ok(_) | Err(RecordsError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let mut out = Vec::with_capacity(n);
    let mut batch = Vec::new();
    for i in 0..n {
        let local = local.clone();
        let key = SessionKey::new(project, format!("session-sim-{i:06}"));
        batch.push(tokio::spawn(async move { seed_one(&local, key, i).await }));
        if batch.len() == 256 || i + 1 == n {
            for b in batch.drain(..) {
                out.push(b.await.map_err(|_| ApiError::Internal)??);
            }
        }
    }
    Ok(out)
}

async fn seed_one(local: &LocalSessions, key: SessionKey, i: usize) -> Result<Seeded, ApiError> {
    let services = &local.services;
    let caller = Caller::system();
    let prompt = format!("simulated {i}");
    let mut s = AgenticSession::new(
        &key.name,
        AgenticSessionSpec {
            initial_prompt: Some(prompt.clone()),
            ..Default::default()
        },
    );
    s.metadata = ObjectMeta {
        name: Some(key.name.clone()),
        namespace: Some(key.project.clone()),
        uid: Some(uuid::Uuid::new_v4().to_string()),
        creation_timestamp: Some(Time(Timestamp::now())),
        generation: Some(1),
        ..Default::default()
    };
    s.status = Some(AgenticSessionStatus {
        phase: Phase::Running,
        ..Default::default()
    });
    let created = services.records.create_session(&caller, s).await?;
    let log = services
        .log
        .open(platform::services::uid_of(&created.session))
        .await?;
    let event = SessionEvent::UserMessage(UserMessage {
        text: prompt,
        sender: "sim".into(),
    });
    services.log.append(log, event).await?;
    let token = new_token();
    let run = Run {
        generation: 1,
        token_hash: Some(token_hash(&token)),
    };
    local.records.set_run(&key, run).await?;
    services.log.begin_run(log, 1, false).await?;
    Ok(Seeded {
        project: key.project,
        name: key.name,
        generation: 1,
        token,
    })
}

/// A runner speaking the protocol by hand.
pub struct FakeRunner {
    /// The connection.
    pub conn: Connection,
    /// Next runner sequence number.
    pub next_rseq: u64,
    /// What the server acknowledged in its welcome.
    pub welcomed_at: u64,
}

/// What a read error means to a simulated peer: an undecodable frame counts as a drop.
fn closed(e: ReadError) -> Closed {
    match e {
        ReadError::Closed(c) => c,
        ReadError::Undecodable(e) => Closed::Dropped(e.to_string()),
    }
}

impl FakeRunner {
    /// The runner endpoint of a session.
    pub fn url(addr: &str, project: &str, name: &str) -> String {
        format!("ws://{addr}/api/projects/{project}/agentic-sessions/{name}/runner/ws")
    }

    /// Opens the runner endpoint with `token`, without saying hello.
    pub async fn open(addr: &str, s: &Seeded, token: Option<&str>) -> Result<Connection, Closed> {
        Connection::open(&Self::url(addr, &s.project, &s.name), token, READ_BUFFER).await
    }

    /// Connects, says hello, waits for the welcome; like a real runner, tries again for a
    /// while when the server still holds this run's previous connection.
    pub async fn connect(
        addr: &str,
        s: &Seeded,
        handled_through: u64,
    ) -> Result<FakeRunner, Closed> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Self::connect_once(addr, s, handled_through).await {
                Err(Closed::Code(close::ALREADY_CONNECTED, _))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// One connection attempt: connects, says hello, waits for the welcome.
    pub async fn connect_once(
        addr: &str,
        s: &Seeded,
        handled_through: u64,
    ) -> Result<FakeRunner, Closed> {
        let mut conn = Self::open(addr, s, Some(&s.token)).await?;
        let hello = RunnerToServer::Hello(RunnerHello {
            protocol: PROTOCOL_VERSION,
            generation: s.generation,
            handled_through,
        });
        conn.write_frame(&hello).await?;
        loop {
            match conn.read_frame::<ServerToRunner>().await.map_err(closed)? {
                ServerToRunner::Welcome(w) => {
                    return Ok(FakeRunner {
                        conn,
                        next_rseq: w.acked_rseq + 1,
                        welcomed_at: w.acked_rseq,
                    });
                }
                _ => continue,
            }
        }
    }

    /// The frame of an event with the next runner sequence number.
    pub fn frame(&mut self, event: SessionEvent) -> String {
        let e = RunnerEvent {
            rseq: self.next_rseq,
            ts: now_ms(),
            event,
        };
        self.next_rseq += 1;
        model::protocol::Frame::encode(&RunnerToServer::Event(e))
    }

    /// Sends an event.
    pub async fn send(&mut self, event: SessionEvent) -> Result<(), Closed> {
        let frame = self.frame(event);
        self.conn.write_text(frame).await
    }

    /// The next message from the server.
    pub async fn recv(&mut self) -> Result<ServerToRunner, Closed> {
        self.conn.read_frame().await.map_err(closed)
    }

    /// Reads until every event up to `rseq` is acknowledged; returns other messages seen.
    pub async fn wait_ack(&mut self, rseq: u64) -> Result<Vec<ServerToRunner>, Closed> {
        let mut other = Vec::new();
        loop {
            match self.recv().await? {
                ServerToRunner::Ack(a) if a.rseq >= rseq => return Ok(other),
                ServerToRunner::Ack(_) => {}
                m => other.push(m),
            }
        }
    }
}

/// A viewer client.
pub struct ViewerClient {
    /// The connection.
    pub conn: Connection,
}

impl ViewerClient {
    /// Connects to a session from a cursor, signed in with the access key `key`.
    pub async fn connect(
        addr: &str,
        key: &str,
        project: &str,
        name: &str,
        after: u64,
    ) -> Result<ViewerClient, Closed> {
        let url =
            format!("ws://{addr}/api/projects/{project}/agentic-sessions/{name}/ws?after={after}");
        Ok(ViewerClient {
            conn: Connection::open(&url, Some(key), READ_BUFFER).await?,
        })
    }

    /// The next message from the server.
    pub async fn recv(&mut self) -> Result<ServerToBrowser, Closed> {
        self.conn.read_frame().await.map_err(closed)
    }

    /// Sends a request.
    pub async fn send(&mut self, msg: &BrowserToServer) -> Result<(), Closed> {
        self.conn.write_frame(msg).await
    }
}

/// Local mode's services over the database in `data_dir`, without a driver: to seed a store
/// before a server opens it.
pub fn local_services(data_dir: &std::path::Path) -> Result<Services, ApiError> {
    Ok(local_platform(data_dir)?.services)
}

/// [`local_services`] with the local driver's bookkeeping (to seed runs).
pub fn local_platform(data_dir: &std::path::Path) -> Result<LocalSessions, ApiError> {
    let settings = platform::services::Settings {
        default_model: String::new(),
        models: Vec::new(),
        default_credentials: Default::default(),
        local_user: Caller::system(),
        access_recheck: std::time::Duration::from_secs(10),
        catalogue: Default::default(),
    };
    let (_, shutdown) = tokio::sync::watch::channel(false);
    let (local, _) =
        platform::local::open(data_dir, settings, None, shutdown).map_err(ApiError::from)?;
    Ok(local)
}

/// The configuration of a server for tests and benchmarks: data in `data_dir`, sessions run
/// by `runner_bin`, two models, no credentials.
pub fn config(
    data_dir: std::path::PathBuf,
    runner_bin: std::path::PathBuf,
) -> server::config::Resolved {
    server::config::Resolved {
        mode: server::config::Mode::Local,
        install_secret: None,
        data_dir,
        runner_bin,
        claude_bin: None,
        default_model: "claude-sonnet-4-6".into(),
        models: vec!["claude-sonnet-4-6".into(), "claude-opus-4-6".into()],
        stop_grace: std::time::Duration::from_secs(5),
        inactivity_timeout_secs: 86_400,
        local_driver: true,
        stop_runners_on_exit: false,
        require_sandbox: false,
        max_running: 64,
        public_url: None,
        runner_addr: None,
        metrics_addr: None,
        print_login_link: false,
        user: "tester".into(),
        credentials: Default::default(),
        trust_proxy_headers: false,
        access_cache: std::time::Duration::from_secs(10),
        workflow_catalogue: None,
    }
}

/// A server started in this process.
pub struct Spawned {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Send (or drop) to stop it.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// Its task; ends after a stop.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts a server on `listener` and waits until it answers `/health`.
pub async fn spawn(
    config: server::config::Resolved,
    leptos: leptos::config::LeptosOptions,
    listener: tokio::net::TcpListener,
) -> Spawned {
    let addr = listener.local_addr().expect("a bound listener");
    let (stop, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(server::run(config, leptos, listener, async move {
        let _ = rx.await;
    }));
    // The listener is bound already: wait until the server answers on it.
    for _ in 0..500 {
        if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            let mut answer = Vec::new();
            if tcp.write_all(request.as_bytes()).await.is_ok()
                && tcp.read_to_end(&mut answer).await.is_ok()
                && answer
                    .split(|b| *b == b'\n')
                    .next()
                    .is_some_and(|status| status.windows(5).any(|w| w == b" 200 "))
            {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Spawned { addr, stop, task }
}

/// Leptos options enough for the API (no UI assets).
pub fn leptos_options() -> leptos::config::LeptosOptions {
    leptos::config::LeptosOptions::builder()
        .output_name("ambient")
        .build()
}

/// The install secret of the server whose data is in `data_dir` (its owner's access key).
pub fn install_secret(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join(platform::identity::INSTALL_SECRET_FILE);
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

/// An HTTP client that signs every request with `key`.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {key}")
        .parse()
        .expect("a key fits a header");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}

/// Prints a benchmark's latencies: count, p50, p99 and maximum, in milliseconds.
pub fn report(what: &str, mut samples: Vec<std::time::Duration>) {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i].as_secs_f64() * 1e3
    };
    println!(
        "{what}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        at(0.50),
        at(0.99),
        samples.last().map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
    );
}
