//! The metrics address: a scrape read with an OpenMetrics parser (by the format's grammar),
//! as Prometheus reads it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use openmetrics_parser::OpenMetricsValue as V;

use crate::common::{Options, TestServer, is_phase};

pub(crate) type Exposition =
    openmetrics_parser::MetricsExposition<openmetrics_parser::OpenMetricsType, V>;

/// The samples of the family `name`, with their labels.
fn samples(scrape: &Exposition, name: &str) -> Vec<(HashMap<String, String>, V)> {
    let Some(family) = scrape.families.get(name) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .map(|s| {
            let labels = s
                .get_labelset()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (labels, s.value.clone())
        })
        .collect()
}

/// The value of the counter or gauge `name` whose labels include `labels`.
pub(crate) fn value(scrape: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(scrape, name)
        .into_iter()
        .find(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .and_then(|(_, v)| match v {
            V::Counter(c) => Some(c.value.as_f64()),
            V::Gauge(g) | V::Unknown(g) => Some(g.as_f64()),
            _ => None,
        })
}

pub(crate) async fn scrape(addr: std::net::SocketAddr) -> Exposition {
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
    openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// An address on loopback nothing listens on (for a server's metrics address).
pub(crate) fn free_port() -> std::net::SocketAddr {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    free.local_addr().unwrap()
}

/// A session run with a viewer watching: the scrape counts its HTTP requests by route
/// template and status (two unknown sessions are one series, not two), the events
/// committed and delivered, the open viewer, and the session in its phase; the metrics
/// address serves nothing else, and the server's own address does not serve the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_address_serves_what_runs_in_prometheus_text() {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
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
        let path = format!("/api/projects/default/agentic-sessions/{missing}");
        let resp = server.http.get(server.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 404);
    }

    let s = scrape(metrics).await;
    let created = [
        ("method", "POST"),
        ("route", "/api/projects/{project}/agentic-sessions"),
        ("status", "201"),
    ];
    assert_eq!(value(&s, "ambient_http_requests", &created), Some(1.0));
    let missing = [
        ("method", "GET"),
        (
            "route",
            "/api/projects/{project}/agentic-sessions/{session}",
        ),
        ("status", "404"),
    ];
    assert_eq!(
        value(&s, "ambient_http_requests", &missing),
        Some(2.0),
        "one series for both paths"
    );
    let labelled_by_path = s.families.values().any(|f| {
        f.iter_samples().any(|x| {
            x.get_labelset()
                .unwrap()
                .iter()
                .any(|(_, v)| v.contains("nope-"))
        })
    });
    assert!(!labelled_by_path, "no path becomes a label");
    let timed = samples(&s, "ambient_http_request_duration_seconds")
        .into_iter()
        .find(|(l, _)| {
            l.get("route").map(String::as_str) == Some("/api/projects/{project}/agentic-sessions")
        });
    assert!(
        matches!(&timed, Some((_, V::Histogram(h))) if h.count == Some(1)),
        "{timed:?}"
    );
    let n = events.len() as f64;
    let committed = value(&s, "ambient_events_committed", &[]).unwrap();
    assert!(committed >= n, "{committed} < {n}");
    let delivered = value(&s, "ambient_events_delivered", &[]).unwrap();
    assert!(delivered >= n, "{delivered} < {n}");
    assert_eq!(value(&s, "ambient_viewers", &[]), Some(1.0));
    // What the log said: the run's phase changes, its turn, the tokens the CLI reported.
    let completed = value(&s, "ambient_phase_changes", &[("phase", "Completed")]);
    assert_eq!(completed, Some(1.0));
    let input = value(&s, "ambient_model_tokens", &[("kind", "input")]).unwrap();
    assert!(input > 0.0, "{input}");
    let turns = samples(&s, "ambient_turn_duration_seconds");
    assert!(
        matches!(turns.first(), Some((_, V::Histogram(h))) if h.count == Some(1)),
        "{turns:?}"
    );
    let completed = [("project", "default"), ("phase", "Completed")];
    assert_eq!(value(&s, "ambient_sessions", &completed), Some(1.0));
    let phases: HashSet<String> = samples(&s, "ambient_sessions")
        .into_iter()
        .filter_map(|(l, _)| l.get("phase").cloned())
        .collect();
    assert_eq!(
        phases,
        HashSet::from(["Completed".to_owned()]),
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
