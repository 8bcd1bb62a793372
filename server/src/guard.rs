//! The doors of the HTTP surface, in front of every route but `/health`:
//!
//! 0. **Runners**: the runner endpoint is let through to check its runner token itself,
//!    by whatever host name it was reached (a Service name in a cluster, the loopback
//!    address in local mode): a browser can neither attach that token to a WebSocket nor
//!    send it across origins.
//! 1. **Host**: every other path (pages, the API, server functions, the viewer socket,
//!    sign-in) is served only on the configured host names (loopback names, and the host of
//!    `AMBIENT_PUBLIC_URL`): a page on another name that resolves to this machine (DNS
//!    rebinding) gets nothing, not even the sign-in page or a login link's cookie.
//! 2. **Who is calling**: an access key (`Authorization: Bearer ak_...`) or a browser
//!    session cookie; anything else is 401 — the login page for a page, JSON for the API
//!    and server functions, before any WebSocket upgrade. Runner tokens are refused
//!    everywhere but the runner endpoint, which checks its own.
//! 3. **Origin**: a request that changes something (any method but GET/HEAD/OPTIONS) and
//!    every WebSocket upgrade must come from this server's own origin; with no `Origin`
//!    header at all, only a key-bearing client (not a browser's cookie) may.
//! 4. **Server functions** accept JSON bodies only (what they decode): a cross-site form or
//!    `text/plain` post is refused with 415.
//!
//! `/login` and `/logout` turn login links and access keys into browser sessions.
//!
//! In Kubernetes mode a caller may also prove itself with a Kubernetes token: as a bearer
//! token (scripts, the CLI), typed into the sign-in page (a browser session whose token
//! stays in the server's memory), or forwarded by an OAuth proxy in
//! `X-Forwarded-Access-Token`; with `AMBIENT_TRUST_PROXY_HEADERS`, the proxy's
//! `X-Forwarded-User` and `X-Forwarded-Groups` are believed without a token. A proxy's
//! requests are a browser's: the Origin rule for cookies applies to them.

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use model::runner_env::RUNNER_TOKEN_PREFIX;
use platform::auth::Access;
use platform::auth::CallerKey;
use platform::auth::{AuthError, bearer};
use platform::identity::{Proof, SESSION_TTL_MS};
use platform::kube_identity::SIGN_IN_TTL;
use platform::people::{Forwarded, SignIn};
use platform::{ApiError, Caller, Services};
use serde::Deserialize;

use crate::state::AppState;

/// Name of the browser session cookie, followed by `_<port>`: cookies do not tell ports
/// apart, and two servers on one machine must not overwrite each other's.
pub const COOKIE: &str = "ambient_session";

/// What the doors let in.
#[derive(Debug, Clone)]
pub struct Doors {
    /// Host names served (lowercase, no port).
    pub hosts: Vec<String>,
    /// The origin of `AMBIENT_PUBLIC_URL` (`https://host[:port]`), when set.
    pub public_origin: Option<String>,
    /// Whether cookies get `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// The session cookie's name.
    pub cookie_name: String,
}

impl Doors {
    /// Loopback names, and the public URL's host; the server listens on `port`.
    pub fn new(public_url: Option<&url::Url>, port: u16) -> Doors {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
            .map(String::from)
            .to_vec();
        if let Some(host) = public_url.and_then(|u| u.host_str()) {
            hosts.push(host.to_ascii_lowercase());
        }
        Doors {
            hosts,
            public_origin: public_url.map(|u| u.origin().ascii_serialization()),
            secure_cookies: public_url.is_some_and(|u| u.scheme() == "https"),
            cookie_name: format!("{COOKIE}_{port}"),
        }
    }

    /// The host name of a `Host` header value, if it is served.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let name = match host.rsplit_once(':') {
            // `[::1]:3000`, `127.0.0.1:3000`, `localhost:3000`
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
            _ => host,
        };
        self.hosts.contains(&name)
    }

    /// Whether `origin` is this server's own, as reached through `host`.
    fn same_origin(&self, origin: &str, host: &str) -> bool {
        let own = [format!("http://{host}"), format!("https://{host}")];
        own.iter().any(|o| o.eq_ignore_ascii_case(origin))
            || self
                .public_origin
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(origin))
    }

    fn cookie(&self, value: &str, max_age_secs: i64) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}",
            self.cookie_name
        );
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Routes the doors let anyone reach (the login page needs no session).
fn is_public(path: &str) -> bool {
    matches!(path, "/login" | "/logout" | "/favicon.svg") || path.starts_with("/pkg/")
}

/// The runner endpoints (a run's, a files runner's) authenticate runners themselves
/// (runner tokens only).
fn is_runner_endpoint(path: &str) -> bool {
    path.starts_with("/api/projects/")
        && (path.ends_with("/runner/ws") || path.ends_with("/files-runner/ws"))
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/rpc/")
}

/// The value of the cookie `name`, if the request has one.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// How a request proved who it is.
enum Proven {
    /// By an access key: a program, not a browser.
    Key(Caller),
    /// By a browser session.
    Cookie(Caller),
    /// Not at all.
    Nobody,
}

/// The caller a proof makes: the owner, or (a project's key) the key with its role there;
/// either way with the key it came with.
fn caller_of(owner: &Caller, proof: Proof) -> Caller {
    match proof {
        Proof::InstallSecret | Proof::Session => owner.clone(),
        Proof::Key {
            id,
            name,
            scope: None,
            expires_ms,
        } => Caller {
            display_name: format!("{} (key {name})", owner.display_name),
            key: Some(CallerKey { id, expires_ms }),
            ..owner.clone()
        },
        Proof::Key {
            id,
            name,
            scope: Some((project, role)),
            expires_ms,
        } => Caller {
            user_id: format!("{}{id}", model::api::KEY_USER_PREFIX),
            display_name: format!("{name} ({role} key)"),
            access: Access::Project { project, role },
            key: Some(CallerKey { id, expires_ms }),
        },
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

async fn prove(
    services: &Services,
    doors: &Doors,
    headers: &HeaderMap,
) -> Result<Proven, ApiError> {
    let ids = &services.identities;
    let owner = &services.settings.local_user;
    let people = &services.people;
    let forwarded = Forwarded {
        access_token: header_text(headers, "x-forwarded-access-token"),
        user: header_text(headers, "x-forwarded-user"),
        groups: header_text(headers, "x-forwarded-groups"),
    };
    if let Some(caller) = people.proxied(forwarded).await? {
        return Ok(Proven::Cookie(caller));
    }
    match bearer(headers) {
        Err(AuthError::Invalid(why)) => return Err(ApiError::Unauthorized(why)),
        Err(AuthError::RunnerToken) => return Err(AuthError::RunnerToken.into_api()),
        Ok(Some(token)) if token.starts_with(RUNNER_TOKEN_PREFIX) => {
            return Err(AuthError::RunnerToken.into_api());
        }
        Ok(Some(token)) => {
            if let Some(caller) = people.bearer(token).await? {
                return Ok(Proven::Key(caller));
            }
            return match ids.check_key(token).await? {
                Some(proof) => Ok(Proven::Key(caller_of(owner, proof))),
                None => Err(ApiError::Unauthorized(
                    "this access key is not valid (revoked, expired, or never made)".into(),
                )),
            };
        }
        Ok(None) => {}
    }
    match cookie(headers, &doors.cookie_name) {
        Some(id) => Ok(match people.signed_in(id).await? {
            // A browser signed in with one of the people's tokens.
            Some(caller) => Proven::Cookie(caller),
            None => match ids.check_session(id).await? {
                Some(proof) => Proven::Cookie(caller_of(owner, proof)),
                None => Proven::Nobody,
            },
        }),
        None => Ok(Proven::Nobody),
    }
}

fn refusal(status: StatusCode, error: &str, message: String) -> Response {
    let body = model::api::ApiError {
        error: error.to_owned(),
        message,
    };
    (status, axum::Json(body)).into_response()
}

/// The middleware in front of every route.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/health" {
        return next.run(req).await;
    }
    // Runners are let in by their token alone, whatever host name they used: in a cluster
    // they reach the server by its Service name, which no person's URL has. The endpoint
    // answers nothing without a runner token, and a page in a browser cannot attach one to
    // a WebSocket (or send one across origins), so DNS rebinding gains nothing here.
    if is_runner_endpoint(&path) {
        return next.run(req).await;
    }
    let doors = &state.doors;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if !doors.host_allowed(&host) {
        return refusal(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this server does not answer to the host name '{host}' (set AMBIENT_PUBLIC_URL to serve it)"
            ),
        );
    }
    let headers = req.headers();
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || headers.contains_key(header::UPGRADE);
    let proven = match prove(&state.services, doors, headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if changes {
        match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            Some(origin) if !doors.same_origin(origin, &host) => {
                return refusal(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("requests from another origin ({origin}) are refused"),
                );
            }
            Some(_) => {}
            // Browsers always send an Origin with these; a cookie without one is not a
            // request this server's pages made.
            None if matches!(proven, Proven::Cookie(_)) => {
                return refusal(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "a request that changes something must say its Origin".into(),
                );
            }
            None => {}
        }
    }
    if path.starts_with("/rpc/") && *req.method() == Method::POST && !is_json(req.headers()) {
        return refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "server functions take JSON (Content-Type: application/json)".into(),
        );
    }
    let caller = match proven {
        Proven::Key(c) | Proven::Cookie(c) => c,
        Proven::Nobody if is_public(&path) => return next.run(req).await,
        Proven::Nobody if is_api(&path) => {
            return refusal(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                if state.services.people.has_people() {
                    "sign in first: send Authorization: Bearer <Kubernetes token or access key>"
                } else {
                    "sign in first: open the login link the server printed, or send Authorization: Bearer <access key>"
                }
                .into(),
            );
        }
        Proven::Nobody => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                None,
                state.services.people.has_people(),
            );
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// `GET /login?token=...`: a one-time login link.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    token: Option<String>,
}

/// `GET /login`: with a token, signs the browser in; without, the login page.
pub async fn login_link(State(state): State<AppState>, Query(q): Query<LinkQuery>) -> Response {
    let Some(token) = q.token else {
        return login_page(StatusCode::OK, None, state.services.people.has_people());
    };
    match state.services.identities.redeem_login_token(&token).await {
        Ok(true) => signed_in(&state, None).await,
        Ok(false) => login_page(
            StatusCode::UNAUTHORIZED,
            Some(
                "This login link was used already or has expired. Ask for a new one (`server --login-url` on the server's machine), or sign in with an access key.",
            ),
            state.services.people.has_people(),
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /login` with `key=<access key>` (a form): signs the browser in.
#[derive(Debug, Deserialize)]
pub struct KeyForm {
    key: String,
}

/// `POST /login`: an access key typed into the login page.
pub async fn login_key(
    State(state): State<AppState>,
    axum::Form(form): axum::Form<KeyForm>,
) -> Response {
    let key = form.key.trim();
    let people = &state.services.people;
    match people.sign_in(key).await {
        Ok(SignIn::NotOurs) => {}
        Ok(SignIn::SignedIn(id)) => {
            return to_projects_with(
                state
                    .doors
                    .cookie(&id, i64::try_from(SIGN_IN_TTL.as_secs()).unwrap_or(0)),
            );
        }
        Ok(SignIn::Refused) => {
            return login_page(
                StatusCode::UNAUTHORIZED,
                Some(
                    "That is neither an access key of this server nor a Kubernetes token the cluster accepts.",
                ),
                true,
            );
        }
        Err(e) => return e.into_response(),
    }
    match state.services.identities.check_key(key).await {
        // A browser signed in with a key has that key's access, and ends with it.
        Ok(Some(Proof::Key { id, .. })) => signed_in(&state, Some(id)).await,
        Ok(Some(_)) => signed_in(&state, None).await,
        Ok(None) => login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not a valid access key."),
            people.has_people(),
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /logout`: ends the browser session.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, &state.doors.cookie_name)
        && !state.services.people.sign_out(id)
    {
        let _ = state.services.identities.end_session(id).await;
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, state.doors.cookie("", 0));
    resp
}

async fn signed_in(state: &AppState, key: Option<i64>) -> Response {
    match state.services.identities.create_session(key).await {
        Ok(id) => to_projects_with(state.doors.cookie(&id, SESSION_TTL_MS / 1000)),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A signed-in browser goes to its projects with its cookie.
fn to_projects_with(cookie: HeaderValue) -> Response {
    let mut resp = Redirect::to("/projects").into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp
}

/// How to sign in to a local server, naming the command that prints a new login link by
/// the path of this very binary (it is seldom on the PATH).
static LOCAL_HOW: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "server".into());
    format!(
        "Open the login link the server printed when it started, or run <code>{} --login-url</code> on the server's machine (with the server's <code>AMBIENT_DATA_DIR</code>, if it has one) for a new one. Or sign in with an access key (the install secret in the data directory is one):",
        escape(&exe)
    )
});

/// The login page: self-contained (it is shown before any session exists). In Kubernetes
/// mode (`kubernetes`) it also takes a Kubernetes token.
pub fn login_page(status: StatusCode, problem: Option<&str>, kubernetes: bool) -> Response {
    let (label, how) = if kubernetes {
        (
            "Kubernetes token or access key",
            "Sign in with your Kubernetes token (<code>kubectl create token &lt;service account&gt;</code>, or <code>oc whoami -t</code>): you get the roles the cluster gives you. An access key of this server works too.",
        )
    } else {
        ("Access key", LOCAL_HOW.as_str())
    };
    let problem = problem
        .map(|p| format!("<p class=\"problem\" role=\"alert\">{}</p>", escape(p)))
        .unwrap_or_default();
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><title>Sign in · Ambient Code Platform</title>
<link rel="icon" type="image/svg+xml" href="/favicon.svg">
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:10vh auto;padding:0 1rem;line-height:1.5}}
input{{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}}button{{margin-top:.75rem;padding:.5rem 1rem;font:inherit}}
.problem{{color:#c92a2a}}code{{font-size:.9em}}</style></head>
<body><main id="login"><h1>Sign in</h1>{problem}
<p>{how}</p>
<form method="post" action="/login"><label for="key">{label}</label>
<input id="key" name="key" type="password" autocomplete="off" required autofocus>
<button type="submit">Sign in</button></form></main></body></html>"#
    );
    (status, Html(html)).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        let public = url::Url::parse("https://ambient.example.com").unwrap();
        let doors = Doors::new(Some(&public), 3000);
        for ok in [
            "127.0.0.1:3000",
            "localhost",
            "LOCALHOST:80",
            "[::1]:3000",
            "ambient.example.com",
        ] {
            assert!(doors.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "127.0.0.1.evil.com:3000",
            "",
            "ambient.example.com.evil:1",
        ] {
            assert!(!doors.host_allowed(bad), "{bad}");
        }
        assert!(doors.same_origin("http://127.0.0.1:3000", "127.0.0.1:3000"));
        assert!(doors.same_origin("https://ambient.example.com", "127.0.0.1:3000"));
        assert!(!doors.same_origin("http://evil.com", "127.0.0.1:3000"));
        assert!(!doors.same_origin("http://127.0.0.1:3001", "127.0.0.1:3000"));
        assert!(doors.secure_cookies);
        assert!(!Doors::new(None, 3000).host_allowed("ambient.example.com"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ambient_session_3000=ws_x; b=2"),
        );
        assert_eq!(cookie(&h, "ambient_session_3000"), Some("ws_x"));
        assert_eq!(cookie(&h, "ambient_session_3001"), None);
    }
}
