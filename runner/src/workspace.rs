//! The session's workspace: `artifacts/` (the agent's output), `repos/<name>/` (clones),
//! `.claude/` (the CLI's own state) and `.ambient/` (the platform's).

use std::path::{Path, PathBuf};

use model::runner_env::STATE_DIR;

use crate::config::Config;

/// File in the state folder holding Claude's conversation id, for continuing it.
const CLAUDE_SESSION_FILE: &str = "claude-session-id";

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
}

impl Workspace {
    /// Creates the folders; the error says which one failed and why.
    pub fn prepare(config: &Config) -> Result<Workspace, String> {
        let root = config.workspace.clone();
        for dir in [
            root.join(STATE_DIR),
            config.artifacts.clone(),
            root.join(".claude"),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {}", dir.display(), describe(&e)))?;
        }
        Ok(Workspace {
            cwd: config.artifacts.clone(),
            add_dirs: Vec::new(),
            artifacts: config.artifacts.clone(),
            root,
        })
    }

    /// The CLI's configuration folder, private to this session.
    pub fn claude_config_dir(&self) -> PathBuf {
        self.root.join(".claude")
    }

    /// The conversation id saved by an earlier run.
    pub fn claude_session_id(&self) -> Option<String> {
        let id =
            std::fs::read_to_string(self.root.join(STATE_DIR).join(CLAUDE_SESSION_FILE)).ok()?;
        Some(id.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// Saves the conversation id for a later continue.
    pub fn save_claude_session_id(&self, id: &str) {
        let path = self.root.join(STATE_DIR).join(CLAUDE_SESSION_FILE);
        if let Err(e) = std::fs::write(&path, id) {
            tracing::warn!(path = %path.display(), error = %e, "could not save the conversation id");
        }
    }

    /// What the agent is told about its environment, appended to Claude Code's prompt.
    pub fn system_prompt(&self, config: &Config) -> String {
        format!(
            "You are working in an Ambient Code Platform session ({session}, project {project}).\n\
             Your working directory is {cwd}. Put files meant for the user (reports, generated output) \
             in {artifacts}. The workspace is yours alone; nobody is watching the terminal, so do not \
             wait for interactive input.",
            session = config.session_name,
            project = config.project,
            cwd = self.cwd.display(),
            artifacts = self.artifacts.display(),
        )
    }
}

/// A readable reason for an I/O failure, naming a full disk plainly.
pub fn describe(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(28) {
        "the disk is full".to_owned()
    } else {
        e.to_string()
    }
}

/// Whether `path` is inside `root` (after resolving `..`).
pub fn is_within(root: &Path, path: &Path) -> bool {
    path.components()
        .all(|c| !matches!(c, std::path::Component::ParentDir))
        && path.starts_with(root)
}
