//! The metrics address: a scrape read with a Prometheus text parser, as Prometheus reads it.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{Options, TestServer, is_phase};

/// The value of the sample `name` (a counter may be written `name_total`) whose labels
/// include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let total = format!("{name}_total");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name || s.metric == total)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(*v),
            _ => None,
        })
}

async fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = resp.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// A session run with a viewer watching: the scrape counts its HTTP requests by route
/// template and status (two unknown sessions are one series, not two), the events
/// committed and delivered, the open viewer, and the session in its phase; the metrics
/// address serves nothing else, and the server's own address does not serve the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_address_serves_what_runs_in_prometheus_text() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = free.local_addr().unwrap();
    drop(free);
    let mut opts = Options::new(dir.path()).with_mock(&mock.url());
    opts.metrics_addr = Some(metrics);
    let server = TestServer::start(opts).await;

    let name = server.create_session("Please create hello.txt").await;
    let mut viewer = server.viewer(&name, 0).await;
    let events = viewer
        .events_until(Duration::from_secs(60), |e| {
            is_phase(e, &["Completed", "Failed"])
        })
        .await;
    assert!(is_phase(events.last().unwrap(), &["Completed"]));
    for missing in ["nope-1", "nope-2"] {
        let resp = server
            .http
            .get(server.url(&format!("/api/projects/default/agentic-sessions/{missing}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }

    let s = scrape(metrics).await;
    let created = value(
        &s,
        "ambient_http_requests",
        &[
            ("method", "POST"),
            ("route", "/api/projects/{project}/agentic-sessions"),
            ("status", "201"),
        ],
    );
    assert_eq!(created, Some(1.0));
    let missing = value(
        &s,
        "ambient_http_requests",
        &[
            ("method", "GET"),
            (
                "route",
                "/api/projects/{project}/agentic-sessions/{session}",
            ),
            ("status", "404"),
        ],
    );
    assert_eq!(missing, Some(2.0), "one series for both paths");
    assert!(
        !s.samples
            .iter()
            .any(|x| x.labels.values().any(|v| v.contains("nope-"))),
        "no path becomes a label"
    );
    let timed = s.samples.iter().find(|x| {
        x.metric == "ambient_http_request_duration_seconds"
            && x.labels.get("route") == Some("/api/projects/{project}/agentic-sessions")
    });
    assert!(
        matches!(timed.map(|x| &x.value), Some(prometheus_parse::Value::Histogram(b)) if !b.is_empty()),
        "{timed:?}"
    );
    let n = events.len() as f64;
    let committed = value(&s, "ambient_events_committed", &[]).unwrap();
    assert!(committed >= n, "{committed} < {n}");
    let delivered = value(&s, "ambient_events_delivered", &[]).unwrap();
    assert!(delivered >= n, "{delivered} < {n}");
    assert_eq!(value(&s, "ambient_viewers", &[]), Some(1.0));
    assert_eq!(
        value(
            &s,
            "ambient_sessions",
            &[("project", "default"), ("phase", "Completed")]
        ),
        Some(1.0)
    );
    let phases: HashSet<&str> = s
        .samples
        .iter()
        .filter(|x| x.metric == "ambient_sessions")
        .filter_map(|x| x.labels.get("phase"))
        .collect();
    assert_eq!(
        phases,
        HashSet::from(["Completed"]),
        "one session, one phase"
    );

    // The viewer gone, it is no longer counted.
    drop(viewer);
    let mut open = 1.0;
    for _ in 0..50 {
        open = value(&scrape(metrics).await, "ambient_viewers", &[]).unwrap();
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0.0);

    // Nothing else on the metrics address; no metrics on the server's own address.
    let other = reqwest::get(format!("http://{metrics}/api/projects"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let main = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    let kind = main
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!kind.starts_with("application/openmetrics-text"), "{kind}");
    server.stop().await;
}
