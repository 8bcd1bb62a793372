//! The workflow catalogue: a git repository whose `workflows/<id>/.ambient/ambient.json`
//! describe the workflows the new-session form offers (the original reads
//! `ambient-code/workflows` through GitHub's API; this reads any git remote, with git).
//!
//! The repository is cloned shallow, without a checkout and (where the remote allows) without
//! blobs larger than an `ambient.json` may be, into a private temporary folder; the
//! `ambient.json` files are read from git's objects, regular files only, each size checked
//! before it is read; then the clone is forgotten. A list is served [`FRESH`]; an older one
//! is served while a new one is read in the background, so only the very first request waits
//! for git. A catalogue that cannot be read keeps the last list it gave and says why.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model::workflow::{
    AMBIENT_JSON, AmbientJson, Catalogue as Listing, CatalogueWorkflow, MAX_AMBIENT_JSON,
};
use tokio::sync::Mutex;

/// How long a list read is served before it is read again.
pub const FRESH: Duration = Duration::from_secs(300);
/// How long a failure is served before the catalogue is read again.
pub const RETRY: Duration = Duration::from_secs(30);
/// How long one git command on the catalogue may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most workflows listed.
pub const MAX_WORKFLOWS: usize = 200;
/// The catalogue's folder of workflows.
const WORKFLOWS_DIR: &str = "workflows";

/// Where the catalogue is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The repository.
    pub git_url: String,
    /// Its branch.
    pub branch: String,
}

/// What was last read, and whether a read is under way.
#[derive(Debug, Default)]
struct State {
    last: Option<(Instant, Listing)>,
    reading: bool,
}

/// The catalogue and what was last read of it.
#[derive(Debug, Default)]
pub struct Catalogue {
    source: Option<Source>,
    state: Arc<std::sync::Mutex<State>>,
    /// Held by the first read, which every request waits for.
    first: Mutex<()>,
}

impl Catalogue {
    /// A catalogue read from `source` (none: an empty list).
    pub fn new(source: Option<Source>) -> Catalogue {
        Catalogue {
            source,
            ..Catalogue::default()
        }
    }

    /// The catalogue's workflows. A list older than [`FRESH`] ([`RETRY`] after a failure) is
    /// served while a new one is read in the background; before any list, the first read is
    /// waited for (one read for every request).
    pub async fn list(&self) -> Listing {
        let Some(source) = &self.source else {
            return Listing::default();
        };
        if let Some(listing) = self.cached(source) {
            return listing;
        }
        let _first = self.first.lock().await;
        if let Some(listing) = self.cached(source) {
            return listing;
        }
        read_into(&self.state, source).await
    }

    /// The last list, with a background read started when it is old; `None` before any.
    fn cached(&self, source: &Source) -> Option<Listing> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (at, listing) = state.last.as_ref()?;
        let keep = if listing.problem.is_some() {
            RETRY
        } else {
            FRESH
        };
        let listing = listing.clone();
        if at.elapsed() >= keep && !state.reading {
            state.reading = true;
            let (shared, source) = (self.state.clone(), source.clone());
            tokio::spawn(async move {
                read_into(&shared, &source).await;
            });
        }
        Some(listing)
    }
}

/// Reads the catalogue and keeps what was read (a failure keeps the last workflows).
async fn read_into(state: &std::sync::Mutex<State>, source: &Source) -> Listing {
    let read = read(source).await;
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let listing = match read {
        Ok(workflows) => Listing {
            workflows,
            problem: None,
        },
        Err(problem) => {
            tracing::warn!(catalogue = %source.git_url, %problem, "the workflow catalogue was not read");
            Listing {
                workflows: state
                    .last
                    .as_ref()
                    .map(|(_, l)| l.workflows.clone())
                    .unwrap_or_default(),
                problem: Some(problem),
            }
        }
    };
    state.last = Some((Instant::now(), listing.clone()));
    state.reading = false;
    listing
}

/// Runs git in `dir` with nothing of this machine's configuration, no hook, no helper and
/// no prompt; returns its output, or its last line of error.
async fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let mut git = tokio::process::Command::new("git");
    git.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.ext.allow=never",
        "-c",
        "credential.helper=",
    ])
    .args(args)
    .current_dir(dir)
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_CONFIG_NOSYSTEM", "1")
    .env("GIT_CONFIG_GLOBAL", "/dev/null")
    .env("GIT_ASKPASS", "/bin/false")
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(GIT_TIMEOUT, git.output())
        .await
        .map_err(|_| format!("git took longer than {} s", GIT_TIMEOUT.as_secs()))?
        .map_err(|e| format!("git did not run: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!("git {} failed: {}", args[0], last.trim()));
    }
    Ok(out.stdout)
}

/// Clones the catalogue (shallow, no checkout) and reads its workflows.
async fn read(source: &Source) -> Result<Vec<CatalogueWorkflow>, String> {
    let dir = tempfile::Builder::new()
        .prefix("ambient-catalogue-")
        .tempdir()
        .map_err(|e| format!("no temporary folder: {e}"))?;
    let filter = format!("--filter=blob:limit={MAX_AMBIENT_JSON}");
    let branch = format!("--branch={}", source.branch);
    git(
        dir.path(),
        &[
            "clone",
            "--quiet",
            "--depth=1",
            "--single-branch",
            "--no-tags",
            "--no-checkout",
            &filter,
            &branch,
            "--",
            &source.git_url,
            "c",
        ],
    )
    .await?;
    let clone = dir.path().join("c");
    // A blob the filter left out stays out: reading it fails instead of fetching it.
    let _ = git(&clone, &["config", "--unset", "extensions.partialClone"]).await;
    let _ = git(&clone, &["config", "--unset", "remote.origin.promisor"]).await;
    let tree = git(
        &clone,
        &[
            "ls-tree",
            "-r",
            "-z",
            "--full-tree",
            "HEAD",
            "--",
            WORKFLOWS_DIR,
        ],
    )
    .await?;
    let mut out = Vec::new();
    for entry in tree.split(|b| *b == 0) {
        let Some(id) = ambient_json_of(entry) else {
            continue;
        };
        let object = format!("HEAD:{WORKFLOWS_DIR}/{id}/{AMBIENT_JSON}");
        let size = git(&clone, &["cat-file", "-s", &object]).await;
        let size: u64 = match size {
            Ok(s) => String::from_utf8_lossy(&s)
                .trim()
                .parse()
                .unwrap_or(u64::MAX),
            Err(_) => continue,
        };
        if size > MAX_AMBIENT_JSON {
            continue;
        }
        let Ok(bytes) = git(&clone, &["cat-file", "blob", &object]).await else {
            continue;
        };
        let Ok(a) = AmbientJson::parse(&bytes) else {
            continue;
        };
        if a.enabled == Some(false) {
            continue;
        }
        out.push(CatalogueWorkflow {
            name: a.name.unwrap_or_else(|| id.clone()),
            description: a.description.unwrap_or_default(),
            git_url: source.git_url.clone(),
            branch: source.branch.clone(),
            path: format!("{WORKFLOWS_DIR}/{id}"),
            id,
        });
        if out.len() >= MAX_WORKFLOWS {
            break;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

/// The workflow id of an `ls-tree` entry (`<mode> <type> <object>\t<path>`) that is a
/// regular file `workflows/<id>/.ambient/ambient.json` (not a link), with a plain id.
fn ambient_json_of(entry: &[u8]) -> Option<String> {
    let entry = std::str::from_utf8(entry).ok()?;
    let (meta, path) = entry.split_once('\t')?;
    let mode = meta.split(' ').next()?;
    if mode != "100644" && mode != "100755" {
        return None;
    }
    let id = path
        .strip_prefix(WORKFLOWS_DIR)?
        .strip_prefix('/')?
        .strip_suffix(AMBIENT_JSON)?
        .strip_suffix('/')?;
    let plain = !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plain.then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[tokio::test]
    async fn the_catalogue_lists_its_enabled_workflows_and_says_when_it_cannot_be_read() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        write(
            &work,
            "workflows/bugfix/.ambient/ambient.json",
            r#"{"name":"Bug fix","description":"Fix a bug."}"#,
        );
        write(
            &work,
            "workflows/rfe/.ambient/ambient.json",
            r#"{"name":"Ideate an RFE"}"#,
        );
        write(
            &work,
            "workflows/old/.ambient/ambient.json",
            r#"{"name":"Old","enabled":false}"#,
        );
        write(&work, "workflows/broken/.ambient/ambient.json", "{");
        write(&work, "workflows/plain/README.md", "no ambient.json");
        std::os::unix::fs::symlink("/etc", work.join("workflows/leak")).unwrap();
        std::fs::create_dir_all(work.join("workflows/linked/.ambient")).unwrap();
        std::os::unix::fs::symlink(
            "../../bugfix/.ambient/ambient.json",
            work.join("workflows/linked/.ambient/ambient.json"),
        )
        .unwrap();
        write(
            &work,
            "workflows/huge/.ambient/ambient.json",
            &format!(
                r#"{{"name":"Huge","description":"{}"}}"#,
                "x".repeat(70_000)
            ),
        );
        git(&work, &["add", "--all"]);
        git(&work, &["commit", "--quiet", "-m", "catalogue"]);
        let url = format!("file://{}", work.display());
        let c = Catalogue::new(Some(Source {
            git_url: url.clone(),
            branch: "main".into(),
        }));
        let l = c.list().await;
        assert_eq!(l.problem, None);
        let got: Vec<(&str, &str, &str)> = l
            .workflows
            .iter()
            .map(|w| (w.id.as_str(), w.name.as_str(), w.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("bugfix", "Bug fix", "workflows/bugfix"),
                ("rfe", "Ideate an RFE", "workflows/rfe")
            ]
        );
        assert_eq!(l.workflows[0].git_url, url);
        assert_eq!(l.workflows[0].description, "Fix a bug.");

        // A catalogue that cannot be read says why.
        let gone = Catalogue::new(Some(Source {
            git_url: format!("file://{}/nothing", tmp.path().display()),
            branch: "main".into(),
        }));
        let l = gone.list().await;
        assert!(l.workflows.is_empty());
        assert!(l.problem.unwrap().contains("git clone failed"), "says why");
        // None configured: an empty list, no problem.
        assert_eq!(Catalogue::new(None).list().await, Listing::default());
    }
}
