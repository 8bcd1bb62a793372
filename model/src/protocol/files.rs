//! The session's workspace as the runner serves it: the server asks on the runner endpoint
//! ([`super::ServerToRunner::Files`]) and the runner answers ([`super::RunnerToServer::Files`]).
//!
//! The runner has the files in both modes (a local directory, or the pod's volume), so the
//! server never reads a workspace itself. Paths are relative to the workspace's root, `/`
//! separated; the runner resolves them one component at a time without following links, so
//! nothing the agent links to outside the workspace is ever read. File contents and archives
//! come back in chunks, each sent once the server has taken all but [`FILES_WINDOW`] of the
//! previous ones ([`FilesOp::More`]): a slow download never stalls the session's events.

use serde::{Deserialize, Serialize};

/// Raw bytes in one chunk of a file or an archive (base64 in the frame).
pub const FILES_CHUNK: usize = 512 * 1024;
/// Chunks a runner may send ahead of the server's [`FilesOp::More`].
pub const FILES_WINDOW: u32 = 4;
/// Most entries of one directory listed; the rest are left out (`truncated`).
pub const MAX_LISTING: usize = 5_000;
/// Largest file a person may upload.
pub const MAX_UPLOAD: usize = 10 * 1024 * 1024;
/// Largest `git diff` of one repository returned (cut beyond).
pub const MAX_DIFF: usize = 1024 * 1024;
/// Longest path a request may name.
pub const MAX_FILES_PATH: usize = 4096;
/// The folder uploads go to, under the workspace's root.
pub const UPLOADS_DIR: &str = "file-uploads";

/// A request about the workspace, server → runner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FilesRequest {
    /// The server's number for this request; every reply carries it.
    pub id: u64,
    /// What is asked.
    pub op: FilesOp,
}

/// What the server asks of the workspace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FilesOp {
    /// One directory's entries ([`FilesBody::Listing`]); `""` is the root.
    List {
        /// The directory.
        path: String,
    },
    /// A file's bytes, in [`FilesBody::Chunk`]s.
    Read {
        /// The file.
        path: String,
    },
    /// The whole workspace as a gzipped tar, in [`FilesBody::Chunk`]s (links kept as links,
    /// never followed; the runner's own state left out).
    Archive,
    /// Each repository's branch and uncommitted changes ([`FilesBody::Repos`]).
    Repos,
    /// One piece of an upload into [`UPLOADS_DIR`]; the file appears (and the agent is told)
    /// once the last piece is written ([`FilesBody::Uploaded`]); each other piece is
    /// answered with [`FilesBody::Written`].
    Upload {
        /// The file's name (a single, sanitised component).
        name: String,
        /// Standard base64 of the piece.
        data: String,
        /// Whether it is the last piece.
        last: bool,
        /// Who uploads it (for the note to the agent).
        sender: String,
    },
    /// The server took one more chunk of request `id`'s stream: the runner may send another.
    More,
    /// The server no longer wants request `id`'s answer (its reader went away).
    Cancel,
}

/// The runner's answer to a [`FilesRequest`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FilesReply {
    /// The request's number.
    pub id: u64,
    /// The answer (one of several, for a stream).
    pub body: FilesBody,
}

/// An answer about the workspace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FilesBody {
    /// A directory's entries.
    Listing(Listing),
    /// A piece of a file or an archive.
    Chunk {
        /// Standard base64 of the bytes.
        data: String,
        /// Whether it is the last one.
        last: bool,
        /// The whole size, in the first chunk of a file (none for an archive).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// The repositories' states.
    Repos {
        /// One per repository under `repos/`.
        repos: Vec<RepoState>,
    },
    /// A piece of an upload is written; send the next.
    Written,
    /// An upload is complete.
    Uploaded {
        /// Where it is, relative to the workspace.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The request failed.
    Error {
        /// Why, as a class.
        error: FilesError,
        /// Why, for a person.
        message: String,
    },
}

impl FilesBody {
    /// Whether it is the last answer of its request: anything but a chunk with more to come
    /// or a written piece of an upload (server, hub and runner decide it alike).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            FilesBody::Chunk { last: false, .. } | FilesBody::Written
        )
    }
}

/// Why a workspace request failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FilesError {
    /// No such file or directory.
    NotFound,
    /// The path is malformed (absolute, `..`, too long) or names the wrong kind of entry.
    Invalid,
    /// The path goes through or names a symbolic link, which is not followed.
    Link,
    /// Too large for what was asked.
    TooLarge,
    /// The runner is busy with as many transfers as it takes, or not ready yet.
    Busy,
    /// Anything else (a disk error, git failing).
    Failed,
}

/// One directory of the workspace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// The directory, relative to the workspace (`""` for its root).
    pub path: String,
    /// Its entries: directories first, then by name.
    pub items: Vec<FileEntry>,
    /// Whether entries were left out ([`MAX_LISTING`]).
    pub truncated: bool,
}

/// An entry of a directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// Its name.
    pub name: String,
    /// Its path relative to the workspace.
    pub path: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Set for a symbolic link: where it points (never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: i64,
}

/// A repository's branch and uncommitted work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepoState {
    /// Its folder under `repos/`.
    pub name: String,
    /// Its path relative to the workspace.
    pub path: String,
    /// The branch checked out (empty when detached).
    pub branch: String,
    /// `git status --porcelain` lines: what changed, untracked files included.
    pub changes: Vec<String>,
    /// `git diff HEAD` (cut at [`MAX_DIFF`]).
    pub diff: String,
    /// Whether the diff was cut.
    pub truncated: bool,
    /// Why git could not tell, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `name` as an upload's file name: its last path component, with anything but letters,
/// digits, `.`, `-` and `_` replaced by `_`, no leading dot, at most 128 bytes; `None` when
/// nothing usable is left.
pub fn upload_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while clean.starts_with('.') {
        clean.remove(0);
    }
    clean.truncate(128);
    (!clean.is_empty() && clean.chars().any(|c| c.is_ascii_alphanumeric())).then_some(clean)
}

/// The image type of a file a page may show in an `<img>` (where nothing in it runs), by
/// its extension; `None` for anything else.
pub fn image_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

/// A workspace path as URL path segments, each percent-encoded (`/` kept between them).
pub fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        for b in seg.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Checks a workspace path: relative, `/`-separated normal components (no `.`, `..`, empty
/// component or NUL), at most [`MAX_FILES_PATH`] bytes. Returns its components; `""` is the
/// root.
pub fn path_components(path: &str) -> Result<Vec<&str>, String> {
    if path.len() > MAX_FILES_PATH {
        return Err(format!("the path is longer than {MAX_FILES_PATH} bytes"));
    }
    let trimmed = path.trim_matches('/');
    if path.starts_with('/') && !trimmed.is_empty() {
        return Err("the path must be relative to the workspace".into());
    }
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    trimmed
        .split('/')
        .map(|c| match c {
            "" | "." | ".." => Err(format!("{path:?} is not a plain path in the workspace")),
            c if c.contains('\0') => Err("the path contains a NUL byte".into()),
            c => Ok(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_are_one_plain_component() {
        assert_eq!(upload_name("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(upload_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(upload_name("C:\\x\\a b.txt").as_deref(), Some("a_b.txt"));
        assert_eq!(upload_name(".bashrc").as_deref(), Some("bashrc"));
        assert_eq!(upload_name("..").as_deref(), None);
        assert_eq!(upload_name("").as_deref(), None);
        assert_eq!(upload_name("日本.txt").as_deref(), Some("__.txt"));
        assert_eq!(upload_name(&"a".repeat(300)).map(|n| n.len()), Some(128));
    }

    #[test]
    fn paths_are_relative_and_plain() {
        assert_eq!(path_components("").unwrap(), Vec::<&str>::new());
        assert_eq!(path_components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(
            path_components("repos/a/b.rs").unwrap(),
            ["repos", "a", "b.rs"]
        );
        assert_eq!(path_components("repos/a/").unwrap(), ["repos", "a"]);
        for bad in ["../x", "a/../b", "a//b", "./a", "/etc/passwd", "a/\0"] {
            assert!(path_components(bad).is_err(), "{bad:?}");
        }
        assert!(path_components(&"a/".repeat(3000)).is_err());
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let req = FilesRequest {
            id: 7,
            op: FilesOp::List {
                path: "repos".into(),
            },
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, r#"{"id":7,"op":{"op":"list","path":"repos"}}"#);
        assert_eq!(serde_json::from_str::<FilesRequest>(&json).unwrap(), req);
        let reply = FilesReply {
            id: 7,
            body: FilesBody::Error {
                error: FilesError::Link,
                message: "x".into(),
            },
        };
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<FilesReply>(&json).unwrap(), reply);
    }

    #[test]
    fn urls_images_and_final_answers() {
        assert_eq!(
            url_path("repos/app/my file#1.md"),
            "repos/app/my%20file%231.md"
        );
        assert_eq!(image_type("a/B.PNG"), Some("image/png"));
        assert_eq!(image_type("a.html"), None);
        assert_eq!(image_type("README"), None);
        assert!(!FilesBody::Written.is_final());
        assert!(
            !FilesBody::Chunk {
                data: String::new(),
                last: false,
                size: None
            }
            .is_final()
        );
        assert!(
            FilesBody::Chunk {
                data: String::new(),
                last: true,
                size: None
            }
            .is_final()
        );
        assert!(FilesBody::Repos { repos: Vec::new() }.is_final());
    }
}
