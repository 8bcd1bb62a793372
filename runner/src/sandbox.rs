//! The agent's sandbox in local mode: `claude` and every tool it runs live in a bubblewrap
//! (`bwrap`) container that sees
//!
//! - the session's workspace, read-write (the platform's own `.ambient/` in it hidden);
//! - the system (`/usr`, `/etc` without its secrets, ...) read-only, and the `claude`
//!   package;
//! - a private `/tmp` and home, its own process tree (`/proc` shows nothing of the runner,
//!   the server or other sessions), and the network;
//!
//! and nothing else: not the data directory (the database, other sessions' workspaces), not
//! the user's home, not the runner's environment. Its environment is built here, holding no
//! secret: the model key stays with the runner ([`crate::proxy`]).
//!
//! In a Kubernetes runner pod the pod is the isolation, and the sandbox is off.

use std::path::{Path, PathBuf};

/// Where the agent's home is inside the sandbox (a private, empty tmpfs).
pub const HOME: &str = "/home/agent";

/// How the agent is started: in the sandbox, or (where it cannot run) as a plain process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// In a bubblewrap sandbox.
    Sandbox(Sandbox),
    /// Unconfined, and why.
    None(String),
}

/// A sandbox that can run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The `bwrap` executable.
    pub bwrap: PathBuf,
    /// The agent's network.
    pub network: Network,
}

/// The sandboxed agent's network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// A namespace of its own, made outbound by this `slirp4netns` ([`crate::netns`]).
    Own(PathBuf),
    /// This machine's network (loopback included), and why.
    Shared(String),
}

impl Isolation {
    /// Why the agent shares this machine's network, when it does in a sandbox.
    pub fn shared_network(&self) -> Option<&str> {
        match self {
            Isolation::Sandbox(Sandbox {
                network: Network::Shared(why),
                ..
            }) => Some(why),
            _ => None,
        }
    }

    /// Whether the agent has a network namespace of its own.
    pub fn own_network(&self) -> bool {
        matches!(
            self,
            Isolation::Sandbox(Sandbox {
                network: Network::Own(_),
                ..
            })
        )
    }
}

/// What decides whether the agent is sandboxed (`AMBIENT_SANDBOX`): the drivers' own type.
pub use model::runner_env::SandboxMode as Mode;

/// Finds out whether bubblewrap can run here (see [`hostproc::probe_sandbox`]),
/// with the runner's reaper kept off the probe.
pub fn probe(mode: Mode) -> Result<Isolation, String> {
    if mode == Mode::Off {
        return Ok(Isolation::None("the sandbox is turned off".into()));
    }
    match (hostproc::probe_sandbox_with(crate::reap::output), mode) {
        (Ok(bwrap), _) => Ok(Isolation::Sandbox(Sandbox {
            bwrap,
            network: network(),
        })),
        (Err(why), Mode::Required) => Err(format!("the sandbox is required, but {why}")),
        (Err(why), _) => Ok(Isolation::None(why)),
    }
}

/// The network the sandbox can give the agent here.
fn network() -> Network {
    if !crate::netns::can_enter() {
        return Network::Shared(
            "a network of its own needs the runner to run as root here (it enters the sandbox's namespace)"
                .into(),
        );
    }
    match crate::netns::find_slirp4netns() {
        Some(slirp) => Network::Own(slirp),
        None => Network::Shared("slirp4netns is not installed".into()),
    }
}

/// What the agent's process needs.
#[derive(Debug, Clone)]
pub struct Agent<'a> {
    /// The `claude` executable.
    pub program: &'a Path,
    /// Its arguments.
    pub args: &'a [String],
    /// The session's workspace (read-write).
    pub workspace: &'a Path,
    /// Where it starts.
    pub cwd: &'a Path,
    /// Its whole environment.
    pub env: &'a [(String, String)],
    /// Whether it may reach the network (the agent: outbound, through its own namespace
    /// where it can; git on its repositories: not at all).
    pub network: bool,
}

/// The program's real path: found on `PATH` when it is a bare name, links resolved. A
/// missing program is `NotFound` here, before the sandbox starts (inside it, it would look
/// like a crash of the agent).
pub fn resolve(program: &Path) -> std::io::Result<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return std::fs::canonicalize(program);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(std::fs::canonicalize)
        .unwrap_or_else(|| {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not on PATH", program.display()),
            ))
        })
}

/// The command that starts the agent under `isolation`, and (when the agent gets a network
/// namespace of its own) what is left to do once it is spawned.
pub fn command(
    isolation: &Isolation,
    agent: &Agent<'_>,
) -> std::io::Result<(tokio::process::Command, Option<crate::netns::Pending>)> {
    Ok(match isolation {
        Isolation::Sandbox(sandbox) => {
            // The program by its real path: a link to it (npm's `node_modules/.bin/claude`)
            // may be outside what the sandbox shows.
            let program = resolve(agent.program)?;
            let mut cmd = tokio::process::Command::new(&sandbox.bwrap);
            let mut options = bwrap_args(agent);
            let mut fds = Vec::new();
            let mut pending = None;
            match (&sandbox.network, agent.network) {
                (_, false) => options.push("--unshare-net".into()),
                (Network::Own(slirp), true) => {
                    let (p, more, mapped) = crate::netns::Pending::new(slirp.clone())?;
                    options.extend(more);
                    fds = mapped;
                    pending = Some(p);
                }
                (Network::Shared(_), true) => {}
            }
            confine(&mut cmd, &options, fds)?;
            cmd.arg("--").arg(program).args(agent.args);
            (cmd, pending)
        }
        Isolation::None(_) => {
            let mut cmd = tokio::process::Command::new(agent.program);
            cmd.args(agent.args)
                .current_dir(agent.cwd)
                .env_clear()
                .envs(agent.env.iter().map(|(k, v)| (k, v)));
            (cmd, None)
        }
    })
}

/// File descriptor on which bubblewrap reads its options (`--args`).
const OPTIONS_FD: i32 = 3;

/// Makes `cmd` (a `bwrap`) take `options` from a file descriptor rather than its command
/// line, with an empty environment. Inside the sandbox, bubblewrap's own process is pid 1:
/// its `/proc/1/environ` and `/proc/1/cmdline` are the agent's to read, so they must hold
/// nothing but what the agent is given anyway (the environment goes in with `--setenv`
/// among the options).
pub fn confine(
    cmd: &mut tokio::process::Command,
    options: &[String],
    mut fds: Vec<command_fds::FdMapping>,
) -> std::io::Result<()> {
    use command_fds::{CommandFdExt, FdMapping};
    use std::io::{Seek, Write};
    // An unlinked file, not a pipe: the options may exceed a pipe's buffer.
    let mut file = tempfile::tempfile()?;
    for option in options {
        if option.as_bytes().contains(&0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a sandbox option holds a NUL byte",
            ));
        }
        file.write_all(option.as_bytes())?;
        file.write_all(b"\0")?;
    }
    file.rewind()?;
    cmd.env_clear()
        .args(["--args", &OPTIONS_FD.to_string()])
        .fd_mappings({
            fds.push(FdMapping {
                parent_fd: file.into(),
                child_fd: OPTIONS_FD,
            });
            fds
        })
        .map_err(|_| std::io::Error::other("the options' file descriptor is taken"))?;
    Ok(())
}

/// bubblewrap's arguments for `agent` (everything before `--`).
pub fn bwrap_args(agent: &Agent<'_>) -> Vec<String> {
    let mut a = hostproc::sandbox_base_args();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    push(&["--tmpfs", "/home", "--dir", HOME]);
    let ws = agent.workspace.to_string_lossy().into_owned();
    push(&["--bind", &ws, &ws]);
    let state = agent
        .workspace
        .join(model::runner_env::STATE_DIR)
        .to_string_lossy()
        .into_owned();
    push(&["--tmpfs", &state]);
    // The CLI's own files (a package outside the system directories).
    if let Some(package) = package_dir(agent.program)
        && !hostproc::in_sandbox_system(&package)
    {
        let p = package.to_string_lossy().into_owned();
        push(&["--ro-bind", &p, &p]);
    }
    push(&["--chdir", &agent.cwd.to_string_lossy(), "--clearenv"]);
    for (k, v) in agent.env {
        push(&["--setenv", k, v]);
    }
    a
}

/// The directory of the program's package: for an npm install,
/// `.../node_modules/@anthropic-ai/claude-code`; otherwise the program's directory.
fn package_dir(program: &Path) -> Option<PathBuf> {
    let real = std::fs::canonicalize(program).ok()?;
    let mut dir = real.parent()?.to_owned();
    let mut up = dir.clone();
    while let Some(parent) = up.parent() {
        if parent.file_name().is_some_and(|n| n == "@anthropic-ai") {
            dir = up.clone();
            break;
        }
        up = parent.to_owned();
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(workspace: &Path) -> Vec<String> {
        bwrap_args(&Agent {
            program: Path::new("/usr/bin/true"),
            args: &[],
            workspace,
            cwd: workspace,
            env: &[("HOME".into(), HOME.into())],
            network: true,
        })
    }

    #[test]
    fn the_sandbox_binds_the_workspace_and_hides_the_platforms_state() {
        let a = args(Path::new("/data/workspaces/p/s"));
        let joined = a.join(" ");
        assert!(joined.contains("--bind /data/workspaces/p/s /data/workspaces/p/s"));
        assert!(joined.contains("--tmpfs /data/workspaces/p/s/.ambient"));
        assert!(joined.contains("--unshare-pid") && joined.contains("--proc /proc"));
        assert!(joined.contains("--clearenv --setenv HOME /home/agent"));
        // Nothing of the data directory but the workspace.
        assert!(!joined.contains("--bind /data "));
        assert!(!a.iter().any(|x| x == "/data/workspaces"));
    }

    #[test]
    fn off_means_unconfined_and_required_fails_without_bubblewrap() {
        assert!(matches!(probe(Mode::Off), Ok(Isolation::None(_))));
    }
}
