//! The `git` command, run by the runner (never by the agent) for clones and deliveries.
//!
//! Credentials reach git through a credential helper that reads the token from the
//! environment of that one git process: never in a URL, an argument, a config file or a
//! log line, and the helper answers for its forge's host only. Git never prompts
//! (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode), so a missing credential fails fast.
//!
//! A cloned repository is the agent's, and hostile: its `.git/config`, `.git/info/attributes`,
//! `.gitattributes` and links can make any git that reads them run programs (filters,
//! `gpg.program`, `core.sshCommand`, `diff.*.textconv`, `include.path` ...). So git never
//! reads such a repository outside the agent's own confinement:
//!
//! - [`git`] is the runner's own git, for what the agent never wrote: a clone into a new
//!   directory, and the delivery repository ([`Delivery`]) the runner keeps in its state folder
//!   (hidden from the agent), from which it pushes with the token;
//! - [`confined`] runs git on the agent's repositories inside the agent's sandbox (its own
//!   namespaces, the workspace only, no secret in its environment), so whatever they name runs
//!   where the agent could run it anyway;
//! - the agent's commits reach the delivery repository by `git fetch`, whose other end
//!   (`git-upload-pack`, the one process that reads the agent's repository) runs confined too.
//!
//! Every git also runs with an environment of its own (nothing the session set reaches it),
//! no hooks, no fsmonitor, no system or global configuration, and only the transports
//! validation accepts.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use model::session::GitProvider;

use crate::sandbox::Isolation;

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

/// Variables every git gets, over an empty environment.
const GIT_ENV: [(&str, &str); 3] = [
    ("GIT_TERMINAL_PROMPT", "0"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
];

/// Runs the runner's own git in `dir` with `args`; returns its standard output. Never on a
/// repository the agent could have written (see [`confined`]).
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
        .envs(GIT_ENV)
        .env(
            "GIT_SSH_COMMAND",
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        );
    if let Some(c) = credential {
        cmd.env(TOKEN_VAR, &c.token);
    }
    run(cmd, args, credential).await
}

/// Where git runs on the agent's repositories: the agent's own confinement.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// The agent's isolation (a sandbox, or none where none can run).
    pub isolation: Isolation,
    /// The session's workspace, the only files the sandbox shows.
    pub workspace: PathBuf,
}

impl Confinement {
    /// The environment of a confined git: nothing of the runner's but `PATH`.
    fn env(&self) -> Vec<(String, String)> {
        let home = match &self.isolation {
            Isolation::Sandbox(_) => crate::sandbox::HOME.to_owned(),
            Isolation::None(_) => self.workspace.display().to_string(),
        };
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        let mut env = vec![("PATH".to_owned(), path), ("HOME".to_owned(), home)];
        env.extend(GIT_ENV.map(|(k, v)| (k.to_owned(), v.to_owned())));
        env
    }

    /// The command that runs `program` (git or one of its helpers) with `args` in `cwd`,
    /// confined.
    fn command(
        &self,
        program: &Path,
        args: &[String],
        cwd: &Path,
    ) -> std::io::Result<tokio::process::Command> {
        let env = self.env();
        crate::sandbox::command(
            &self.isolation,
            &crate::sandbox::Agent {
                program,
                args,
                workspace: &self.workspace,
                cwd,
                env: &env,
                network: false,
            },
        )
        .map(|(cmd, _)| cmd)
    }

    /// The `--upload-pack` of a fetch from an agent's repository: `git-upload-pack`,
    /// confined. Git runs it through the shell, with the repository's path appended.
    fn upload_pack(&self) -> std::io::Result<String> {
        let Isolation::Sandbox(sandbox) = &self.isolation else {
            return Ok("git-upload-pack".to_owned());
        };
        let env = self.env();
        let program = crate::sandbox::resolve(Path::new("git-upload-pack"))
            .or_else(|_| crate::sandbox::resolve(Path::new("git")))?;
        let mut words = vec![sandbox.bwrap.display().to_string(), "--unshare-net".into()];
        words.extend(crate::sandbox::bwrap_args(&crate::sandbox::Agent {
            program: &program,
            args: &[],
            workspace: &self.workspace,
            cwd: &self.workspace,
            env: &env,
            network: false,
        }));
        words.push("--".to_owned());
        words.push(program.display().to_string());
        if program.file_name().is_some_and(|n| n == "git") {
            words.push("upload-pack".to_owned());
        }
        Ok(words
            .iter()
            .map(|w| sh_quote(w))
            .collect::<Vec<_>>()
            .join(" "))
    }
}

/// `word` quoted for the shell, as one word.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// Runs git in `dir`, an agent's repository, with `args`, inside the agent's confinement:
/// whatever the repository's configuration or attributes make git run, runs there.
pub async fn confined(
    confinement: &Confinement,
    dir: &Path,
    args: &[&str],
) -> Result<String, GitError> {
    let mut full: Vec<String> = SAFE_CONFIG
        .iter()
        .flat_map(|c| ["-c".to_owned(), (*c).to_owned()])
        .collect();
    full.extend(args.iter().map(|a| (*a).to_owned()));
    let cmd = confinement
        .command(Path::new("git"), &full, dir)
        .map_err(|e| GitError {
            command: args.first().copied().unwrap_or_default().to_owned(),
            message: format!("could not confine git: {e}"),
        })?;
    run(cmd, args, None).await
}

/// [`confined`], reading at most `max` bytes of its output: git is stopped there and the
/// output returned cut (`true`), so a huge diff never fills the runner's memory.
pub async fn confined_capped(
    confinement: &Confinement,
    dir: &Path,
    args: &[&str],
    max: usize,
) -> Result<(String, bool), GitError> {
    use tokio::io::AsyncReadExt as _;
    let mut full: Vec<String> = SAFE_CONFIG
        .iter()
        .flat_map(|c| ["-c".to_owned(), (*c).to_owned()])
        .collect();
    full.extend(args.iter().map(|a| (*a).to_owned()));
    let command = args.first().copied().unwrap_or_default().to_owned();
    let failed = |message: String| GitError {
        command: command.clone(),
        message,
    };
    let mut cmd = confinement
        .command(Path::new("git"), &full, dir)
        .map_err(|e| failed(format!("could not confine git: {e}")))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child =
        crate::reap::spawn(&mut cmd).map_err(|e| failed(format!("could not run git: {e}")))?;
    let pid = child.id();
    let mut out = Vec::new();
    let read = async {
        match child.stdout.take() {
            Some(stdout) => stdout.take(max as u64 + 1).read_to_end(&mut out).await,
            None => Ok(0),
        }
    };
    let read = tokio::time::timeout(GIT_TIMEOUT, read).await;
    let cut = out.len() > max;
    if cut || !matches!(read, Ok(Ok(_))) {
        let _ = child.start_kill();
    }
    let status = child.wait().await;
    pid.into_iter().for_each(crate::reap::release);
    match read {
        Err(_) => {
            return Err(failed(format!(
                "timed out after {} s",
                GIT_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) => return Err(failed(format!("could not read git's output: {e}"))),
        Ok(Ok(_)) => {}
    }
    if !cut && !status.is_ok_and(|s| s.success()) {
        return Err(failed("git failed".into()));
    }
    out.truncate(max);
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if cut {
        // A character split by the cut is dropped, not shown as a replacement.
        while text.ends_with('\u{FFFD}') {
            text.pop();
        }
    }
    Ok((text, cut))
}

/// The runner's delivery repository for one of the agent's: a bare repository in the
/// state folder, written only by the runner's own git. The agent's commits are fetched into
/// it (the agent's side of the fetch confined) and pushed from it, so the push reads no
/// configuration, attribute or link of the agent's.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The bare repository.
    pub dir: PathBuf,
}

/// Where the fetched commits are kept in a [`Delivery`].
pub const DELIVERED_HEAD: &str = "refs/ambient/head";
/// The base branch as the agent's repository has it, in a [`Delivery`].
pub const DELIVERED_BASE: &str = "refs/ambient/base";

impl Delivery {
    /// The delivery repository at `dir` for the remote `url`, made when missing.
    pub async fn open(dir: PathBuf, url: &str) -> Result<Delivery, GitError> {
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
            return Err(GitError {
                command: "init".into(),
                message: format!("{} is not a directory", dir.display()),
            });
        }
        if !dir.join("HEAD").exists() {
            let parent = dir.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(parent).map_err(|e| GitError {
                command: "init".into(),
                message: format!("cannot create {}: {e}", parent.display()),
            })?;
            let path = dir.display().to_string();
            git(parent, &["init", "--quiet", "--bare", "--", &path], None).await?;
            git(&dir, &["remote", "add", "origin", "--", url], None).await?;
        } else {
            // The remote is the session's, as configured now (never what the agent wrote).
            git(&dir, &["remote", "set-url", "origin", "--", url], None).await?;
        }
        Ok(Delivery { dir })
    }

    /// Fetches the agent's `HEAD` (and its idea of the base branch, when it has one) from
    /// the agent's repository `from`, with the reading side confined.
    pub async fn fetch(
        &self,
        confinement: &Confinement,
        from: &Path,
        base: &str,
    ) -> Result<(), GitError> {
        let upload_pack = confinement.upload_pack().map_err(|e| GitError {
            command: "fetch".into(),
            message: format!("could not confine git-upload-pack: {e}"),
        })?;
        let upload_pack = format!("--upload-pack={upload_pack}");
        let source = from.display().to_string();
        let head = format!("+HEAD:{DELIVERED_HEAD}");
        let with_base = format!("+refs/remotes/origin/{base}:{DELIVERED_BASE}");
        let args = vec![
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            &upload_pack,
            "--",
            &source,
            &head,
        ];
        if git(&self.dir, &[args.as_slice(), &[&with_base]].concat(), None)
            .await
            .is_ok()
        {
            return Ok(());
        }
        // The agent's repository may lack the base (it is the agent's to change).
        let _ = git(&self.dir, &["update-ref", "-d", DELIVERED_BASE], None).await;
        git(&self.dir, &args, None).await.map(|_| ())
    }
}

/// Runs `cmd`, a git of `args`, to the end (within [`GIT_TIMEOUT`]); its standard output,
/// or what git said when it failed (with the credential's token hidden).
async fn run(
    mut cmd: tokio::process::Command,
    args: &[&str],
    credential: Option<&Credential>,
) -> Result<String, GitError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let command = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .copied()
        .unwrap_or_default()
        .to_owned();
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
