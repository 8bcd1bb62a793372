//! The `git` command, run by the runner (never by the agent) for clones and deliveries.
//!
//! Credentials reach git through a credential helper that reads the token from the
//! environment of that one git process: never in a URL, an argument, a config file or a
//! log line, and the helper answers for its forge's host only. Git never prompts
//! (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode), so a missing credential fails fast.
//!
//! A cloned repository is the agent's, and may be hostile: git runs here with an environment
//! of its own (nothing the session set reaches it), no hooks, no fsmonitor, no system or
//! global configuration, and only the transports validation accepts.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use model::session::GitProvider;

/// Environment variable the credential helper reads the token from.
const TOKEN_VAR: &str = "AMBIENT_GIT_TOKEN";
/// Longest a git command may take before it is killed.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// Configuration every git command gets, over what a repository says: no hooks, no
/// filesystem monitor (either runs a program the repository names), no credential helper
/// but ours, and only the transports validation accepts.
const SAFE_CONFIG: [&str; 9] = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "credential.helper=",
    "protocol.allow=never",
    "protocol.https.allow=always",
    "protocol.http.allow=always",
    "protocol.ssh.allow=always",
    "protocol.git.allow=never",
    "protocol.file.allow=always",
];

/// What git keeps of the runner's environment: where programs are, the home (ssh's keys and
/// known hosts) and the ssh agent.
fn inherited() -> impl Iterator<Item = (String, String)> {
    ["PATH", "HOME", "SSH_AUTH_SOCK", "LANG"]
        .into_iter()
        .filter_map(|k| Some((k.to_owned(), std::env::var(k).ok()?)))
}

/// A token for a remote, the user name its provider expects with it, and the URL prefix
/// (`https://host[:port]`) it is given to.
#[derive(Clone)]
pub struct Credential {
    /// The token.
    pub token: String,
    /// `x-access-token` for GitHub, `oauth2` for GitLab.
    pub username: &'static str,
    /// Where git may send it.
    pub scope: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("scope", &self.scope)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// The credential for a provider's token, sent to `scope` only.
    pub fn new(provider: GitProvider, token: String, scope: String) -> Self {
        let username = match provider {
            GitProvider::Github => "x-access-token",
            GitProvider::Gitlab => "oauth2",
        };
        Credential {
            token,
            username,
            scope,
        }
    }
}

/// A failed git command: what it was and what git said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("git {command} failed: {message}")]
pub struct GitError {
    /// The subcommand (`clone`, `push` ...).
    pub command: String,
    /// Git's own explanation (its last lines of standard error), or why it could not run.
    pub message: String,
}

/// Runs git in `dir` with `args`; returns its standard output.
pub async fn git(
    dir: &Path,
    args: &[&str],
    credential: Option<&Credential>,
) -> Result<String, GitError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(SAFE_CONFIG.iter().flat_map(|c| ["-c", c]));
    // The helper prints the username and the token from its own environment, for its
    // forge's URL only.
    if let Some(c) = credential {
        let helper = format!(
            "!f() {{ test \"$1\" = get || exit 0; echo username={}; echo \"password=${TOKEN_VAR}\"; }}; f",
            c.username
        );
        cmd.arg("-c")
            .arg(format!("credential.{}.helper={helper}", c.scope));
    }
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .envs(inherited())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env(
            "GIT_SSH_COMMAND",
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(c) = credential {
        cmd.env(TOKEN_VAR, &c.token);
    }
    let command = args.first().copied().unwrap_or_default().to_owned();
    let out = async {
        let child = crate::reap::spawn(&mut cmd)?;
        let pid = child.id();
        let out = child.wait_with_output().await;
        pid.into_iter().for_each(crate::reap::release);
        out
    };
    let out = match tokio::time::timeout(GIT_TIMEOUT, out).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Err(GitError {
                command,
                message: format!("could not run git: {e}"),
            });
        }
        Err(_) => {
            return Err(GitError {
                command,
                message: format!("timed out after {} s", GIT_TIMEOUT.as_secs()),
            });
        }
    };
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Said anywhere in git's output (often before its final complaint).
    let disk_full = stderr.contains("No space left on device");
    let mut lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines = lines.split_off(lines.len().saturating_sub(4));
    let mut message = lines.join("\n");
    if let Some(c) = credential {
        message = message.replace(&c.token, "<redacted>");
    }
    if disk_full {
        message = format!("the disk is full ({message})");
    }
    if message.is_empty() {
        message = format!("exit status {}", out.status);
    }
    Err(GitError { command, message })
}

/// A remote URL without any credentials in it, for reports.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://user:tok@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            redact_url("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(redact_url("file:///tmp/r.git"), "file:///tmp/r.git");
    }

    #[tokio::test]
    async fn failures_name_the_command_and_hide_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let cred = Credential::new(
            GitProvider::Github,
            "tok-secret-123".into(),
            "https://github.com".into(),
        );
        let err = git(
            dir.path(),
            &["clone", "file:///nonexistent/tok-secret-123.git", "x"],
            Some(&cred),
        )
        .await
        .unwrap_err();
        assert_eq!(err.command, "clone");
        assert!(!err.to_string().contains("tok-secret-123"), "{err}");
        assert!(
            err.message.contains("does not exist") || err.message.contains("not appear"),
            "{err}"
        );
        assert!(format!("{cred:?}").contains("<redacted>"));
    }

    /// A repository the agent changed may name programs for git to run (a filesystem
    /// monitor, hooks): the runner's own git runs none of them.
    #[tokio::test]
    async fn a_hostile_repository_config_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("r");
        let marker = dir.path().join("pwned");
        git(dir.path(), &["init", "--quiet", "--", "r"], None)
            .await
            .unwrap();
        let evil = format!("touch {}", marker.display());
        for (key, value) in [
            ("core.fsmonitor", evil.as_str()),
            ("user.name", "t"),
            ("user.email", "t@example.com"),
        ] {
            git(&repo, &["config", key, value], None).await.unwrap();
        }
        let hook = repo.join(".git/hooks/pre-commit");
        std::fs::write(&hook, format!("#!/bin/sh\n{evil}\n")).unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(repo.join("f"), "x").unwrap();
        git(&repo, &["status", "--porcelain"], None).await.unwrap();
        git(&repo, &["add", "--all"], None).await.unwrap();
        git(&repo, &["commit", "--quiet", "-m", "m"], None)
            .await
            .unwrap();
        assert!(!marker.exists(), "git ran a program the repository named");
    }
}
