//! The runner's configuration contract: names of the environment variables through which a
//! driver (local process or Kubernetes Job) configures a runner, and the exit record a runner
//! leaves in its workspace.
//!
//! Names follow the original platform where it has them; the platform's own additions start
//! with `AMBIENT_`. No session may set any of them ([`is_reserved`]).

use serde::{Deserialize, Serialize};

/// Exit codes of the runner (the original operator's convention), read by every driver.
pub mod exit {
    /// The run succeeded, or was stopped on request.
    pub const OK: i32 = 0;
    /// The agent or the run failed.
    pub const FAILED: i32 = 1;
    /// Configuration or prerequisites are missing (bad environment, no credentials, a clone
    /// that failed).
    pub const PREREQUISITE: i32 = 2;
}

/// Every runner token starts with this, so user endpoints can refuse one without a lookup.
pub const RUNNER_TOKEN_PREFIX: &str = "art_";

/// Session name.
pub const SESSION_NAME: &str = "AGENTIC_SESSION_NAME";
/// Project (namespace) of the session.
pub const SESSION_NAMESPACE: &str = "AGENTIC_SESSION_NAMESPACE";
/// Session uid.
pub const SESSION_ID: &str = "SESSION_ID";
/// Project name (same as the namespace).
pub const PROJECT_NAME: &str = "PROJECT_NAME";
/// Absolute path of the session's workspace.
pub const WORKSPACE_PATH: &str = "WORKSPACE_PATH";
/// Artifacts folder, relative to the workspace.
pub const ARTIFACTS_DIR: &str = "ARTIFACTS_DIR";
/// The first prompt; set only when the session starts for the first time.
pub const INITIAL_PROMPT: &str = "INITIAL_PROMPT";
/// `true` when the runner continues an earlier conversation.
pub const IS_RESUME: &str = "IS_RESUME";
/// Model id.
pub const LLM_MODEL: &str = "LLM_MODEL";
/// Run timeout in seconds (the operator enforces it; informative for the runner).
pub const TIMEOUT: &str = "TIMEOUT";
/// JSON array of the session's repos (`[{"url","branch","autoPush"}]`).
pub const REPOS_JSON: &str = "REPOS_JSON";
/// Workflow repository URL.
pub const ACTIVE_WORKFLOW_GIT_URL: &str = "ACTIVE_WORKFLOW_GIT_URL";
/// Workflow branch.
pub const ACTIVE_WORKFLOW_BRANCH: &str = "ACTIVE_WORKFLOW_BRANCH";
/// Workflow sub-directory.
pub const ACTIVE_WORKFLOW_PATH: &str = "ACTIVE_WORKFLOW_PATH";
/// Creator's user id.
pub const USER_ID: &str = "USER_ID";
/// Creator's display name.
pub const USER_NAME: &str = "USER_NAME";
/// JSON of the session's MCP servers (`{"custom":{...},"disabled":[...]}`).
pub const CUSTOM_MCP_SERVERS: &str = "CUSTOM_MCP_SERVERS";
/// JSON of the project's MCP servers.
pub const PROJECT_MCP_SERVERS: &str = "PROJECT_MCP_SERVERS";
/// Base URL of the server's API, e.g. `http://127.0.0.1:3000/api`.
pub const BACKEND_API_URL: &str = "BACKEND_API_URL";

/// The runner's token for the runner endpoint (valid for this session and generation only).
pub const RUNNER_TOKEN: &str = "AMBIENT_RUNNER_TOKEN";
/// Which start of the session this runner is.
pub const RUNNER_GENERATION: &str = "AMBIENT_RUNNER_GENERATION";
/// Highest session `seq` of a user message already given to the agent (the initial prompt
/// counts when [`INITIAL_PROMPT`] is set).
pub const HANDLED_THROUGH: &str = "AMBIENT_HANDLED_THROUGH";
/// Path of the `claude` executable.
pub const CLAUDE_BIN: &str = "AMBIENT_CLAUDE_BIN";
/// `false` to have the agent's text only as whole messages, not streamed as it is written.
pub const PARTIAL_MESSAGES: &str = "AMBIENT_PARTIAL_MESSAGES";
/// Whether the agent runs in a sandbox: a [`SandboxMode`] (`auto`, `required` or `off`).
pub const SANDBOX: &str = "AMBIENT_SANDBOX";
/// What the agent may do without asking (`autonomous`, `ask`, `plan`: see
/// [`crate::session::PermissionMode`]).
pub const PERMISSION_MODE: &str = "AMBIENT_PERMISSION_MODE";

/// Whether the agent runs in a bubblewrap sandbox ([`SANDBOX`]): what a driver writes and
/// the runner reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Sandboxed when bubblewrap can run here; otherwise unconfined, with a warning.
    #[default]
    Auto,
    /// Sandboxed, or the run fails (local mode, once the server found the sandbox working).
    Required,
    /// Never (a Kubernetes pod is its own sandbox).
    Off,
}

impl SandboxMode {
    /// Every mode, in the order they are documented.
    pub const ALL: [SandboxMode; 3] = [SandboxMode::Auto, SandboxMode::Required, SandboxMode::Off];

    /// The value of [`SANDBOX`].
    pub const fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Auto => "auto",
            SandboxMode::Required => "required",
            SandboxMode::Off => "off",
        }
    }
}

impl std::fmt::Display for SandboxMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SandboxMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SandboxMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| "must be auto, required or off".to_owned())
    }
}

/// Where the runner finds the credentials keeper (`http://127.0.0.1:4142`), when another
/// container of its pod holds the credentials (Kubernetes mode); unset, the runner holds
/// them itself.
pub const KEEPER_URL: &str = "AMBIENT_KEEPER_URL";
/// Where the keeper listens (`127.0.0.1:4142`), on the pod's loopback.
pub const KEEPER_LISTEN: &str = "AMBIENT_KEEPER_LISTEN";
/// The token the keeper takes from the runner (in the keeper's environment too).
pub const KEEPER_TOKEN: &str = "AMBIENT_KEEPER_TOKEN";
/// The keeper's own folder (its delivery repositories), which the agent's container does
/// not mount.
pub const KEEPER_STATE: &str = "AMBIENT_KEEPER_STATE";

/// Anthropic API key.
pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
/// Base URL of an Anthropic-compatible endpoint.
pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// Bearer token for an Anthropic-compatible endpoint.
pub const ANTHROPIC_AUTH_TOKEN: &str = "ANTHROPIC_AUTH_TOKEN";
/// Token for pushes and pull requests on GitHub.
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// Token for pushes and merge requests on GitLab.
pub const GITLAB_TOKEN: &str = "GITLAB_TOKEN";
/// GitHub's REST API base (default `https://api.github.com`, or `https://<host>/api/v3`).
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
/// GitLab's REST API base (default `https://<host>/api/v4`).
pub const GITLAB_API_URL: &str = "GITLAB_API_URL";
/// Most model turns per message (`--max-turns`); unset for no limit. The one variable of
/// the runner a session may set itself (it can only make the agent stop sooner).
pub const MAX_TURNS: &str = "MAX_TURNS";
/// The session's display name (pull request titles).
pub const DISPLAY_NAME: &str = "AMBIENT_DISPLAY_NAME";

/// A fork's source (`spec.fork` as JSON): the conversation and the entry it resumes at.
pub const FORK_SOURCE: &str = "AMBIENT_FORK_SOURCE";
/// The workspace a fork's first run copies (local mode; in a cluster the workspace's
/// claim is a clone of its source's).
pub const FORK_WORKSPACE: &str = "AMBIENT_FORK_WORKSPACE";

/// `1` when the run's work is held: committed in the workspace and reported, not pushed,
/// no pull request (an attempt of "run N" that no one has kept yet).
pub const HOLD_DELIVERY: &str = "AMBIENT_HOLD_DELIVERY";

/// Seconds a files runner (`runner files`: a stopped session's workspace, served to the
/// Files panel) waits without a request before it exits (default 300).
pub const FILES_IDLE_SECONDS: &str = "AMBIENT_FILES_IDLE_SECONDS";

/// Every variable of the contract above, set by the driver for the runner.
pub const CONTRACT: [&str; 32] = [
    SESSION_NAME,
    SESSION_NAMESPACE,
    SESSION_ID,
    PROJECT_NAME,
    WORKSPACE_PATH,
    ARTIFACTS_DIR,
    INITIAL_PROMPT,
    IS_RESUME,
    LLM_MODEL,
    TIMEOUT,
    REPOS_JSON,
    ACTIVE_WORKFLOW_GIT_URL,
    ACTIVE_WORKFLOW_BRANCH,
    ACTIVE_WORKFLOW_PATH,
    USER_ID,
    USER_NAME,
    CUSTOM_MCP_SERVERS,
    PROJECT_MCP_SERVERS,
    BACKEND_API_URL,
    RUNNER_TOKEN,
    RUNNER_GENERATION,
    HANDLED_THROUGH,
    CLAUDE_BIN,
    PARTIAL_MESSAGES,
    SANDBOX,
    PERMISSION_MODE,
    DISPLAY_NAME,
    GITHUB_API_URL,
    GITLAB_API_URL,
    FORK_SOURCE,
    FORK_WORKSPACE,
    HOLD_DELIVERY,
];

/// Variables the runner sets for the agent's CLI itself.
const CLI_VARIABLES: [&str; 6] = [
    "CLAUDE_CONFIG_DIR",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    "CLAUDECODE",
    "DISABLE_AUTOUPDATER",
    "IS_SANDBOX",
];

/// Variables that decide how programs are found, loaded and started.
const PROCESS_VARIABLES: [&str; 6] = ["PATH", "HOME", "SHELL", "BASH_ENV", "ENV", "TMPDIR"];

/// Variables that send a process's traffic through another host (in either case): a proxy
/// would see the runner's model key and git tokens.
const PROXY_VARIABLES: [&str; 4] = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"];

/// Prefixes of variables no session may set: the platform's own, the dynamic loader's,
/// git's and ssh's (they reconfigure the runner's own git), and the model endpoint's.
pub const RESERVED_PREFIXES: [&str; 6] = [
    "AMBIENT_",
    "LD_",
    "GIT_",
    "SSH_",
    "ANTHROPIC_",
    crate::mcp::CREDENTIAL_PREFIX,
];

/// Whether a session's `environmentVariables` may not set `name`: the runner's contract, the
/// credentials, the agent CLI's own settings, the loader, the shell and git would otherwise
/// be rewired by whoever creates a session.
pub fn is_reserved(name: &str) -> bool {
    CONTRACT.contains(&name)
        || Credentials::KEYS.contains(&name)
        || CLI_VARIABLES.contains(&name)
        || PROCESS_VARIABLES.contains(&name)
        || PROXY_VARIABLES.contains(&name.to_ascii_uppercase().as_str())
        || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Every name [`is_reserved`] refuses outright (beyond [`RESERVED_PREFIXES`]).
pub fn reserved_names() -> impl Iterator<Item = &'static str> {
    CONTRACT
        .into_iter()
        .chain(Credentials::KEYS)
        .chain(CLI_VARIABLES)
        .chain(PROCESS_VARIABLES)
        .chain(PROXY_VARIABLES)
}

/// Folder inside the workspace that belongs to the platform, not the agent.
pub const STATE_DIR: &str = ".ambient";
/// File in [`STATE_DIR`] where the runner records how it ended, for a driver that is not its
/// parent (a server restarted while the runner ran).
pub const EXIT_RECORD_FILE: &str = "runner-exit.json";
/// File in [`STATE_DIR`] receiving the runner's standard output and error.
pub const RUNNER_LOG_FILE: &str = "runner.log";

/// How a runner ended, as it records it in [`EXIT_RECORD_FILE`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The runner's generation.
    pub generation: u64,
    /// Its exit code.
    pub exit_code: i32,
}

/// The credentials a runner receives: model access and git tokens, each optional. A
/// project's own (its runner secrets) override the server's defaults.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// [`ANTHROPIC_API_KEY`].
    pub anthropic_api_key: Option<String>,
    /// [`ANTHROPIC_BASE_URL`].
    pub anthropic_base_url: Option<String>,
    /// [`ANTHROPIC_AUTH_TOKEN`].
    pub anthropic_auth_token: Option<String>,
    /// [`GITHUB_TOKEN`].
    pub github_token: Option<String>,
    /// [`GITLAB_TOKEN`].
    pub gitlab_token: Option<String>,
    /// [`GITHUB_API_URL`].
    pub github_api_url: Option<String>,
    /// [`GITLAB_API_URL`].
    pub gitlab_api_url: Option<String>,
    /// MCP credentials (`MCP_*`, [`crate::mcp::is_credential_key`]) by name: each goes only
    /// in the headers of the project's MCP servers that reference it.
    pub mcp: std::collections::BTreeMap<String, String>,
}

/// Values are never printed.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.pairs().map(|(k, _)| k))
            .finish()
    }
}

impl Credentials {
    /// The variable names, in the order [`Credentials::pairs`] yields them.
    pub const KEYS: [&'static str; 7] = [
        ANTHROPIC_API_KEY,
        ANTHROPIC_BASE_URL,
        ANTHROPIC_AUTH_TOKEN,
        GITHUB_TOKEN,
        GITLAB_TOKEN,
        GITHUB_API_URL,
        GITLAB_API_URL,
    ];
    /// The variables that give model access; a project that sets one replaces all three.
    pub const MODEL_KEYS: [&'static str; 3] =
        [ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, ANTHROPIC_AUTH_TOKEN];

    /// The credentials as wholes: a token and the address it is sent to are one thing. Who
    /// may not read a token may not change where it goes, so a write that names any variable
    /// of a group replaces the whole group ([`Credentials::whole`]), and a project that sets
    /// any variable of a group uses none of the server's for it ([`Credentials::over`]).
    pub const GROUPS: [&'static [&'static str]; 3] = [
        &Self::MODEL_KEYS,
        &[GITHUB_TOKEN, GITHUB_API_URL],
        &[GITLAB_TOKEN, GITLAB_API_URL],
    ];

    /// The group `key` belongs to.
    pub fn group_of(key: &str) -> Option<&'static [&'static str]> {
        Self::GROUPS.into_iter().find(|g| g.contains(&key))
    }

    /// `changes` (key, new value or `None` to remove) completed so that every group they
    /// touch is replaced as a whole: the group's variables they do not name are removed.
    /// Setting `GITHUB_API_URL` alone therefore drops the stored `GITHUB_TOKEN` (it is not
    /// sent to the new address), and rotating the token alone drops an address set before.
    pub fn whole(changes: &[(String, Option<String>)]) -> Vec<(String, Option<String>)> {
        let mut out = changes.to_vec();
        for group in Self::GROUPS {
            if changes.iter().any(|(k, _)| group.contains(&k.as_str())) {
                for key in group {
                    if !changes.iter().any(|(k, _)| k == key) {
                        out.push(((*key).to_owned(), None));
                    }
                }
            }
        }
        out
    }

    fn slots(&self) -> [&Option<String>; 7] {
        [
            &self.anthropic_api_key,
            &self.anthropic_base_url,
            &self.anthropic_auth_token,
            &self.github_token,
            &self.gitlab_token,
            &self.github_api_url,
            &self.gitlab_api_url,
        ]
    }

    /// The value of one variable, `None` for an unset or unknown one.
    pub fn get(&self, key: &str) -> Option<&str> {
        if crate::mcp::is_credential_key(key) {
            return self.mcp.get(key).map(String::as_str);
        }
        let i = Self::KEYS.iter().position(|k| *k == key)?;
        self.slots()[i].as_deref()
    }

    /// Sets (or with `None` clears) one variable; `Err` names an unknown key.
    pub fn set(&mut self, key: &str, value: Option<String>) -> Result<(), String> {
        let slot = match key {
            ANTHROPIC_API_KEY => &mut self.anthropic_api_key,
            ANTHROPIC_BASE_URL => &mut self.anthropic_base_url,
            ANTHROPIC_AUTH_TOKEN => &mut self.anthropic_auth_token,
            GITHUB_TOKEN => &mut self.github_token,
            GITLAB_TOKEN => &mut self.gitlab_token,
            GITHUB_API_URL => &mut self.github_api_url,
            GITLAB_API_URL => &mut self.gitlab_api_url,
            mcp if crate::mcp::is_credential_key(mcp) => {
                match value {
                    Some(v) => self.mcp.insert(mcp.to_owned(), v),
                    None => self.mcp.remove(mcp),
                };
                return Ok(());
            }
            other => return Err(other.to_owned()),
        };
        *slot = value;
        Ok(())
    }

    /// The set variables as `(name, value)`, in [`Credentials::KEYS`] order, then the MCP
    /// credentials by name.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        Self::KEYS
            .into_iter()
            .zip(self.slots())
            .filter_map(|(k, v)| Some((k, v.as_deref()?)))
            .chain(self.mcp.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Whether any model credential is set.
    pub fn has_model(&self) -> bool {
        Self::MODEL_KEYS.iter().any(|k| self.get(k).is_some())
    }

    /// These credentials over `defaults`, group by group ([`Credentials::GROUPS`]): a group
    /// of which anything is set here replaces the defaults' group as a whole (a project with
    /// its own endpoint or API address must not send the server's key or token there).
    pub fn over(&self, defaults: &Credentials) -> Credentials {
        let mut out = defaults.clone();
        for group in Self::GROUPS {
            if group.iter().any(|k| self.get(k).is_some()) {
                for k in group {
                    let _ = out.set(k, None);
                }
            }
        }
        for (k, v) in self.pairs() {
            let _ = out.set(k, Some(v.to_owned()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_credentials_replace_the_servers_model_credentials_as_a_whole() {
        let defaults = Credentials {
            anthropic_base_url: Some("http://mock".into()),
            anthropic_api_key: Some("srv".into()),
            github_token: Some("gh".into()),
            ..Default::default()
        };
        let project = Credentials {
            anthropic_api_key: Some("proj".into()),
            ..Default::default()
        };
        let merged = project.over(&defaults);
        assert_eq!(
            merged.pairs().collect::<Vec<_>>(),
            [(ANTHROPIC_API_KEY, "proj"), (GITHUB_TOKEN, "gh")]
        );
        assert_eq!(Credentials::default().over(&defaults), defaults);
    }

    /// The attack: a project's editor points the API address elsewhere, hoping the server's
    /// (or the project admin's) token follows it there.
    #[test]
    fn a_token_never_goes_to_an_address_set_without_it() {
        let server = Credentials {
            github_token: Some("owner-token".into()),
            gitlab_token: Some("owner-gl".into()),
            ..Default::default()
        };
        let project = Credentials {
            github_api_url: Some("https://evil.example/api/v3".into()),
            ..Default::default()
        };
        let merged = project.over(&server);
        assert_eq!(
            merged.github_token, None,
            "the server's token follows the address"
        );
        assert_eq!(merged.gitlab_token.as_deref(), Some("owner-gl"));

        let changes = Credentials::whole(&[(
            GITHUB_API_URL.to_owned(),
            Some("https://evil.example/api/v3".into()),
        )]);
        assert!(
            changes.contains(&(GITHUB_TOKEN.to_owned(), None)),
            "{changes:?}"
        );
        assert!(!changes.iter().any(|(k, _)| k.starts_with("GITLAB")));
        let changes = Credentials::whole(&[(ANTHROPIC_BASE_URL.to_owned(), Some("u".into()))]);
        for k in [ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN] {
            assert!(changes.contains(&(k.to_owned(), None)), "{k}");
        }
        // Naming both sets both.
        let both = [
            (GITHUB_TOKEN.to_owned(), Some("t".into())),
            (GITHUB_API_URL.to_owned(), Some("u".into())),
        ];
        assert_eq!(Credentials::whole(&both), both.to_vec());
    }

    #[test]
    fn the_contract_and_what_rewires_a_process_are_reserved() {
        for name in [
            WORKSPACE_PATH,
            REPOS_JSON,
            INITIAL_PROMPT,
            GITHUB_API_URL,
            ANTHROPIC_BASE_URL,
            "ANTHROPIC_CUSTOM_HEADERS",
            "LD_PRELOAD",
            "PATH",
            "HOME",
            "BASH_ENV",
            "GIT_CONFIG_COUNT",
            "GIT_SSH_COMMAND",
            "SSH_AUTH_SOCK",
            "AMBIENT_ANYTHING",
            "CLAUDE_CONFIG_DIR",
            "HTTPS_PROXY",
            "https_proxy",
            "all_proxy",
            "No_Proxy",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        for name in ["LOG_LEVEL", "NODE_ENV", "DEBUG", "PATHS", "MY_GIT_TOKEN"] {
            assert!(!is_reserved(name), "{name}");
        }
    }

    #[test]
    fn keys_and_debug_output() {
        let mut c = Credentials::default();
        assert_eq!(c.set("PATH", Some("/x".into())), Err("PATH".into()));
        c.set(GITLAB_TOKEN, Some("secret".into())).unwrap();
        assert_eq!(c.get(GITLAB_TOKEN), Some("secret"));
        assert!(!c.has_model());
        assert_eq!(format!("{c:?}"), r#"["GITLAB_TOKEN"]"#);
    }
}
