//! The operator of Kubernetes mode: runs every `AgenticSession` in the namespaces labelled
//! `ambient-code.io/managed=true` as Jobs, and keeps each project's objects. It reaches the
//! API server with the in-cluster ServiceAccount, or `$KUBECONFIG`.

use clap::Parser;
use operator::cluster::{ClusterConfig, WorkspaceVolume, controller};

/// How the operator runs sessions; every option is also an environment variable.
#[derive(Debug, Parser)]
#[command(name = "operator", version, about)]
struct Config {
    /// The runner image.
    #[arg(
        long,
        env = "AMBIENT_RUNNER_IMAGE",
        default_value = "localhost/ambient-runner:latest"
    )]
    runner_image: String,
    /// The runner image's pull policy.
    #[arg(long, env = "AMBIENT_RUNNER_IMAGE_PULL_POLICY", default_value = "IfNotPresent",
        value_parser = ["Always", "IfNotPresent", "Never"])]
    image_pull_policy: String,
    /// The server's API as runner pods reach it.
    #[arg(
        long,
        env = "AMBIENT_SERVER_API_URL",
        default_value = "http://ambient-server.ambient-code.svc:3000/api"
    )]
    server_api_url: String,
    /// Run only the sessions of this namespace (a project), when set.
    #[arg(long, env = "AMBIENT_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// The namespace the server runs in (the runners' NetworkPolicy lets them reach it).
    #[arg(long, env = "AMBIENT_SERVER_NAMESPACE", default_value = "ambient-code")]
    server_namespace: String,
    /// Where workspaces live: a PersistentVolumeClaim per session (`pvc`, kept across
    /// runs) or an `emptyDir` per run (`emptydir`).
    #[arg(long, env = "AMBIENT_WORKSPACE", default_value = "pvc", value_parser = ["pvc", "emptydir"])]
    workspace: String,
    /// The workspace's size.
    #[arg(long, env = "AMBIENT_WORKSPACE_SIZE", default_value = "10Gi")]
    workspace_size: String,
    /// The workspace claims' storage class (the cluster's default when unset).
    #[arg(long, env = "AMBIENT_WORKSPACE_STORAGE_CLASS")]
    workspace_storage_class: Option<String>,
    /// The runner's CPU request.
    #[arg(long, env = "AMBIENT_RUNNER_CPU_REQUEST", default_value = "500m")]
    cpu_request: String,
    /// The runner's memory request.
    #[arg(long, env = "AMBIENT_RUNNER_MEMORY_REQUEST", default_value = "512Mi")]
    memory_request: String,
    /// The runner's CPU limit.
    #[arg(long, env = "AMBIENT_RUNNER_CPU_LIMIT", default_value = "2")]
    cpu_limit: String,
    /// The runner's memory limit.
    #[arg(long, env = "AMBIENT_RUNNER_MEMORY_LIMIT", default_value = "8Gi")]
    memory_limit: String,
    /// The model of sessions that name none.
    #[arg(
        long,
        env = "AMBIENT_DEFAULT_MODEL",
        default_value = "claude-sonnet-4-6"
    )]
    default_model: String,
    /// Seconds without activity after which a session is stopped, when neither it nor its
    /// project says otherwise (0: never).
    #[arg(long, env = "AMBIENT_INACTIVITY_TIMEOUT", default_value_t = model::project_settings::DEFAULT_INACTIVITY_TIMEOUT_SECONDS,
        value_parser = clap::value_parser!(i64).range(0..=2_592_000))]
    inactivity_timeout: i64,
    /// The ServiceAccount of runner pods (made in every project; no token mounted).
    #[arg(
        long,
        env = "AMBIENT_RUNNER_SERVICE_ACCOUNT",
        default_value = "ambient-runner"
    )]
    runner_service_account: String,
    /// The uid runner pods run as, or `namespace` to let the platform choose one (OpenShift's
    /// restricted policy assigns it from the namespace's range).
    #[arg(long, env = "AMBIENT_RUNNER_UID", default_value = "1000")]
    runner_uid: String,
    /// Seconds a runner gets to stop after SIGTERM.
    #[arg(long, env = "AMBIENT_STOP_GRACE_SECONDS", default_value_t = 30,
        value_parser = clap::value_parser!(i64).range(1..=3600))]
    stop_grace_seconds: i64,
}

impl Config {
    fn cluster(self) -> Result<ClusterConfig, String> {
        let runner_uid = match self.runner_uid.as_str() {
            "namespace" => None,
            uid => Some(uid.parse::<i64>().ok().filter(|u| *u > 0).ok_or_else(|| {
                format!("AMBIENT_RUNNER_UID must be a uid above 0 or `namespace`, not {uid:?}")
            })?),
        };
        Ok(ClusterConfig {
            runner_uid,
            runner_image: self.runner_image,
            image_pull_policy: self.image_pull_policy,
            server_api_url: self.server_api_url,
            server_namespace: self.server_namespace,
            watch_namespace: self.watch_namespace,
            workspace: if self.workspace == "emptydir" {
                WorkspaceVolume::EmptyDir {
                    size_limit: Some(self.workspace_size),
                }
            } else {
                WorkspaceVolume::Pvc {
                    size: self.workspace_size,
                    storage_class: self.workspace_storage_class,
                }
            },
            requests: (self.cpu_request, self.memory_request),
            limits: (self.cpu_limit, self.memory_limit),
            default_model: self.default_model,
            default_inactivity_timeout: self.inactivity_timeout,
            runner_service_account: self.runner_service_account,
            stop_grace_seconds: self.stop_grace_seconds,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_runtime=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::parse().cluster().map_err(anyhow::Error::msg)?;
    let client = operator::cluster::connect(None)
        .await
        .map_err(anyhow::Error::msg)?;
    tracing::info!(image = %config.runner_image, server = %config.server_api_url, "operator starting");
    controller::run(client, config, shutdown()).await;
    tracing::info!("operator stopped");
    Ok(())
}

/// SIGTERM (Kubernetes stopping the pod) or SIGINT.
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
