//! Processes on this machine (Linux): process trees, liveness, log tails, programs on the
//! PATH and whether the bubblewrap sandbox runs here. The local driver, the runner and the
//! test kubelet share them.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Start time of a process in clock ticks since boot, or `None` if it does not exist.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields are counted
    // after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 2..];
    // `after` starts at field 3; field 22 is index 19.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is alive and is the process that started at `ticks` (not a reused pid),
/// and not a zombie waiting to be reaped.
pub fn is_alive(pid: u32, ticks: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let state = stat[close + 2..].chars().next();
    state != Some('Z') && start_ticks(pid) == Some(ticks)
}

/// Every descendant of `root` (children, their children ...), from a snapshot of `/proc`.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(c) {
                out.push(c);
                stack.push(c);
            }
        }
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Asks the runner `pid` that started at `ticks` to stop (SIGTERM to the runner only: it
/// stops its agent itself); nothing when the pid is another process's now.
pub fn terminate(pid: u32, ticks: u64) {
    if pid != 0 && start_ticks(pid) == Some(ticks) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
}

/// Kills the process `pid` that started at `ticks` (see [`start_ticks`]), its process group
/// and every descendant it still has, so that no agent process (`claude`, a Bash command,
/// anything those started) survives. Nothing is killed when `pid` is no longer that process:
/// a reused pid (and the group it leads) belongs to someone else.
pub fn kill_tree(pid: u32, ticks: u64) {
    if pid == 0 || start_ticks(pid) != Some(ticks) {
        return;
    }
    // Descendants first, while the tree still hangs together under the runner.
    kill_descendants(pid);
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Kills every descendant of `pid` (not `pid` itself).
pub fn kill_descendants(pid: u32) {
    for _ in 0..3 {
        let below = descendants(pid);
        if below.is_empty() {
            break;
        }
        for p in below {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
    }
}

/// Directories of the system the agent's sandbox shows, read-only: what programs need to run.
const SYSTEM: [&str; 9] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/etc",
];
/// Files of `/etc` the sandbox hides (behind an empty file).
const HIDDEN_FILES: [&str; 4] = [
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
];
/// Directories of `/etc` the sandbox hides (behind an empty directory).
const HIDDEN_DIRS: [&str; 2] = ["/etc/ssh", "/etc/sudoers.d"];

/// Whether `path` lies in the system directories the sandbox shows anyway.
pub fn in_sandbox_system(path: &Path) -> bool {
    SYSTEM.iter().any(|s| path.starts_with(s))
}

/// bubblewrap's arguments that show the agent the system (read-only, without `/etc`'s
/// secrets), its own process tree, `/dev` and private `/tmp`: the sandbox's base, which the
/// runner completes with the workspace and the environment, and which [`probe_sandbox`]
/// tries. Only these directories are bound, never `/` whole: a recursive bind of `/` fails
/// when a mount below it comes or goes meanwhile.
pub fn sandbox_base_args() -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    push(&[
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "agent",
    ]);
    if nix::unistd::geteuid().is_root() {
        // Root in the sandbox keeps no capability: no mounts, no reading others' files.
        push(&["--cap-drop", "ALL"]);
    }
    for dir in SYSTEM {
        let path = Path::new(dir);
        match std::fs::read_link(path) {
            // Merged /usr: `/bin` is a link to `usr/bin`.
            Ok(target) => push(&["--symlink", &target.to_string_lossy(), dir]),
            Err(_) if path.is_dir() => push(&["--ro-bind", dir, dir]),
            Err(_) => {}
        }
    }
    for file in HIDDEN_FILES.iter().filter(|f| Path::new(f).exists()) {
        push(&["--ro-bind", "/dev/null", file]);
    }
    for dir in HIDDEN_DIRS.iter().filter(|d| Path::new(d).is_dir()) {
        push(&["--tmpfs", dir]);
    }
    push(&["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
    a
}

/// A system program (`bwrap`, `slirp4netns`) found on `PATH`, else in `/usr/bin` or `/bin`.
pub fn system_program(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether the agent's sandbox (bubblewrap) can run here: `bwrap` found on `PATH`, and able
/// to make the sandbox's namespaces and mounts (a container may forbid them). Returns its
/// path. A failure is tried again twice (a short race of the kernel's must not decide).
pub fn probe_sandbox() -> Result<std::path::PathBuf, String> {
    probe_sandbox_with(std::process::Command::output)
}

/// [`probe_sandbox`], running the probe's process with `output` (a process that reaps
/// orphans must keep its reaper off this child, whose status `output` waits for).
pub fn probe_sandbox_with(
    output: impl Fn(&mut std::process::Command) -> std::io::Result<std::process::Output>,
) -> Result<std::path::PathBuf, String> {
    let bwrap = system_program("bwrap").ok_or("bubblewrap (bwrap) is not installed")?;
    let mut why = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = output(
            std::process::Command::new(&bwrap)
                .env_clear()
                .args(sandbox_base_args())
                .args(["--", "true"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped()),
        )
        .map_err(|e| format!("bubblewrap cannot start: {e}"))?;
        if out.status.success() {
            return Ok(bwrap);
        }
        why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    }
    Err(format!("bubblewrap cannot make its namespaces here: {why}"))
}

/// The last `lines` non-empty lines of a file, reading at most the last 64 KiB from `offset`.
pub fn tail(path: &Path, offset: u64, lines: usize) -> Vec<String> {
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = offset.max(len.saturating_sub(WINDOW));
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = file.take(WINDOW).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn own_process_is_alive_and_reused_ticks_are_not() {
        let me = std::process::id();
        let ticks = start_ticks(me).expect("own stat");
        assert!(is_alive(me, ticks));
        assert!(!is_alive(me, ticks + 1));
        assert!(!is_alive(u32::MAX - 1, ticks));
    }

    #[test]
    fn tail_reads_last_lines_after_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "old run\n").unwrap();
        let offset = std::fs::metadata(&p).unwrap().len();
        std::fs::write(&p, "old run\na\n\nb\nc\n").unwrap();
        assert_eq!(tail(&p, offset, 2), ["b", "c"]);
        assert_eq!(tail(&p, offset, 10), ["a", "b", "c"]);
        assert!(tail(&dir.path().join("missing"), 0, 3).is_empty());
    }

    #[test]
    fn kill_tree_spares_a_process_that_reused_the_pid() {
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id();
        let ticks = start_ticks(pid).unwrap();
        // The recorded start time is not this process's: a different process has the pid.
        kill_tree(pid, ticks + 1);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            child.try_wait().unwrap().is_none(),
            "an unrelated process was killed"
        );
        kill_tree(pid, ticks);
        assert!(child.wait().unwrap().signal().is_some());
    }

    #[test]
    fn kill_tree_leaves_no_descendant() {
        // sh starts a grandchild in a new session (as a detaching tool would), then waits.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("setsid sleep 600 & sleep 600 & wait")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut below = Vec::new();
        for _ in 0..100 {
            below = descendants(pid);
            if below.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(below.len() >= 2, "{below:?}");
        let ticks: Vec<_> = below
            .iter()
            .map(|p| (*p, start_ticks(*p).unwrap_or(0)))
            .collect();
        kill_tree(pid, start_ticks(pid).unwrap());
        let _ = child.wait();
        std::thread::sleep(std::time::Duration::from_millis(100));
        for (p, t) in ticks {
            assert!(!is_alive(p, t), "descendant {p} survived");
        }
    }
}
