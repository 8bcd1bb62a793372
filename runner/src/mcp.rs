//! The MCP servers of a run: the configuration the agent's `claude` is given, and the routes
//! of the proxy that relays to HTTP servers.
//!
//! A stdio server is given to `claude` as configured: it runs beside the agent, in its
//! sandbox. An HTTP server is given as the proxy's `/mcp/<name>` with the run's proxy token:
//! the proxy (the runner's in local mode, the keeper's in a pod) adds the configured headers,
//! the project's credentials expanded in them, and relays to the server. So the agent never
//! holds a credential, and a sandbox with a network of its own reaches the server at all.
//! An SSE server (the older transport, whose messages go to an address the server names) is
//! given as configured, and takes no credential.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderName, HeaderValue};
use model::mcp::{Server, Transport};
use model::runner_env::Credentials;
use serde_json::{Value, json};

/// The header carrying the proxy token on MCP requests (the server's own `Authorization`
/// or `X-Api-Key` stay free for the configured headers).
pub const PROXY_TOKEN_HEADER: &str = "x-ambient-proxy-token";

/// Where the proxy relays one server's requests.
#[derive(Debug, Clone)]
pub struct Route {
    /// The server's address.
    pub url: String,
    /// The headers added to every request (credentials expanded).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the server may be on this machine (a project's server, which an admin
    /// chose). A session's may not: the agent's own network refuses this machine's
    /// loopback, and the proxy must not open it again ([`NotThisMachine`]).
    pub local: bool,
}

/// Whether `ip` is this machine (loopback or unspecified, IPv4-mapped too).
pub fn is_this_machine(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    ip.is_loopback() || ip.is_unspecified()
}

/// A resolver that leaves out this machine's addresses (a name a session's server gives,
/// `localhost` or one that resolves to it, reaches nothing here).
#[derive(Debug, Clone, Copy)]
pub struct NotThisMachine;

impl reqwest::dns::Resolve for NotThisMachine {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = found.filter(|a| !is_this_machine(a.ip())).collect();
            if kept.is_empty() {
                return Err(format!("{} is this machine: refused", name.as_str()).into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The host of an `http(s)` URL as an IP address, when it is one.
fn literal_ip(url: &str) -> Option<IpAddr> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.parse().ok()
}

/// The routes by server name.
#[derive(Debug, Clone, Default)]
pub struct Routes(BTreeMap<String, Route>);

impl Routes {
    /// The routes of the HTTP servers among `servers`. A project server's headers get the
    /// credentials they reference; a header whose credential is not set is left out (the
    /// server then refuses, and `claude` reports it failed), with a warning returned. A
    /// session's server takes no credential: its headers are sent as written.
    pub fn new(servers: &[Server], credentials: &Credentials) -> (Routes, Vec<String>) {
        let mut routes = BTreeMap::new();
        let mut warnings = Vec::new();
        for server in servers {
            let Ok(Transport::Http { url, headers }) = model::mcp::transport(&server.config) else {
                continue;
            };
            if !server.project && literal_ip(&url).is_some_and(is_this_machine) {
                warnings.push(format!(
                    "MCP server '{}': {url} is this machine, which a session's server may not reach; left out",
                    server.name
                ));
                continue;
            }
            let mut out = Vec::new();
            for (name, value) in headers {
                let value = if server.project {
                    match model::mcp::expand(&value, |k| credentials.get(k).map(str::to_owned)) {
                        Ok(v) => v,
                        Err(missing) => {
                            warnings.push(format!(
                                "MCP server '{}': credential {missing} is not set; header '{name}' left out",
                                server.name
                            ));
                            continue;
                        }
                    }
                } else {
                    value
                };
                match (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value),
                ) {
                    (Ok(n), Ok(mut v)) => {
                        v.set_sensitive(true);
                        out.push((n, v));
                    }
                    _ => warnings.push(format!(
                        "MCP server '{}': header '{name}' is not a valid header; left out",
                        server.name
                    )),
                }
            }
            routes.insert(
                server.name.clone(),
                Route {
                    url,
                    headers: out,
                    local: server.project,
                },
            );
        }
        (Routes(routes), warnings)
    }

    /// The route of server `name`.
    pub fn get(&self, name: &str) -> Option<&Route> {
        self.0.get(name)
    }
}

/// `claude`'s `--mcp-config` JSON for `servers`, HTTP servers pointed at the proxy at
/// `proxy_url` with `token`; `None` without servers.
pub fn agent_config(servers: &[Server], proxy_url: &str, token: &str) -> Option<String> {
    if servers.is_empty() {
        return None;
    }
    let mut out = serde_json::Map::new();
    for server in servers {
        let config = match model::mcp::transport(&server.config) {
            Ok(Transport::Http { .. }) => json!({
                "type": "http",
                "url": format!("{}/mcp/{}", proxy_url.trim_end_matches('/'), server.name),
                "headers": { PROXY_TOKEN_HEADER: token },
            }),
            Ok(Transport::Sse { .. } | Transport::Stdio) => server.config.clone(),
            // Checked when it was configured; one that is not valid now is left out.
            Err(_) => continue,
        };
        out.insert(server.name.clone(), config);
    }
    Some(
        Value::Object(
            [("mcpServers".to_owned(), Value::Object(out))]
                .into_iter()
                .collect(),
        )
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, config: Value, project: bool) -> Server {
        Server {
            name: name.into(),
            config,
            project,
        }
    }

    #[test]
    fn http_servers_go_through_the_proxy_and_credentials_stay_in_it() {
        let servers = [
            server(
                "tracker",
                json!({"type": "http", "url": "https://mcp.example/t",
                    "headers": {"Authorization": "Bearer ${MCP_T}", "X-Team": "a"}}),
                true,
            ),
            server(
                "local",
                json!({"command": "python3", "args": ["s.py"]}),
                false,
            ),
            server(
                "mine",
                json!({"type": "http", "url": "https://m/", "headers": {"A": "${MCP_T}"}}),
                false,
            ),
        ];
        let credentials = Credentials {
            mcp: [("MCP_T".to_owned(), "s3cret".to_owned())].into(),
            ..Credentials::default()
        };
        let config = agent_config(&servers, "http://127.0.0.1:9/", "tok").unwrap();
        assert!(
            !config.contains("s3cret") && !config.contains("mcp.example"),
            "{config}"
        );
        let v: Value = serde_json::from_str(&config).unwrap();
        assert_eq!(
            v["mcpServers"]["tracker"]["url"],
            "http://127.0.0.1:9/mcp/tracker"
        );
        assert_eq!(
            v["mcpServers"]["tracker"]["headers"][PROXY_TOKEN_HEADER],
            "tok"
        );
        assert_eq!(v["mcpServers"]["local"]["command"], "python3");

        let (routes, warnings) = Routes::new(&servers, &credentials);
        assert!(warnings.is_empty(), "{warnings:?}");
        let t = routes.get("tracker").unwrap();
        assert_eq!(t.url, "https://mcp.example/t");
        assert_eq!(t.headers[0].1, "Bearer s3cret");
        // A session's server takes no credential, even one that slipped past validation.
        assert_eq!(routes.get("mine").unwrap().headers[0].1, "${MCP_T}");
        assert!(routes.get("local").is_none());

        let (routes, warnings) = Routes::new(&servers, &Credentials::default());
        assert!(warnings[0].contains("MCP_T is not set"), "{warnings:?}");
        assert!(routes.get("tracker").unwrap().local && !routes.get("mine").unwrap().local);
        assert_eq!(routes.get("tracker").unwrap().headers.len(), 1);
        assert_eq!(agent_config(&[], "http://x", "t"), None);
    }

    /// The attack: a session's own server at this machine's loopback (the platform's
    /// server, other local services), reached through the proxy the agent may use.
    #[test]
    fn a_sessions_server_never_reaches_this_machine() {
        for url in [
            "http://127.0.0.1:3000/api",
            "http://127.1.2.3/",
            "http://[::1]:80/",
            "http://0.0.0.0:8080/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let servers = [server("s", json!({"type": "http", "url": url}), false)];
            let (routes, warnings) = Routes::new(&servers, &Credentials::default());
            assert!(
                routes.get("s").is_none() && warnings[0].contains("this machine"),
                "{url}"
            );
            // A project's server (an admin's choice) may be.
            let servers = [server("s", json!({"type": "http", "url": url}), true)];
            assert!(
                Routes::new(&servers, &Credentials::default())
                    .0
                    .get("s")
                    .is_some(),
                "{url}"
            );
        }
        assert!(!is_this_machine("10.0.0.1".parse().unwrap()));
        assert_eq!(literal_ip("https://mcp.example:443/x"), None);
    }

    #[tokio::test]
    async fn names_that_resolve_to_this_machine_are_refused() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = NotThisMachine.resolve(name).await.err().expect("refused");
        assert!(err.to_string().contains("this machine"), "{err}");
    }
}
