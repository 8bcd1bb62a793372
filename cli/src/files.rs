//! `ambient files`: a running session's workspace (list, read, diff, download, upload).

use clap::Subcommand;
use model::protocol::files::{Listing, MAX_UPLOAD, RepoState, url_path};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::{Client, Error};
use crate::output::{self, Format, Table};

/// The workspace's commands.
#[derive(Subcommand, Debug)]
pub enum Files {
    /// Lists a directory of the workspace (its root by default): directories first; a
    /// symbolic link shows where it points (never followed).
    Ls {
        /// The session.
        session: String,
        /// The directory, relative to the workspace (`repos/app/src`).
        #[arg(default_value = "")]
        path: String,
    },
    /// Writes a file of the workspace to standard output, byte for byte.
    Cat {
        /// The session.
        session: String,
        /// The file, relative to the workspace (`artifacts/report.md`).
        path: String,
    },
    /// Prints each repository's branch, changed files and diff.
    Diff {
        /// The session.
        session: String,
    },
    /// Downloads the whole workspace as a gzipped tar archive.
    Download {
        /// The session.
        session: String,
        /// Where to write it ("-": standard output); default `<session>-workspace.tar.gz`.
        file: Option<String>,
    },
    /// Uploads a file (at most 10 MiB) into the workspace's `file-uploads/`; the agent is
    /// told with the next message it gets.
    Upload {
        /// The session.
        session: String,
        /// The file to upload.
        file: std::path::PathBuf,
        /// Its name in the workspace (default: the file's own; sanitised by the server).
        #[arg(long)]
        name: Option<String>,
    },
}

/// The answer of `git/status`.
#[derive(Debug, Serialize, Deserialize)]
struct RepoStates {
    items: Vec<RepoState>,
}

/// The answer of an upload.
#[derive(Debug, Serialize, Deserialize)]
struct Uploaded {
    path: String,
    size: u64,
}

/// Runs a `files` command against `session`'s workspace under `sessions` (the project's
/// sessions path).
pub async fn run(
    client: &Client,
    format: Format,
    sessions: &str,
    command: Files,
) -> Result<(), Error> {
    match command {
        Files::Ls { session, path } => {
            let session = crate::name("session", &session)?;
            let url = format!(
                "{sessions}/{session}/workspace?path={}",
                crate::encode(&path)
            );
            let listing: Listing = client.get(&url).await?;
            output::print(format, &listing, |l| {
                let mut t = Table::new(&["NAME", "SIZE", "MODIFIED"]);
                for e in &l.items {
                    let name = match (&e.link, e.is_dir) {
                        (Some(target), _) => format!("{} -> {target}", e.name),
                        (None, true) => format!("{}/", e.name),
                        (None, false) => e.name.clone(),
                    };
                    let size = if e.is_dir {
                        "-".into()
                    } else {
                        e.size.to_string()
                    };
                    t.row(vec![name, size, output::time(e.modified_ms)]);
                }
                if l.truncated {
                    eprintln!("(more entries than shown)");
                }
                t
            })
        }
        Files::Cat { session, path } => {
            let session = crate::name("session", &session)?;
            let url = format!("{sessions}/{session}/workspace/{}", url_path(&path));
            let resp = client.send_raw(Method::GET, &url, None::<&()>).await?;
            stream_to(resp, &mut std::io::stdout().lock()).await
        }
        Files::Diff { session } => {
            let session = crate::name("session", &session)?;
            let states: RepoStates = client
                .get(&format!("{sessions}/{session}/git/status"))
                .await?;
            match format {
                Format::Table => {
                    let mut text = String::new();
                    if states.items.is_empty() {
                        text.push_str("(no repositories)\n");
                    }
                    for r in &states.items {
                        let branch = if r.branch.is_empty() {
                            "(detached)"
                        } else {
                            &r.branch
                        };
                        text.push_str(&format!("== {} on {branch}\n", r.path));
                        if let Some(e) = &r.error {
                            text.push_str(&format!("git: {e}\n"));
                        }
                        for c in &r.changes {
                            text.push_str(&format!("{c}\n"));
                        }
                        text.push_str(&r.diff);
                        if r.truncated {
                            text.push_str("\n(the diff is cut at 1 MiB)\n");
                        }
                    }
                    output::write(&text)
                }
                _ => output::print(format, &states, |_| Table::new(&[])),
            }
        }
        Files::Download { session, file } => {
            let session = crate::name("session", &session)?;
            let resp = client
                .send_raw(
                    Method::GET,
                    &format!("{sessions}/{session}/workspace.tar.gz"),
                    None::<&()>,
                )
                .await?;
            let file = file.unwrap_or_else(|| format!("{session}-workspace.tar.gz"));
            if file == "-" {
                return stream_to(resp, &mut std::io::stdout().lock()).await;
            }
            // Written beside, then renamed: a download cut short leaves no archive that
            // looks whole.
            let part = format!("{file}.part");
            let mut out = std::fs::File::create(&part)
                .map_err(|e| Error::Local(format!("cannot create {part}: {e}")))?;
            if let Err(e) = stream_to(resp, &mut out).await {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
            std::fs::rename(&part, &file)
                .map_err(|e| Error::Local(format!("cannot write {file}: {e}")))?;
            eprintln!("wrote {file}");
            Ok(())
        }
        Files::Upload {
            session,
            file,
            name,
        } => {
            let session = crate::name("session", &session)?;
            let size = std::fs::metadata(&file)
                .map_err(|e| Error::Local(format!("cannot read {}: {e}", file.display())))?
                .len();
            if size > MAX_UPLOAD as u64 {
                return Err(Error::Usage(format!(
                    "{} is {size} bytes; an upload may be at most {} MiB",
                    file.display(),
                    MAX_UPLOAD >> 20
                )));
            }
            let bytes = std::fs::read(&file)
                .map_err(|e| Error::Local(format!("cannot read {}: {e}", file.display())))?;
            let name = name
                .or_else(|| file.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            let url = format!(
                "{sessions}/{session}/workspace/file-uploads/{}",
                url_path(&name)
            );
            let resp = client.put_bytes(&url, bytes).await?;
            let done: Uploaded = resp
                .json()
                .await
                .map_err(|e| Error::Local(format!("the server's answer does not parse: {e}")))?;
            output::print_name(format, &done, &done.path)
        }
    }
}

/// Copies a response's body to `out` as it comes; an answer cut short is an error.
async fn stream_to(
    mut resp: reqwest::Response,
    out: &mut impl std::io::Write,
) -> Result<(), Error> {
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => match out.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
                Err(e) => return Err(Error::Local(format!("cannot write: {e}"))),
            },
            Ok(None) => break,
            Err(e) => return Err(Error::Unreachable(format!("the download broke off: {e}"))),
        }
    }
    out.flush()
        .map_err(|e| Error::Local(format!("cannot write: {e}")))
}
