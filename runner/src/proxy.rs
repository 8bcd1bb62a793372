//! The model proxy: the agent's model calls go through the runner, which adds the real
//! credentials itself, so the key never enters the agent's sandbox (the way hosted agents
//! keep credentials out of their machines).
//!
//! It listens on loopback for the run's lifetime. The agent's CLI is pointed at it
//! (`ANTHROPIC_BASE_URL`) with a per-run proxy token as its key; a request without that
//! token is refused, so nothing else on the machine can spend the key through it. Bodies
//! stream both ways (the model's answers are server-sent events).
//!
//! It also relays the run's HTTP MCP servers (`/mcp/<server>`, [`crate::mcp`]), adding their
//! headers (the project's credentials in them) itself.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use model::runner_env::Credentials;
use subtle::ConstantTimeEq;

/// Where the model is when no endpoint is configured.
const ANTHROPIC_API: &str = "https://api.anthropic.com";

/// Headers that describe one hop, not the request.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A running proxy.
#[derive(Debug, Clone)]
pub struct ModelProxy {
    /// `http://127.0.0.1:<port>`: the agent's `ANTHROPIC_BASE_URL`.
    pub base_url: String,
    /// The token the agent must present (as its API key).
    pub token: String,
}

struct Upstream {
    mcp: crate::mcp::Routes,
    /// The MCP client: follows no redirect (a server's headers go to its address only).
    mcp_client: reqwest::Client,
    /// The same for a session's servers, which may not reach this machine.
    mcp_remote_client: reqwest::Client,
    base: String,
    api_key: Option<String>,
    bearer: Option<String>,
    token: String,
    client: reqwest::Client,
}

/// A fresh proxy token.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("proxy-{}", hex(&bytes))
}

impl ModelProxy {
    /// Starts the proxy on this machine's loopback, in front of the model endpoint
    /// `credentials` describe. It runs until the process ends.
    pub async fn start(
        credentials: &Credentials,
        mcp: crate::mcp::Routes,
    ) -> std::io::Result<ModelProxy> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        Self::serve(credentials, mcp, listener, new_token())
    }

    /// Starts the proxy on `listener` (one in the sandbox's own network), taking `token`.
    pub fn start_on(
        credentials: &Credentials,
        mcp: crate::mcp::Routes,
        listener: std::net::TcpListener,
        token: String,
    ) -> std::io::Result<ModelProxy> {
        Self::serve(
            credentials,
            mcp,
            tokio::net::TcpListener::from_std(listener)?,
            token,
        )
    }

    /// Starts the proxy on `listener` (the keeper's, on a pod's loopback), taking `token`.
    pub fn start_on_tokio(
        credentials: &Credentials,
        mcp: crate::mcp::Routes,
        listener: tokio::net::TcpListener,
        token: String,
    ) -> std::io::Result<ModelProxy> {
        Self::serve(credentials, mcp, listener, token)
    }

    fn serve(
        credentials: &Credentials,
        mcp: crate::mcp::Routes,
        listener: tokio::net::TcpListener,
        token: String,
    ) -> std::io::Result<ModelProxy> {
        let addr = listener.local_addr()?;
        let upstream = Arc::new(Upstream {
            mcp,
            mcp_client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(std::io::Error::other)?,
            mcp_remote_client: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .dns_resolver(Arc::new(crate::mcp::NotThisMachine))
                .build()
                .map_err(std::io::Error::other)?,
            base: credentials
                .anthropic_base_url
                .clone()
                .unwrap_or_else(|| ANTHROPIC_API.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            api_key: credentials.anthropic_api_key.clone(),
            bearer: credentials.anthropic_auth_token.clone(),
            token: token.clone(),
            // Never through a proxy the environment names: it would see the key.
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(std::io::Error::other)?,
        });
        let app = axum::Router::new().fallback(forward).with_state(upstream);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the model proxy stopped");
            }
        });
        Ok(ModelProxy {
            base_url: format!("http://{addr}"),
            token,
        })
    }

    /// The agent's model variables: the proxy, and the proxy token as its key.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        Self::env_for(&self.base_url, &self.token)
    }

    /// The agent's model variables for a proxy at `base_url` taking `token`.
    pub fn env_for(base_url: &str, token: &str) -> Vec<(String, String)> {
        vec![
            (
                model::runner_env::ANTHROPIC_BASE_URL.to_owned(),
                base_url.to_owned(),
            ),
            (
                model::runner_env::ANTHROPIC_API_KEY.to_owned(),
                token.to_owned(),
            ),
        ]
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The token a request presents: `x-api-key`, or `Authorization: Bearer`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// What the proxy relays: the Messages API (and its token counting), nothing else of what
/// the key may open upstream (files, batches, an organisation's admin API ...).
fn relayed(method: &axum::http::Method, path: &str) -> bool {
    *method == axum::http::Method::POST
        && matches!(path, "/v1/messages" | "/v1/messages/count_tokens")
}

/// The CLI's connectivity checks (`HEAD /`, `HEAD /api/hello`), answered here: they need no
/// key and reach nothing upstream.
fn connectivity_check(method: &axum::http::Method, path: &str) -> bool {
    matches!(*method, axum::http::Method::HEAD | axum::http::Method::GET)
        && matches!(path, "/" | "/api/hello")
}

/// Relays a request of the agent's `claude` to MCP server `name`, with the server's
/// headers; the agent's own credentials-like headers are not passed on.
async fn forward_mcp(up: &Upstream, name: &str, req: Request) -> Response {
    let ok = req
        .headers()
        .get(crate::mcp::PROXY_TOKEN_HEADER)
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(up.token.as_bytes())));
    if !ok {
        return (StatusCode::UNAUTHORIZED, "unknown proxy token").into_response();
    }
    let Some(route) = up.mcp.get(name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no MCP server '{name}' in this run"),
        )
            .into_response();
    };
    if !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::POST | axum::http::Method::DELETE
    ) {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let (parts, body) = req.into_parts();
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || matches!(
                n,
                "host" | "content-length" | "authorization" | "cookie" | "x-api-key"
            )
            || n == crate::mcp::PROXY_TOKEN_HEADER
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    for (name, value) in &route.headers {
        headers.insert(name.clone(), value.clone());
    }
    let client = if route.local {
        &up.mcp_client
    } else {
        &up.mcp_remote_client
    };
    let sent = client
        .request(parts.method, &route.url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    match sent {
        Ok(resp) => relay(resp),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the MCP server '{name}' is unreachable: {e}"),
        )
            .into_response(),
    }
}

/// An upstream answer, streamed back without its hop-by-hop headers.
fn relay(resp: reqwest::Response) -> Response {
    let mut out = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    out.body(Body::from_stream(resp.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

async fn forward(State(up): State<Arc<Upstream>>, req: Request) -> Response {
    if let Some(name) = req.uri().path().strip_prefix("/mcp/") {
        let name = name.to_owned();
        return forward_mcp(&up, &name, req).await;
    }
    let ok = presented(req.headers())
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(up.token.as_bytes())));
    let path = req.uri().path();
    if connectivity_check(req.method(), path) {
        return StatusCode::OK.into_response();
    }
    if !ok {
        return (StatusCode::UNAUTHORIZED, "unknown proxy token").into_response();
    }
    if !relayed(req.method(), path) {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "the model proxy relays the Messages API only, not {} {path}",
                req.method()
            ),
        )
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || matches!(n, "host" | "content-length" | "x-api-key" | "authorization")
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if let Some(key) = &up.api_key
        && let Ok(v) = key.parse()
    {
        headers.insert(HeaderName::from_static("x-api-key"), v);
    }
    if let Some(token) = &up.bearer
        && let Ok(v) = format!("Bearer {token}").parse()
    {
        headers.insert(header::AUTHORIZATION, v);
    }
    let sent = up
        .client
        .request(parts.method, format!("{}{path}", up.base))
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    match sent {
        Ok(resp) => relay(resp),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the model endpoint is unreachable: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn only_the_messages_api_is_relayed() {
        assert!(relayed(&Method::POST, "/v1/messages"));
        assert!(relayed(&Method::POST, "/v1/messages/count_tokens"));
        for (m, p) in [
            (Method::GET, "/v1/messages"),
            (Method::POST, "/v1/files"),
            (Method::GET, "/v1/organizations/api_keys"),
            (Method::POST, "/v1/messages/batches"),
            (Method::POST, "/v1/messages/../files"),
            (Method::POST, "/v1/messages/"),
        ] {
            assert!(!relayed(&m, p), "{m} {p}");
        }
        assert!(connectivity_check(&Method::HEAD, "/api/hello"));
        assert!(!connectivity_check(&Method::POST, "/"));
    }

    /// The attack: the agent uses the proxy (its own token) to reach other APIs with the key.
    #[tokio::test]
    async fn the_key_opens_nothing_but_the_messages_api() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        let upstream = axum::Router::new().fallback(move |req: Request| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(req.uri().path().to_owned());
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, upstream).await });
        let proxy = ModelProxy::start(
            &Credentials {
                anthropic_base_url: Some(format!("http://{addr}")),
                anthropic_api_key: Some("sk-real".into()),
                ..Default::default()
            },
            crate::mcp::Routes::default(),
        )
        .await
        .unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let send = |method: reqwest::Method, path: &str| {
            client
                .request(method, format!("{}{path}", proxy.base_url))
                .header("x-api-key", &proxy.token)
                .send()
        };
        assert_eq!(
            send(reqwest::Method::POST, "/v1/messages?beta=true")
                .await
                .unwrap()
                .status(),
            200
        );
        for path in [
            "/v1/files",
            "/v1/organizations/users",
            "/v1/messages/batches",
        ] {
            let r = send(reqwest::Method::POST, path).await.unwrap();
            assert_eq!(r.status(), 404, "{path}");
        }
        let r = send(reqwest::Method::GET, "/v1/models").await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(*seen.lock().unwrap(), ["/v1/messages"]);
    }

    /// The agent reaches a configured MCP server through the proxy, which adds the server's
    /// credential; without the proxy token, at another server's name, or by a redirect, the
    /// credential goes nowhere.
    #[tokio::test]
    async fn mcp_servers_get_their_credential_from_the_proxy_only() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::<(
            String,
            Option<String>,
            Option<String>,
        )>::new()));
        let log = seen.clone();
        let upstream = axum::Router::new().fallback(move |req: Request| {
            let log = log.clone();
            async move {
                let h = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                log.lock().unwrap().push((
                    req.uri().path().to_owned(),
                    h("authorization"),
                    h("x-ambient-proxy-token"),
                ));
                if req.uri().path() == "/moved" {
                    return Response::builder()
                        .status(302)
                        .header("location", "/elsewhere")
                        .body(Body::empty())
                        .unwrap();
                }
                Response::builder()
                    .header("mcp-session-id", "s1")
                    .body(Body::from("{}"))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, upstream).await });
        let servers = [
            model::mcp::Server {
                name: "tracker".into(),
                config: serde_json::json!({"type": "http", "url": format!("http://{addr}/mcp"),
                    "headers": {"Authorization": "Bearer ${MCP_T}"}}),
                project: true,
            },
            model::mcp::Server {
                name: "moved".into(),
                config: serde_json::json!({"type": "http", "url": format!("http://{addr}/moved"),
                    "headers": {"Authorization": "Bearer ${MCP_T}"}}),
                project: true,
            },
        ];
        let credentials = Credentials {
            mcp: [("MCP_T".to_owned(), "s3cret".to_owned())].into(),
            ..Default::default()
        };
        let (routes, _) = crate::mcp::Routes::new(&servers, &credentials);
        let proxy = ModelProxy::start(&credentials, routes).await.unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let post = |path: &str, token: &str| {
            client
                .post(format!("{}{path}", proxy.base_url))
                .header(crate::mcp::PROXY_TOKEN_HEADER, token)
                .header("authorization", "Bearer agent-made")
                .body("{}")
                .send()
        };
        let r = post("/mcp/tracker", &proxy.token).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["mcp-session-id"], "s1");
        assert_eq!(post("/mcp/tracker", "guess").await.unwrap().status(), 401);
        assert_eq!(
            post("/mcp/other", &proxy.token).await.unwrap().status(),
            404
        );
        assert_eq!(
            post("/mcp/tracker%2F..%2Fmoved", &proxy.token)
                .await
                .unwrap()
                .status(),
            404
        );
        // The model's key does not open MCP routes, nor the MCP token the model API.
        let r = client
            .post(format!("{}/mcp/tracker", proxy.base_url))
            .header("x-api-key", &proxy.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            post("/mcp/moved", &proxy.token).await.unwrap().status(),
            302
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [
                ("/mcp".to_owned(), Some("Bearer s3cret".to_owned()), None),
                ("/moved".to_owned(), Some("Bearer s3cret".to_owned()), None),
            ]
        );
    }
}
