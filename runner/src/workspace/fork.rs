//! A fork's workspace, in local mode: its first run copies the workspace of the session it
//! was forked from (in a cluster its claim is a clone of that session's instead), and its
//! conversation continues that session's as it stood after the chosen turn.
//!
//! The source is another agent's work, and hostile: it is walked with
//! [`crate::files::walk`] (nothing followed, a link copied as a link, FIFOs and devices
//! passed over). The destination is this runner's own (no agent has run in it yet), made
//! one level at a time, and whatever an interrupted copy left at a path is replaced, never
//! written through.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use model::runner_env::STATE_DIR;

use super::{CLAUDE_SESSION_FILE, WORKFLOW_CLONES_FILE, WORKFLOW_STARTED_FILE};
use crate::error::Error;
use crate::files::{Found, walk};

/// File in the state folder saying the fork's copy is whole (a later run copies nothing).
pub(super) const FORK_COPIED_FILE: &str = "fork-copied";

/// The files of the source's state folder a fork keeps: which workflow each clone holds,
/// and the workflow its conversation is in. The rest (the runner's log and records, the
/// conversation id) are the source's own.
const KEPT_STATE: [&str; 2] = [WORKFLOW_CLONES_FILE, WORKFLOW_STARTED_FILE];

/// Copies the workspace at `from` into `root`, unless an earlier run did; returns whether
/// it copied.
pub(super) fn copy_source(from: &Path, root: &Path) -> Result<bool, Error> {
    let done = root.join(STATE_DIR).join(FORK_COPIED_FILE);
    if done.exists() {
        return Ok(false);
    }
    let failed = |what: String| {
        Error::Workspace(format!(
            "cannot copy the forked session's workspace ({}): {what}",
            from.display()
        ))
    };
    let source = nix::fcntl::open(
        from,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| failed(e.desc().to_owned()))?;
    let state_prefix = format!("{STATE_DIR}/");
    walk(&source, "", 0, &[], &mut |found| {
        let path = match &found {
            Found::Dir(p, _) | Found::Link(p, _, _) | Found::File(p, _, _, _) => *p,
        };
        if let Some(state) = path.strip_prefix(&state_prefix)
            && !KEPT_STATE.contains(&state)
        {
            return Ok(());
        }
        let to = root.join(path);
        let io = |e: std::io::Error| {
            (
                model::protocol::files::FilesError::Failed,
                format!("{path}: {e}"),
            )
        };
        let present = std::fs::symlink_metadata(&to).ok();
        match found {
            Found::Dir(_, stat) => {
                match present {
                    Some(m) if m.is_dir() => {}
                    Some(_) => {
                        std::fs::remove_file(&to).map_err(io)?;
                        std::fs::create_dir(&to).map_err(io)?;
                    }
                    None => std::fs::create_dir(&to).map_err(io)?,
                }
                // Its mode, but always the runner's to write into (the agent's too).
                let mode = (stat.st_mode & 0o777) | 0o700;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).map_err(io)
            }
            Found::Link(_, _, target) => {
                clear(&to, present).map_err(io)?;
                std::os::unix::fs::symlink(target, &to).map_err(io)
            }
            Found::File(_, stat, file, len) => {
                clear(&to, present).map_err(io)?;
                // `create_new`: O_EXCL, so nothing at the path is followed.
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(stat.st_mode & 0o777)
                    .open(&to)
                    .map_err(io)?;
                // Its size when opened: a file the source's agent grows meanwhile is cut.
                let copied = std::io::copy(&mut std::io::Read::take(file, len), &mut out);
                copied.map_err(io)?;
                out.flush().map_err(io)
            }
        }
    })
    .map_err(|(_, why)| failed(why))?;
    std::fs::create_dir_all(root.join(STATE_DIR)).map_err(|e| failed(e.to_string()))?;
    // The source's conversation id is never taken for the fork's own.
    let _ = std::fs::remove_file(root.join(STATE_DIR).join(CLAUDE_SESSION_FILE));
    std::fs::write(&done, from.display().to_string()).map_err(|e| failed(e.to_string()))?;
    Ok(true)
}

/// Removes what is at `to` (as found: `present`), a folder with all it holds; a link is
/// removed, never followed.
fn clear(to: &Path, present: Option<std::fs::Metadata>) -> std::io::Result<()> {
    match present {
        Some(m) if m.is_dir() => std::fs::remove_dir_all(to),
        Some(_) => std::fs::remove_file(to),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_copies_the_work_and_links_as_links_and_nothing_of_the_sources_runs() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let (f, t) = (from.path(), to.path());
        std::fs::create_dir_all(f.join("repos/app/.git")).unwrap();
        std::fs::write(f.join("repos/app/notes.txt"), "turn one\n").unwrap();
        std::fs::set_permissions(
            f.join("repos/app/notes.txt"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir_all(f.join(".claude/projects/x")).unwrap();
        std::fs::write(f.join(".claude/projects/x/c1.jsonl"), "{}\n").unwrap();
        std::os::unix::fs::symlink("/etc", f.join("repos/app/etc")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", f.join("host")).unwrap();
        nix::unistd::mkfifo(&f.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::create_dir_all(f.join(STATE_DIR)).unwrap();
        for (name, body) in [
            (CLAUDE_SESSION_FILE, "c1"),
            (WORKFLOW_STARTED_FILE, "wf"),
            ("runner.log", "the source's log"),
        ] {
            std::fs::write(f.join(STATE_DIR).join(name), body).unwrap();
        }
        // What an interrupted copy left where the source now has a folder: a link out.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), t.join("repos")).unwrap();

        assert!(copy_source(f, t).unwrap());
        let read = |p: &str| std::fs::read_to_string(t.join(p)).unwrap();
        assert_eq!(read("repos/app/notes.txt"), "turn one\n");
        let mode = std::fs::metadata(t.join("repos/app/notes.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(read(".claude/projects/x/c1.jsonl"), "{}\n");
        assert!(t.join("repos").symlink_metadata().unwrap().is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        for link in ["repos/app/etc", "host"] {
            assert!(
                t.join(link).symlink_metadata().unwrap().is_symlink(),
                "{link}"
            );
        }
        assert!(t.join("fifo").symlink_metadata().is_err());
        assert_eq!(read(&format!("{STATE_DIR}/{WORKFLOW_STARTED_FILE}")), "wf");
        for gone in [CLAUDE_SESSION_FILE, "runner.log"] {
            assert!(!t.join(STATE_DIR).join(gone).exists(), "{gone}");
        }
        // Once whole, never again: the fork's own work is not overwritten.
        std::fs::write(t.join("repos/app/notes.txt"), "the fork's\n").unwrap();
        assert!(!copy_source(f, t).unwrap());
        assert_eq!(read("repos/app/notes.txt"), "the fork's\n");
    }
}
