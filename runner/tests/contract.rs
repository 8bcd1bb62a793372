//! The runner contract typed on both sides: the environment each driver writes (the local
//! driver's child process, the runner and credentials containers of a Kubernetes Job), read
//! back by the runner's own parsers, as the runner would read its environment. A variable
//! renamed on one side, a value one side writes and the other refuses, or a variable the
//! runner does not know fails here.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use clap::{CommandFactory, Parser};
use k8s_openapi::api::core::v1::EnvVar;
use model::AgenticSession;
use model::project_settings::GitProvider;
use model::runner_env::{self as env, Credentials, SandboxMode};
use model::session::{
    ActiveWorkflow, AgenticSessionSpec, LlmSettings, McpServers, SessionRepo, UserContext,
};
use operator::cluster::build::{self, ClusterConfig};
use operator::runner_env::{RunSpec, runner_env};
use runner::config::{Config, RawConfig};
use runner::keeper::KeeperConfig;

/// Variables a driver writes that the runner does not parse, each for a reason: the agent's
/// process and the platform's bookkeeping read them, not the runner's configuration.
const NOT_FOR_THE_PARSER: &[&str] = &[
    // Compatibility names of the original's runner, for the agent and its hooks.
    env::SESSION_ID,
    env::PROJECT_NAME,
    env::USER_ID,
    // The operator enforces the timeout; the runner is told for its transcript only.
    env::TIMEOUT,
    // Read by the process set-up, not the configuration.
    "HOME",
    "AMBIENT_POD_NAME",
];

/// A session that sets every field the contract carries.
fn session() -> AgenticSession {
    let mut s = AgenticSession::new(
        "session-1",
        AgenticSessionSpec {
            initial_prompt: Some("build it".into()),
            display_name: Some("Build".into()),
            timeout: Some(600),
            repos: vec![SessionRepo {
                url: "https://github.com/org/app.git".into(),
                branch: Some("develop".into()),
                auto_push: Some(true),
                provider: Some(GitProvider::Github),
            }],
            active_workflow: Some(ActiveWorkflow {
                git_url: "https://github.com/org/flows.git".into(),
                branch: None,
                path: Some("review".into()),
            }),
            user_context: Some(UserContext {
                user_id: "ada".into(),
                display_name: "Ada".into(),
                ..Default::default()
            }),
            llm_settings: Some(LlmSettings {
                model: Some("claude-opus-4-1".into()),
                ..Default::default()
            }),
            mcp_servers: Some(
                serde_json::from_str::<McpServers>(
                    r#"{"custom":{"jira":{"command":"jira-mcp"}},"disabled":[]}"#,
                )
                .unwrap(),
            ),
            ..Default::default()
        },
    );
    s.metadata.namespace = Some("proj".into());
    s.metadata.uid = Some("uid-1".into());
    s
}

/// Command-line arguments equal to `vars` as the environment of a parser `cmd` (each
/// variable to the argument that reads it; later values win, as in an environment).
fn as_arguments(cmd: &clap::Command, vars: &[(String, String)]) -> Vec<String> {
    let last: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut args = vec!["runner".to_owned()];
    for (k, v) in last {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_env() == Some(OsStr::new(k)));
        match arg {
            Some(a) => args.push(format!("--{}={v}", a.get_long().expect("a long name"))),
            None => assert!(
                NOT_FOR_THE_PARSER.contains(&k),
                "{k} is written by a driver but read by no argument of {}",
                cmd.get_name()
            ),
        }
    }
    args
}

/// A container's variables with their sources resolved as a kubelet would: a required key
/// of a Secret stands for itself, an optional one is taken from `project_secret` (absent
/// there, the variable is unset), a field of the pod stands for itself.
fn resolved(vars: Vec<EnvVar>, project_secret: &BTreeMap<&str, &str>) -> Vec<(String, String)> {
    vars.into_iter()
        .filter_map(|v| {
            let value = match (v.value, v.value_from) {
                (Some(value), _) => value,
                (None, Some(from)) => match (from.secret_key_ref, from.field_ref) {
                    (Some(secret), _) if secret.optional == Some(true) => {
                        assert_eq!(secret.name, build::RUNNER_SECRETS, "{}", v.name);
                        (*project_secret.get(secret.key.as_str())?).to_owned()
                    }
                    (Some(secret), _) => format!("secret:{}/{}", secret.name, secret.key),
                    (None, Some(field)) => format!("field:{}", field.field_path),
                    _ => panic!("{}: a source the kubelet here does not resolve", v.name),
                },
                (None, None) => String::new(),
            };
            Some((v.name, value))
        })
        .collect()
}

fn runner_config(vars: &[(String, String)]) -> Config {
    let args = as_arguments(&RawConfig::command(), vars);
    RawConfig::try_parse_from(&args)
        .unwrap_or_else(|e| panic!("{e}: {args:?}"))
        .validate()
        .unwrap_or_else(|e| panic!("{e}: {args:?}"))
}

/// What both drivers' runners must read the same way.
fn assert_the_session(c: &Config, generation: u64, resume: bool) {
    assert_eq!(
        (c.session_name.as_str(), c.project.as_str()),
        ("session-1", "proj")
    );
    assert_eq!((c.generation, c.resume), (generation, resume));
    assert_eq!(c.initial_prompt.as_deref(), (!resume).then_some("build it"));
    assert_eq!(c.model.as_deref(), Some("claude-opus-4-1"));
    assert_eq!(c.repos, session().spec.repos);
    let wf = c.workflow.as_ref().expect("the workflow");
    assert_eq!(wf.git_url, "https://github.com/org/flows.git");
    assert_eq!(wf.branch_or_default(), model::session::DEFAULT_BRANCH);
    assert_eq!(wf.path.as_deref(), Some("review"));
    assert_eq!(c.user_name, "Ada");
    assert_eq!(c.display_name.as_deref(), Some("Build"));
    assert!(
        c.mcp_servers
            .iter()
            .any(|m| m.config.to_string().contains("jira-mcp")),
        "{:?}",
        c.mcp_servers
    );
}

#[test]
fn the_local_drivers_environment_reads_back_as_written() {
    let credentials = Credentials {
        anthropic_api_key: Some("sk-test".into()),
        github_token: Some("ghp-test".into()),
        ..Default::default()
    };
    for sandbox in SandboxMode::ALL {
        let run = RunSpec {
            generation: 3,
            token: Some("runner-token"),
            resume: false,
            handled_through: 7,
            workspace: Path::new("/data/workspaces/proj/session-1"),
            backend_api_url: "http://127.0.0.1:3000/api",
            claude_bin: Some(Path::new("/opt/claude")),
            default_model: "claude-sonnet-4-6",
            credentials: &credentials,
            project_mcp_servers: None,
            sandbox,
            fork_workspace: None,
        };
        let c = runner_config(&runner_env(&session(), &run));
        assert_the_session(&c, 3, false);
        assert_eq!(c.sandbox, sandbox, "{sandbox} reads back as itself");
        assert_eq!(c.handled_through, 7);
        assert_eq!(c.token, "runner-token");
        assert_eq!(c.claude_bin, Path::new("/opt/claude"));
        assert_eq!(c.workspace, Path::new("/data/workspaces/proj/session-1"));
        assert_eq!(c.credentials.anthropic_api_key.as_deref(), Some("sk-test"));
        assert_eq!(c.credentials.github_token.as_deref(), Some("ghp-test"));
        assert!(c.keeper.is_none());
    }
}

#[test]
fn a_jobs_containers_read_back_as_the_operator_wrote_them() {
    let config = ClusterConfig::default();
    let run = build::Run {
        generation: 2,
        resume: true,
        handled_through: 4,
        project_mcp_servers: None,
    };
    let s = session();
    let project_secret = BTreeMap::from([
        (env::ANTHROPIC_API_KEY, "sk-test"),
        (env::GITHUB_TOKEN, "ghp-test"),
    ]);
    let c = runner_config(&resolved(
        build::runner_container_env(&s, &run, &config),
        &project_secret,
    ));
    assert_the_session(&c, 2, true);
    assert!(!c.hold_delivery);
    let mut attempt = session();
    attempt.spec.attempt = Some(model::session::Attempt {
        group: "g-1".into(),
        index: 1,
        of: 2,
        kept: false,
    });
    let held = runner_config(&resolved(
        build::runner_container_env(&attempt, &run, &config),
        &project_secret,
    ));
    assert!(held.hold_delivery, "an attempt's pod holds its work");
    assert_eq!(c.sandbox, SandboxMode::Off, "the pod is the sandbox");
    assert_eq!(c.workspace, Path::new(build::WORKSPACE_MOUNT));
    assert!(
        c.ws_url
            .starts_with("ws://ambient-server.ambient-code.svc:3000/api/projects/proj/"),
        "{}",
        c.ws_url
    );
    assert!(c.token.starts_with("secret:"), "the token from its Secret");
    assert!(c.keeper.is_some(), "the keeper holds the credentials");
    assert!(!c.credentials.has_model() && c.credentials.github_token.is_none());

    let keeper = resolved(
        build::keeper_container_env(&s, &run, &config),
        &project_secret,
    );
    let args = as_arguments(&KeeperConfig::command(), &keeper);
    let k = KeeperConfig::try_parse_from(&args).unwrap_or_else(|e| panic!("{e}: {args:?}"));
    assert_eq!(k.session_name, "session-1");
    assert!(!k.hold_delivery);
    let held_keeper = resolved(
        build::keeper_container_env(&attempt, &run, &config),
        &project_secret,
    );
    let args = as_arguments(&KeeperConfig::command(), &held_keeper);
    let hk = KeeperConfig::try_parse_from(&args).unwrap_or_else(|e| panic!("{e}: {args:?}"));
    assert!(hk.hold_delivery, "an attempt's keeper holds its work too");
    assert!(
        k.token.starts_with("secret:"),
        "the keeper's token from its Secret"
    );
    let (credentials, _) = k.credentials.resolve();
    assert_eq!(credentials.anthropic_api_key.as_deref(), Some("sk-test"));
    assert_eq!(credentials.github_token.as_deref(), Some("ghp-test"));
    let (repos, workflow) = k.sources.resolve();
    assert_eq!(repos, s.spec.repos);
    assert_eq!(
        workflow.map(|w| w.branch_or_default().to_owned()),
        Some(model::session::DEFAULT_BRANCH.to_owned())
    );
}

#[test]
fn every_sandbox_mode_a_driver_writes_is_one_the_runner_reads() {
    for mode in SandboxMode::ALL {
        assert_eq!(mode.as_str().parse::<SandboxMode>(), Ok(mode));
    }
    assert!("maybe".parse::<SandboxMode>().is_err());
}
