//! The session's workspace: `repos/<name>/` (clones), `workflows/<name>/` (the active
//! workflow), `artifacts/` (the agent's output), `.claude/` (the CLI's own state) and
//! `.ambient/` (the platform's).

use std::path::{Path, PathBuf};

use model::runner_env::STATE_DIR;
use model::session::{DEFAULT_BRANCH, GitProvider, SessionRepo};

use crate::config::Config;
use crate::error::Error;
use crate::git::{self, Confinement};
use crate::keeper::{Keeper, Source};
use crate::sandbox::Isolation;

mod fork;

/// File in the state folder holding Claude's conversation id, for continuing it.
const CLAUDE_SESSION_FILE: &str = "claude-session-id";
/// File in the state folder recording which workflow (URL and branch) each
/// `workflows/<name>` holds, so that a switch back finds its clone and two repositories of
/// one name do not share a folder.
const WORKFLOW_CLONES_FILE: &str = "workflow-clones.json";
/// File in the state folder naming the workflow the conversation's last run was in (URL,
/// branch and path; empty: none): a run in the same workflow gives no startup prompt.
const WORKFLOW_STARTED_FILE: &str = "workflow-started";
/// Bytes of a command file read for its description.
const COMMAND_HEAD: u64 = 4096;
/// Most entries of a workflow's command folders looked at.
const MAX_COMMAND_ENTRIES: usize = 1000;

/// The session's workflow, as read from its folder.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// What the platform is told of it.
    pub state: model::workflow::WorkflowState,
    /// Added to the agent's system prompt.
    pub system_prompt: Option<String>,
    /// Sent when the conversation starts in this workflow.
    pub startup_prompt: Option<String>,
    /// Its identity (URL, branch, path), as [`WORKFLOW_STARTED_FILE`] holds it.
    key: String,
}

/// A cloned repository.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Directory name under `repos/`.
    pub name: String,
    /// Remote URL (as given).
    pub url: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The branch cloned (the pull request's base).
    pub base: String,
    /// The branch the agent works on (`ambient/<session>`) when its work is pushed.
    pub work_branch: Option<String>,
    /// Hosting, if given.
    pub provider: Option<GitProvider>,
}

/// A prepared workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Its root.
    pub root: PathBuf,
    /// Where the agent works.
    pub cwd: PathBuf,
    /// Other directories the agent may use.
    pub add_dirs: Vec<PathBuf>,
    /// The artifacts folder.
    pub artifacts: PathBuf,
    /// The repositories, the main one first.
    pub repos: Vec<Repo>,
    /// Where git runs on them (and the agent runs): the agent's confinement.
    pub confinement: Confinement,
    /// The workspace as the server sees it (listings, contents, uploads).
    pub files: std::sync::Arc<crate::files::Files>,
    /// The active workflow, read.
    pub workflow: Option<Workflow>,
}

/// A directory name for a remote: its last path segment without `.git`.
pub fn repo_name(url: &str, taken: &[String]) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo");
    let base: String = last
        .trim_end_matches(".git")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let base = if base.is_empty() || base.starts_with('.') {
        "repo".to_owned()
    } else {
        base
    };
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

fn io_error(what: &Path, e: &std::io::Error) -> Error {
    Error::Workspace(format!("cannot create {}: {}", what.display(), describe(e)))
}

/// A git failure while cloning or setting up `what`, with the disk named when it is full
/// (git does not always say why a write failed, and rarely names a full disk).
fn clone_failed(root: &Path, what: String, e: git::GitError) -> Error {
    let reason = if disk_full(root) && !e.message.starts_with("the disk is full") {
        format!("the disk is full ({})", e.message)
    } else {
        e.message
    };
    Error::CloneFailed(format!("could not clone {what}: {reason}"))
}

impl Workspace {
    /// Creates the folders and clones the repositories (kept from an earlier run when they
    /// are there already, so a continued session finds its work); the agent runs under
    /// `isolation`. Reports progress through `log`.
    ///
    /// What an earlier run's agent left is hostile: no path through a link it planted is
    /// followed, and its repositories are touched by confined git only.
    pub async fn prepare(
        config: &Config,
        keeper: &Keeper,
        isolation: Isolation,
        log: impl Fn(String),
    ) -> Result<Workspace, Error> {
        let root = config.workspace.clone();
        let confinement = Confinement {
            isolation,
            workspace: root.clone(),
        };
        if let Some(fork) = &config.fork {
            // Off the runtime's thread: a large copy must not starve the link to the server.
            let (from, at) = (fork.workspace.clone(), root.clone());
            let taken = tokio::task::spawn_blocking(move || fork::take_over(from.as_deref(), &at))
                .await
                .map_err(|e| {
                    Error::Workspace(format!("taking the fork's workspace over failed: {e}"))
                })??;
            if let (Some(copied), Some(_)) = (taken, &fork.workspace) {
                log(format!(
                    "copied the workspace of {} ({copied} entries), forked after its turn {}",
                    fork.source.session, fork.source.turn
                ));
            }
        }
        for dir in [
            root.join(STATE_DIR),
            config.artifacts.clone(),
            root.join(".claude"),
            root.join("repos"),
            root.join(model::protocol::files::UPLOADS_DIR),
        ] {
            no_links(&root, &dir)?;
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, &e))?;
        }
        let mut repos: Vec<Repo> = Vec::new();
        for spec in &config.repos {
            let taken: Vec<String> = repos.iter().map(|r| r.name.clone()).collect();
            let name = repo_name(&spec.url, &taken);
            let source = Source::Repo(repos.len());
            repos.push(prepare_repo(config, keeper, &confinement, spec, source, name, &log).await?);
        }
        let mut cwd = repos
            .first()
            .map(|r| r.dir.clone())
            .unwrap_or_else(|| config.artifacts.clone());
        let mut add_dirs: Vec<PathBuf> = repos.iter().skip(1).map(|r| r.dir.clone()).collect();
        let mut workflow_dir = None;
        if let Some(wf) = &config.workflow {
            // The workflow directs the work: it is where the agent starts.
            add_dirs.insert(0, cwd.clone());
            let (clone, dir) = prepare_workflow(config, keeper, &confinement, wf, &log).await?;
            cwd = dir;
            workflow_dir = Some(clone);
        }
        if cwd != config.artifacts {
            add_dirs.push(config.artifacts.clone());
        }
        // What a person uploads (Files), for the agent to read.
        add_dirs.push(root.join(model::protocol::files::UPLOADS_DIR));
        let files = std::sync::Arc::new(crate::files::Files::new(
            root.clone(),
            confinement.clone(),
            repos.iter().map(|r| r.name.clone()).collect(),
        ));
        // What was uploaded while the session was stopped: this run's agent is told.
        files.take_pending_notes();
        let workflow = match (&config.workflow, workflow_dir) {
            (Some(wf), Some(clone)) => Some(read_workflow(&files, &root, wf, &clone, &cwd)),
            _ => None,
        };
        Ok(Workspace {
            workflow,
            files,
            root,
            cwd,
            add_dirs,
            artifacts: config.artifacts.clone(),
            repos,
            confinement,
        })
    }

    /// The runner's delivery repository for `repo` (see [`git::Delivery`]), in the state
    /// folder the agent's sandbox hides.
    pub fn delivery_dir(&self, repo: &Repo) -> PathBuf {
        self.root
            .join(STATE_DIR)
            .join("delivery")
            .join(format!("{}.git", repo.name))
    }

    /// Writes `contents` to `path` in the workspace, through no link: a link the agent
    /// planted there (or on the way) is refused, never followed.
    pub fn write(&self, path: &Path, contents: &[u8]) -> Result<(), Error> {
        write_in(&self.root, path, contents)
    }

    /// The workflow's startup prompt, when the conversation starts in this workflow: a new
    /// conversation, or one whose last run was in another workflow (or none). A conversation
    /// continued with no record of its workflow (begun before workflows were recorded) is
    /// not given it in the middle.
    pub fn workflow_startup(&self, resume: bool) -> Option<&str> {
        let wf = self.workflow.as_ref()?;
        let prompt = wf.startup_prompt.as_deref()?;
        match std::fs::read_to_string(self.root.join(STATE_DIR).join(WORKFLOW_STARTED_FILE)) {
            Err(_) if resume => None,
            Ok(last) if last == wf.key => None,
            _ => Some(prompt),
        }
    }

    /// Records the workflow this run's conversation is in (none: an empty record).
    pub fn record_workflow(&self) -> Result<(), Error> {
        let key = self.workflow.as_ref().map_or("", |wf| wf.key.as_str());
        self.write(
            &self.root.join(STATE_DIR).join(WORKFLOW_STARTED_FILE),
            key.as_bytes(),
        )
    }

    /// The CLI's configuration folder, private to this session.
    pub fn claude_config_dir(&self) -> PathBuf {
        self.root.join(".claude")
    }

    /// Whether the CLI's state holds the conversation `id` (any of its project folders:
    /// the CLI finds a conversation by id wherever it was started).
    pub fn has_conversation(&self, id: &str) -> bool {
        let file = format!("{id}.jsonl");
        std::fs::read_dir(self.claude_config_dir().join("projects"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| {
                d.path()
                    .join(&file)
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_file())
            })
    }

    /// The conversation id saved by an earlier run.
    pub fn claude_session_id(&self) -> Option<String> {
        let id =
            std::fs::read_to_string(self.root.join(STATE_DIR).join(CLAUDE_SESSION_FILE)).ok()?;
        Some(id.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// Saves the conversation id for a later continue.
    pub fn save_claude_session_id(&self, id: &str) -> Result<(), String> {
        let path = self.root.join(STATE_DIR).join(CLAUDE_SESSION_FILE);
        std::fs::write(&path, id).map_err(|e| {
            format!(
                "could not save the conversation id in {}: {}",
                path.display(),
                describe(&e)
            )
        })
    }

    /// What the agent is told about its environment, appended to Claude Code's prompt.
    pub fn system_prompt(&self, config: &Config) -> String {
        let mut p = format!(
            "You are working in an Ambient Code Platform session ({session}, project {project}).\n\
             Your working directory is {cwd}. Put files meant for the user (reports, generated output) in \
             {artifacts}. The workspace is yours alone and nobody watches the terminal: never wait for \
             interactive input.",
            session = config.session_name,
            project = config.project,
            cwd = self.cwd.display(),
            artifacts = self.artifacts.display(),
        );
        if !self.repos.is_empty() {
            p.push_str("\n\nRepositories:");
            for r in &self.repos {
                p.push_str(&format!(
                    "\n- {} ({}), checked out from branch {}",
                    r.dir.display(),
                    git::redact_url(&r.url),
                    r.base
                ));
                match &r.work_branch {
                    Some(b) => p.push_str(&format!(
                        "; you are on branch {b}. When the session ends, the platform commits what you leave, \
                         pushes {b} and opens a pull request into {}: do not push yourself, and never push to {}.",
                        r.base, r.base
                    )),
                    None => p.push_str("; changes here are not pushed."),
                }
            }
        }
        if let Some(wf) = &self.workflow {
            p.push_str(&format!(
                "\n\nYou work in the workflow \"{}\" ({}); its folder is your working directory.",
                wf.state.name,
                self.cwd.display()
            ));
            if let Some(prompt) = &wf.system_prompt {
                p.push_str("\n\n");
                p.push_str(prompt);
            }
        }
        p
    }
}

/// Writes `contents` to `path` in the workspace `root`, through no link.
fn write_in(root: &Path, path: &Path, contents: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let parent = path.parent().unwrap_or(root);
    no_links(root, parent)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| {
            Error::Workspace(format!("cannot write {}: {}", path.display(), describe(&e)))
        })?;
    file.write_all(contents)
        .map_err(|e| Error::Workspace(format!("cannot write {}: {}", path.display(), describe(&e))))
}

/// Clones one repository into `repos/<name>` (unless an earlier run did), sets the agent's
/// identity, and checks out its working branch when its work is pushed.
async fn prepare_repo(
    config: &Config,
    keeper: &Keeper,
    confinement: &Confinement,
    spec: &SessionRepo,
    source: Source,
    name: String,
    log: &impl Fn(String),
) -> Result<Repo, Error> {
    let root = &config.workspace;
    let dir = root.join("repos").join(&name);
    let what = || format!("{} into repos/{name}", git::redact_url(&spec.url));
    let fail = |e: git::GitError| clone_failed(root, what(), e);
    no_links(root, &dir)?;
    if std::fs::symlink_metadata(dir.join(".git")).is_err() {
        // Not cloned yet: cloned (with the token) by whoever holds it into a directory that
        // is no link; git refuses one that is not empty.
        keeper
            .clone(
                confinement,
                source,
                &spec.url,
                spec.provider,
                spec.branch.as_deref(),
                &dir,
            )
            .await
            .map_err(fail)?;
        log(format!("cloned {}", what()));
    }
    // From here on the repository is (or may be) the agent's: git runs confined.
    git::confined(
        confinement,
        &dir,
        &["config", "user.name", &config.user_name],
    )
    .await
    .map_err(fail)?;
    git::confined(
        confinement,
        &dir,
        &["config", "user.email", "ambient-code@users.noreply.local"],
    )
    .await
    .map_err(fail)?;
    let base = match &spec.branch {
        Some(b) => b.clone(),
        None => remote_head(confinement, &dir).await,
    };
    let work_branch = spec
        .auto_push()
        .then(|| model::api::auto_branch(&config.session_name));
    if let Some(branch) = &work_branch {
        check_out_work_branch(confinement, &dir, branch)
            .await
            .map_err(fail)?;
    }
    Ok(Repo {
        name,
        url: spec.url.clone(),
        dir,
        base,
        work_branch,
        provider: spec.provider,
    })
}

/// The branch the remote's HEAD names, else [`DEFAULT_BRANCH`].
async fn remote_head(confinement: &Confinement, dir: &Path) -> String {
    let args = [
        "symbolic-ref",
        "--quiet",
        "--short",
        "refs/remotes/origin/HEAD",
    ];
    // What the repository says is the agent's: only a plain branch name is taken.
    git::confined(confinement, dir, &args)
        .await
        .ok()
        .and_then(|h| h.trim().strip_prefix("origin/").map(str::to_owned))
        .filter(|b| model::validate::branch_name("branch", b).is_ok())
        .unwrap_or_else(|| DEFAULT_BRANCH.to_owned())
}

/// Checks out the agent's working branch, created from the current one the first time and
/// kept across runs (a continued session goes on where its work stands).
async fn check_out_work_branch(
    confinement: &Confinement,
    dir: &Path,
    branch: &str,
) -> Result<(), git::GitError> {
    let exists = git::confined(
        confinement,
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
    )
    .await
    .is_ok();
    let args: Vec<&str> = if exists {
        vec!["checkout", "--quiet", branch]
    } else {
        vec!["checkout", "--quiet", "-b", branch]
    };
    git::confined(confinement, dir, &args).await.map(|_| ())
}

/// Clones the active workflow into `workflows/<name>` (unless an earlier run did: each
/// folder's URL and branch are recorded); returns its clone and where the agent starts: the
/// workflow's path inside it, or its root.
async fn prepare_workflow(
    config: &Config,
    keeper: &Keeper,
    confinement: &Confinement,
    wf: &model::session::ActiveWorkflow,
    log: &impl Fn(String),
) -> Result<(PathBuf, PathBuf), Error> {
    let root = &config.workspace;
    let branch = wf.branch_or_default();
    let origin = format!("{} {branch}", wf.git_url);
    let record = root.join(STATE_DIR).join(WORKFLOW_CLONES_FILE);
    let mut clones: std::collections::BTreeMap<String, String> = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    // Only a folder this runner recorded is taken as a clone: one the agent made (or an
    // earlier version's, unrecorded) is never adopted.
    let name = match clones.iter().find(|(_, o)| **o == origin) {
        Some((name, _)) => name.clone(),
        None => {
            let mut taken: Vec<String> = clones.keys().cloned().collect();
            if let Ok(dir) = std::fs::read_dir(root.join("workflows")) {
                taken.extend(
                    dir.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned()),
                );
            }
            repo_name(&wf.git_url, &taken)
        }
    };
    let dir = root.join("workflows").join(&name);
    no_links(root, &dir)?;
    if std::fs::symlink_metadata(&dir).is_err() {
        std::fs::create_dir_all(root.join("workflows")).map_err(|e| io_error(root, &e))?;
        let what = format!("the workflow {}", git::redact_url(&wf.git_url));
        keeper
            .clone(
                confinement,
                Source::Workflow,
                &wf.git_url,
                None,
                Some(branch),
                &dir,
            )
            .await
            .map_err(|e| clone_failed(root, what.clone(), e))?;
        log(format!(
            "cloned the workflow {}",
            git::redact_url(&wf.git_url)
        ));
    }
    if clones.get(&name) != Some(&origin) {
        clones.insert(name, origin);
        let json = serde_json::to_vec(&clones).unwrap_or_default();
        write_in(root, &record, &json)?;
    }
    // The workflow's folder, through no link of the repository and a folder indeed; else
    // the clone's root.
    let start = match wf.path.as_deref().map(|p| p.trim_matches('/')) {
        Some(p) if !p.is_empty() && model::workflow::check_path(p).is_ok() => {
            let start = dir.join(p);
            let plain = no_links(root, &start).is_ok()
                && std::fs::symlink_metadata(&start).is_ok_and(|m| m.is_dir());
            if plain {
                start
            } else {
                log(format!(
                    "the workflow's folder {p} is not a folder of its repository; the agent starts at its root"
                ));
                dir.clone()
            }
        }
        _ => dir.clone(),
    };
    Ok((dir, start))
}

/// Reads the workflow in `folder` (below `root`, cloned in `clone`): its `ambient.json` and
/// its commands, through no link. What is wrong with it is reported, not fatal: the agent
/// works in the folder all the same.
fn read_workflow(
    files: &crate::files::Files,
    root: &Path,
    wf: &model::session::ActiveWorkflow,
    clone: &Path,
    folder: &Path,
) -> Workflow {
    use model::workflow::{
        AMBIENT_JSON, AmbientJson, COMMANDS_DIR, MAX_AMBIENT_JSON, WorkflowCommand, WorkflowState,
    };
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let at = rel(folder);
    let path = wf
        .path
        .clone()
        .unwrap_or_default()
        .trim_matches('/')
        .to_owned();
    let mut problem = None;
    let ambient = match files.read_prefix(&format!("{at}/{AMBIENT_JSON}"), MAX_AMBIENT_JSON + 1) {
        Ok(bytes) => AmbientJson::parse(&bytes).unwrap_or_else(|why| {
            problem = Some(why);
            AmbientJson::default()
        }),
        Err((model::protocol::files::FilesError::NotFound, _)) => AmbientJson::default(),
        Err((_, why)) => {
            problem = Some(format!("{AMBIENT_JSON} was not read: {why}"));
            AmbientJson::default()
        }
    };
    let mut commands = Vec::new();
    let mut folders = vec![(format!("{at}/{COMMANDS_DIR}"), Vec::<String>::new())];
    let mut visited = 0;
    while let Some((dir, parts)) = folders.pop() {
        let Ok(entries) = files.entries(&dir) else {
            continue;
        };
        for e in entries {
            // However many entries the repository (or the agent) made, a start reads few.
            visited += 1;
            if visited > MAX_COMMAND_ENTRIES {
                break;
            }
            if e.link.is_some() {
                continue;
            }
            let mut here = parts.clone();
            here.push(e.name.clone());
            if e.is_dir {
                if here.len() <= model::workflow::MAX_COMMAND_DEPTH {
                    folders.push((e.path, here));
                }
                continue;
            }
            let names: Vec<&str> = here.iter().map(String::as_str).collect();
            if WorkflowCommand::from_file(&names, "").is_none() {
                continue;
            }
            let head = files.read_prefix(&e.path, COMMAND_HEAD).unwrap_or_default();
            if let Some(c) = WorkflowCommand::from_file(&names, &String::from_utf8_lossy(&head)) {
                commands.push(c);
            }
            if commands.len() >= model::workflow::MAX_COMMANDS {
                break;
            }
        }
        if commands.len() >= model::workflow::MAX_COMMANDS {
            break;
        }
    }
    commands.sort_by(|a, b| a.name.cmp(&b.name));
    let fallback = folder
        .file_name()
        .or_else(|| clone.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let branch = wf.branch_or_default().to_owned();
    Workflow {
        key: format!("{}\n{branch}\n{path}", wf.git_url),
        state: WorkflowState {
            git_url: wf.git_url.clone(),
            branch,
            path,
            name: ambient.name.unwrap_or(fallback),
            description: ambient.description.unwrap_or_default(),
            commands,
            system_prompt: ambient.system_prompt.is_some(),
            started: false,
            problem,
        },
        system_prompt: ambient.system_prompt,
        startup_prompt: ambient.startup_prompt,
    }
}

/// Whether the filesystem holding `path` has (next to) no room left.
pub fn disk_full(path: &Path) -> bool {
    const NEARLY_NOTHING: u64 = 512 * 1024;
    nix::sys::statvfs::statvfs(path)
        .is_ok_and(|s| s.blocks_available() * s.fragment_size() < NEARLY_NOTHING)
}

/// A readable reason for an I/O failure, naming a full disk plainly.
pub fn describe(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(28) {
        "the disk is full".to_owned()
    } else {
        e.to_string()
    }
}

/// Refuses `path` (inside `root`) when it, or a directory on the way to it from `root`, is a
/// symbolic link: the agent may plant one anywhere in the workspace, and the runner writes or
/// runs git nowhere it points.
pub fn no_links(root: &Path, path: &Path) -> Result<(), Error> {
    let Ok(rest) = path.strip_prefix(root) else {
        return Err(Error::Workspace(format!(
            "{} is outside the workspace",
            path.display()
        )));
    };
    let mut at = root.to_owned();
    for part in rest.components() {
        let std::path::Component::Normal(part) = part else {
            return Err(Error::Workspace(format!(
                "{} is not a plain path in the workspace",
                path.display()
            )));
        };
        at.push(part);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(Error::Workspace(format!(
                "{} is a symbolic link; the platform does not follow links in the workspace",
                at.display()
            )));
        }
    }
    Ok(())
}

/// Whether `path` is inside `root` (no `..` escapes).
pub fn is_within(root: &Path, path: &Path) -> bool {
    path.components()
        .all(|c| !matches!(c, std::path::Component::ParentDir))
        && path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(root: &Path) -> crate::files::Files {
        crate::files::Files::new(
            root.to_owned(),
            Confinement {
                isolation: Isolation::None(String::new()),
                workspace: root.to_owned(),
            },
            Vec::new(),
        )
    }

    fn workflow(path: Option<&str>) -> model::session::ActiveWorkflow {
        model::session::ActiveWorkflow {
            git_url: "https://git.example/org/flows.git".into(),
            branch: None,
            path: path.map(str::to_owned),
        }
    }

    #[test]
    fn a_workflow_is_read_through_no_link_with_its_commands() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let clone = root.join("workflows/flows");
        let folder = clone.join("bugfix");
        std::fs::create_dir_all(folder.join(".ambient")).unwrap();
        std::fs::create_dir_all(folder.join(".claude/commands/rfe")).unwrap();
        std::fs::write(
            folder.join(".ambient/ambient.json"),
            r#"{"name":"Bug fix","description":"Fixes a bug.","systemPrompt":"Reproduce first.","startupPrompt":"Greet the user."}"#,
        )
        .unwrap();
        std::fs::write(
            folder.join(".claude/commands/triage.md"),
            "---\ndescription: Sort the bugs\n---\nSort them.",
        )
        .unwrap();
        std::fs::write(
            folder.join(".claude/commands/rfe/create.md"),
            "# Write an RFE\n",
        )
        .unwrap();
        std::fs::write(folder.join(".claude/commands/notes.txt"), "not a command").unwrap();
        // A command that is a link to a secret of the host is not read.
        std::os::unix::fs::symlink("/etc/hostname", folder.join(".claude/commands/leak.md"))
            .unwrap();
        let wf = read_workflow(
            &files(root),
            root,
            &workflow(Some("bugfix/")),
            &clone,
            &folder,
        );
        let s = &wf.state;
        assert_eq!(
            (s.name.as_str(), s.description.as_str()),
            ("Bug fix", "Fixes a bug.")
        );
        assert_eq!((s.branch.as_str(), s.path.as_str()), ("main", "bugfix"));
        let commands: Vec<(&str, &str)> = s
            .commands
            .iter()
            .map(|c| (c.name.as_str(), c.description.as_str()))
            .collect();
        assert_eq!(
            commands,
            [("rfe:create", "Write an RFE"), ("triage", "Sort the bugs")]
        );
        assert!(s.system_prompt && s.problem.is_none());
        assert_eq!(wf.startup_prompt.as_deref(), Some("Greet the user."));

        let read_bugfix = || {
            read_workflow(
                &files(root),
                root,
                &workflow(Some("bugfix")),
                &clone,
                &folder,
            )
        };
        // An ambient.json that is a link is not followed: the workflow goes on without it.
        std::fs::remove_file(folder.join(".ambient/ambient.json")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", folder.join(".ambient/ambient.json")).unwrap();
        let wf = read_bugfix();
        assert!(wf.state.problem.unwrap().contains("symbolic link"));
        assert_eq!((wf.state.name.as_str(), wf.system_prompt), ("bugfix", None));
        // Nor is a folder on the way that is a link.
        std::fs::remove_dir_all(folder.join(".ambient")).unwrap();
        std::os::unix::fs::symlink("/etc", folder.join(".ambient")).unwrap();
        let wf = read_bugfix();
        assert!(wf.state.problem.is_some() && wf.system_prompt.is_none());
        // Broken JSON is reported.
        std::fs::remove_file(folder.join(".ambient")).unwrap();
        std::fs::create_dir_all(folder.join(".ambient")).unwrap();
        std::fs::write(folder.join(".ambient/ambient.json"), "{").unwrap();
        let wf = read_bugfix();
        assert!(wf.state.problem.unwrap().contains("not valid"));
    }

    #[test]
    fn a_workflows_startup_prompt_is_given_once_per_workflow() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
        let folder = root.join("workflows/flows");
        std::fs::create_dir_all(folder.join(".ambient")).unwrap();
        std::fs::write(
            folder.join(".ambient/ambient.json"),
            r#"{"startupPrompt":"Hello."}"#,
        )
        .unwrap();
        let f = std::sync::Arc::new(files(root));
        let ws = |path: Option<&str>| Workspace {
            root: root.to_owned(),
            cwd: folder.clone(),
            add_dirs: Vec::new(),
            artifacts: root.join("artifacts"),
            repos: Vec::new(),
            confinement: Confinement {
                isolation: Isolation::None(String::new()),
                workspace: root.to_owned(),
            },
            workflow: Some(read_workflow(&f, root, &workflow(path), &folder, &folder)),
            files: f.clone(),
        };
        let first = ws(None);
        assert_eq!(
            first.workflow_startup(true),
            None,
            "a conversation continued with no record is not interrupted"
        );
        assert_eq!(first.workflow_startup(false), Some("Hello."));
        first.record_workflow().unwrap();
        assert_eq!(
            ws(None).workflow_startup(true),
            None,
            "the same workflow again"
        );
        assert_eq!(
            ws(Some("other")).workflow_startup(true),
            Some("Hello."),
            "another workflow (here another folder) starts again"
        );
        // A run without a workflow records none: a switch to one later starts it.
        let mut none = ws(None);
        none.workflow = None;
        none.record_workflow().unwrap();
        assert_eq!(ws(None).workflow_startup(true), Some("Hello."));
    }

    #[test]
    fn links_in_the_workspace_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("repos/app")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("repos/evil")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join(".claude")).unwrap();
        assert!(no_links(root, &root.join("repos/app")).is_ok());
        assert!(no_links(root, &root.join("repos/new")).is_ok());
        for bad in ["repos/evil", "repos/evil/x", ".claude/ambient-mcp.json"] {
            let err = no_links(root, &root.join(bad)).unwrap_err().to_string();
            assert!(err.contains("symbolic link"), "{bad}: {err}");
        }
        assert!(no_links(root, &root.join("repos/../../etc")).is_err());
        assert!(no_links(root, Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn repo_names_are_unique_and_safe() {
        assert_eq!(repo_name("https://github.com/o/app.git", &[]), "app");
        assert_eq!(repo_name("git@github.com:o/lib", &[]), "lib");
        assert_eq!(
            repo_name("https://x/y/app.git", &["app".into(), "app-2".into()]),
            "app-3"
        );
        assert_eq!(repo_name("https://x/.git", &[]), "repo");
        assert_eq!(repo_name("file:///srv/a b.git", &[]), "a-b");
    }
}
