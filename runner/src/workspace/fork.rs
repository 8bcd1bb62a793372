//! A fork's workspace. Its first run takes it over from the session it was forked from: in
//! local mode by copying that session's workspace (in a cluster its claim is a clone of
//! that session's instead), in both modes leaving out that session's runner state; its
//! conversation then continues that session's as it stood after the chosen turn.
//!
//! The source is another agent's work, and hostile: it is walked with
//! [`crate::files::walk`] (nothing followed, a link copied as a link, FIFOs and devices
//! passed over), sparse files stay sparse, hard links stay links (neither turns a few
//! blocks into a full disk), and nothing is copied past what the disk can hold. The
//! destination is this runner's own (no agent has run in it yet; a lock keeps a second
//! runner out), made one level at a time, and whatever an interrupted copy left at a path
//! is replaced, never written through.

use std::collections::HashMap;
use std::os::fd::AsFd as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use model::protocol::files::FilesError;
use model::runner_env::STATE_DIR;
use nix::errno::Errno;

use super::{CLAUDE_SESSION_FILE, WORKFLOW_CLONES_FILE, WORKFLOW_STARTED_FILE, no_links, write_in};
use crate::error::Error;
use crate::files::{Found, walk};

/// File in the state folder saying the fork has taken its workspace over (a later run
/// copies and clears nothing).
pub(super) const FORK_TAKEN_FILE: &str = "fork-taken";
/// Lock file in the state folder, held while the workspace is taken over.
const FORK_LOCK_FILE: &str = "fork.lock";

/// The files of the source's state folder a fork keeps: which workflow each clone holds,
/// and the workflow its conversation is in. The rest (the runner's log and records, the
/// conversation id) are the source's own.
const KEPT_STATE: [&str; 2] = [WORKFLOW_CLONES_FILE, WORKFLOW_STARTED_FILE];

/// Room the copy leaves free on the disk.
const FREE_RESERVE: u64 = 256 * 1024 * 1024;

/// Takes the workspace over from the fork's source, unless an earlier run did: copies it
/// from `from` when given (local mode: the source's state folder but the kept files is
/// left out), then clears what of the source's runner state is there
/// ([`clear_source_state`]). Returns how many entries were copied (`None`: taken over
/// before).
pub(super) fn take_over(from: Option<&Path>, root: &Path) -> Result<Option<u64>, Error> {
    let state = root.join(STATE_DIR);
    no_links(root, &state)?;
    std::fs::create_dir_all(&state).map_err(|e| failed(from, e.to_string()))?;
    if state.join(FORK_TAKEN_FILE).exists() {
        return Ok(None);
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(state.join(FORK_LOCK_FILE))
        .map_err(|e| failed(from, e.to_string()))?;
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| failed(from, format!("another runner takes it over ({e})")))?;
    let copied = match from {
        Some(from) => copy(from, root)?,
        None => 0,
    };
    clear_source_state(root, from.is_none());
    write_in(root, &state.join(FORK_TAKEN_FILE), b"")?;
    Ok(Some(copied))
}

fn failed(from: Option<&Path>, what: String) -> Error {
    Error::Workspace(match from {
        Some(from) => format!(
            "cannot copy the forked session's workspace ({}): {what}",
            from.display()
        ),
        None => format!("cannot take over the forked session's workspace: {what}"),
    })
}

/// Copies the workspace at `from` into `root`; the entries copied.
fn copy(from: &Path, root: &Path) -> Result<u64, Error> {
    let source = nix::fcntl::open(
        from,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| failed(Some(from), e.desc().to_owned()))?;
    let state_prefix = format!("{STATE_DIR}/");
    // Files met before by (device, inode): a hard link is copied as one.
    let mut linked: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    let mut copied = 0u64;
    // Bytes the disk can still take, as last read (less the reserve).
    let mut room = None;
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
        match copy_entry(found, &to, root, &mut linked, &mut room) {
            Ok(()) => copied += 1,
            // The disk is full: the copy cannot be whole.
            Err(e) if is_disk_full(&e) => {
                return Err((
                    FilesError::Failed,
                    format!("{path}: {}", super::describe(&e)),
                ));
            }
            // One entry this disk cannot hold (a name too long, ...): left out.
            Err(e) => {
                tracing::warn!(path, error = %e, "an entry of the forked workspace was not copied")
            }
        }
        Ok(())
    })
    .map_err(|(_, why)| failed(Some(from), why))?;
    Ok(copied)
}

fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENOSPC | Errno::EDQUOT)
    )
}

/// Copies one entry to `to` (inside `root`), within the `room` the disk has.
fn copy_entry(
    found: Found<'_>,
    to: &Path,
    root: &Path,
    linked: &mut HashMap<(u64, u64), std::path::PathBuf>,
    room: &mut Option<u64>,
) -> std::io::Result<()> {
    let present = std::fs::symlink_metadata(to).ok();
    match found {
        Found::Dir(_, stat) => {
            match present {
                Some(m) if m.is_dir() => {}
                Some(_) => {
                    std::fs::remove_file(to)?;
                    std::fs::create_dir(to)?;
                }
                None => std::fs::create_dir(to)?,
            }
            // Its mode, but always the runner's to write into (the agent's too).
            let mode = (stat.st_mode & 0o777) | 0o700;
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
        }
        Found::Link(_, _, target) => {
            clear(to, present)?;
            std::os::unix::fs::symlink(target, to)
        }
        Found::File(_, stat, file, len) => {
            clear(to, present)?;
            let meta = file.metadata()?;
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = linked.get(&key) {
                    return std::fs::hard_link(first, to);
                }
                linked.insert(key, to.to_owned());
            }
            // What the file really takes (a sparse one takes less than its length) must
            // fit, with room to spare: the disk's free space is read again once what was
            // copied since could have used what it had.
            let needs = (meta.blocks() * 512).min(len);
            if needs > 0 {
                if room.is_none_or(|r| r < needs) {
                    *room = Some(
                        nix::sys::statvfs::statvfs(root)
                            .map(|s| s.blocks_available() * s.fragment_size())
                            .unwrap_or(u64::MAX)
                            .saturating_sub(FREE_RESERVE),
                    );
                }
                match room {
                    Some(r) if *r >= needs => *r -= needs,
                    _ => return Err(std::io::Error::from_raw_os_error(Errno::ENOSPC as i32)),
                }
            }
            // `create_new`: O_EXCL, so nothing at the path is followed.
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(stat.st_mode & 0o777)
                .open(to)?;
            if len == 0 {
                return Ok(());
            }
            copy_data(&file, &out, len)
        }
    }
}

/// Copies the first `len` bytes of `from` (its size when opened: a file the source's agent
/// grows meanwhile is cut) into `to`, only the parts that hold data: holes stay holes.
fn copy_data(from: &std::fs::File, to: &std::fs::File, len: u64) -> std::io::Result<()> {
    use nix::unistd::{Whence, lseek};
    use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
    to.set_len(len)?;
    let (mut src, mut dst) = (from, to);
    let mut at: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    while at < len {
        let data = match lseek(src.as_fd(), at as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(Errno::ENXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        if data >= len {
            break;
        }
        let hole = match lseek(src.as_fd(), data as i64, Whence::SeekHole) {
            Ok(h) => (h as u64).min(len),
            Err(e) => return Err(e.into()),
        };
        src.seek(SeekFrom::Start(data))?;
        dst.seek(SeekFrom::Start(data))?;
        let mut left = hole - data;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = src.read(&mut buf[..want])?;
            if n == 0 {
                return Ok(()); // shrunk meanwhile: the rest stays zeros
            }
            dst.write_all(&buf[..n])?;
            left -= n as u64;
        }
        at = hole;
    }
    Ok(())
}

/// Removes the source's runner state from a workspace just taken over (what is not there
/// is no matter): its conversation id and exit record (and, in a cloned claim, its log),
/// the agent's MCP configuration (the source run's proxy address and token), and the git
/// locks a source copied while git ran in it leaves behind. The fork's own runner files
/// (local mode: its log, its record) are left alone.
fn clear_source_state(root: &Path, cloned: bool) {
    let state = root.join(STATE_DIR);
    let mut gone = vec![
        state.join(CLAUDE_SESSION_FILE),
        state.join(model::runner_env::EXIT_RECORD_FILE),
        root.join(".claude").join("ambient-mcp.json"),
    ];
    if cloned {
        gone.push(state.join(model::runner_env::RUNNER_LOG_FILE));
    }
    for folder in ["repos", "workflows"] {
        if let Ok(entries) = std::fs::read_dir(root.join(folder)) {
            for e in entries.flatten() {
                let git = e.path().join(".git");
                if git.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    gone.push(git.join("index.lock"));
                    gone.push(git.join("HEAD.lock"));
                }
            }
        }
    }
    for path in gone {
        let _ = clear(&path, path.symlink_metadata().ok());
    }
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
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_fork_copies_the_work_and_links_as_links_and_nothing_of_the_sources_runs() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let (f, t) = (from.path(), to.path());
        std::fs::create_dir_all(f.join("repos/app/.git")).unwrap();
        std::fs::write(f.join("repos/app/.git/index.lock"), "").unwrap();
        std::fs::write(f.join("repos/app/notes.txt"), "turn one\n").unwrap();
        std::fs::set_permissions(
            f.join("repos/app/notes.txt"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::hard_link(f.join("repos/app/notes.txt"), f.join("repos/app/same.txt")).unwrap();
        // A terabyte that takes a few blocks: it stays that.
        let sparse = std::fs::File::create(f.join("sparse")).unwrap();
        sparse.set_len(1 << 40).unwrap();
        std::os::unix::fs::FileExt::write_at(&sparse, b"data", 1 << 30).unwrap();
        std::fs::create_dir_all(f.join(".claude/projects/x")).unwrap();
        std::fs::write(f.join(".claude/projects/x/c1.jsonl"), "{}\n").unwrap();
        std::fs::write(
            f.join(".claude/ambient-mcp.json"),
            "the source's proxy token",
        )
        .unwrap();
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
        // The fork's own runner log, there before its runner starts.
        std::fs::create_dir_all(t.join(STATE_DIR)).unwrap();
        std::fs::write(t.join(STATE_DIR).join("runner.log"), "the fork's log").unwrap();
        // What an interrupted copy left where the source now has a folder: a link out.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), t.join("repos")).unwrap();

        assert!(take_over(Some(f), t).unwrap().is_some_and(|n| n > 10));
        let read = |p: &str| std::fs::read_to_string(t.join(p)).unwrap();
        assert_eq!(read("repos/app/notes.txt"), "turn one\n");
        let meta = |p: &str| std::fs::symlink_metadata(t.join(p)).unwrap();
        assert_eq!(meta("repos/app/notes.txt").mode() & 0o777, 0o755);
        assert_eq!(
            meta("repos/app/notes.txt").ino(),
            meta("repos/app/same.txt").ino()
        );
        assert_eq!(meta("sparse").len(), 1 << 40);
        assert!(
            meta("sparse").blocks() * 512 < 1 << 20,
            "the hole was written"
        );
        let mut data = [0u8; 4];
        std::os::unix::fs::FileExt::read_at(
            &std::fs::File::open(t.join("sparse")).unwrap(),
            &mut data,
            1 << 30,
        )
        .unwrap();
        assert_eq!(&data, b"data");
        assert_eq!(read(".claude/projects/x/c1.jsonl"), "{}\n");
        assert!(meta("repos").is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        for link in ["repos/app/etc", "host"] {
            assert!(meta(link).is_symlink(), "{link}");
        }
        for gone in [
            "fifo",
            "repos/app/.git/index.lock",
            ".claude/ambient-mcp.json",
            &format!("{STATE_DIR}/{CLAUDE_SESSION_FILE}"),
        ] {
            assert!(t.join(gone).symlink_metadata().is_err(), "{gone}");
        }
        assert_eq!(read(&format!("{STATE_DIR}/{WORKFLOW_STARTED_FILE}")), "wf");
        assert_eq!(read(&format!("{STATE_DIR}/runner.log")), "the fork's log");
        // Once taken over, never again: the fork's own work is not overwritten.
        std::fs::write(t.join("repos/app/notes.txt"), "the fork's\n").unwrap();
        assert_eq!(take_over(Some(f), t).unwrap(), None);
        assert_eq!(read("repos/app/notes.txt"), "the fork's\n");
    }

    #[test]
    fn a_cloned_claim_loses_the_sources_runner_state_and_keeps_its_workflows() {
        let ws = tempfile::tempdir().unwrap();
        let t = ws.path();
        std::fs::create_dir_all(t.join(STATE_DIR)).unwrap();
        std::fs::create_dir_all(t.join(".claude")).unwrap();
        for (path, body) in [
            (format!("{STATE_DIR}/{CLAUDE_SESSION_FILE}"), "c1"),
            (format!("{STATE_DIR}/{WORKFLOW_CLONES_FILE}"), "{}"),
            (format!("{STATE_DIR}/runner-exit.json"), "{}"),
            (format!("{STATE_DIR}/runner.log"), "the source's log"),
            (".claude/ambient-mcp.json".to_owned(), "token"),
        ] {
            std::fs::write(t.join(path), body).unwrap();
        }
        assert_eq!(take_over(None, t).unwrap(), Some(0));
        let left: Vec<String> = std::fs::read_dir(t.join(STATE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != FORK_LOCK_FILE)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(left, [FORK_TAKEN_FILE, WORKFLOW_CLONES_FILE]);
        assert!(!t.join(".claude/ambient-mcp.json").exists());
    }
}
