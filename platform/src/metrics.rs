//! The platform's metrics, in Prometheus's text format (OpenMetrics), with the Prometheus
//! project's own client (`prometheus-client`): no format written by hand.
//!
//! Counters and histograms are kept as things happen (an HTTP request answered, an event
//! committed to a log, a frame sent to a viewer); what is a state (sessions by project and
//! phase, runners connected) is read when a scrape asks, from the store and the hub, so that
//! it is true even for what happened before this process started.
//!
//! Label values come from a closed set (a route's template, never its path; a phase; a
//! project, whose names the platform validates), so a caller cannot make the series grow.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// An HTTP request's method, route (the matched template) and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `GET`, `POST` ...
    pub method: String,
    /// The route's template, such as `/api/projects/{project}/agentic-sessions`.
    pub route: String,
    /// The answer's status code.
    pub status: u16,
}

/// An HTTP request's method and route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// `GET`, `POST` ...
    pub method: String,
    /// The route's template.
    pub route: String,
}

/// A project and a phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The project.
    pub project: String,
    /// The phase (`Running`, `Completed` ...).
    pub phase: String,
}

/// Latency buckets of HTTP answers: 1 ms to about 16 s.
fn http_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric of the server, registered once.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests answered.
    pub http_requests: Family<HttpLabels, Counter>,
    /// How long HTTP answers took (to their headers).
    pub http_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Events committed to the sessions' logs.
    pub events_committed: Counter,
    /// Event frames sent to viewers (live and catching up).
    pub events_delivered: Counter,
    /// Viewer WebSockets open now.
    pub viewers: Gauge,
    /// Runners connected now (set when scraped).
    pub runners: Gauge,
    /// Sessions by project and phase (set when scraped).
    pub sessions: Family<PhaseLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// The metrics, registered under the `ambient_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ambient");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                http_buckets as fn() -> Histogram,
            );
        let events_committed = Counter::default();
        let events_delivered = Counter::default();
        let viewers = Gauge::default();
        let runners = Gauge::default();
        let sessions = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (its headers), by method and route",
            http_seconds.clone(),
        );
        registry.register(
            "events_committed",
            "Events committed to the sessions' logs",
            events_committed.clone(),
        );
        registry.register(
            "events_delivered",
            "Event frames sent to viewers, live or catching up",
            events_delivered.clone(),
        );
        registry.register("viewers", "Viewer WebSockets open", viewers.clone());
        registry.register(
            "runners",
            "Runners connected (runs and files runners)",
            runners.clone(),
        );
        registry.register(
            "sessions",
            "Sessions by project and phase",
            sessions.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_seconds,
            events_committed,
            events_delivered,
            viewers,
            runners,
            sessions,
        }
    }

    /// Records one HTTP answer.
    pub fn http(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.http_seconds
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
            })
            .observe(seconds);
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                route,
                status,
            })
            .inc();
    }

    /// Sets the sessions by project and phase to `counts` (series of phases no session has
    /// any more are dropped).
    pub fn set_sessions(&self, counts: impl IntoIterator<Item = (String, String, u64)>) {
        self.sessions.clear();
        for (project, phase, n) in counts {
            self.sessions
                .get_or_create(&PhaseLabels { project, phase })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The text of a scrape.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts one open viewer for as long as it is kept.
pub struct ViewerGuard(Gauge);

impl ViewerGuard {
    /// Counts a viewer until the guard is dropped.
    pub fn new(metrics: &Metrics) -> ViewerGuard {
        metrics.viewers.inc();
        ViewerGuard(metrics.viewers.clone())
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_names_each_series_with_its_labels() {
        let m = Metrics::new();
        m.http("GET", "/api/projects", 200, 0.002);
        m.events_committed.inc_by(3);
        m.set_sessions([("default".into(), "Running".into(), 2)]);
        {
            let _v = ViewerGuard::new(&m);
            assert_eq!(m.viewers.get(), 1);
        }
        assert_eq!(m.viewers.get(), 0);
        let text = m.encode();
        assert!(
            text.contains(
                r#"ambient_http_requests_total{method="GET",route="/api/projects",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("ambient_events_committed_total 3"), "{text}");
        assert!(
            text.contains(r#"ambient_sessions{project="default",phase="Running"} 2"#),
            "{text}"
        );
        // A phase no session has any more is dropped at the next scrape.
        m.set_sessions([("default".into(), "Completed".into(), 2)]);
        assert!(!m.encode().contains(r#"phase="Running""#));
    }
}
