//! The server's configuration: flags and environment, validated once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use model::runner_env::{self as env, Credentials};

/// Models offered when `AMBIENT_MODELS` is not set.
pub const DEFAULT_MODELS: &str = "claude-sonnet-4-6,claude-opus-4-6,claude-haiku-4-5";

/// Command line and environment of the server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "server",
    about = "Ambient Code Platform server (local mode)",
    version
)]
pub struct Config {
    /// Directory for the database and session workspaces.
    /// Default: $XDG_DATA_HOME/ambient-code, else ~/.local/share/ambient-code.
    #[arg(long, env = "AMBIENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on. Default: the address the UI was built for (127.0.0.1:3000).
    #[arg(long, env = "AMBIENT_ADDR")]
    pub addr: Option<SocketAddr>,
    /// A second address serving only the runner endpoint (and `/health`), for a deployment
    /// where people reach the server through a proxy that runners must not pass (the
    /// openshift overlay: OpenShift's OAuth proxy in front, runner pods on this port, let in
    /// by a NetworkPolicy). Nothing else is served on it.
    #[arg(long, env = "AMBIENT_RUNNER_ADDR")]
    pub runner_addr: Option<SocketAddr>,
    /// An address serving the metrics (`GET /metrics`, Prometheus's text format) without
    /// sign-in, and nothing else; none by default. Bind it where only the monitoring can
    /// reach it (loopback, or a port no Service or Route exposes).
    #[arg(long, env = "AMBIENT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// The runner executable. Default: `runner` next to this executable.
    #[arg(long, env = "AMBIENT_RUNNER_BIN")]
    pub runner_bin: Option<PathBuf>,
    /// The `claude` executable runners use. Default: `claude` on the runner's PATH.
    #[arg(long, env = "AMBIENT_CLAUDE_BIN")]
    pub claude_bin: Option<PathBuf>,
    /// Model of sessions that name none.
    #[arg(
        long,
        env = "AMBIENT_DEFAULT_MODEL",
        default_value = "claude-sonnet-4-6"
    )]
    pub default_model: String,
    /// Models sessions may choose, comma-separated.
    #[arg(long, env = "AMBIENT_MODELS", value_delimiter = ',', default_value = DEFAULT_MODELS)]
    pub models: Vec<String>,
    /// Seconds a stopping runner gets before it and its processes are killed.
    #[arg(long, env = "AMBIENT_STOP_GRACE_SECS", default_value_t = 10)]
    pub stop_grace_secs: u64,
    /// Inactivity timeout of sessions whose project sets none (seconds; 0 disables).
    #[arg(
        long,
        env = "AMBIENT_INACTIVITY_TIMEOUT_SECS",
        default_value_t = model::project_settings::DEFAULT_INACTIVITY_TIMEOUT_SECONDS
    )]
    pub inactivity_timeout_secs: i64,
    /// Run sessions with the in-process local driver (child processes). Turn off when an
    /// external operator runs them, or for load tests with simulated runners.
    #[arg(long, env = "AMBIENT_LOCAL_DRIVER", default_value_t = true, action = clap::ArgAction::Set)]
    pub local_driver: bool,
    /// Where sessions, projects and credentials live: `local` (this machine: SQLite, runners
    /// as child processes) or `kubernetes` (AgenticSession resources, managed namespaces and
    /// Secrets; an operator runs sessions as Jobs). Default: `kubernetes` inside a cluster
    /// (KUBERNETES_SERVICE_HOST is set), `local` elsewhere.
    #[arg(long, env = "AMBIENT_MODE", value_parser = ["local", "kubernetes"])]
    pub mode: Option<String>,
    /// Kubernetes mode: the install secret (an access key, `ak_` and 32 or more letters or
    /// digits), from a Kubernetes Secret, instead of one kept in the data directory.
    #[arg(long, env = "AMBIENT_INSTALL_SECRET", hide_env_values = true)]
    pub install_secret: Option<String>,
    /// The kubeconfig of Kubernetes mode; default: the pod's ServiceAccount in a cluster,
    /// else `~/.kube/config`.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes mode: believe the `X-Forwarded-User`, `-Email` and `-Groups` headers of
    /// an OAuth proxy in front of the server (the `openshift` overlay's). Only behind such a
    /// proxy: anyone who reaches the server directly could claim to be anyone.
    #[arg(long, env = "AMBIENT_TRUST_PROXY_HEADERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_proxy_headers: bool,
    /// Kubernetes mode: how long what the cluster said of a token (who it is) and of a role
    /// (what it may do in a project) is kept; a RoleBinding removed takes effect within it.
    /// Both modes: how often an open viewer WebSocket asks again whether its caller may still
    /// watch (a key revoked or expired closes it within this time).
    #[arg(long, env = "AMBIENT_ACCESS_CACHE_SECONDS", default_value_t = 10)]
    pub access_cache_secs: u64,
    /// Stop every session's runner when the server stops (for test servers: normally
    /// runners outlive a restart and the next server adopts them).
    #[arg(long, env = "AMBIENT_STOP_RUNNERS_ON_EXIT", default_value_t = false, action = clap::ArgAction::Set)]
    pub stop_runners_on_exit: bool,
    /// Run no agent outside its bubblewrap sandbox: where the sandbox cannot run, the
    /// server does not start. Without it, where the sandbox cannot run agents run
    /// unconfined, with a warning; where it runs at start it is required of every runner
    /// either way (a runner whose sandbox fails later fails its run).
    #[arg(long, env = "AMBIENT_REQUIRE_SANDBOX", default_value_t = false, action = clap::ArgAction::Set)]
    pub require_sandbox: bool,
    /// Most sessions running at once; more wait in Pending and start in order as others
    /// end. Default: the memory available at start, half a GiB per session.
    #[arg(long, env = "AMBIENT_MAX_RUNNING_SESSIONS")]
    pub max_running_sessions: Option<usize>,
    /// Write Zopfli-compressed `.gz` files next to the UI's assets (served instead of
    /// compressing each response), then exit. Run after each release build.
    #[arg(long)]
    pub precompress_assets: bool,
    /// Print a new one-time login link (for another browser, or after the first one was
    /// used), then exit. Works while the server runs.
    #[arg(long)]
    pub login_url: bool,
    /// The URL people reach this server at, when not on this machine's loopback address
    /// (behind a proxy, or listening on the network): its host name is served, its origin
    /// trusted, and login links use it. Required to listen on a non-loopback address.
    #[arg(long, env = "AMBIENT_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// Name of the local user, shown as the sender of messages. Default: $USER.
    #[arg(long, env = "AMBIENT_USER")]
    pub user: Option<String>,
    /// Anthropic API key for every project that sets none.
    #[arg(long, env = env::ANTHROPIC_API_KEY, hide_env_values = true)]
    pub anthropic_api_key: Option<String>,
    /// Anthropic-compatible endpoint for every project that sets none.
    #[arg(long, env = env::ANTHROPIC_BASE_URL)]
    pub anthropic_base_url: Option<String>,
    /// Bearer token for an Anthropic-compatible endpoint.
    #[arg(long, env = env::ANTHROPIC_AUTH_TOKEN, hide_env_values = true)]
    pub anthropic_auth_token: Option<String>,
    /// GitHub token for pushes and pull requests of every project that sets none.
    #[arg(long, env = env::GITHUB_TOKEN, hide_env_values = true)]
    pub github_token: Option<String>,
    /// GitLab token for pushes and merge requests of every project that sets none.
    #[arg(long, env = env::GITLAB_TOKEN, hide_env_values = true)]
    pub gitlab_token: Option<String>,
    /// Git repository of the workflow catalogue the new-session form offers (its
    /// `workflows/<id>/.ambient/ambient.json`), the original platform's by default; empty:
    /// none (a workflow's URL can still be typed).
    #[arg(long, env = "AMBIENT_WORKFLOW_CATALOGUE", default_value = DEFAULT_WORKFLOW_CATALOGUE)]
    pub workflow_catalogue: String,
    /// Branch of the workflow catalogue.
    #[arg(long, env = "AMBIENT_WORKFLOW_CATALOGUE_BRANCH", default_value = model::session::DEFAULT_BRANCH)]
    pub workflow_catalogue_branch: String,
}

/// The original platform's workflow catalogue.
pub const DEFAULT_WORKFLOW_CATALOGUE: &str = "https://github.com/ambient-code/workflows.git";

/// Where the records live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// On this machine.
    Local,
    /// In a Kubernetes cluster, reached with this kubeconfig (else the defaults).
    Kubernetes {
        /// A kubeconfig file.
        kubeconfig: Option<PathBuf>,
    },
}

/// The configuration, checked and resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Local or Kubernetes mode.
    pub mode: Mode,
    /// The install secret given (Kubernetes mode), if any.
    pub install_secret: Option<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Runner executable.
    pub runner_bin: PathBuf,
    /// `claude` executable, if given.
    pub claude_bin: Option<PathBuf>,
    /// Default model.
    pub default_model: String,
    /// Models offered.
    pub models: Vec<String>,
    /// Stop grace period.
    pub stop_grace: Duration,
    /// Default inactivity timeout.
    pub inactivity_timeout_secs: i64,
    /// Whether the local driver runs sessions.
    pub local_driver: bool,
    /// Whether runners are stopped when the server stops.
    pub stop_runners_on_exit: bool,
    /// Whether agents must run in their sandbox.
    pub require_sandbox: bool,
    /// Most sessions running at once.
    pub max_running: usize,
    /// Where people reach the server, when it is not loopback.
    pub public_url: Option<url::Url>,
    /// The runners' own address, if any.
    pub runner_addr: Option<SocketAddr>,
    /// The metrics' own address, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// Print a login link when the server starts.
    pub print_login_link: bool,
    /// Local user name.
    pub user: String,
    /// Credentials given to projects without their own.
    pub credentials: Credentials,
    /// Kubernetes mode: whether an OAuth proxy's identity headers are believed.
    pub trust_proxy_headers: bool,
    /// Kubernetes mode: how long access reviews are kept; both modes: how often open viewer
    /// WebSockets ask again whether their caller may still watch.
    pub access_cache: Duration,
    /// Where the workflow catalogue is, if anywhere.
    pub workflow_catalogue: Option<platform::catalogue::Source>,
}

impl Config {
    /// Checks the configuration; the error is one line for the user.
    pub fn resolve(
        &self,
        home: Option<PathBuf>,
        xdg_data_home: Option<PathBuf>,
        user: Option<String>,
        in_cluster: bool,
    ) -> Result<Resolved, String> {
        let mode = match self.mode.as_deref() {
            Some("kubernetes") => Mode::Kubernetes {
                kubeconfig: self.kubeconfig.clone(),
            },
            None if in_cluster => Mode::Kubernetes {
                kubeconfig: self.kubeconfig.clone(),
            },
            _ => Mode::Local,
        };
        let data_dir = match (
            &self.data_dir,
            xdg_data_home.filter(|p| p.is_absolute()),
            home,
        ) {
            (Some(d), _, _) => d.clone(),
            (None, Some(xdg), _) => xdg.join("ambient-code"),
            (None, None, Some(home)) => home.join(".local/share/ambient-code"),
            (None, None, None) => {
                return Err("cannot tell where to keep data: set AMBIENT_DATA_DIR or HOME".into());
            }
        };
        let runner_bin = match &self.runner_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot locate the runner: {e}; set AMBIENT_RUNNER_BIN"))?
                .with_file_name("runner"),
        };
        if mode == Mode::Local {
            // Every agent's sandbox shows the system directories read-only: a data directory
            // among them would show agents the database and every other workspace.
            let real = std::fs::canonicalize(&data_dir).unwrap_or_else(|_| data_dir.clone());
            if operator::local::process::in_sandbox_system(&data_dir)
                || operator::local::process::in_sandbox_system(&real)
            {
                return Err(format!(
                    "the data directory {} is inside a system directory every agent's sandbox shows (/usr, /bin, /sbin, /lib*, /opt, /etc): agents could read the database and other sessions' workspaces; set AMBIENT_DATA_DIR elsewhere",
                    data_dir.display()
                ));
            }
        }
        if mode == Mode::Local && self.trust_proxy_headers {
            return Err(
                "AMBIENT_TRUST_PROXY_HEADERS is for Kubernetes mode behind an OAuth proxy; local mode has no proxy to trust"
                    .into(),
            );
        }
        let workflow_catalogue = match self.workflow_catalogue.trim() {
            "" => None,
            url => {
                model::validate::repo_url("AMBIENT_WORKFLOW_CATALOGUE", url)
                    .map_err(|e| e.to_string())?;
                model::validate::branch_name(
                    "AMBIENT_WORKFLOW_CATALOGUE_BRANCH",
                    &self.workflow_catalogue_branch,
                )
                .map_err(|e| e.to_string())?;
                Some(platform::catalogue::Source {
                    git_url: url.to_owned(),
                    branch: self.workflow_catalogue_branch.clone(),
                })
            }
        };
        if self.access_cache_secs > 3600 {
            return Err("AMBIENT_ACCESS_CACHE_SECONDS must be at most 3600 (an hour)".into());
        }
        if mode == Mode::Local && self.install_secret.is_some() {
            return Err(
                "AMBIENT_INSTALL_SECRET is for Kubernetes mode; local mode keeps its install secret in its data directory"
                    .into(),
            );
        }
        // In Kubernetes mode runners are pods of the runner image.
        if mode == Mode::Local && !runner_bin.is_file() {
            return Err(format!(
                "runner executable not found at {}: build it with `cargo build --release -p runner` or set AMBIENT_RUNNER_BIN",
                runner_bin.display()
            ));
        }
        if let Some(claude) = &self.claude_bin
            && !claude.is_file()
        {
            return Err(format!(
                "claude executable not found at {} (AMBIENT_CLAUDE_BIN); run `make setup`",
                claude.display()
            ));
        }
        let models: Vec<String> = self
            .models
            .iter()
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        if !models.contains(&self.default_model) {
            return Err(format!(
                "the default model '{}' is not among AMBIENT_MODELS ({})",
                self.default_model,
                models.join(", ")
            ));
        }
        if self.inactivity_timeout_secs < 0 {
            return Err("AMBIENT_INACTIVITY_TIMEOUT_SECS must be zero or more".into());
        }
        if let Some(url) = &self.public_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(format!(
                "AMBIENT_PUBLIC_URL must be an http or https URL, not {url}"
            ));
        }
        if let Some(addr) = self.addr
            && !addr.ip().is_loopback()
            && self.public_url.is_none()
        {
            return Err(format!(
                "AMBIENT_ADDR {addr} is reachable from the network: set AMBIENT_PUBLIC_URL to the URL people reach the server at (everyone must sign in)"
            ));
        }
        if let (Some(runners), Some(addr)) = (self.runner_addr, self.addr)
            && runners == addr
        {
            return Err(format!(
                "AMBIENT_RUNNER_ADDR {runners} is AMBIENT_ADDR: the runners' address must be another port"
            ));
        }
        if let Some(metrics) = self.metrics_addr
            && (Some(metrics) == self.addr || Some(metrics) == self.runner_addr)
        {
            return Err(format!(
                "AMBIENT_METRICS_ADDR {metrics} is the server's or the runners' address: the metrics need a port of their own"
            ));
        }
        let set = |v: &Option<String>| {
            v.as_ref()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let credentials = Credentials {
            anthropic_api_key: set(&self.anthropic_api_key),
            anthropic_base_url: set(&self.anthropic_base_url),
            anthropic_auth_token: set(&self.anthropic_auth_token),
            github_token: set(&self.github_token),
            gitlab_token: set(&self.gitlab_token),
            ..Credentials::default()
        };
        Ok(Resolved {
            mode,
            install_secret: self.install_secret.clone(),
            data_dir,
            runner_bin,
            claude_bin: self.claude_bin.clone(),
            default_model: self.default_model.clone(),
            models,
            stop_grace: Duration::from_secs(self.stop_grace_secs),
            inactivity_timeout_secs: self.inactivity_timeout_secs,
            local_driver: self.local_driver,
            stop_runners_on_exit: self.stop_runners_on_exit,
            require_sandbox: self.require_sandbox,
            max_running: match self.max_running_sessions {
                Some(0) => return Err("AMBIENT_MAX_RUNNING_SESSIONS must be at least 1".into()),
                Some(n) => n,
                None => operator::local::default_max_running(),
            },
            public_url: self.public_url.clone(),
            runner_addr: self.runner_addr,
            metrics_addr: self.metrics_addr,
            print_login_link: true,
            user: self
                .user
                .clone()
                .or(user)
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "local user".into()),
            credentials,
            trust_proxy_headers: self.trust_proxy_headers,
            access_cache: Duration::from_secs(self.access_cache_secs),
            workflow_catalogue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("server").chain(args.iter().copied())).unwrap()
    }

    /// The sandbox shows agents the system directories: no data directory may be there.
    #[test]
    fn a_data_directory_the_sandbox_shows_is_refused() {
        let runner = std::env::current_exe().unwrap();
        for dir in ["/opt/ambient", "/usr/local/share/ambient", "/etc/ambient"] {
            let c = parse(&["--runner-bin", runner.to_str().unwrap(), "--data-dir", dir]);
            let err = c.resolve(None, None, None, false).unwrap_err();
            assert!(err.contains("sandbox shows"), "{dir}: {err}");
        }
        let c = parse(&[
            "--runner-bin",
            runner.to_str().unwrap(),
            "--data-dir",
            "/srv/ambient",
        ]);
        assert!(c.resolve(None, None, None, false).is_ok());
    }

    #[test]
    fn data_dir_defaults_follow_xdg_then_home() {
        let runner = std::env::current_exe().unwrap();
        let base = ["--runner-bin", runner.to_str().unwrap()];
        let c = parse(&base);
        let r = c
            .resolve(Some("/home/a".into()), Some("/xdg".into()), None, false)
            .unwrap();
        assert_eq!(r.data_dir, PathBuf::from("/xdg/ambient-code"));
        let r = c
            .resolve(Some("/home/a".into()), Some("relative".into()), None, false)
            .unwrap();
        assert_eq!(
            r.data_dir,
            PathBuf::from("/home/a/.local/share/ambient-code")
        );
        assert!(
            c.resolve(None, None, None, false)
                .unwrap_err()
                .contains("AMBIENT_DATA_DIR")
        );
        assert_eq!(r.user, "local user");
    }

    #[test]
    fn the_mode_is_kubernetes_in_a_cluster_and_an_install_secret_only_there() {
        let runner = std::env::current_exe().unwrap();
        let runner = runner.to_str().unwrap();
        let local = parse(&["--runner-bin", runner])
            .resolve(Some("/h".into()), None, None, false)
            .unwrap();
        assert_eq!(local.mode, Mode::Local);
        // In a pod: Kubernetes mode, and no runner binary is needed.
        let cluster = parse(&["--runner-bin", "/nonexistent/runner"])
            .resolve(Some("/h".into()), None, None, true)
            .unwrap();
        assert_eq!(cluster.mode, Mode::Kubernetes { kubeconfig: None });
        let err = parse(&["--runner-bin", runner, "--install-secret", "ak_x"])
            .resolve(Some("/h".into()), None, None, false)
            .unwrap_err();
        assert!(
            err.contains("AMBIENT_INSTALL_SECRET is for Kubernetes mode"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_one_clear_line() {
        let err = parse(&["--runner-bin", "/nonexistent/runner"])
            .resolve(Some("/h".into()), None, None, false)
            .unwrap_err();
        assert!(
            err.contains("runner executable not found at /nonexistent/runner"),
            "{err}"
        );
        let runner = std::env::current_exe().unwrap();
        let err = parse(&[
            "--runner-bin",
            runner.to_str().unwrap(),
            "--default-model",
            "gpt",
        ])
        .resolve(Some("/h".into()), None, None, false)
        .unwrap_err();
        assert!(err.contains("'gpt' is not among"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn empty_credentials_count_as_unset() {
        let runner = std::env::current_exe().unwrap();
        let c = parse(&[
            "--runner-bin",
            runner.to_str().unwrap(),
            "--anthropic-api-key",
            " ",
            "--anthropic-base-url",
            "http://x",
        ]);
        let r = c.resolve(Some("/h".into()), None, None, false).unwrap();
        assert_eq!(r.credentials.anthropic_api_key, None);
        assert_eq!(
            r.credentials.anthropic_base_url.as_deref(),
            Some("http://x")
        );
    }
}
