//! What should exist in the cluster for a session: pure functions from the session, the run
//! and the configuration to Kubernetes objects (no client; unit-tested as data).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, Secret,
    SecretKeySelector, SecurityContext, TypedLocalObjectReference, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use model::AgenticSession;
use model::runner_env::{self as env, Credentials};
use model::session::McpServers;
use sha2::{Digest, Sha256};

use crate::runner_env::{RunSpec, runner_env};

/// The project's Secret of model and git credentials (`ambient-runner-secrets`).
pub const RUNNER_SECRETS: &str = "ambient-runner-secrets";
/// The label naming a session's objects.
pub const SESSION_LABEL: &str = "ambient-code.io/session";
/// The label naming the run (generation) of a Job and its pods.
pub const RUN_LABEL: &str = "ambient-code.io/run";
/// The key of the runner token in its Secret.
pub const TOKEN_KEY: &str = "token";
/// Where the workspace is mounted in the runner's container.
pub const WORKSPACE_MOUNT: &str = "/workspace";
/// The runner's home in its container (a writable emptyDir; the root is read-only).
pub const RUNNER_HOME: &str = "/home/runner";
/// The runner container's name.
pub const CONTAINER: &str = "runner";
/// The credentials container's name: the keeper of the model key and git tokens
/// (`runner keeper`), so that the agent's container holds none of them.
pub const KEEPER_CONTAINER: &str = "credentials";
/// The key of the keeper token (the runner's to the keeper) in the runner token's Secret.
pub const KEEPER_TOKEN_KEY: &str = "keeper";
/// Where the keeper's own folder is mounted in its container.
pub const KEEPER_MOUNT: &str = "/keeper";
/// The folder of the workspace volume the agent's container mounts.
pub const WORKSPACE_SUBPATH: &str = "workspace";
/// The folder of the workspace volume only the keeper mounts (its delivery repositories).
pub const KEEPER_SUBPATH: &str = "keeper";
/// The uid the runner runs as by default (the runner image's user).
pub const RUNNER_UID: i64 = 1000;

/// Where a session's workspace lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceVolume {
    /// A PersistentVolumeClaim per session, kept across runs (a continued session resumes
    /// its files and its conversation).
    Pvc {
        /// Its size (`10Gi`).
        size: String,
        /// Its storage class; the cluster's default when `None`.
        storage_class: Option<String>,
    },
    /// An `emptyDir` per run: nothing survives a run.
    EmptyDir {
        /// Its size limit (`10Gi`), if any.
        size_limit: Option<String>,
    },
}

/// How the operator runs sessions in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The runner image.
    pub runner_image: String,
    /// Its pull policy (`IfNotPresent`, `Always`).
    pub image_pull_policy: String,
    /// The server's API as runners reach it (`http://ambient-server.ambient-code.svc:3000/api`).
    pub server_api_url: String,
    /// The namespace the server runs in (runners may reach it there).
    pub server_namespace: String,
    /// Only this namespace (a project) is watched, when set; every managed namespace
    /// otherwise.
    pub watch_namespace: Option<String>,
    /// The workspace volume.
    pub workspace: WorkspaceVolume,
    /// CPU and memory requests of the runner (`500m`, `512Mi`).
    pub requests: (String, String),
    /// CPU and memory limits of the runner (`2`, `8Gi`).
    pub limits: (String, String),
    /// Model of sessions that name none.
    pub default_model: String,
    /// Inactivity timeout when neither the session nor its project sets one (seconds).
    pub default_inactivity_timeout: i64,
    /// The ServiceAccount runner pods use (no token is mounted).
    pub runner_service_account: String,
    /// Seconds a runner gets to stop after SIGTERM.
    pub stop_grace_seconds: i64,
    /// The uid (and gid, fsGroup) runner pods run as; `None` leaves it to the platform
    /// (OpenShift assigns one from the namespace's range and refuses any other).
    pub runner_uid: Option<i64>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            runner_image: "localhost/ambient-runner:latest".into(),
            image_pull_policy: "IfNotPresent".into(),
            server_api_url: "http://ambient-server.ambient-code.svc:3000/api".into(),
            server_namespace: "ambient-code".into(),
            watch_namespace: None,
            workspace: WorkspaceVolume::Pvc {
                size: "10Gi".into(),
                storage_class: None,
            },
            requests: ("500m".into(), "512Mi".into()),
            limits: ("2".into(), "8Gi".into()),
            default_model: "claude-sonnet-4-6".into(),
            default_inactivity_timeout: model::project_settings::DEFAULT_INACTIVITY_TIMEOUT_SECONDS,
            runner_service_account: "ambient-runner".into(),
            stop_grace_seconds: 30,
            runner_uid: Some(RUNNER_UID),
        }
    }
}

/// One run of a session, as the operator starts it.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// Which start of the session this is (1, 2, ...).
    pub generation: u64,
    /// Continue the previous conversation.
    pub resume: bool,
    /// Highest user message the runner must consider handled at start.
    pub handled_through: u64,
    /// The project's MCP servers.
    pub project_mcp_servers: Option<&'a McpServers>,
}

/// A Kubernetes name of at most 63 characters: `base` then `suffix`, the base shortened and
/// followed by a hash of the whole name when it is too long (two long names that share a
/// beginning stay distinct).
pub fn object_name(base: &str, suffix: &str) -> String {
    const MAX: usize = 63;
    let full = format!("{base}{suffix}");
    if full.len() <= MAX {
        return full;
    }
    let hash = hex::encode(Sha256::digest(full.as_bytes()));
    let keep = MAX.saturating_sub(suffix.len() + 9).min(base.len());
    let head = base[..keep].trim_end_matches('-');
    format!("{head}-{}{suffix}", &hash[..8])
}

/// The Job of run `generation` of a session.
pub fn job_name(session: &str, generation: u64) -> String {
    object_name(session, &format!("-runner-{generation}"))
}

/// Label marking a files runner's Job and Pod (a stopped session's workspace, served; no
/// run of the session).
pub const FILES_LABEL: &str = "ambient-code.io/files-runner";

/// The Job of a session's files runner for the request made at `requested` (Unix seconds):
/// one Job per request.
pub fn files_job_name(session: &str, requested: i64) -> String {
    object_name(session, &format!("-files-{requested}"))
}

/// The Secret holding a session's files-runner token.
pub fn files_token_secret_name(session: &str) -> String {
    object_name(session, "-files-token")
}

/// The Secret holding a session's current runner token.
pub fn token_secret_name(session: &str) -> String {
    object_name(session, "-runner-token")
}

/// The PersistentVolumeClaim of a session's workspace.
pub fn workspace_claim_name(session: &str) -> String {
    object_name(session, "-workspace")
}

fn name_of(session: &AgenticSession) -> String {
    session.metadata.name.clone().unwrap_or_default()
}

/// The controller reference to the session: its objects go when it goes.
pub fn owner(session: &AgenticSession) -> OwnerReference {
    OwnerReference {
        api_version: "vteam.ambient-code/v1alpha1".into(),
        kind: "AgenticSession".into(),
        name: name_of(session),
        uid: session.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The labels of every object of a session.
pub fn labels(session: &AgenticSession) -> BTreeMap<String, String> {
    let name = name_of(session);
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "ambient-runner".into()),
        ("app.kubernetes.io/instance".into(), name.clone()),
        ("app.kubernetes.io/part-of".into(), "ambient-code".into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "ambient-operator".into(),
        ),
        (SESSION_LABEL.into(), name),
    ])
}

fn meta(session: &AgenticSession, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: session.metadata.namespace.clone(),
        labels: Some(labels(session)),
        owner_references: Some(vec![owner(session)]),
        ..ObjectMeta::default()
    }
}

/// The Secret with the runner token and the keeper token of the current run (its content
/// replaced on each start).
pub fn token_secret(
    session: &AgenticSession,
    token: &str,
    keeper_token: &str,
    generation: u64,
) -> Secret {
    let mut meta = meta(session, token_secret_name(&name_of(session)));
    meta.labels
        .get_or_insert_default()
        .insert(RUN_LABEL.into(), generation.to_string());
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (TOKEN_KEY.into(), ByteString(token.as_bytes().to_vec())),
            (
                KEEPER_TOKEN_KEY.into(),
                ByteString(keeper_token.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The session's workspace claim, when workspaces are claims.
pub fn workspace_claim(
    session: &AgenticSession,
    config: &ClusterConfig,
) -> Option<PersistentVolumeClaim> {
    let WorkspaceVolume::Pvc {
        size,
        storage_class,
    } = &config.workspace
    else {
        return None;
    };
    // A fork's workspace starts as a clone of its source's claim (CSI volume cloning: the
    // storage class's driver must support it, as most do).
    let data_source = session
        .spec
        .fork
        .as_ref()
        .filter(|f| f.is_valid())
        .map(|f| TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: workspace_claim_name(&f.session),
        });
    Some(PersistentVolumeClaim {
        metadata: meta(session, workspace_claim_name(&name_of(session))),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            data_source,
            storage_class_name: storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity(size.clone()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })
}

fn literal(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    }
}

fn from_secret(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The runner container's environment: the shared runner contract (`runner_env`), the
/// keeper's address and token, the runner token from its own Secret; no credential (the
/// keeper container holds them). Each name once, the last value winning as in
/// `runner_env`.
pub fn runner_container_env(
    session: &AgenticSession,
    run: &Run<'_>,
    config: &ClusterConfig,
) -> Vec<EnvVar> {
    let mut vars = contract(session, run, config);
    vars.push(literal("HOME", RUNNER_HOME.into()));
    vars.push(literal(
        env::KEEPER_URL,
        format!("http://127.0.0.1:{KEEPER_PORT}"),
    ));
    vars.push(from_secret(
        env::KEEPER_TOKEN,
        &token_secret_name(&name_of(session)),
        KEEPER_TOKEN_KEY,
        false,
    ));
    vars.push(EnvVar {
        name: "AMBIENT_POD_NAME".into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
    });
    vars.push(from_secret(
        env::RUNNER_TOKEN,
        &token_secret_name(&name_of(session)),
        TOKEN_KEY,
        false,
    ));
    once_each(vars)
}

/// The port the keeper listens on, on the pod's loopback.
pub const KEEPER_PORT: u16 = 4142;

/// What the keeper is told: the session's name and sources (what it may clone and push),
/// the credentials as references to the project's Secret (never their values), its token
/// and its folder.
pub fn keeper_container_env(
    session: &AgenticSession,
    run: &Run<'_>,
    config: &ClusterConfig,
) -> Vec<EnvVar> {
    let wanted = [
        env::SESSION_NAME,
        env::REPOS_JSON,
        env::ACTIVE_WORKFLOW_GIT_URL,
        env::ACTIVE_WORKFLOW_BRANCH,
        env::ACTIVE_WORKFLOW_PATH,
        env::PROJECT_MCP_SERVERS,
        env::CUSTOM_MCP_SERVERS,
        env::HOLD_DELIVERY,
        "LOG_LEVEL",
        "RUST_LOG",
    ];
    let mut vars: Vec<EnvVar> = contract(session, run, config)
        .into_iter()
        .filter(|v| wanted.contains(&v.name.as_str()))
        .collect();
    vars.push(literal("HOME", KEEPER_MOUNT.into()));
    vars.push(literal(env::KEEPER_STATE, KEEPER_MOUNT.into()));
    vars.push(literal(
        env::KEEPER_LISTEN,
        format!("127.0.0.1:{KEEPER_PORT}"),
    ));
    vars.extend(
        Credentials::KEYS
            .iter()
            .map(|k| from_secret(k, RUNNER_SECRETS, k, true)),
    );
    // The MCP credentials the project's servers reference (a session's servers take none).
    vars.extend(
        model::mcp::destinations(run.project_mcp_servers)
            .keys()
            .map(|k| from_secret(k, RUNNER_SECRETS, k, true)),
    );
    vars.push(from_secret(
        env::KEEPER_TOKEN,
        &token_secret_name(&name_of(session)),
        KEEPER_TOKEN_KEY,
        false,
    ));
    once_each(vars)
}

/// The runner contract of a run, as literal values.
fn contract(session: &AgenticSession, run: &Run<'_>, config: &ClusterConfig) -> Vec<EnvVar> {
    let workspace = std::path::Path::new(WORKSPACE_MOUNT);
    let none = Credentials::default();
    let spec = RunSpec {
        generation: run.generation,
        token: None,
        resume: run.resume,
        handled_through: run.handled_through,
        workspace,
        backend_api_url: &config.server_api_url,
        claude_bin: None,
        default_model: &config.default_model,
        credentials: &none,
        project_mcp_servers: run.project_mcp_servers,
        // The pod is the sandbox.
        sandbox: model::runner_env::SandboxMode::Off,
        // A fork's claim is a clone of its source's: nothing to copy.
        fork_workspace: None,
    };
    runner_env(session, &spec)
        .into_iter()
        .map(|(k, v)| literal(&k, v))
        .collect()
}

/// Later wins: keeps the last of each name, in order of first appearance.
fn once_each(vars: Vec<EnvVar>) -> Vec<EnvVar> {
    let mut out: Vec<EnvVar> = Vec::with_capacity(vars.len());
    for v in vars {
        match out.iter_mut().find(|o| o.name == v.name) {
            Some(o) => *o = v,
            None => out.push(v),
        }
    }
    out
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".into(), Quantity(cpu.into())),
        ("memory".into(), Quantity(memory.into())),
    ])
}

/// The Secret with the token of the session's files runner (replaced by each one).
pub fn files_token_secret(session: &AgenticSession, token: &str) -> Secret {
    let mut meta = meta(session, files_token_secret_name(&name_of(session)));
    meta.labels
        .get_or_insert_default()
        .insert(FILES_LABEL.into(), "true".into());
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.into(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The claim of a session's workspace as a pod's volume `workspace` (`None` where
/// workspaces are `emptyDir`s: nothing outlives a run).
fn claim_volume(session: &str, config: &ClusterConfig) -> Option<Volume> {
    match &config.workspace {
        WorkspaceVolume::Pvc { .. } => Some(Volume {
            name: "workspace".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: workspace_claim_name(session),
                read_only: None,
            }),
            ..Volume::default()
        }),
        WorkspaceVolume::EmptyDir { .. } => None,
    }
}

/// What no runner container may do: escalate, hold a capability, write its image.
fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// The pod security of every runner pod: non-root as the configured uid, the runtime's
/// seccomp profile.
fn pod_security(config: &ClusterConfig) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: config.runner_uid,
        run_as_group: config.runner_uid,
        fs_group: config.runner_uid,
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// The Job of a files runner (`runner files`) on the session's workspace claim, for the
/// request made at `requested` (its annotation's value as written): one container, no
/// credential, no agent, the runners' lock-down; it exits once idle. `None` where
/// workspaces are `emptyDir`s.
pub fn files_job(
    session: &AgenticSession,
    requested: &str,
    requested_secs: i64,
    config: &ClusterConfig,
) -> Option<Job> {
    let name = name_of(session);
    let workspace_volume = claim_volume(&name, config)?;
    let mut meta = meta(session, files_job_name(&name, requested_secs));
    meta.labels
        .get_or_insert_default()
        .insert(FILES_LABEL.into(), "true".into());
    meta.annotations = Some(BTreeMap::from([(
        model::annotations::FILES_REQUESTED_AT.into(),
        requested.to_owned(),
    )]));
    let mut pod_labels = meta.labels.clone().unwrap_or_default();
    pod_labels.insert("app.kubernetes.io/component".into(), "files".into());
    let workspace = std::path::Path::new(WORKSPACE_MOUNT);
    let mut vars: Vec<EnvVar> = crate::runner_env::files_env(
        session,
        workspace,
        &config.server_api_url,
        None,
        model::runner_env::SandboxMode::Off,
    )
    .into_iter()
    .map(|(k, v)| literal(&k, v))
    .collect();
    vars.push(literal("HOME", "/tmp".into()));
    vars.push(from_secret(
        env::RUNNER_TOKEN,
        &files_token_secret_name(&name),
        TOKEN_KEY,
        false,
    ));
    let container = Container {
        name: CONTAINER.into(),
        image: Some(config.runner_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        args: Some(vec!["files".into()]),
        env: Some(vars),
        working_dir: Some(WORKSPACE_MOUNT.into()),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("50m", "64Mi")),
            limits: Some(quantities("1", "1Gi")),
            ..ResourceRequirements::default()
        }),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "workspace".into(),
                mount_path: WORKSPACE_MOUNT.into(),
                sub_path: Some(WORKSPACE_SUBPATH.into()),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    Some(Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            // A backstop: it exits by itself once idle.
            active_deadline_seconds: Some(FILES_DEADLINE_SECONDS),
            // Gone a while after it ended, where the cluster's TTL controller runs (the
            // operator removes it otherwise, with the next request or run).
            ttl_seconds_after_finished: Some(300),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(config.runner_service_account.clone()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(5),
                    security_context: Some(pod_security(config)),
                    share_process_namespace: Some(false),
                    containers: vec![container],
                    volumes: Some(vec![
                        workspace_volume,
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    })
}

/// Longest a files runner's Job may run, whatever it does.
pub const FILES_DEADLINE_SECONDS: i64 = 4 * 3600;

/// The Job of one run: one pod of two containers (the runner with the agent, and the
/// credentials keeper), never restarted, non-root, no privilege, no API token.
pub fn desired_job(session: &AgenticSession, run: &Run<'_>, config: &ClusterConfig) -> Job {
    let name = name_of(session);
    let mut meta = meta(session, job_name(&name, run.generation));
    meta.labels
        .get_or_insert_default()
        .insert(RUN_LABEL.into(), run.generation.to_string());
    let mut pod_labels = meta.labels.clone().unwrap_or_default();
    pod_labels.insert("app.kubernetes.io/component".into(), "runner".into());
    let workspace_volume = match &config.workspace {
        WorkspaceVolume::Pvc { .. } => claim_volume(&name, config).unwrap_or_default(),
        WorkspaceVolume::EmptyDir { size_limit } => Volume {
            name: "workspace".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: size_limit.clone().map(Quantity),
            }),
            ..Volume::default()
        },
    };
    let scratch = |name: &str| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    };
    let folder = |name: &str, path: &str, sub: &str| VolumeMount {
        sub_path: Some(sub.into()),
        ..mount(name, path)
    };
    // The credentials: a container of their own, which the agent's cannot see (no shared
    // process namespace) and reaches only through the keeper's interface on the pod's
    // loopback. Its folder is a part of the workspace volume the agent's container does not
    // mount.
    let keeper = Container {
        name: KEEPER_CONTAINER.into(),
        image: Some(config.runner_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        args: Some(vec!["keeper".into()]),
        env: Some(keeper_container_env(session, run, config)),
        working_dir: Some(KEEPER_MOUNT.into()),
        resources: Some(ResourceRequirements {
            requests: Some(quantities("50m", "64Mi")),
            limits: Some(quantities("1", "1Gi")),
            ..ResourceRequirements::default()
        }),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![
            folder("workspace", KEEPER_MOUNT, KEEPER_SUBPATH),
            mount("keeper-tmp", "/tmp"),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(config.runner_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        env: Some(runner_container_env(session, run, config)),
        working_dir: Some(WORKSPACE_MOUNT.into()),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&config.requests.0, &config.requests.1)),
            limits: Some(quantities(&config.limits.0, &config.limits.1)),
            ..ResourceRequirements::default()
        }),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![
            folder("workspace", WORKSPACE_MOUNT, WORKSPACE_SUBPATH),
            mount("tmp", "/tmp"),
            mount("home", RUNNER_HOME),
        ]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    // A backstop for the operator's own timeout: the Job ends at the deadline even if the
    // operator is away.
    let deadline = session
        .spec
        .timeout
        .filter(|t| *t > 0)
        .map(|t| t.saturating_add(config.stop_grace_seconds.max(0) + 60));
    Job {
        metadata: meta.clone(),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: deadline,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(config.runner_service_account.clone()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(config.stop_grace_seconds),
                    security_context: Some(pod_security(config)),
                    share_process_namespace: Some(false),
                    containers: vec![container, keeper],
                    volumes: Some(vec![
                        workspace_volume,
                        scratch("tmp"),
                        scratch("home"),
                        scratch("keeper-tmp"),
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

#[cfg(test)]
mod tests;
