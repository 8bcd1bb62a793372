//! The workflow catalogue: a git repository whose `workflows/<id>/.ambient/ambient.json`
//! describe the workflows the new-session form offers (the original reads
//! `ambient-code/workflows` through GitHub's API; this reads any git remote, with git).
//!
//! The repository is cloned shallow into a private temporary folder, read through no link,
//! and forgotten; the list is kept [`FRESH`] (a failure [`RETRY`]), so a page load costs no
//! clone. A catalogue that cannot be read keeps the last list it gave and says why.

use std::path::Path;
use std::time::{Duration, Instant};

use model::workflow::{AMBIENT_JSON, AmbientJson, Catalogue as Listing, CatalogueWorkflow};
use tokio::sync::Mutex;

/// How long a list read is served.
pub const FRESH: Duration = Duration::from_secs(300);
/// How long a failure is served before the catalogue is read again.
pub const RETRY: Duration = Duration::from_secs(30);
/// How long a clone of the catalogue may take.
const CLONE_TIMEOUT: Duration = Duration::from_secs(60);
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

/// The catalogue and what was last read of it.
#[derive(Debug, Default)]
pub struct Catalogue {
    source: Option<Source>,
    cache: Mutex<Option<(Instant, Listing)>>,
}

impl Catalogue {
    /// A catalogue read from `source` (none: an empty list).
    pub fn new(source: Option<Source>) -> Catalogue {
        Catalogue {
            source,
            cache: Mutex::new(None),
        }
    }

    /// The catalogue's workflows; read again when the last read is old. Readers wait for
    /// one read rather than each cloning.
    pub async fn list(&self) -> Listing {
        let Some(source) = &self.source else {
            return Listing::default();
        };
        let mut cache = self.cache.lock().await;
        if let Some((at, listing)) = cache.as_ref() {
            let keep = if listing.problem.is_some() {
                RETRY
            } else {
                FRESH
            };
            if at.elapsed() < keep {
                return listing.clone();
            }
        }
        let listing = match read(source).await {
            Ok(workflows) => Listing {
                workflows,
                problem: None,
            },
            Err(problem) => {
                tracing::warn!(catalogue = %source.git_url, %problem, "the workflow catalogue was not read");
                Listing {
                    workflows: cache
                        .as_ref()
                        .map(|(_, l)| l.workflows.clone())
                        .unwrap_or_default(),
                    problem: Some(problem),
                }
            }
        };
        *cache = Some((Instant::now(), listing.clone()));
        listing
    }
}

/// Clones the catalogue shallow and reads its workflows.
async fn read(source: &Source) -> Result<Vec<CatalogueWorkflow>, String> {
    let dir = tempfile::Builder::new()
        .prefix("ambient-catalogue-")
        .tempdir()
        .map_err(|e| format!("no temporary folder: {e}"))?;
    let clone = dir.path().join("c");
    let mut git = tokio::process::Command::new("git");
    git.args([
        // No hook, no helper, no configuration of this machine's users.
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.ext.allow=never",
        "-c",
        "credential.helper=",
        "clone",
        "--quiet",
        "--depth=1",
        "--single-branch",
        "--no-tags",
    ])
    .arg(format!("--branch={}", source.branch))
    .arg("--")
    .arg(&source.git_url)
    .arg(&clone)
    .env("GIT_TERMINAL_PROMPT", "0")
    .env("GIT_CONFIG_NOSYSTEM", "1")
    .env("GIT_CONFIG_GLOBAL", "/dev/null")
    .env("GIT_ASKPASS", "/bin/false")
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(CLONE_TIMEOUT, git.output())
        .await
        .map_err(|_| format!("cloning took longer than {} s", CLONE_TIMEOUT.as_secs()))?
        .map_err(|e| format!("git did not run: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("git clone failed: {}", last.trim()));
    }
    let source = source.clone();
    tokio::task::spawn_blocking(move || workflows_in(&clone, &source))
        .await
        .map_err(|e| e.to_string())
}

/// The workflows of a cloned catalogue: each folder of `workflows/` with a readable
/// `ambient.json` not `enabled: false`, by name. No link is followed.
fn workflows_in(clone: &Path, source: &Source) -> Vec<CatalogueWorkflow> {
    let not_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_symlink());
    let root = clone.join(WORKFLOWS_DIR);
    if !not_link(&root) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        let file = dir.join(AMBIENT_JSON);
        let meta_dir = dir.join(".ambient");
        if id.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if !not_link(&meta_dir)
            || !std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_file())
        {
            continue;
        }
        let Ok(bytes) = std::fs::read(&file) else {
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
    out
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
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
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
        write(&work, "workflows/bugfix/.ambient/ambient.json", r#"{"name":"Bug fix","description":"Fix a bug."}"#);
        write(&work, "workflows/rfe/.ambient/ambient.json", r#"{"name":"Ideate an RFE"}"#);
        write(&work, "workflows/old/.ambient/ambient.json", r#"{"name":"Old","enabled":false}"#);
        write(&work, "workflows/broken/.ambient/ambient.json", "{");
        write(&work, "workflows/plain/README.md", "no ambient.json");
        std::os::unix::fs::symlink("/etc", work.join("workflows/leak")).unwrap();
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
        assert!(l.problem.unwrap().contains("git clone failed"));
        // None configured: an empty list, no problem.
        assert_eq!(Catalogue::new(None).list().await, Listing::default());
    }
}
