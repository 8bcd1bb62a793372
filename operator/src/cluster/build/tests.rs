use kube::ResourceExt;
use model::AgenticSessionSpec;
use model::session::UserContext;

use super::*;

fn session() -> AgenticSession {
    let mut s = AgenticSession::new(
        "session-1",
        AgenticSessionSpec {
            initial_prompt: Some("create notes.md".into()),
            timeout: Some(600),
            environment_variables: BTreeMap::from([
                ("LOG_LEVEL".into(), "debug".into()),
                // Reserved: never reaches the runner.
                ("WORKSPACE_PATH".into(), "/home/evil".into()),
            ]),
            user_context: Some(UserContext {
                user_id: "ada".into(),
                ..UserContext::default()
            }),
            ..AgenticSessionSpec::default()
        },
    );
    s.metadata.namespace = Some("team-a".into());
    s.metadata.uid = Some("uid-1".into());
    s
}

fn run() -> Run<'static> {
    Run {
        generation: 2,
        resume: true,
        handled_through: 5,
        project_mcp_servers: None,
    }
}

#[test]
fn names_fit_63_characters_and_stay_distinct() {
    assert_eq!(job_name("s", 3), "s-runner-3");
    let long = "a".repeat(63);
    let other = format!("{}b", "a".repeat(62));
    for n in [
        job_name(&long, 12),
        token_secret_name(&long),
        workspace_claim_name(&long),
    ] {
        assert!(n.len() <= 63, "{n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
    assert_ne!(job_name(&long, 1), job_name(&other, 1));
    assert!(job_name(&long, 1).ends_with("-runner-1"));
    // Cut where the name has a dash: no double dash.
    let dashed = format!("{}-{}", "a".repeat(44), "b".repeat(30));
    assert!(
        !job_name(&dashed, 1).contains("--"),
        "{}",
        job_name(&dashed, 1)
    );
}

#[test]
fn the_job_runs_one_locked_down_pod_with_the_contract_environment() {
    let s = session();
    let job = desired_job(&s, &run(), &ClusterConfig::default());
    assert_eq!(job.metadata.name.as_deref(), Some("session-1-runner-2"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("team-a"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("AgenticSession", "uid-1", Some(true))
    );
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[SESSION_LABEL], "session-1");
    assert_eq!(labels[RUN_LABEL], "2");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "ambient-operator");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(600 + 30 + 60));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "512Mi");
    assert_eq!(res.limits.as_ref().unwrap()["cpu"].0, "2");
    let mounts: Vec<_> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(mounts, [WORKSPACE_MOUNT, "/tmp", RUNNER_HOME]);
    let claim = pod.volumes.as_ref().unwrap()[0]
        .persistent_volume_claim
        .as_ref()
        .unwrap();
    assert_eq!(claim.claim_name, "session-1-workspace");

    let env = c.env.as_ref().unwrap();
    let get = |k: &str| {
        env.iter()
            .find(|e| e.name == k)
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert_eq!(
        get(env::WORKSPACE_PATH).value.as_deref(),
        Some(WORKSPACE_MOUNT)
    );
    assert_eq!(get(env::IS_RESUME).value.as_deref(), Some("true"));
    assert_eq!(get(env::RUNNER_GENERATION).value.as_deref(), Some("2"));
    assert_eq!(get(env::HANDLED_THROUGH).value.as_deref(), Some("5"));
    assert_eq!(get(env::SANDBOX).value.as_deref(), Some("off"));
    assert_eq!(get("LOG_LEVEL").value.as_deref(), Some("debug"));
    // Secrets only by reference.
    let token = get(env::RUNNER_TOKEN)
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (token.name.as_str(), token.key.as_str(), token.optional),
        ("session-1-runner-token", TOKEN_KEY, Some(false))
    );
    // No credential in the agent's container: the keeper's address and token instead.
    for k in Credentials::KEYS {
        assert!(
            env.iter().all(|e| e.name != k),
            "{k} in the runner's container"
        );
    }
    assert_eq!(
        get(env::KEEPER_URL).value.as_deref(),
        Some("http://127.0.0.1:4142")
    );
    let keeper_token = get(env::KEEPER_TOKEN)
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (keeper_token.name.as_str(), keeper_token.key.as_str()),
        ("session-1-runner-token", KEEPER_TOKEN_KEY)
    );
    // The credentials container: the credentials by reference, its token, its own folder of
    // the workspace volume, no process namespace shared with the agent's.
    assert_eq!(pod.share_process_namespace, Some(false));
    let keeper = &pod.containers[1];
    assert_eq!(keeper.name, KEEPER_CONTAINER);
    assert_eq!(keeper.args.as_deref(), Some(&["keeper".to_owned()][..]));
    assert_eq!(keeper.image, c.image);
    let ksc = keeper.security_context.as_ref().unwrap();
    assert_eq!(
        (
            ksc.allow_privilege_escalation,
            ksc.read_only_root_filesystem
        ),
        (Some(false), Some(true))
    );
    let sub = |c: &k8s_openapi::api::core::v1::Container, path: &str| {
        c.volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)
            .and_then(|m| Some((m.name.clone(), m.sub_path.clone()?)))
    };
    assert_eq!(
        sub(c, WORKSPACE_MOUNT),
        Some(("workspace".to_owned(), WORKSPACE_SUBPATH.to_owned()))
    );
    assert_eq!(
        sub(keeper, KEEPER_MOUNT),
        Some(("workspace".to_owned(), KEEPER_SUBPATH.to_owned()))
    );
    assert!(
        keeper
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.sub_path.as_deref() != Some(WORKSPACE_SUBPATH)),
        "the keeper never mounts the agent's files"
    );
    let kenv = keeper.env.as_ref().unwrap();
    let kget = |k: &str| {
        kenv.iter()
            .find(|e| e.name == k)
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert!(kenv.iter().all(|e| e.name != env::RUNNER_TOKEN));
    assert_eq!(kget(env::SESSION_NAME).value.as_deref(), Some("session-1"));
    assert_eq!(kget(env::KEEPER_STATE).value.as_deref(), Some(KEEPER_MOUNT));
    for k in Credentials::KEYS {
        let get = kget;
        let r = get(k)
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (r.name.as_str(), r.key.as_str(), r.optional),
            (RUNNER_SECRETS, k, Some(true))
        );
        assert!(get(k).value.is_none());
    }
    assert_eq!(
        get("AMBIENT_POD_NAME")
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.name"
    );
    // Each name once.
    let mut names: Vec<_> = env.iter().map(|e| e.name.as_str()).collect();
    let all = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all);
}

#[test]
fn the_token_secret_and_the_workspace_claim() {
    let s = session();
    let secret = token_secret(&s, "art_x", "art_k", 2);
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("session-1-runner-token")
    );
    assert_eq!(secret.data.as_ref().unwrap()[TOKEN_KEY].0, b"art_x");
    assert_eq!(secret.data.as_ref().unwrap()[KEEPER_TOKEN_KEY].0, b"art_k");
    assert_eq!(secret.metadata.labels.as_ref().unwrap()[RUN_LABEL], "2");
    let claim = workspace_claim(&s, &ClusterConfig::default()).unwrap();
    let spec = claim.spec.unwrap();
    assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"].0,
        "10Gi"
    );
    assert!(spec.data_source.is_none());
    // A fork's claim is a clone of its source's.
    let mut fork = session();
    fork.spec.fork = Some(model::session::ForkSource {
        session: "session-0".into(),
        turn: 1,
        conversation_id: "c".into(),
        resume_at: "m".into(),
    });
    let source = workspace_claim(&fork, &ClusterConfig::default())
        .unwrap()
        .spec
        .unwrap()
        .data_source
        .unwrap();
    assert_eq!(
        (source.kind.as_str(), source.name.as_str(), source.api_group),
        ("PersistentVolumeClaim", "session-0-workspace", None)
    );
    // With emptyDir workspaces there is no claim, and the Job mounts an emptyDir.
    let config = ClusterConfig {
        workspace: WorkspaceVolume::EmptyDir {
            size_limit: Some("1Gi".into()),
        },
        ..ClusterConfig::default()
    };
    assert!(workspace_claim(&s, &config).is_none());
    let job = desired_job(&s, &run(), &config);
    let v = &job.spec.unwrap().template.spec.unwrap().volumes.unwrap()[0];
    assert_eq!(
        v.empty_dir.as_ref().unwrap().size_limit.as_ref().unwrap().0,
        "1Gi"
    );
}

#[test]
fn on_openshift_the_platform_chooses_the_runners_uid() {
    let config = ClusterConfig {
        runner_uid: None,
        ..ClusterConfig::default()
    };
    let job = desired_job(&session(), &run(), &config);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let sc = pod.security_context.unwrap();
    assert_eq!(
        (sc.run_as_user, sc.run_as_group, sc.fs_group),
        (None, None, None)
    );
    assert_eq!(sc.run_as_non_root, Some(true), "still never root");
    let default = desired_job(&session(), &run(), &ClusterConfig::default());
    let sc = default
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .security_context
        .unwrap();
    assert_eq!(sc.run_as_user, Some(RUNNER_UID));
}

#[test]
fn the_keeper_alone_gets_the_mcp_credentials_the_projects_servers_use() {
    let project = model::session::McpServers {
        custom: [(
            "tracker".to_owned(),
            serde_json::json!({"type": "http", "url": "https://mcp.example/t",
                "headers": {"Authorization": "Bearer ${MCP_TRACKER}"}}),
        )]
        .into(),
        disabled: vec![],
    };
    let run = Run {
        project_mcp_servers: Some(&project),
        ..run()
    };
    let job = desired_job(&session(), &run, &ClusterConfig::default());
    let pod = job.spec.unwrap().template.spec.unwrap();
    let (agent, keeper) = (&pod.containers[0], &pod.containers[1]);
    let named = |c: &k8s_openapi::api::core::v1::Container, k: &str| {
        c.env.iter().flatten().find(|e| e.name == k).cloned()
    };
    assert!(named(agent, "MCP_TRACKER").is_none());
    let r = named(keeper, "MCP_TRACKER")
        .and_then(|e| e.value_from?.secret_key_ref)
        .expect("the keeper's reference to the credential");
    assert_eq!(
        (r.name.as_str(), r.key.as_str()),
        (RUNNER_SECRETS, "MCP_TRACKER")
    );
    // Both know the servers: the runner to configure the agent, the keeper to relay.
    for c in [agent, keeper] {
        assert!(
            named(c, env::PROJECT_MCP_SERVERS)
                .is_some_and(|e| e.value.is_some_and(|v| v.contains("mcp.example")))
        );
    }
}

/// A files runner's Job: one locked-down container running `runner files` on the
/// workspace claim, its token from its own Secret, nothing of the session's credentials,
/// prompt or variables; none where workspaces are `emptyDir`s.
#[test]
fn a_files_runners_job_serves_the_claim_and_holds_no_credential() {
    let s = session();
    let config = ClusterConfig::default();
    let job = files_job(&s, "2026-12-07T22:00:00Z", 1_796_680_800, &config).unwrap();
    assert_eq!(job.name_any(), "session-1-files-1796680800");
    assert_eq!(
        job.labels().get(FILES_LABEL).map(String::as_str),
        Some("true")
    );
    assert!(!job.labels().contains_key(RUN_LABEL), "not a run");
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers.len(), 1, "no credentials keeper");
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c = &pod.containers[0];
    assert_eq!(c.args.as_deref(), Some(&["files".to_owned()][..]));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let env: BTreeMap<String, Option<String>> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect();
    assert_eq!(
        env.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "AGENTIC_SESSION_NAME",
            "AGENTIC_SESSION_NAMESPACE",
            "AMBIENT_RUNNER_TOKEN",
            "AMBIENT_SANDBOX",
            "BACKEND_API_URL",
            "HOME",
            "REPOS_JSON",
            "WORKSPACE_PATH",
        ]
    );
    assert_eq!(env["WORKSPACE_PATH"].as_deref(), Some(WORKSPACE_MOUNT));
    let token = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "AMBIENT_RUNNER_TOKEN")
        .unwrap();
    assert_eq!(
        token
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .map(|r| r.name.as_str()),
        Some("session-1-files-token")
    );
    let claim = pod.volumes.unwrap()[0]
        .persistent_volume_claim
        .clone()
        .unwrap();
    assert_eq!(claim.claim_name, workspace_claim_name("session-1"));
    let empty = ClusterConfig {
        workspace: WorkspaceVolume::EmptyDir { size_limit: None },
        ..ClusterConfig::default()
    };
    assert!(
        files_job(&s, "t", 1, &empty).is_none(),
        "nothing outlived the run"
    );
}
