//! Reaping orphans. The runner is a child subreaper, so that what the agent starts and
//! detaches (`cmd &`, `setsid cmd`) stays its descendant and a stop can find and end it. A
//! subreaper inherits those orphans as children when their parents die, and must collect
//! them when they exit, or they stay zombies until the runner ends.
//!
//! The runner's own children (the CLI, git) are waited for by whoever started them;
//! [`spawn`] records them so that the reaper never takes their exit status first.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, MutexGuard};

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// Children started through [`spawn`], still to be waited for by their owner.
static OWNED: LazyLock<Mutex<HashSet<u32>>> = LazyLock::new(Mutex::default);

fn owned() -> MutexGuard<'static, HashSet<u32>> {
    OWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns `cmd` as a child its caller waits for (the reaper leaves it alone). Call
/// [`release`] with its pid once it has been waited for.
pub fn spawn(cmd: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    // Held across the spawn: the reaper cannot see the child before it is recorded.
    let mut owned = owned();
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        owned.insert(pid);
    }
    Ok(child)
}

/// [`spawn`] for a blocking [`std::process::Command`].
pub fn spawn_std(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let mut owned = owned();
    let child = cmd.spawn()?;
    owned.insert(child.id());
    Ok(child)
}

/// Runs `cmd` to its end and returns its output, as [`std::process::Command::output`]
/// does, with the reaper kept off its exit status.
pub fn output(cmd: &mut std::process::Command) -> std::io::Result<std::process::Output> {
    let child = spawn_std(cmd)?;
    let pid = child.id();
    let out = child.wait_with_output();
    release(pid);
    out
}

/// The child `pid` started by [`spawn`] was waited for.
pub fn release(pid: u32) {
    owned().remove(&pid);
}

/// Collects every exited child of this process that `take` accepts; returns their pids.
pub fn reap_where(take: impl Fn(u32) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let mut reaped = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return reaped;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next().and_then(|p| p.parse().ok()));
        if state == Some("Z")
            && ppid == Some(me)
            && take(pid)
            && waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)).is_ok()
        {
            reaped.push(pid);
        }
    }
    reaped
}

/// Collects the exited orphans the runner inherited.
pub fn reap_orphans() -> Vec<u32> {
    reap_orphans_where(|_| true)
}

/// Collects the exited orphans the runner inherited that `take` accepts.
fn reap_orphans_where(take: impl Fn(u32) -> bool) -> Vec<u32> {
    let owned = owned();
    reap_where(|pid| !owned.contains(&pid) && take(pid))
}

/// Reaps orphans whenever a child exits, for the life of the runner.
pub fn start() {
    let Ok(mut children) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
    else {
        tracing::warn!(
            "cannot watch for exited children; orphans stay zombies until the runner ends"
        );
        return;
    };
    tokio::spawn(async move {
        while children.recv().await.is_some() {
            let reaped = reap_orphans();
            if !reaped.is_empty() {
                tracing::debug!(?reaped, "reaped orphans");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until_zombie(pid: u32) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.contains(") Z "))
        {
            assert!(std::time::Instant::now() < deadline, "{pid} never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A child started for its owner keeps its exit status for its owner, even when the
    /// reaper looks for orphans after it exited (the sandbox probe lost its status so, and
    /// the agent ran unconfined).
    #[test]
    fn the_reaper_leaves_an_owned_child_to_its_owner() {
        let mut child = spawn_std(std::process::Command::new("sh").args(["-c", "exit 3"])).unwrap();
        let pid = child.id();
        wait_until_zombie(pid);
        // (Only this child: the other tests' belong to them.)
        assert!(reap_orphans_where(|p| p == pid).is_empty());
        assert_eq!(child.wait().unwrap().code(), Some(3));
        release(child.id());
    }

    /// An orphan inherited by a subreaper is collected (only that one: the other tests'
    /// children belong to them).
    #[test]
    fn an_inherited_orphan_is_reaped() {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 0.2 & echo $!"])
            .output()
            .unwrap();
        let orphan: u32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Its parent is gone: it is ours now; once it exits it is a zombie until reaped.
        wait_until_zombie(orphan);
        assert_eq!(reap_orphans_where(|pid| pid == orphan), vec![orphan]);
        assert!(!std::path::Path::new(&format!("/proc/{orphan}")).exists());
    }
}
