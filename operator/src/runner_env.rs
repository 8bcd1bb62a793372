//! The runner's environment: a pure function of the session and the run, shared by every
//! driver (a local child process's environment, a Job container's `env`).

use std::path::Path;

use model::AgenticSession;
use model::runner_env::{self as env, Credentials, SandboxMode, is_reserved};
use model::session::McpServers;

/// Everything about one run of a session that is not in the session itself.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// Which start of the session this is.
    pub generation: u64,
    /// The runner's token (plain; only the runner ever sees it). `None` when the driver
    /// gives it another way (a Job's container reads it from its Secret).
    pub token: Option<&'a str>,
    /// Continue the previous conversation.
    pub resume: bool,
    /// Highest user-message `seq` the runner must consider handled at start.
    pub handled_through: u64,
    /// The session's workspace directory.
    pub workspace: &'a Path,
    /// Base URL of the server's API (`http://host:port/api`).
    pub backend_api_url: &'a str,
    /// The `claude` executable, when not on the runner's PATH.
    pub claude_bin: Option<&'a Path>,
    /// Model when the session names none.
    pub default_model: &'a str,
    /// Model and git credentials.
    pub credentials: &'a Credentials,
    /// The project's MCP servers.
    pub project_mcp_servers: Option<&'a McpServers>,
    /// The agent's sandbox: auto or required (local mode), off (a pod is the sandbox).
    pub sandbox: SandboxMode,
    /// The workspace a fork's first run copies (local mode: the forked session's, on this
    /// machine; a cluster's fork gets a cloned claim instead).
    pub fork_workspace: Option<&'a Path>,
}

/// The environment of a files runner (`runner files`: a stopped session's workspace served
/// to the Files panel): where the workspace is, whom to connect to, and the repositories'
/// names; no credential, no prompt, nothing of the session's own variables. `token` as in
/// [`RunSpec::token`].
pub fn files_env(
    session: &AgenticSession,
    workspace: &Path,
    backend_api_url: &str,
    token: Option<&str>,
    sandbox: SandboxMode,
) -> Vec<(String, String)> {
    let mut vars = vec![
        (
            env::SESSION_NAME.to_owned(),
            session.metadata.name.clone().unwrap_or_default(),
        ),
        (
            env::SESSION_NAMESPACE.to_owned(),
            session.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            env::WORKSPACE_PATH.to_owned(),
            workspace.display().to_string(),
        ),
        (env::BACKEND_API_URL.to_owned(), backend_api_url.to_owned()),
        (
            env::REPOS_JSON.to_owned(),
            serde_json::to_string(&session.spec.repos).unwrap_or_else(|_| "[]".into()),
        ),
        (env::SANDBOX.to_owned(), sandbox.as_str().to_owned()),
    ];
    if let Some(token) = token {
        vars.push((env::RUNNER_TOKEN.to_owned(), token.to_owned()));
    }
    vars
}

/// The environment variables of a runner, in the order they apply (later wins).
pub fn runner_env(session: &AgenticSession, run: &RunSpec<'_>) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| vars.push((k.to_owned(), v));
    let name = session.metadata.name.clone().unwrap_or_default();
    let project = session.metadata.namespace.clone().unwrap_or_default();
    let spec = &session.spec;

    set(env::SESSION_NAME, name.clone());
    set(env::SESSION_NAMESPACE, project.clone());
    set(env::PROJECT_NAME, project);
    set(
        env::SESSION_ID,
        session.metadata.uid.clone().unwrap_or(name),
    );
    set(env::WORKSPACE_PATH, run.workspace.display().to_string());
    set(env::ARTIFACTS_DIR, "artifacts".to_owned());
    set(env::BACKEND_API_URL, run.backend_api_url.to_owned());
    set(env::IS_RESUME, run.resume.to_string());
    if !run.resume
        && let Some(prompt) = &spec.initial_prompt
    {
        set(env::INITIAL_PROMPT, prompt.clone());
    }
    set(
        env::LLM_MODEL,
        session.model().unwrap_or(run.default_model).to_owned(),
    );
    if let Some(name) = &spec.display_name {
        set(env::DISPLAY_NAME, name.clone());
    }
    set(
        env::PERMISSION_MODE,
        spec.permission_mode.unwrap_or_default().as_str().to_owned(),
    );
    if let Some(timeout) = spec.timeout {
        set(env::TIMEOUT, timeout.to_string());
    }
    set(
        env::REPOS_JSON,
        serde_json::to_string(&spec.repos).unwrap_or_else(|_| "[]".into()),
    );
    if let Some(wf) = &spec.active_workflow {
        set(env::ACTIVE_WORKFLOW_GIT_URL, wf.git_url.clone());
        set(
            env::ACTIVE_WORKFLOW_BRANCH,
            wf.branch_or_default().to_owned(),
        );
        set(
            env::ACTIVE_WORKFLOW_PATH,
            wf.path.clone().unwrap_or_default(),
        );
    }
    if let Some(user) = &spec.user_context {
        set(env::USER_ID, user.user_id.clone());
        let display = if user.display_name.is_empty() {
            &user.user_id
        } else {
            &user.display_name
        };
        set(env::USER_NAME, display.clone());
    }
    if let Some(mcp) = &spec.mcp_servers {
        set(
            env::CUSTOM_MCP_SERVERS,
            serde_json::to_string(mcp).unwrap_or_default(),
        );
    }
    if let Some(mcp) = run.project_mcp_servers {
        set(
            env::PROJECT_MCP_SERVERS,
            serde_json::to_string(mcp).unwrap_or_default(),
        );
    }
    for (k, v) in run.credentials.pairs() {
        set(k, v.to_owned());
    }
    // The session's own variables, but none the platform reserves (a session made before they
    // were refused, or applied to a cluster without the server's validation, may name them).
    for (k, v) in &spec.environment_variables {
        if !is_reserved(k) {
            set(k, v.clone());
        }
    }
    // Last, so nothing above can shadow them: the runner's identity and wiring.
    if let Some(token) = run.token {
        set(env::RUNNER_TOKEN, token.to_owned());
    }
    set(env::RUNNER_GENERATION, run.generation.to_string());
    set(env::SANDBOX, run.sandbox.as_str().to_owned());
    set(env::HANDLED_THROUGH, run.handled_through.to_string());
    if let Some(bin) = run.claude_bin {
        set(env::CLAUDE_BIN, bin.display().to_string());
    }
    if spec.attempt.as_ref().is_some_and(|a| a.holds_delivery()) {
        set(env::HOLD_DELIVERY, "1".to_owned());
    }
    if let Some(fork) = spec.fork.as_ref().filter(|f| f.is_valid()) {
        set(
            env::FORK_SOURCE,
            serde_json::to_string(fork).unwrap_or_default(),
        );
        if let Some(from) = run.fork_workspace {
            set(env::FORK_WORKSPACE, from.display().to_string());
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use model::AgenticSessionSpec;
    use model::session::{LlmSettings, SessionRepo, UserContext};

    use super::*;

    fn get<'a>(vars: &'a [(String, String)], key: &str) -> Option<&'a str> {
        vars.iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn spec(resume: bool) -> RunSpec<'static> {
        RunSpec {
            generation: 3,
            token: Some("tok"),
            resume,
            handled_through: 1,
            workspace: Path::new("/data/ws/p/s"),
            backend_api_url: "http://127.0.0.1:3000/api",
            claude_bin: Some(Path::new("/opt/claude")),
            default_model: "claude-sonnet-4-6",
            credentials: Box::leak(Box::default()),
            project_mcp_servers: None,
            sandbox: SandboxMode::Auto,
            fork_workspace: None,
        }
    }

    fn session() -> AgenticSession {
        let mut s = AgenticSession::new(
            "session-1",
            AgenticSessionSpec {
                initial_prompt: Some("build it".into()),
                repos: vec![SessionRepo {
                    url: "file:///r.git".into(),
                    branch: None,
                    auto_push: Some(true),
                    provider: None,
                }],
                user_context: Some(UserContext {
                    user_id: "ada".into(),
                    ..Default::default()
                }),
                llm_settings: Some(LlmSettings {
                    model: Some("claude-opus-4-1".into()),
                    ..Default::default()
                }),
                environment_variables: BTreeMap::from([
                    ("LLM_MODEL".to_owned(), "user-choice".to_owned()),
                    ("AMBIENT_RUNNER_TOKEN".to_owned(), "stolen".to_owned()),
                    ("LD_PRELOAD".to_owned(), "stolen".to_owned()),
                    ("LOG_LEVEL".to_owned(), "debug".to_owned()),
                ]),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("proj".into());
        s
    }

    #[test]
    fn fresh_run_gets_the_prompt_and_identity() {
        let vars = runner_env(&session(), &spec(false));
        assert_eq!(get(&vars, env::INITIAL_PROMPT), Some("build it"));
        assert_eq!(get(&vars, env::IS_RESUME), Some("false"));
        assert_eq!(get(&vars, env::SESSION_NAMESPACE), Some("proj"));
        assert_eq!(
            get(&vars, env::REPOS_JSON),
            Some(r#"[{"url":"file:///r.git","autoPush":true}]"#)
        );
        assert_eq!(get(&vars, env::USER_NAME), Some("ada"));
        assert_eq!(get(&vars, env::RUNNER_GENERATION), Some("3"));
        assert_eq!(get(&vars, env::CLAUDE_BIN), Some("/opt/claude"));
    }

    #[test]
    fn a_fork_names_its_source_and_where_its_files_are_only_when_it_is_one() {
        let mut s = session();
        let from = Path::new("/data/ws/proj/session-0");
        let run = RunSpec {
            fork_workspace: Some(from),
            ..spec(false)
        };
        assert_eq!(get(&runner_env(&s, &run), env::FORK_WORKSPACE), None);
        s.spec.fork = Some(model::session::ForkSource {
            session: "session-0".into(),
            turn: 2,
            conversation_id: "c-1".into(),
            resume_at: "m-2".into(),
        });
        let vars = runner_env(&s, &run);
        assert_eq!(
            get(&vars, env::FORK_SOURCE),
            Some(r#"{"session":"session-0","turn":2,"conversationId":"c-1","resumeAt":"m-2"}"#)
        );
        assert_eq!(
            get(&vars, env::FORK_WORKSPACE),
            Some("/data/ws/proj/session-0")
        );
        // One applied around the server's checks is not used.
        s.spec.fork.as_mut().unwrap().session = "../other".into();
        let vars = runner_env(&s, &run);
        assert_eq!(get(&vars, env::FORK_SOURCE), None);
        assert_eq!(get(&vars, env::FORK_WORKSPACE), None);
    }

    #[test]
    fn an_attempt_holds_its_work_until_it_is_kept() {
        let mut s = session();
        assert_eq!(get(&runner_env(&s, &spec(false)), env::HOLD_DELIVERY), None);
        s.spec.attempt = Some(model::session::Attempt {
            group: "g-1".into(),
            index: 2,
            of: 3,
            kept: false,
        });
        assert_eq!(
            get(&runner_env(&s, &spec(false)), env::HOLD_DELIVERY),
            Some("1")
        );
        s.spec.attempt.as_mut().unwrap().kept = true;
        assert_eq!(get(&runner_env(&s, &spec(true)), env::HOLD_DELIVERY), None);
    }

    #[test]
    fn resume_has_no_initial_prompt() {
        let vars = runner_env(&session(), &spec(true));
        assert_eq!(get(&vars, env::INITIAL_PROMPT), None);
        assert_eq!(get(&vars, env::IS_RESUME), Some("true"));
    }

    #[test]
    fn reserved_session_variables_never_reach_the_runner() {
        let vars = runner_env(&session(), &spec(false));
        assert_eq!(get(&vars, env::LLM_MODEL), Some("claude-opus-4-1"));
        assert_eq!(get(&vars, env::RUNNER_TOKEN), Some("tok"));
        assert_eq!(get(&vars, "LOG_LEVEL"), Some("debug"));
        assert!(
            !vars
                .iter()
                .any(|(_, v)| v == "stolen" || v == "user-choice")
        );
    }
}
