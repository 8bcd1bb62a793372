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

/// A phase a session changed to, and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseChangeLabels {
    /// The new phase.
    pub phase: String,
    /// The platform's reason (`inactivity`, `capacity`, a runner's exit ...), or "".
    pub reason: String,
}

/// A kind of model tokens.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// `input`, `output`, `cache_read` or `cache_creation`.
    pub kind: &'static str,
}

/// Latency buckets of HTTP answers: 1 ms to about 16 s.
fn http_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Durations of agent turns: 100 ms to about 27 min.
fn turn_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 15))
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
    /// Phase changes, by phase and reason (from the logs' `phase` events).
    pub phase_changes: Family<PhaseChangeLabels, Counter>,
    /// Agent turns ended, and how long they took (from `turn_result` events).
    pub turn_seconds: Histogram,
    /// Turns that ended in an error.
    pub turn_errors: Counter,
    /// Model tokens by kind, as the agents' CLI reported them.
    pub tokens: Family<TokenLabels, Counter>,
    /// Model cost in US dollars at list price, as the agents' CLI reported it.
    pub cost_usd: Counter<f64, std::sync::atomic::AtomicU64>,
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
        let phase_changes = Family::<PhaseChangeLabels, Counter>::default();
        let turn_seconds = turn_buckets();
        let turn_errors = Counter::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let cost_usd = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "phase_changes",
            "Sessions' phase changes, by phase and reason",
            phase_changes.clone(),
        );
        registry.register(
            "turn_duration_seconds",
            "How long the agents' turns took",
            turn_seconds.clone(),
        );
        registry.register(
            "turn_errors",
            "Agent turns that ended in an error",
            turn_errors.clone(),
        );
        registry.register(
            "model_tokens",
            "Model tokens by kind, as the agents reported them",
            tokens.clone(),
        );
        registry.register(
            "model_cost_usd",
            "Model cost in US dollars at list price, as the agents reported it",
            cost_usd.clone(),
        );
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
            phase_changes,
            turn_seconds,
            turn_errors,
            tokens,
            cost_usd,
        }
    }

    /// Counts what committed events say: each of `events` (a log's encoded events) that is
    /// a phase change or an ended turn is decoded (the others are only counted, by the
    /// caller, never decoded here).
    pub fn observe<'a>(&self, events: impl IntoIterator<Item = &'a str>) {
        use model::protocol::SessionEvent;
        for body in events {
            // The tag is written first: most events are passed over without decoding.
            let wanted = body.starts_with(r#"{"type":"phase""#)
                || body.starts_with(r#"{"type":"turn_result""#);
            if !wanted {
                continue;
            }
            match serde_json::from_str::<SessionEvent>(body) {
                Ok(SessionEvent::Phase(p)) => {
                    self.phase_changes
                        .get_or_create(&PhaseChangeLabels {
                            phase: p.phase.as_str().to_owned(),
                            reason: p.reason.unwrap_or_default(),
                        })
                        .inc();
                }
                Ok(SessionEvent::TurnResult(t)) => {
                    self.turn_seconds.observe(t.duration_ms as f64 / 1000.0);
                    if t.is_error {
                        self.turn_errors.inc();
                    }
                    let u = &t.usage;
                    for (kind, n) in [
                        ("input", u.input_tokens),
                        ("output", u.output_tokens),
                        ("cache_read", u.cache_read_input_tokens),
                        ("cache_creation", u.cache_creation_input_tokens),
                    ] {
                        self.tokens.get_or_create(&TokenLabels { kind }).inc_by(n);
                    }
                    if u.cost_usd.is_finite() && u.cost_usd > 0.0 {
                        self.cost_usd.inc_by(u.cost_usd);
                    }
                }
                _ => {}
            }
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
        // What events say: a phase change with its reason, a turn's time, tokens and cost;
        // other events are not decoded.
        use model::protocol::{PhaseChange, SessionEvent, TurnResult, Usage, encode_event};
        let phase = encode_event(&SessionEvent::Phase(PhaseChange {
            phase: model::Phase::Stopped,
            reason: Some("inactivity".into()),
            message: None,
        }));
        let turn = encode_event(&SessionEvent::TurnResult(TurnResult {
            is_error: false,
            subtype: "success".into(),
            num_turns: 2,
            duration_ms: 1500,
            usage: Usage {
                input_tokens: 100,
                output_tokens: 7,
                cost_usd: 0.25,
                ..Usage::default()
            },
            text: None,
            resume_at: None,
        }));
        m.observe([
            phase.as_str(),
            turn.as_str(),
            r#"{"type":"log","level":"info"}"#,
        ]);
        let text = m.encode();
        assert!(
            text.contains(r#"ambient_phase_changes_total{phase="Stopped",reason="inactivity"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"ambient_model_tokens_total{kind="input"} 100"#),
            "{text}"
        );
        assert!(text.contains("ambient_model_cost_usd_total 0.25"), "{text}");
        assert!(
            text.contains("ambient_turn_duration_seconds_count 1"),
            "{text}"
        );
        // A phase no session has any more is dropped at the next scrape.
        m.set_sessions([("default".into(), "Completed".into(), 2)]);
        assert!(!m.encode().contains(r#"phase="Running""#));
    }
}
