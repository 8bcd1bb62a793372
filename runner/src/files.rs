//! The workspace as the server sees it (`model::protocol::files`): directory listings, file
//! contents and a tarball of the whole, each repository's branch and diff, and uploads into
//! `file-uploads/`.
//!
//! Everything under the workspace is the agent's, and hostile: a path is resolved from the
//! workspace's root one component at a time (`openat` with `O_NOFOLLOW`), so a link the agent
//! planted (to `/`, to a secret of the host, to the pod's token) is shown as a link and never
//! followed, and a directory swapped for a link between two calls fails instead of escaping.
//! Only regular files are read (a FIFO would block, a device would leak). Git runs confined,
//! as everywhere else ([`crate::git::confined`]). The platform's own folders (`.ambient`,
//! `.claude`) are neither listed nor archived.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use model::protocol::files::{
    FILES_CHUNK, FileEntry, FilesBody, FilesError, FilesOp, FilesReply, FilesRequest, Listing,
    MAX_DIFF, MAX_LISTING, MAX_UPLOAD, RepoState, UPLOADS_DIR, path_components, upload_name,
};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use tokio::sync::{Semaphore, mpsc};

use crate::git::Confinement;

/// Folders of the workspace's root that are the platform's, not the agent's work.
const HIDDEN: [&str; 2] = [model::runner_env::STATE_DIR, ".claude"];
/// Streams (reads, archives) served at once; more are refused as busy.
const MAX_STREAMS: usize = 4;
/// Requests of any kind worked on at once (listings and git run in threads and processes);
/// more are refused as busy.
const MAX_REQUESTS: usize = 8;
/// How long a stream waits for the server to take a chunk before it gives up.
const CREDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// Levels of folders an archive goes down.
const MAX_ARCHIVE_DEPTH: usize = 64;
/// Owner (uid and gid) of everything in an archive: the agent's user in the runner's image.
const ARCHIVE_OWNER: u64 = 1000;
/// Most bytes of names, paths and link targets in one listing (the frame stays small).
const MAX_LISTING_BYTES: usize = 1024 * 1024;
/// Most `git status` lines returned for a repository.
const MAX_STATUS_LINES: usize = 1000;

/// Where a files runner notes the uploads no agent was there to be told of, in
/// `file-uploads/` (a name no upload can take: uploads never start with a dot); the next run
/// tells its agent and removes it.
pub const PENDING_NOTES: &str = ".uploaded-while-stopped";
/// Most bytes of [`PENDING_NOTES`] read (what is beyond is not told).
const MAX_PENDING_NOTES: usize = 64 * 1024;

/// A failed request: its class and a sentence.
pub(crate) type Failure = (FilesError, String);

/// Serves workspace requests.
pub struct Files {
    root: std::path::PathBuf,
    confinement: Confinement,
    repos: Vec<String>,
    streams: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    /// Uploads in progress, by request: the partial file and its size so far.
    uploads: Mutex<HashMap<u64, Partial>>,
    /// Uploads finished since the agent was last told.
    notes: Arc<Mutex<Vec<String>>>,
    /// No agent runs here (a files runner): finished uploads are noted in
    /// [`PENDING_NOTES`] for the next run instead.
    no_agent: bool,
    /// When the last request ended (or the service began), for a files runner's idle exit.
    last_used: Mutex<std::time::Instant>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("root", &self.root)
            .field("repos", &self.repos)
            .finish_non_exhaustive()
    }
}

struct Partial {
    name: String,
    part: String,
    file: std::fs::File,
    size: usize,
}

/// Where a request's answers go: the link, and (for a stream) its credit.
pub struct Reply {
    /// The request's number.
    pub id: u64,
    /// Sends one answer up.
    pub send: mpsc::UnboundedSender<FilesReply>,
    /// A permit per chunk the server may still take; closed when it cancels.
    pub credit: Arc<Semaphore>,
}

impl Reply {
    fn body(&self, body: FilesBody) {
        let _ = self.send.send(FilesReply { id: self.id, body });
    }

    fn fail(&self, (error, message): Failure) {
        self.body(FilesBody::Error { error, message });
    }
}

impl Files {
    /// The service for the workspace at `root`, whose repositories are `repos` (folder names
    /// under `repos/`), with git confined as the agent is.
    pub fn new(root: std::path::PathBuf, confinement: Confinement, repos: Vec<String>) -> Self {
        Files {
            root,
            confinement,
            repos,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            requests: Arc::new(Semaphore::new(MAX_REQUESTS)),
            uploads: Mutex::new(HashMap::new()),
            notes: Arc::new(Mutex::new(Vec::new())),
            no_agent: false,
            last_used: Mutex::new(std::time::Instant::now()),
        }
    }

    /// The service of a files runner: no agent runs, so finished uploads are kept in
    /// [`PENDING_NOTES`] for the session's next run to tell its agent.
    pub fn without_agent(mut self) -> Self {
        self.no_agent = true;
        self
    }

    /// How long no request has been worked on (zero while one is).
    pub fn idle_for(&self) -> std::time::Duration {
        let busy = self.requests.available_permits() < MAX_REQUESTS
            || !self
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
        if busy {
            return std::time::Duration::ZERO;
        }
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
    }

    /// Takes over what a files runner noted of uploads while the session was stopped (read
    /// through no link, at most [`MAX_PENDING_NOTES`] bytes, then removed): the agent of
    /// this run is told with its next message.
    pub fn take_pending_notes(&self) {
        let Ok(dir) = self.open_dir(&[UPLOADS_DIR]) else {
            return;
        };
        let mut text = String::new();
        if let Ok(fd) = nix::fcntl::openat(
            &dir,
            PENDING_NOTES,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            let file = std::fs::File::from(fd);
            if file.metadata().is_ok_and(|m| m.is_file()) {
                let _ = file
                    .take(MAX_PENDING_NOTES as u64)
                    .read_to_string(&mut text);
            }
        }
        // Whatever is there goes (a link itself, not what it points to).
        let _ = nix::unistd::unlinkat(&dir, PENDING_NOTES, nix::unistd::UnlinkatFlags::NoRemoveDir);
        let lines = text
            .lines()
            .filter(|l| l.starts_with("- ") && !l.chars().any(char::is_control))
            .map(str::to_owned);
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(lines);
    }

    /// Appends a finished upload's note to [`PENDING_NOTES`] (through no link).
    fn keep_note(&self, dir: &OwnedFd, note: &str) -> Result<(), Failure> {
        let fd = nix::fcntl::openat(
            dir,
            PENDING_NOTES,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_APPEND
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| failed(&format!("{UPLOADS_DIR}/{PENDING_NOTES}"), e))?;
        let mut file = std::fs::File::from(fd);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(invalid(format!(
                "{UPLOADS_DIR}/{PENDING_NOTES} is not a regular file"
            )));
        }
        // One write of the whole line: two uploads' notes do not interleave.
        file.write_all(format!("{note}\n").as_bytes())
            .map_err(|e| io_failed(PENDING_NOTES, &e))
    }

    /// Takes the note for the agent about files uploaded since the last one, if any.
    pub fn take_note(&self) -> Option<String> {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if notes.is_empty() {
            return None;
        }
        let list = notes.drain(..).collect::<Vec<_>>().join("\n");
        Some(format!(
            "[The person uploaded files into the workspace:\n{list}]\n\n"
        ))
    }

    /// Answers one request (its replies go to `reply`).
    pub async fn serve(self: Arc<Self>, req: FilesRequest, reply: Reply) {
        self.touch();
        let _touch = touch_when_done(&self);
        let Ok(_working) = self.requests.clone().try_acquire_owned() else {
            if let FilesOp::Upload { .. } = req.op {
                self.abandon_blocking(reply.id).await;
            }
            return reply.fail(busy());
        };
        let this = self.clone();
        match req.op {
            FilesOp::List { path } => {
                let listed = blocking(move || this.list(&path)).await;
                match listed {
                    Ok(listing) => reply.body(FilesBody::Listing(listing)),
                    Err(f) => reply.fail(f),
                }
            }
            FilesOp::Read { path } => {
                let Ok(_permit) = self.streams.clone().try_acquire_owned() else {
                    return reply.fail(busy());
                };
                let opened = blocking(move || this.open_file(&path)).await;
                match opened {
                    Ok((file, size)) => stream_file(file, size, &reply).await,
                    Err(f) => reply.fail(f),
                }
            }
            FilesOp::Archive => {
                let Ok(_permit) = self.streams.clone().try_acquire_owned() else {
                    return reply.fail(busy());
                };
                stream_archive(this, &reply).await;
            }
            FilesOp::Repos => {
                let repos = self.repos().await;
                reply.body(FilesBody::Repos { repos });
            }
            FilesOp::Upload {
                name,
                data,
                last,
                sender,
            } => {
                let id = reply.id;
                let written = blocking(move || this.upload(id, &name, &data, last, &sender)).await;
                match written {
                    Ok(body) => reply.body(body),
                    Err(f) => {
                        self.abandon_blocking(id).await;
                        reply.fail(f)
                    }
                }
            }
            // Handled by the link (credit), never sent here.
            FilesOp::More | FilesOp::Cancel => {}
        }
    }

    /// The directory at `path`'s entries: directories first, then by name; links as links.
    fn list(&self, path: &str) -> Result<Listing, Failure> {
        let parts = path_components(path).map_err(invalid)?;
        let dir = self.open_dir(&parts)?;
        let mut names: Vec<String> = Vec::new();
        let mut listing = nix::dir::Dir::from_fd(dir.try_clone().map_err(|e| io_failed(path, &e))?)
            .map_err(|e| failed(path, e))?;
        for entry in listing.iter() {
            let entry = entry.map_err(|e| failed(path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." || (parts.is_empty() && HIDDEN.contains(&&*name)) {
                continue;
            }
            names.push(name);
        }
        let mut items: Vec<FileEntry> = names
            .iter()
            .filter_map(|name| {
                // Gone since it was listed: left out.
                let stat =
                    nix::sys::stat::fstatat(&dir, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .ok()?;
                let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
                let link = (kind == SFlag::S_IFLNK).then(|| {
                    nix::fcntl::readlinkat(&dir, name.as_str())
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
                let is_dir = kind == SFlag::S_IFDIR;
                Some(FileEntry {
                    path: join(&parts, name),
                    name: name.clone(),
                    is_dir,
                    link,
                    size: if is_dir {
                        0
                    } else {
                        stat.st_size.max(0) as u64
                    },
                    modified_ms: modified_ms(&stat),
                })
            })
            .collect();
        items.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
        let mut truncated = items.len() > MAX_LISTING;
        items.truncate(MAX_LISTING);
        // Long names and link targets: the listing stays well inside one frame.
        let mut bytes = 0;
        if let Some(cut) = items.iter().position(|e| {
            bytes += e.name.len() + e.path.len() + e.link.as_ref().map_or(0, String::len) + 64;
            bytes > MAX_LISTING_BYTES
        }) {
            items.truncate(cut);
            truncated = true;
        }
        Ok(Listing {
            path: parts.join("/"),
            items,
            truncated,
        })
    }

    /// Opens the directory `parts` below the root, through no link.
    fn open_dir(&self, parts: &[&str]) -> Result<OwnedFd, Failure> {
        let shown = parts.join("/");
        let mut dir = nix::fcntl::open(
            &self.root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| failed("the workspace", e))?;
        for (i, part) in parts.iter().enumerate() {
            if i == 0 && HIDDEN.contains(part) {
                return Err(not_found(&shown));
            }
            dir = nix::fcntl::openat(
                &dir,
                *part,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| opening(&dir, part, &shown, e))?;
        }
        Ok(dir)
    }

    /// Opens the regular file `path`, through no link; returns it and its size.
    fn open_file(&self, path: &str) -> Result<(std::fs::File, u64), Failure> {
        let parts = path_components(path).map_err(invalid)?;
        let Some((last, dirs)) = parts.split_last() else {
            return Err(invalid("the workspace's root is a directory".into()));
        };
        let dir = self.open_dir(dirs)?;
        // Non-blocking: a FIFO the agent made would otherwise hang the open.
        let fd = nix::fcntl::openat(
            &dir,
            *last,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| opening(&dir, last, path, e))?;
        let stat = nix::sys::stat::fstat(&fd).map_err(|e| failed(path, e))?;
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR {
            return Err(invalid(format!("{path} is a directory")));
        }
        if kind != SFlag::S_IFREG {
            return Err(invalid(format!("{path} is not a regular file")));
        }
        Ok((std::fs::File::from(fd), stat.st_size.max(0) as u64))
    }

    /// The first `max` bytes of the regular file `path`, through no link (the runner's
    /// own reads of the workspace: a workflow's `ambient.json` and commands).
    pub(crate) fn read_prefix(&self, path: &str, max: u64) -> Result<Vec<u8>, Failure> {
        let (file, _) = self.open_file(path)?;
        let mut bytes = Vec::new();
        file.take(max)
            .read_to_end(&mut bytes)
            .map_err(|e| io_failed(path, &e))?;
        Ok(bytes)
    }

    /// The entries of the directory `path`, through no link.
    pub(crate) fn entries(&self, path: &str) -> Result<Vec<FileEntry>, Failure> {
        self.list(path).map(|l| l.items)
    }

    /// Each repository's branch, changes and diff, from git confined as the agent is.
    async fn repos(&self) -> Vec<RepoState> {
        let mut out = Vec::new();
        for name in &self.repos {
            let path = format!("repos/{name}");
            let mut state = RepoState {
                name: name.clone(),
                path: path.clone(),
                ..RepoState::default()
            };
            // A repository the agent replaced by a link is not read through it.
            if let Err((_, why)) = self.open_dir(&["repos", name]) {
                state.error = Some(why);
                out.push(state);
                continue;
            }
            let dir = self.root.join(&path);
            let git = |args: &'static [&'static str]| {
                let dir = dir.clone();
                async move { crate::git::confined(&self.confinement, &dir, args).await }
            };
            let result =
                async {
                    state.branch = git(&["branch", "--show-current"]).await?.trim().to_owned();
                    let capped = |args: &'static [&'static str], max: usize| {
                        let dir = dir.clone();
                        async move {
                            crate::git::confined_capped(&self.confinement, &dir, args, max).await
                        }
                    };
                    let (status, cut) = capped(
                        &["status", "--porcelain=v1", "--untracked-files=all"],
                        MAX_DIFF,
                    )
                    .await?;
                    state.changes = status
                        .lines()
                        .take(MAX_STATUS_LINES)
                        .map(str::to_owned)
                        .collect();
                    let more_lines = status.lines().nth(MAX_STATUS_LINES).is_some();
                    // git is stopped at the cut: a huge diff never fills the runner's memory.
                    let (diff, diff_cut) = capped(
                        &["diff", "--no-ext-diff", "--no-textconv", "HEAD"],
                        MAX_DIFF,
                    )
                    .await?;
                    state.diff = diff;
                    state.truncated = cut || more_lines || diff_cut;
                    Ok::<_, crate::git::GitError>(())
                }
                .await;
            if let Err(e) = result {
                state.error = Some(e.to_string());
            }
            out.push(state);
        }
        out
    }

    /// Writes one piece of upload `id`; the last one puts the file in place.
    fn upload(
        &self,
        id: u64,
        name: &str,
        data: &str,
        last: bool,
        sender: &str,
    ) -> Result<FilesBody, Failure> {
        let name = upload_name(name)
            .ok_or_else(|| invalid(format!("{name:?} is not a usable file name")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| invalid(format!("the upload is not base64: {e}")))?;
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let partial = match uploads.entry(id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let dir = self.uploads_dir()?;
                let part = format!(".{name}.{id}.part");
                let fd = nix::fcntl::openat(
                    &dir,
                    part.as_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o644),
                )
                .map_err(|e| failed(&format!("{UPLOADS_DIR}/{part}"), e))?;
                v.insert(Partial {
                    name: name.clone(),
                    part,
                    file: std::fs::File::from(fd),
                    size: 0,
                })
            }
        };
        if partial.name != name {
            return Err(invalid("an upload's pieces must name the same file".into()));
        }
        partial.size += bytes.len();
        if partial.size > MAX_UPLOAD {
            return Err((
                FilesError::TooLarge,
                format!("an upload may be at most {} MiB", MAX_UPLOAD >> 20),
            ));
        }
        partial
            .file
            .write_all(&bytes)
            .map_err(|e| io_failed(&name, &e))?;
        if !last {
            return Ok(FilesBody::Written);
        }
        let partial = uploads.remove(&id).expect("present");
        drop(uploads);
        partial.file.sync_all().map_err(|e| io_failed(&name, &e))?;
        let dir = self.uploads_dir()?;
        if let Err(e) = nix::fcntl::renameat(&dir, partial.part.as_str(), &dir, name.as_str()) {
            let _ = nix::unistd::unlinkat(
                &dir,
                partial.part.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            return Err(failed(&name, e));
        }
        let path = format!("{UPLOADS_DIR}/{name}");
        // The sender's name is a person's display name: no line breaks in the note.
        let sender: String = sender.chars().filter(|c| !c.is_control()).collect();
        let note = format!(
            "- {} ({} bytes, from {sender})",
            self.root.join(&path).display(),
            partial.size
        );
        if self.no_agent {
            // The file is in place: a note that cannot be kept (something the agent planted
            // at its name) fails only the note.
            if let Err((_, why)) = self.keep_note(&dir, &note) {
                tracing::warn!(%why, "an upload's note for the next run could not be kept");
            }
        } else {
            self.notes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(note);
        }
        Ok(FilesBody::Uploaded {
            path,
            size: partial.size as u64,
        })
    }

    /// `file-uploads/`, made when missing, through no link.
    fn uploads_dir(&self) -> Result<OwnedFd, Failure> {
        let root = self.open_dir(&[])?;
        match nix::sys::stat::mkdirat(&root, UPLOADS_DIR, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(failed(UPLOADS_DIR, e)),
        }
        self.open_dir(&[UPLOADS_DIR])
    }

    /// [`Files::abandon`], off the async threads (it waits for a piece being written).
    pub async fn abandon_blocking(self: &Arc<Self>, id: u64) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.abandon(id)).await;
    }

    /// Drops every upload in progress (the server that sent them is gone).
    pub async fn abandon_all(self: &Arc<Self>) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let ids: Vec<u64> = this
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .copied()
                .collect();
            for id in ids {
                this.abandon(id);
            }
        })
        .await;
    }

    /// Drops the partial file of a failed or cancelled upload, if any.
    pub fn abandon(&self, id: u64) {
        let partial = self
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let (Some(p), Ok(dir)) = (partial, self.open_dir(&[UPLOADS_DIR])) {
            let _ = nix::unistd::unlinkat(
                &dir,
                p.part.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// Marks the service used again when a request's work ends (however it ends).
fn touch_when_done(files: &Arc<Files>) -> impl Drop + '_ {
    struct Touch<'a>(&'a Files);
    impl Drop for Touch<'_> {
        fn drop(&mut self) {
            self.0.touch();
        }
    }
    Touch(files)
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err((FilesError::Failed, format!("the file task failed: {e}"))))
}

/// Sends a file in chunks, each once the server has credit for it.
async fn stream_file(file: std::fs::File, size: u64, reply: &Reply) {
    let mut file = Some(file);
    let mut first = true;
    loop {
        match tokio::time::timeout(CREDIT_WAIT, reply.credit.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(_)) => return, // cancelled
            Err(_) => {
                return reply.fail((
                    FilesError::Failed,
                    "the download stalled: nothing was taken for a minute".into(),
                ));
            }
        }
        let Some(mut f) = file.take() else { return };
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; FILES_CHUNK];
            let mut n = 0;
            while n < buf.len() {
                match f.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return (f, Err(e)),
                }
            }
            buf.truncate(n);
            (f, Ok(buf))
        })
        .await;
        match read {
            Ok((f, Ok(buf))) => {
                let last = buf.len() < FILES_CHUNK;
                reply.body(FilesBody::Chunk {
                    data: base64::engine::general_purpose::STANDARD.encode(&buf),
                    last,
                    size: first.then_some(size),
                });
                first = false;
                if last {
                    return;
                }
                file = Some(f);
            }
            Ok((_, Err(e))) => return reply.fail(io_failed("the file", &e)),
            Err(e) => return reply.fail((FilesError::Failed, format!("the read failed: {e}"))),
        }
    }
}

/// A writer that cuts what it is given into chunks for a channel (from a blocking thread).
struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Vec<u8>>,
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while self.buf.len() >= FILES_CHUNK {
            let rest = self.buf.split_off(FILES_CHUNK);
            let chunk = std::mem::replace(&mut self.buf, rest);
            self.tx
                .blocking_send(chunk)
                .map_err(|_| std::io::Error::other("the reader went away"))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends the workspace as a gzipped tar, chunk by chunk as the server takes them.
async fn stream_archive(files: Arc<Files>, reply: &Reply) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
    let writer = tokio::task::spawn_blocking(move || {
        let gz = flate2::write::GzEncoder::new(
            ChunkWriter {
                buf: Vec::new(),
                tx,
            },
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        let root = files.open_dir(&[])?;
        archive_dir(&mut tar, &root)?;
        let gz = tar.into_inner().map_err(|e| io_failed("the archive", &e))?;
        let mut w = gz.finish().map_err(|e| io_failed("the archive", &e))?;
        let rest = std::mem::take(&mut w.buf);
        w.tx.blocking_send(rest)
            .map_err(|_| (FilesError::Failed, "the reader went away".to_owned()))?;
        Ok::<_, Failure>(())
    });
    // Each chunk is sent once the one after it exists, and the last only once the archive
    // is known to be whole: a failure is answered as an error, never as a short archive.
    let mut pending: Option<Vec<u8>> = None;
    while let Some(next) = rx.recv().await {
        if let Some(chunk) = pending.replace(next)
            && !send_chunk(reply, &chunk, false).await
        {
            writer.abort();
            return;
        }
    }
    match writer.await {
        Ok(Ok(())) => {
            send_chunk(reply, &pending.unwrap_or_default(), true).await;
        }
        Ok(Err(f)) => reply.fail(f),
        Err(e) => reply.fail((FilesError::Failed, format!("the archive task failed: {e}"))),
    }
}

/// Sends one chunk once the server has credit for it (at most [`CREDIT_WAIT`]); `false`
/// when the server cancelled or stopped taking chunks.
async fn send_chunk(reply: &Reply, chunk: &[u8], last: bool) -> bool {
    match tokio::time::timeout(CREDIT_WAIT, reply.credit.acquire()).await {
        Ok(Ok(permit)) => permit.forget(),
        Ok(Err(_)) => return false,
        Err(_) => {
            reply.fail((
                FilesError::Failed,
                "the download stalled: nothing was taken for a minute".into(),
            ));
            return false;
        }
    }
    reply.body(FilesBody::Chunk {
        data: base64::engine::general_purpose::STANDARD.encode(chunk),
        last,
        size: None,
    });
    true
}

/// What a walk of the workspace meets, at its path from where the walk began. Nothing is
/// followed: a link is met as a link.
pub(crate) enum Found<'a> {
    /// A directory (met before what it holds).
    Dir(&'a str, &'a FileStat),
    /// A symbolic link, and where it points.
    Link(&'a str, &'a FileStat, std::ffi::OsString),
    /// A regular file, open, and its size when opened.
    File(&'a str, &'a FileStat, std::fs::File, u64),
}

/// Walks the directory `dir` (at `prefix`) and everything below it, in name order, down to
/// [`MAX_ARCHIVE_DEPTH`] levels: each directory, link and regular file is handed to
/// `visit`; FIFOs, sockets and devices are not the agent's work and are passed over, and so
/// are the root's `hidden` folders. Each entry is opened with `O_NOFOLLOW` relative to its
/// directory, so an entry swapped for a link while walked is passed over, never followed.
pub(crate) fn walk(
    dir: &OwnedFd,
    prefix: &str,
    depth: usize,
    hidden: &[&str],
    visit: &mut dyn FnMut(Found<'_>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let root = depth == 0;
    let mut names: Vec<String> = Vec::new();
    {
        let mut listing =
            nix::dir::Dir::from_fd(dir.try_clone().map_err(|e| io_failed(prefix, &e))?)
                .map_err(|e| failed(prefix, e))?;
        for entry in listing.iter() {
            let entry = entry.map_err(|e| failed(prefix, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." || (root && hidden.contains(&&*name)) {
                continue;
            }
            names.push(name);
        }
        // Closed before going down: one descriptor per level, not two.
    }
    names.sort();
    for name in names {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let Ok(stat) = nix::sys::stat::fstatat(dir, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue; // gone since listed
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR {
            let Ok(sub) = nix::fcntl::openat(
                dir,
                name.as_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            visit(Found::Dir(&path, &stat))?;
            // Deeper than any work tree goes: left out (bounded stack and descriptors).
            if depth < MAX_ARCHIVE_DEPTH {
                walk(&sub, &path, depth + 1, hidden, visit)?;
            }
        } else if kind == SFlag::S_IFLNK {
            let Ok(target) = nix::fcntl::readlinkat(dir, name.as_str()) else {
                continue;
            };
            visit(Found::Link(&path, &stat, target))?;
        } else if kind == SFlag::S_IFREG {
            let Ok(fd) = nix::fcntl::openat(
                dir,
                name.as_str(),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) else {
                continue;
            };
            let file = std::fs::File::from(fd);
            let Ok(meta) = file.metadata() else { continue };
            if !meta.is_file() {
                continue; // swapped since listed
            }
            let len = meta.len();
            visit(Found::File(&path, &stat, file, len))?;
        }
    }
    Ok(())
}

/// Adds the directory `dir` and everything below it to the archive: regular files,
/// directories, and links as links; nothing is followed.
fn archive_dir<W: Write>(tar: &mut tar::Builder<W>, dir: &OwnedFd) -> Result<(), Failure> {
    walk(dir, "", 0, &HIDDEN, &mut |found| {
        let (path, stat) = match &found {
            Found::Dir(p, s) | Found::Link(p, s, _) | Found::File(p, s, _, _) => (*p, *s),
        };
        let mut header = tar::Header::new_gnu();
        // No setuid, setgid or sticky bit, and an ordinary owner: the archive is the agent's
        // work, whoever extracts it (as root too).
        header.set_mode(stat.st_mode & 0o777);
        header.set_uid(ARCHIVE_OWNER);
        header.set_gid(ARCHIVE_OWNER);
        header.set_mtime(stat.st_mtime.max(0) as u64);
        header.set_size(0);
        let added = match found {
            Found::Dir(..) => {
                header.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())
            }
            Found::Link(_, _, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                tar.append_link(&mut header, path, target)
            }
            Found::File(_, _, file, len) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(len);
                // Exactly its size: a file that grows while read is cut, one that shrinks
                // is padded with zeros, so the entries after it stay where their headers
                // say (the agent's bytes are never read as a header).
                tar.append_data(
                    &mut header,
                    path,
                    file.take(len).chain(std::io::repeat(0)).take(len),
                )
            }
        };
        added.map_err(|e| io_failed(path, &e))
    })
}

fn join(parts: &[&str], name: &str) -> String {
    if parts.is_empty() {
        name.to_owned()
    } else {
        format!("{}/{name}", parts.join("/"))
    }
}

fn modified_ms(stat: &FileStat) -> i64 {
    stat.st_mtime
        .saturating_mul(1000)
        .saturating_add(stat.st_mtime_nsec / 1_000_000)
}

/// Why opening `part` in `dir` failed: through a link, not there, or else.
fn opening(dir: &impl AsFd, part: &str, shown: &str, e: Errno) -> Failure {
    let is_link = nix::sys::stat::fstatat(dir, part, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK);
    match e {
        _ if is_link => (
            FilesError::Link,
            format!("{shown} goes through the symbolic link {part}, which is not followed"),
        ),
        Errno::ENOENT => not_found(shown),
        Errno::ENOTDIR => invalid(format!("{shown}: {part} is not a directory")),
        e => failed(shown, e),
    }
}

fn not_found(shown: &str) -> Failure {
    (
        FilesError::NotFound,
        format!(
            "{} is not in the workspace",
            if shown.is_empty() { "/" } else { shown }
        ),
    )
}

fn invalid(message: String) -> Failure {
    (FilesError::Invalid, message)
}

fn busy() -> Failure {
    (
        FilesError::Busy,
        format!("the runner already sends {MAX_STREAMS} files or archives; try again shortly"),
    )
}

fn failed(what: &str, e: Errno) -> Failure {
    (FilesError::Failed, format!("{what}: {}", e.desc()))
}

fn io_failed(what: &str, e: &std::io::Error) -> Failure {
    (FilesError::Failed, format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Isolation;

    fn files(root: &std::path::Path) -> Arc<Files> {
        files_with_repos(root, Vec::new())
    }

    /// A files runner (no agent) keeps its upload notes in the workspace; the next run takes
    /// them once and tells its agent. A link or a FIFO planted at the notes' name is neither
    /// followed nor read, and a note cannot smuggle a line of its own.
    #[test]
    fn uploads_while_stopped_are_told_to_the_next_runs_agent_once() {
        let ws = workspace();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let stopped = Files::new(
            ws.path().to_owned(),
            Confinement {
                isolation: Isolation::None(String::new()),
                workspace: ws.path().to_owned(),
            },
            Vec::new(),
        )
        .without_agent();
        stopped
            .upload(1, "a.txt", &b64("ab"), true, "alice\n- forged")
            .unwrap();
        stopped.upload(2, "b.txt", &b64("c"), true, "bob").unwrap();
        assert_eq!(stopped.take_note(), None, "no agent here to tell");
        let next = files(ws.path());
        next.take_pending_notes();
        let note = next.take_note().unwrap();
        assert!(
            note.contains("file-uploads/a.txt (2 bytes, from alice- forged)")
                && note.contains("file-uploads/b.txt (1 bytes, from bob)"),
            "{note}"
        );
        assert_eq!(note.matches("\n- ").count(), 2, "{note}");
        assert!(!ws.path().join("file-uploads").join(PENDING_NOTES).exists());
        next.take_pending_notes();
        assert_eq!(next.take_note(), None, "told once");

        // Planted by the agent: a link out of the workspace, a FIFO.
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("host-file");
        std::fs::write(&target, "- /etc/shadow (1 bytes, from root)\n").unwrap();
        let pending = ws.path().join("file-uploads").join(PENDING_NOTES);
        std::os::unix::fs::symlink(&target, &pending).unwrap();
        assert_eq!(
            stopped
                .upload(3, "c.txt", &b64("x"), true, "alice")
                .unwrap(),
            FilesBody::Uploaded {
                path: "file-uploads/c.txt".into(),
                size: 1
            },
            "the upload stands; only its note is lost"
        );
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "- /etc/shadow (1 bytes, from root)\n",
            "nothing written through the link"
        );
        next.take_pending_notes();
        assert_eq!(next.take_note(), None, "nothing read through the link");
        assert!(
            std::fs::symlink_metadata(&pending).is_err(),
            "the link is removed"
        );
        nix::unistd::mkfifo(&pending, Mode::from_bits_truncate(0o600)).unwrap();
        next.take_pending_notes();
        assert_eq!(next.take_note(), None, "a FIFO is not read (nor waited on)");
    }

    /// A files runner is idle while no request is worked on, and busy while one is.
    #[tokio::test]
    async fn a_files_runner_counts_idle_time_from_its_last_request() {
        let ws = workspace();
        let f = files(ws.path());
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(f.idle_for() >= std::time::Duration::from_millis(30));
        let (send, mut got) = mpsc::unbounded_channel();
        f.clone()
            .serve(
                FilesRequest {
                    id: 1,
                    op: FilesOp::List {
                        path: String::new(),
                    },
                },
                Reply {
                    id: 1,
                    send,
                    credit: Arc::new(Semaphore::new(0)),
                },
            )
            .await;
        assert!(matches!(
            got.recv().await.unwrap().body,
            FilesBody::Listing(_)
        ));
        assert!(f.idle_for() < std::time::Duration::from_millis(30));
    }

    fn files_with_repos(root: &std::path::Path, repos: Vec<String>) -> Arc<Files> {
        Arc::new(Files::new(
            root.to_owned(),
            Confinement {
                isolation: Isolation::None(String::new()),
                workspace: root.to_owned(),
            },
            repos,
        ))
    }

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("repos/app/src")).unwrap();
        std::fs::create_dir_all(root.join(".ambient")).unwrap();
        std::fs::write(root.join(".ambient/runner.log"), "secret").unwrap();
        std::fs::write(root.join("repos/app/src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(root.join("notes.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("repos/host")).unwrap();
        nix::unistd::mkfifo(&root.join("pipe"), Mode::from_bits_truncate(0o600)).unwrap();
        dir
    }

    #[test]
    fn a_listing_shows_links_as_links_and_hides_the_platforms_folders() {
        let ws = workspace();
        let f = files(ws.path());
        let root = f.list("").unwrap();
        let names: Vec<&str> = root.items.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["repos", "etc", "notes.txt", "pipe"]);
        let etc = &root.items[1];
        assert_eq!((etc.is_dir, etc.link.as_deref()), (false, Some("/etc")));
        assert_eq!(
            f.list("repos/app/src").unwrap().items[0].path,
            "repos/app/src/main.rs"
        );
        for (path, class) in [
            ("etc", FilesError::Link),
            ("etc/", FilesError::Link),
            (".ambient", FilesError::NotFound),
            ("../", FilesError::Invalid),
            ("/etc", FilesError::Invalid),
            ("notes.txt", FilesError::Invalid),
            ("nothing", FilesError::NotFound),
        ] {
            assert_eq!(f.list(path).unwrap_err().0, class, "{path}");
        }
    }

    #[test]
    fn only_regular_files_inside_the_workspace_are_opened() {
        let ws = workspace();
        let f = files(ws.path());
        let (mut file, size) = f.open_file("repos/app/src/main.rs").unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!((text.as_str(), size), ("fn main() {}\n", 13));
        for (path, class) in [
            ("etc/passwd", FilesError::Link),
            ("repos/host", FilesError::Link),
            ("pipe", FilesError::Invalid),
            ("repos", FilesError::Invalid),
            (".ambient/runner.log", FilesError::NotFound),
            ("", FilesError::Invalid),
            ("repos/../.ambient/runner.log", FilesError::Invalid),
        ] {
            assert_eq!(f.open_file(path).unwrap_err().0, class, "{path}");
        }
    }

    #[test]
    fn an_upload_lands_in_file_uploads_under_a_clean_name_and_the_agent_is_told() {
        let ws = workspace();
        let f = files(ws.path());
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            f.upload(1, "../../x y.txt", &b64("ab"), false, "alice")
                .unwrap(),
            FilesBody::Written
        );
        assert_eq!(
            f.upload(1, "../../x y.txt", &b64("c"), true, "alice")
                .unwrap(),
            FilesBody::Uploaded {
                path: "file-uploads/x_y.txt".into(),
                size: 3
            }
        );
        assert_eq!(
            std::fs::read_to_string(ws.path().join("file-uploads/x_y.txt")).unwrap(),
            "abc"
        );
        let note = f.take_note().unwrap();
        assert!(
            note.contains("file-uploads/x_y.txt (3 bytes, from alice)"),
            "{note}"
        );
        assert_eq!(f.take_note(), None);
        // file-uploads made a link by the agent: refused, nothing written through it.
        let other = workspace();
        std::os::unix::fs::symlink(ws.path(), other.path().join("file-uploads")).unwrap();
        let g = files(other.path());
        assert_eq!(
            g.upload(2, "a.txt", &b64("x"), true, "alice")
                .unwrap_err()
                .0,
            FilesError::Link
        );
        // Too large: refused, the partial file removed.
        let big = b64(&"x".repeat(MAX_UPLOAD / 2 + 1));
        f.upload(3, "big.bin", &big, false, "alice").unwrap();
        assert_eq!(
            f.upload(3, "big.bin", &big, true, "alice").unwrap_err().0,
            FilesError::TooLarge
        );
        f.abandon(3);
        let left: Vec<_> = std::fs::read_dir(ws.path().join("file-uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["x_y.txt"]);
    }

    #[tokio::test]
    async fn the_archive_keeps_links_as_links_and_leaves_out_the_platforms_folders() {
        let ws = workspace();
        std::fs::remove_file(ws.path().join("pipe")).unwrap();
        // A setuid file of the agent's: archived without the bit, owned by an ordinary user.
        std::fs::set_permissions(
            ws.path().join("notes.txt"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        let (send, mut rx) = mpsc::unbounded_channel();
        let reply = Reply {
            id: 9,
            send,
            credit: Arc::new(Semaphore::new(1000)),
        };
        files(ws.path())
            .serve(
                FilesRequest {
                    id: 9,
                    op: FilesOp::Archive,
                },
                reply,
            )
            .await;
        let mut bytes = Vec::new();
        while let Ok(r) = rx.try_recv() {
            match r.body {
                FilesBody::Chunk { data, last, .. } => {
                    bytes.extend(
                        base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .unwrap(),
                    );
                    if last {
                        break;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut body = String::new();
            if entry.header().entry_type().is_file() {
                entry.read_to_string(&mut body).unwrap();
            }
            let link = entry.link_name().unwrap().map(|l| l.display().to_string());
            let header = entry.header();
            if path == "notes.txt" {
                assert_eq!(header.mode().unwrap(), 0o755, "no setuid bit");
                assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (1000, 1000));
            }
            seen.push((path, link, body));
        }
        let paths: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "notes.txt",
                "repos/",
                "repos/app/",
                "repos/app/src/",
                "repos/app/src/main.rs",
                "repos/host"
            ]
        );
        assert_eq!(seen[0].1.as_deref(), Some("/etc"));
        assert_eq!(seen[5].2, "fn main() {}\n");
    }

    #[test]
    fn a_listing_of_long_names_is_cut_to_stay_inside_a_frame() {
        let ws = tempfile::tempdir().unwrap();
        let dir = ws.path().join("many");
        std::fs::create_dir(&dir).unwrap();
        for i in 0..3000 {
            std::fs::write(dir.join(format!("{i:04}-{}", "x".repeat(240))), "").unwrap();
        }
        let listing = files(ws.path()).list("many").unwrap();
        assert!(listing.truncated);
        assert!(
            listing.items.len() < 3000 && listing.items.len() > 1000,
            "{}",
            listing.items.len()
        );
        let bytes: usize = listing
            .items
            .iter()
            .map(|e| e.name.len() + e.path.len())
            .sum();
        assert!(bytes <= MAX_LISTING_BYTES, "{bytes}");
    }

    #[tokio::test]
    async fn a_huge_diff_is_cut_and_git_stopped() {
        let ws = tempfile::tempdir().unwrap();
        let repo = ws.path().join("repos/app");
        std::fs::create_dir_all(&repo).unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(&repo)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        git(&["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(repo.join("big.txt"), "a\n").unwrap();
        git(&["add", "big.txt"]);
        git(&["commit", "--quiet", "-m", "one"]);
        std::fs::write(
            repo.join("big.txt"),
            "line of the agent's\n".repeat(200_000),
        )
        .unwrap();
        let f = files_with_repos(ws.path(), vec!["app".into()]);
        let repos = f.repos().await;
        assert_eq!(repos[0].error, None, "{:?}", repos[0]);
        assert_eq!(repos[0].branch, "main");
        assert_eq!(repos[0].changes, [" M big.txt"]);
        assert!(repos[0].truncated);
        assert!(repos[0].diff.len() <= MAX_DIFF && repos[0].diff.len() > MAX_DIFF / 2);
        assert!(repos[0].diff.starts_with("diff --git a/big.txt b/big.txt"));
    }
}
