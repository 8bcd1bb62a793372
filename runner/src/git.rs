//! The `git` command, run by the runner (never by the agent) for clones and deliveries.
//!
//! Credentials reach git through a credential helper that reads the token from the
//! environment of that one git process: never in a URL, an argument, a config file or a
//! log line. Git never prompts (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode), so a missing
//! credential fails fast instead of hanging.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use model::session::GitProvider;

/// Environment variable the credential helper reads the token from.
const TOKEN_VAR: &str = "AMBIENT_GIT_TOKEN";
/// Longest a git command may take before it is killed.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

/// A token for a remote, and the user name its provider expects with it.
#[derive(Clone)]
pub struct Credential {
    /// The token.
    pub token: String,
    /// `x-access-token` for GitHub, `oauth2` for GitLab.
    pub username: &'static str,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Credential {
    /// The credential for a provider's token.
    pub fn new(provider: GitProvider, token: String) -> Self {
        let username = match provider {
            GitProvider::Github => "x-access-token",
            GitProvider::Gitlab => "oauth2",
        };
        Credential { token, username }
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
    // The helper prints the username and the token from its own environment.
    let helper = credential.map(|c| {
        format!("!f() {{ test \"$1\" = get || exit 0; echo username={}; echo \"password=${TOKEN_VAR}\"; }}; f", c.username)
    });
    if let Some(helper) = &helper {
        cmd.args(["-c", "credential.helper=", "-c"])
            .arg(format!("credential.helper={helper}"));
    }
    cmd.args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env(
            "GIT_SSH_COMMAND",
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        )
        .env_remove(TOKEN_VAR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(c) = credential {
        cmd.env(TOKEN_VAR, &c.token);
    }
    let command = args.first().copied().unwrap_or_default().to_owned();
    let out = match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
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
        let cred = Credential::new(GitProvider::Github, "tok-secret-123".into());
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
}
