//! The REST client, and the errors of the CLI with the exit codes scripts rely on.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Profile;

/// Why a command failed; each kind has its exit code ([`Error::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or the environment is wrong.
    #[error("{0}")]
    Usage(String),
    /// No server or key: `ambient login` first.
    #[error("not signed in: run `ambient login <url>` (or set AMBIENT_URL and AMBIENT_KEY)")]
    NotSignedIn,
    /// The server answered with an error.
    #[error("{message} ({status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error's kind (`forbidden`, `not_found` ...).
        kind: String,
        /// What the server said.
        message: String,
    },
    /// The server cannot be reached, or failed (5xx).
    #[error("{0}")]
    Unreachable(String),
    /// A session followed with `logs -f` ended other than Completed.
    #[error("the session ended {0}")]
    SessionEnded(String),
    /// Something on this machine (a file, the terminal, an answer that did not parse).
    #[error("{0}")]
    Local(String),
}

impl Error {
    /// The process's exit code: 0 is success; clap's usage errors are 2.
    ///
    /// | code | meaning |
    /// |---|---|
    /// | 1 | anything else (a local file, an answer that does not parse) |
    /// | 2 | usage: a wrong command line |
    /// | 3 | not signed in, or the key is refused (401) |
    /// | 4 | the key's role does not allow it (403) |
    /// | 5 | no such project, session or key (404) |
    /// | 6 | conflict (409: exists already, or not in a state that allows it) |
    /// | 7 | invalid input (400, 413, 415) |
    /// | 8 | the server is unreachable or failed (5xx) |
    /// | 9 | `logs -f`: the session ended Failed or Stopped |
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Local(_) => 1,
            Error::Usage(_) => 2,
            Error::NotSignedIn => 3,
            Error::Api { status, .. } => match *status {
                401 => 3,
                403 => 4,
                404 | 410 => 5,
                409 => 6,
                400 | 413 | 415 | 422 => 7,
                s if s >= 500 => 8,
                _ => 1,
            },
            Error::Unreachable(_) => 8,
            Error::SessionEnded(_) => 9,
        }
    }
}

/// A client of one server, with one key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    key: String,
}

impl Client {
    /// A client of `profile`'s server.
    pub fn new(profile: &Profile) -> Result<Client, Error> {
        let base = parse_url(&profile.url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Local(e.to_string()))?;
        Ok(Client {
            http,
            base,
            key: profile.key.trim().to_owned(),
        })
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// `ws://` or `wss://` + host + `path`.
    pub fn ws_url(&self, path: &str) -> String {
        let mut url = self.base.clone();
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        let _ = url.set_scheme(scheme);
        url.set_path(path.split('?').next().unwrap_or(path));
        url.set_query(path.split_once('?').map(|(_, q)| q));
        url.to_string()
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(path.split('?').next().unwrap_or(path));
        url.set_query(path.split_once('?').map(|(_, q)| q));
        self.http.request(method, url).bearer_auth(&self.key)
    }

    /// Sends a request; the answer's body when it succeeded, the server's error otherwise.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<reqwest::Response, Error> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            Error::Unreachable(format!("cannot reach {}: {}", self.base, root_cause(&e)))
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(api_error(resp).await)
    }

    /// PUTs raw bytes (`application/octet-stream`); the answer when it succeeded.
    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<reqwest::Response, Error> {
        let resp = self
            .request(Method::PUT, path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Error::Unreachable(format!("cannot reach {}: {}", self.base, root_cause(&e)))
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(api_error(resp).await)
    }

    /// A JSON request with a JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, Error> {
        let resp = self.send_raw(method, path, body).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Unreachable(format!("the answer broke off: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Local(format!("the server's answer does not parse: {e}")))
    }

    /// GET with a JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.call(Method::GET, path, None::<&()>).await
    }
}

/// The server's URL: http(s), with a host.
pub fn parse_url(text: &str) -> Result<url::Url, Error> {
    let url = url::Url::parse(text.trim())
        .map_err(|e| Error::Usage(format!("'{text}' is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::Usage(format!(
            "'{text}' is not an http(s) URL of a server"
        )));
    }
    Ok(url)
}

async fn api_error(resp: reqwest::Response) -> Error {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: Option<model::api::ApiError> = serde_json::from_str(&text).ok();
    let (kind, message) = match body {
        Some(b) => (b.error, b.message),
        None => (
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_"),
            if text.trim().is_empty() || text.len() > 500 {
                status.to_string()
            } else {
                text.trim().to_owned()
            },
        ),
    };
    if status == StatusCode::UNAUTHORIZED {
        return Error::Api {
            status: status.as_u16(),
            kind,
            message: format!("{message}; sign in again with `ambient login`"),
        };
    }
    Error::Api {
        status: status.as_u16(),
        kind,
        message,
    }
}

/// The innermost cause of a transport error ("connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_exit_codes() {
        assert!(parse_url("http://127.0.0.1:3000").is_ok());
        for bad in ["127.0.0.1:3000", "ftp://x", "http://", "not a url"] {
            assert_eq!(parse_url(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
        let c = Client::new(&Profile {
            url: "https://ambient.example.com/".into(),
            key: " ak_x\n".into(),
        })
        .unwrap();
        assert_eq!(c.key(), "ak_x");
        assert_eq!(
            c.ws_url("/api/projects/p/agentic-sessions/s/ws?after=3"),
            "wss://ambient.example.com/api/projects/p/agentic-sessions/s/ws?after=3"
        );
        let api = |status| Error::Api {
            status,
            kind: String::new(),
            message: String::new(),
        };
        assert_eq!(
            [401, 403, 404, 409, 400, 503].map(|s| api(s).exit_code()),
            [3, 4, 5, 6, 7, 8]
        );
    }
}
