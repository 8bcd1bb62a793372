//! `loadgen`: load-tests the event hub with simulated runners and viewers over real
//! WebSockets on loopback, against a real `server` process (release build, local driver
//! off, persistence on).
//!
//! ```text
//! loadgen --sessions 100 --viewers 3 --rate 20000 --seconds 10
//! ```
//!
//! Each runner publishes agent messages carrying their send time; each viewer measures
//! publish-to-deliver latency from it. Prints delivered events/s, latency p50/p99, and the
//! server's resident memory (peak and with everything connected).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use model::protocol::{
    AgentMessage, Frame, RunnerEvent, RunnerToServer, ServerToRunner, SessionEvent,
};
use testkit::{FakeRunner, Seeded, ViewerClient, seed_running};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

/// Options of a load run.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Load generator for the Ambient Code Platform event hub"
)]
struct Args {
    /// Concurrent sessions (one simulated runner each).
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Viewers per session.
    #[arg(long, default_value_t = 3)]
    viewers: usize,
    /// Events published per second over all runners (0: as fast as acknowledgements allow).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Measured seconds (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes of text per event.
    #[arg(long, default_value_t = 200)]
    payload: usize,
    /// Each runner sends what it owes every this many milliseconds, in one write.
    #[arg(long, default_value_t = 10)]
    tick_ms: u64,
    /// The server executable. Default: `server` next to this one.
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

#[derive(Default)]
struct Stats {
    delivered: AtomicU64,
    published: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Extracts the send time (µs since `epoch`) from a viewer frame without decoding it all.
fn sent_at(frame: &str) -> Option<u64> {
    let start = frame.find("\"text\":\"T")? + 9;
    let digits = &frame[start..];
    let end = digits.find('|')?;
    digits[..end].parse().ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let services = testkit::local_platform(data.path())?;
    let seeded = seed_running(&services, "load", args.sessions).await?;
    drop(services);

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let exe = std::env::current_exe()?;
    let server_bin = args
        .server_bin
        .clone()
        .unwrap_or_else(|| exe.with_file_name("server"));
    let mut server = std::process::Command::new(&server_bin)
        .env("AMBIENT_DATA_DIR", data.path())
        .env("AMBIENT_ADDR", &addr)
        .env("AMBIENT_LOCAL_DRIVER", "false")
        .env("AMBIENT_RUNNER_BIN", &exe)
        .env("RUST_LOG", "warn")
        .env("LEPTOS_OUTPUT_NAME", "ambient")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let pid = server.id();
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server writes its install secret when it opens its store.
    let key = loop {
        match testkit::install_secret(data.path()) {
            Ok(key) => break key,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let idle_rss = rss_kib(pid);

    let epoch = Instant::now();
    let stats = Arc::new(Stats::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    // Viewers first (from after the seeded prompt), in batches to stay under the backlog.
    let mut tasks = Vec::new();
    for chunk in seeded.chunks(100) {
        let mut batch = Vec::new();
        for s in chunk {
            for _ in 0..args.viewers {
                batch.push(ViewerClient::connect(&addr, &key, &s.project, &s.name, 1));
            }
        }
        for v in futures::future::join_all(batch).await {
            let mut v = v
                .map_err(|e| anyhow::anyhow!("viewer: {e:?}"))?
                .conn
                .into_socket();
            let (stats, measuring, stop) = (stats.clone(), measuring.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut local = Vec::new();
                while let Some(Ok(msg)) = v.next().await {
                    let Message::Text(text) = msg else { continue };
                    if let Some(sent) = sent_at(&text)
                        && measuring.load(Ordering::Relaxed)
                    {
                        let now = epoch.elapsed().as_micros() as u64;
                        local.push(now.saturating_sub(sent) as u32);
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                stats.latencies_us.lock().await.extend(local);
            }));
        }
    }

    // Runners.
    let mut runners: Vec<(Seeded, FakeRunner)> = Vec::new();
    for chunk in seeded.chunks(100) {
        let conns =
            futures::future::join_all(chunk.iter().map(|s| FakeRunner::connect(&addr, s, 1))).await;
        for (s, r) in chunk.iter().zip(conns) {
            runners.push((s.clone(), r.map_err(|e| anyhow::anyhow!("runner: {e:?}"))?));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected_rss = rss_kib(pid);

    let pad = "x".repeat(args.payload.saturating_sub(24));
    // Each runner sends what it owes every tick, in one write: agents emit in bursts too.
    // Ticks start at random offsets so runners do not fire in step.
    let tick = Duration::from_millis(args.tick_ms.max(1));
    let per_tick = args.rate as f64 * tick.as_secs_f64() / args.sessions as f64;
    for (_, r) in runners {
        let (stats, stop, pad) = (stats.clone(), stop.clone(), pad.clone());
        tasks.push(tokio::spawn(async move {
            let acked = Arc::new(AtomicU64::new(0));
            let FakeRunner {
                conn,
                mut next_rseq,
                ..
            } = r;
            let (mut sink, mut stream) = conn.into_socket().split();
            let acks = acked.clone();
            let reader = tokio::spawn(async move {
                while let Some(Ok(Message::Text(t))) = stream.next().await {
                    if let Ok(ServerToRunner::Ack(a)) = ServerToRunner::decode(&t) {
                        acks.store(a.rseq, Ordering::Relaxed);
                    }
                }
            });
            let offset = tick.mul_f64(rand::random::<f64>());
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut owed = 0.0f64;
            while !stop.load(Ordering::Relaxed) {
                let count = if args.rate > 0 {
                    ticker.tick().await;
                    owed += per_tick;
                    let n = owed.floor();
                    owed -= n;
                    n as usize
                } else {
                    // Flat out: keep at most 64 events unacknowledged.
                    while next_rseq - acked.load(Ordering::Relaxed) > 64
                        && !stop.load(Ordering::Relaxed)
                    {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    16
                };
                for _ in 0..count {
                    let now = epoch.elapsed().as_micros();
                    let text = format!("T{now}|{pad}");
                    let event = SessionEvent::AgentMessage(AgentMessage {
                        message_id: None,
                        text,
                        parent_tool_use_id: None,
                    });
                    let frame = RunnerToServer::Event(RunnerEvent {
                        rseq: next_rseq,
                        ts: 0,
                        event,
                    })
                    .encode();
                    next_rseq += 1;
                    if sink.feed(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                if sink.flush().await.is_err() {
                    break;
                }
                stats.published.fetch_add(count as u64, Ordering::Relaxed);
            }
            reader.abort();
        }));
    }

    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let published_before = stats.published.load(Ordering::Relaxed);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut peak_rss = connected_rss;
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_rss = peak_rss.max(rss_kib(pid));
    }
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let published = stats.published.load(Ordering::Relaxed) - published_before;
    stop.store(true, Ordering::Relaxed);
    let _ = server.kill();
    let _ = server.wait();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let mut lat = std::mem::take(&mut *stats.latencies_us.lock().await);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "sessions={} viewers/session={} offered_rate={} payload={}B tick={}ms seconds={}",
        args.sessions, args.viewers, args.rate, args.payload, args.tick_ms, args.seconds
    );
    println!(
        "published={:.0}/s delivered={:.0}/s latency_ms p50={:.2} p99={:.2} max={:.2}",
        published as f64 / elapsed,
        delivered as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "server_rss_mib idle={:.1} all_connected={:.1} peak={:.1}",
        idle_rss as f64 / 1024.0,
        connected_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    Ok(())
}
