//! The local driver's state in a workspace's state folder: the runner of the current run
//! (adopted by a restarted server), the runner's exit record, the runner's log and its
//! rotation.

use std::path::Path;

use model::runner_env::{EXIT_RECORD_FILE, ExitRecord, STATE_DIR};
use serde::{Deserialize, Serialize};

/// File in the workspace's state folder naming the runner process of the current run, so a
/// restarted server can adopt it.
pub(super) const RUNNER_RECORD_FILE: &str = "runner.json";

/// The runner process of a run, as recorded when it was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RunnerRecord {
    /// The run it belongs to.
    pub(super) generation: u64,
    /// Process id.
    pub(super) pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22), so that a reused
    /// pid is not mistaken for the runner.
    pub(super) start_ticks: u64,
}

/// Size past which a runner's log is rotated: at a run's start, and while it runs.
pub const MAX_RUNNER_LOG: u64 = 8 * 1024 * 1024;

/// Keeps a runner's log under [`MAX_RUNNER_LOG`]: past it, its content goes to
/// `runner.log.1` (replacing the one before) and the log starts over. The runner appends
/// (`O_APPEND`), so it goes on writing at the new end of the same file (what logrotate calls
/// copytruncate; a line written between the copy and the truncation is lost). Returns
/// whether it rotated.
pub fn rotate_log(log: &Path) -> bool {
    let big = std::fs::metadata(log).is_ok_and(|m| m.len() > MAX_RUNNER_LOG);
    if !big {
        return false;
    }
    let mut old = log.as_os_str().to_owned();
    old.push(".1");
    let rotated = std::fs::copy(log, &old).and_then(|_| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(log)
            .and_then(|f| f.set_len(0))
    });
    if let Err(e) = rotated {
        tracing::warn!(log = %log.display(), error = %e, "could not rotate a runner's log");
        return false;
    }
    true
}

/// A JSON file of the workspace's state folder; `None` when absent or unreadable.
pub(super) fn read_json<T: serde::de::DeserializeOwned + StateFile>(workspace: &Path) -> Option<T> {
    let text = std::fs::read_to_string(workspace.join(STATE_DIR).join(T::NAME)).ok()?;
    serde_json::from_str(&text).ok()
}

pub(super) fn write_json<T: Serialize>(
    workspace: &Path,
    name: &str,
    value: &T,
) -> std::io::Result<()> {
    let text = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    std::fs::write(workspace.join(STATE_DIR).join(name), text)
}

/// A file of the workspace's state folder.
pub(super) trait StateFile {
    /// Its name.
    const NAME: &'static str;
}

impl StateFile for RunnerRecord {
    const NAME: &'static str = RUNNER_RECORD_FILE;
}

impl StateFile for ExitRecord {
    const NAME: &'static str = EXIT_RECORD_FILE;
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use model::runner_env::RUNNER_LOG_FILE;

    use super::*;

    /// A log past the limit starts over while its writer keeps writing to it, and what it
    /// held is kept in `runner.log.1`; a small log is left alone.
    #[test]
    fn a_runner_log_is_rotated_under_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(RUNNER_LOG_FILE);
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writer.write_all(b"small\n").unwrap();
        assert!(!rotate_log(&log));
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..9 {
            writer.write_all(&chunk).unwrap();
        }
        assert!(rotate_log(&log));
        writer.write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
        let old = dir.path().join(format!("{RUNNER_LOG_FILE}.1"));
        assert!(std::fs::metadata(&old).unwrap().len() > MAX_RUNNER_LOG);
    }
}
