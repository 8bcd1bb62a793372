//! The agent's own network: the sandbox gets a network namespace of its own, with outbound
//! access through `slirp4netns` (user-mode NAT, host loopback refused) and the runner's model
//! proxy listening on the namespace's own loopback. Nothing the agent serves is on this
//! machine's loopback (a page there would receive the owner's cookies), and nothing on this
//! machine's loopback (the server, other services, abstract unix sockets) is reachable from
//! the agent.
//!
//! The sequence, around the spawn of `bwrap --unshare-net --info-fd 4 --block-fd 5`:
//! bubblewrap makes its namespaces and writes the sandbox's pid on the info descriptor, then
//! waits on the block descriptor; the runner starts `slirp4netns` on that pid's namespace,
//! binds the proxy's listener inside it (from a thread that enters the namespace), and only
//! then lets bubblewrap start the agent, so its first model call finds the proxy there.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use command_fds::FdMapping;

/// Where the model proxy listens inside the sandbox's namespace (its loopback is the
/// sandbox's alone, so any port is free).
pub const PROXY_PORT: u16 = 4141;
/// Descriptor on which bubblewrap reports the sandbox's pid.
const INFO_FD: i32 = 4;
/// Descriptor bubblewrap waits on before it starts the agent.
const BLOCK_FD: i32 = 5;
/// Longest wait for bubblewrap's report and for slirp4netns to be ready.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// `slirp4netns` on `PATH`, if installed.
pub fn find_slirp4netns() -> Option<PathBuf> {
    hostproc::system_program("slirp4netns")
}

/// Whether the runner can enter a namespace the sandbox makes (it needs `CAP_SYS_ADMIN`,
/// which root has; an unprivileged runner cannot join the sandbox's network namespace).
pub fn can_enter() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The agent's network, half made: bubblewrap's options and descriptors, and what the
/// runner does once it has started.
#[derive(Debug)]
pub struct Pending {
    slirp4netns: PathBuf,
    info: std::fs::File,
    release: std::fs::File,
}

/// The agent's network, made: dropping it ends `slirp4netns`.
#[derive(Debug)]
pub struct Network {
    slirp: tokio::process::Child,
    /// Closing it tells `slirp4netns` to exit.
    _exit: OwnedFd,
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = self.slirp.start_kill();
        if let Some(pid) = self.slirp.id() {
            crate::reap::release(pid);
        }
    }
}

impl Pending {
    /// bubblewrap's options for a sandbox with its own network, and the descriptors they
    /// name (to map into bubblewrap).
    pub fn new(slirp4netns: PathBuf) -> std::io::Result<(Pending, Vec<String>, Vec<FdMapping>)> {
        let (info_read, info_write) = pipe()?;
        let (block_read, block_write) = pipe()?;
        let options = [
            "--unshare-net",
            "--info-fd",
            &INFO_FD.to_string(),
            "--block-fd",
            &BLOCK_FD.to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        let fds = vec![
            FdMapping {
                parent_fd: info_write,
                child_fd: INFO_FD,
            },
            FdMapping {
                parent_fd: block_read,
                child_fd: BLOCK_FD,
            },
        ];
        Ok((
            Pending {
                slirp4netns,
                info: info_read.into(),
                release: block_write.into(),
            },
            options,
            fds,
        ))
    }

    /// After bubblewrap was spawned (and its copies of the descriptors dropped here): gives
    /// the sandbox its network and the proxy's listener, then lets the agent start.
    pub async fn finish(self) -> std::io::Result<(Network, std::net::TcpListener)> {
        let Pending {
            slirp4netns,
            info,
            release,
        } = self;
        let pid = tokio::time::timeout(
            SETUP_TIMEOUT,
            tokio::task::spawn_blocking(move || sandbox_pid(info)),
        )
        .await
        .map_err(|_| std::io::Error::other("bubblewrap did not report its sandbox"))?
        .map_err(std::io::Error::other)??;
        // Nothing touches the namespace before bubblewrap has set up its loopback (its
        // address, then the link up): a concurrent change makes bubblewrap's own netlink
        // requests fail, and it dies.
        let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        while !loopback_up(pid) {
            if tokio::time::Instant::now() >= deadline {
                return Err(std::io::Error::other(
                    "the sandbox's loopback did not come up",
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let listener = tokio::task::spawn_blocking(move || listen_in(pid, PROXY_PORT))
            .await
            .map_err(std::io::Error::other)??;
        let (slirp, exit) = start_slirp(&slirp4netns, pid).await?;
        // One byte: bubblewrap goes on and starts the agent.
        {
            use std::io::Write;
            let mut release = release;
            release.write_all(b"1")?;
        }
        Ok((Network { slirp, _exit: exit }, listener))
    }
}

/// Whether the loopback interface of `pid`'s network namespace is up: an interface that is
/// up has joined the all-hosts multicast group (`/proc/<pid>/net/igmp`), and, with IPv6,
/// has its link-local address (`if_inet6`).
fn loopback_up(pid: u32) -> bool {
    let listed = |file: &str, is_lo: fn(&str) -> bool| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{file}"))
            .is_ok_and(|text| text.lines().any(is_lo))
    };
    listed("igmp", |l| l.split_whitespace().nth(1) == Some("lo"))
        || listed("if_inet6", |l| l.split_whitespace().last() == Some("lo"))
}

/// A pipe no other child inherits (the mapping into the child it is for clears the flag).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// The sandbox's pid (in this process's pid namespace), from bubblewrap's JSON report.
fn sandbox_pid(mut info: std::fs::File) -> std::io::Result<u32> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = info.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&chunk[..n]);
        if let Ok(report) = serde_json::from_slice::<serde_json::Value>(&text) {
            return child_pid(&report);
        }
        if text.len() > 64 * 1024 {
            break;
        }
    }
    let report: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::other(format!("bubblewrap's report: {e}")))?;
    child_pid(&report)
}

fn child_pid(report: &serde_json::Value) -> std::io::Result<u32> {
    report["child-pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 1)
        .ok_or_else(|| std::io::Error::other("bubblewrap's report names no child pid"))
}

/// Starts `slirp4netns` on the network namespace of `pid` (outbound NAT, this machine's
/// loopback refused, itself sandboxed), and waits until the namespace is configured.
async fn start_slirp(
    slirp4netns: &Path,
    pid: u32,
) -> std::io::Result<(tokio::process::Child, OwnedFd)> {
    use command_fds::CommandFdExt;
    let (ready_read, ready_write) = pipe()?;
    let (exit_read, exit_write) = pipe()?;
    let mut cmd = tokio::process::Command::new(slirp4netns);
    cmd.env_clear()
        .args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--ready-fd=3",
            "--exit-fd=4",
            &pid.to_string(),
            "tap0",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .fd_mappings(vec![
            FdMapping {
                parent_fd: ready_write,
                child_fd: 3,
            },
            FdMapping {
                parent_fd: exit_read,
                child_fd: 4,
            },
        ])
        .map_err(|_| std::io::Error::other("slirp4netns's descriptors collide"))?;
    let mut child = crate::reap::spawn(&mut cmd)?;
    // The command holds the child's ends: dropped, the ready pipe ends when slirp4netns does.
    drop(cmd);
    let mut ready = std::fs::File::from(ready_read);
    let waited = tokio::time::timeout(
        SETUP_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            let mut byte = [0u8; 1];
            ready.read(&mut byte)
        }),
    )
    .await;
    match waited {
        Ok(Ok(Ok(1))) => Ok((child, exit_write)),
        _ => {
            let _ = child.start_kill();
            if let Some(pid) = child.id() {
                crate::reap::release(pid);
            }
            Err(std::io::Error::other(
                "slirp4netns could not give the sandbox its network",
            ))
        }
    }
}

/// A listener on `127.0.0.1:port` inside the network namespace of `pid`, made by a thread
/// that enters the namespace (a socket stays in the namespace it was made in).
fn listen_in(pid: u32, port: u16) -> std::io::Result<std::net::TcpListener> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
    .join()
    .map_err(|_| std::io::Error::other("the thread entering the sandbox's network panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_sandbox() {
        let report = serde_json::json!({"child-pid": 4242, "net-namespace": 1});
        assert_eq!(child_pid(&report).unwrap(), 4242);
        assert!(child_pid(&serde_json::json!({"child-pid": 1})).is_err());
        assert!(child_pid(&serde_json::json!({})).is_err());
    }
}
