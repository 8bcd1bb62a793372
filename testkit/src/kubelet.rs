//! A kubelet for tests: the test API server has none, so this plays its part for the runner
//! pods of one namespace. It binds each pod, resolves the container's environment the way the
//! kubelet does (`value` with `$(VAR)` references, `secretKeyRef`, `fieldRef`; a missing
//! required key is `CreateContainerConfigError`), maps volumes to directories (one per
//! claim, so a later run sees the same files, a claim with a claim as its `dataSource` a
//! copy of that one's, as CSI volume cloning makes it; one per `emptyDir`; a `subPath` is a
//! folder of it), maps the runner image to the built runner binary and runs every container of the
//! pod (the runner and its credentials keeper) as a real process with the container's
//! arguments, each in a process namespace of its own with its own `/proc` (as root, through
//! `unshare`; the pods share this machine's network, so each pod's keeper gets a port of its
//! own), and reports what really happens in `pods/status`: each container running,
//! terminated with its exit code and its log's tail; the pod done when all are. A deleted pod's
//! process gets SIGTERM, then SIGKILL after the grace period. An unknown image is
//! `ErrImagePull` then `ImagePullBackOff`; [`Kubelet::oom`] kills a runner as the kernel's
//! OOM killer would (exit 137, `OOMKilled`).
//!
//! With [`KubeletConfig::containers`] it runs each container with podman (runc) from its
//! image instead, as a node would: the command, arguments and resolved environment (passed
//! by name, never on a command line), working directory, the security context
//! (`runAsUser`/`runAsGroup`/`runAsNonRoot`, `fsGroup` and supplemental groups, a read-only
//! root with no tmpfs added, dropped and added capabilities, no privilege escalation,
//! seccomp), memory and CPU limits (once the kernel's OOM killer has killed any process
//! of a container, all of it ends `OOMKilled`, as `memory.oom.group` makes it on a node
//! with cgroup v2), volumes as bind mounts owned by the `fsGroup`,
//! graceful deletion (SIGTERM, SIGKILL after the grace period) and a process namespace per
//! container. Networking is the host's: names in [`Containers::hosts`] (a Service's DNS
//! name) resolve to loopback, where the server listens.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, EnvVar, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

/// What the kubelet runs, and where.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// The namespace whose pods it runs.
    pub namespace: String,
    /// The image it can run (`localhost/ambient-runner:latest`): the runner binary.
    pub image: String,
    /// The runner binary.
    pub runner_bin: PathBuf,
    /// Variables added to every container's environment (`AMBIENT_CLAUDE_BIN`: the
    /// pinned CLI the runner image carries).
    pub extra_env: Vec<(String, String)>,
    /// Where volumes live: `<root>/claims/<claim>`, `<root>/pods/<pod uid>/<volume>`.
    pub root: PathBuf,
    /// Run every container with podman from its image, as a node would (`None`: as host
    /// processes, the runner image standing for the runner binary).
    pub containers: Option<Containers>,
}

/// How containers run when they run in containers: podman (runc), host network.
#[derive(Debug, Clone, Default)]
pub struct Containers {
    /// Names every container resolves, with their address (`ambient-server.ambient-code.svc`
    /// → `127.0.0.1`: a Service's name reaching what listens on this machine's loopback).
    pub hosts: Vec<(String, String)>,
    /// Host directories every container sees at the same path (the tests' git remotes on
    /// disk, standing in for a forge reached over the network).
    pub mounts: Vec<PathBuf>,
    /// Variables every container gets, as a kubelet gives each its services' addresses
    /// (`KUBERNETES_SERVICE_HOST`/`_PORT`: where in-cluster configuration finds the API
    /// server).
    pub env: Vec<(String, String)>,
}

/// What the kubelet holds of a running container: a host process, or a podman container.
#[derive(Debug, Clone)]
enum Handle {
    /// The process (and its start time, so a reused pid is never signalled).
    Process(u32, u64),
    /// The container's name, and the pid of the `podman run` attached to it.
    Podman(String, u32),
}

impl Handle {
    fn pid(&self) -> u32 {
        match self {
            Handle::Process(pid, _) | Handle::Podman(_, pid) => *pid,
        }
    }

    /// Ends everything in the container at once, as a kubelet ending its cgroup does.
    fn kill(&self) {
        match self {
            Handle::Process(pid, ticks) => kill_container(*pid, *ticks),
            Handle::Podman(name, _) => {
                let _ = std::process::Command::new("podman")
                    .args(["kill", "--signal", "KILL", name])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }

    /// Kills the container and, in podman, removes it (the kubelet is going: nothing will
    /// wait for it).
    fn remove(&self) {
        match self {
            Handle::Process(..) => self.kill(),
            Handle::Podman(name, _) => {
                let _ = std::process::Command::new("podman")
                    .args(["rm", "--force", "--ignore", "--time", "0", name])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }

    /// SIGTERM to the container's first process.
    fn term(&self) {
        let pid = match self {
            Handle::Process(pid, _) => main_process(*pid),
            Handle::Podman(name, _) => {
                let _ = std::process::Command::new("podman")
                    .args(["kill", "--signal", "TERM", name])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
                return;
            }
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

#[derive(Default)]
struct Running {
    /// The runner container of each pod.
    pids: HashMap<String, Handle>,
    /// Pods whose runner was killed as out of memory.
    oom: std::collections::HashSet<String>,
    /// Every container by pod name.
    containers: HashMap<String, Vec<Handle>>,
    /// The port given to each pod's keeper (pods share this machine's loopback).
    keeper_ports: HashMap<String, u16>,
    /// Pods being deleted: their containers are not restarted.
    deleting: std::collections::HashSet<String>,
}

/// The running kubelet; stops when dropped.
pub struct Kubelet {
    running: Arc<Mutex<Running>>,
    task: tokio::task::JoinHandle<()>,
    config: KubeletConfig,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        for handle in running.containers.values().flatten() {
            handle.remove();
        }
    }
}

/// Ends everything in a "container" at once, as a kubelet ending its cgroup does: the
/// runner and every process below it (the agent runs in a process group of its own).
fn kill_container(pid: u32, ticks: u64) {
    hostproc::kill_tree(pid, ticks);
}

impl Kubelet {
    /// Starts following the namespace's pods.
    pub fn start(client: Client, config: KubeletConfig) -> Kubelet {
        let running = Arc::new(Mutex::new(Running::default()));
        let task = tokio::spawn(follow(client, config.clone(), running.clone()));
        Kubelet {
            running,
            task,
            config,
        }
    }

    /// The directory of a workspace claim.
    pub fn claim_dir(&self, claim: &str) -> PathBuf {
        self.config.root.join("claims").join(claim)
    }

    /// What a container of a pod (by uid) wrote to its standard output and error.
    pub fn log(&self, pod_uid: &str, container: &str) -> String {
        std::fs::read_to_string(
            self.config
                .root
                .join("pods")
                .join(pod_uid)
                .join(format!("{container}.log")),
        )
        .unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// The workspace in a claim: the folder the runner's container mounts.
    pub fn workspace_dir(&self, claim: &str) -> PathBuf {
        self.claim_dir(claim)
            .join(operator::cluster::build::WORKSPACE_SUBPATH)
    }

    /// Kills the runner of `pod` as the OOM killer would; `false` if it does not run.
    pub fn oom(&self, pod: &str) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let Some(handle) = running.pids.get(pod).cloned() else {
            return false;
        };
        running.oom.insert(pod.to_owned());
        handle.kill();
        true
    }

    /// Kills the runner of `pod` (SIGKILL to its process group), as if it crashed; `false`
    /// if it does not run.
    pub fn kill(&self, pod: &str) -> bool {
        let found = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pids
            .get(pod)
            .cloned();
        match found {
            Some(handle) => {
                handle.kill();
                true
            }
            None => false,
        }
    }

    /// The port `pod`'s credentials keeper was given (in place of
    /// [`operator::cluster::build::KEEPER_PORT`]).
    pub fn keeper_port(&self, pod: &str) -> Option<u16> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.keeper_ports.get(pod).copied()
    }

    /// The pods whose containers have not all ended.
    pub fn running_pods(&self) -> Vec<String> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.containers.keys().cloned().collect()
    }

    /// The pid of the runner of `pod` (in containers: of the `podman run` attached to it),
    /// while it runs.
    pub fn pid(&self, pod: &str) -> Option<u32> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.pids.get(pod).map(Handle::pid)
    }
}

async fn follow(client: Client, config: KubeletConfig, running: Arc<Mutex<Running>>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let mut events = std::pin::pin!(
        watcher(pods.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    let mut started = std::collections::HashSet::new();
    let mut stopping = std::collections::HashSet::new();
    while let Some(event) = events.next().await {
        let Ok(pod) = event else { continue };
        let name = pod.name_any();
        if pod.metadata.deletion_timestamp.is_some() {
            if stopping.insert(name.clone()) {
                tokio::spawn(stop(pods.clone(), pod, running.clone()));
            }
            continue;
        }
        if started.insert(name) {
            tokio::spawn(run(client.clone(), config.clone(), pod, running.clone()));
        }
    }
}

/// A deleted pod: SIGTERM, SIGKILL after the grace period, then the pod is gone.
async fn stop(pods: Api<Pod>, pod: Pod, running: Arc<Mutex<Running>>) {
    let name = pod.name_any();
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
        .max(0) as u64;
    let processes = {
        let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
        r.deleting.insert(name.clone());
        r.containers.get(&name).cloned().unwrap_or_default()
    };
    if !processes.is_empty() {
        // SIGTERM to each container's first process (the runner stops its agent), as the
        // kubelet signals them.
        for handle in &processes {
            handle.term();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(grace);
        while tokio::time::Instant::now() < deadline {
            let alive = running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .containers
                .contains_key(&name);
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for handle in processes {
            handle.kill();
        }
    }
    let _ = pods
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;
}

/// The pod's status: its phase and each container's state (in the pod's order).
async fn report(
    pods: &Api<Pod>,
    name: &str,
    phase: &str,
    states: &[(String, serde_json::Value)],
    restarts: &[(u32, serde_json::Value)],
) {
    let ready = phase == "Running";
    let statuses: Vec<serde_json::Value> = states
        .iter()
        .enumerate()
        .map(|(i, (container, state))| {
            let (count, last) = restarts.get(i).cloned().unwrap_or((0, json!({})));
            json!({
                "name": container, "image": "", "imageID": "",
                "ready": state.get("running").is_some(),
                "restartCount": count, "state": state, "lastState": last,
            })
        })
        .collect();
    let patch = json!({"status": {
        "phase": phase,
        "conditions": [{"type": "PodScheduled", "status": "True"},
                       {"type": "Ready", "status": if ready { "True" } else { "False" }}],
        "containerStatuses": statuses,
    }});
    if let Err(e) = pods
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(pod = name, error = %e, "pod status");
    }
}

/// Whether containers get a process namespace of their own (with their own `/proc`), as
/// in a real pod: needs root and `unshare`.
fn own_pid_namespaces() -> bool {
    nix::unistd::geteuid().is_root() && hostproc::system_program("unshare").is_some()
}

/// The first process inside a container started through `unshare --fork` (the one that
/// gets the kubelet's signals), or `pid` itself.
fn main_process(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .and_then(|c| c.split_whitespace().next()?.parse().ok())
        .unwrap_or(pid)
}

/// One container of a pod, started.
struct Started {
    child: tokio::process::Child,
    log_path: PathBuf,
    handle: Handle,
    /// In containers: the file podman wrote the container's id to.
    cid_file: Option<PathBuf>,
    /// The kernel killed a process of the container for its memory, and so the kubelet
    /// ended the whole container (see [`wait_as_one_oom_group`]).
    oom_group_killed: bool,
}

/// Waits for a container to end, ending all of it once the kernel's OOM killer has killed
/// any of its processes: what a kubelet on cgroup v2 gets from `memory.oom.group` (the
/// default since Kubernetes 1.28), so a runner whose agent outgrew the limit ends
/// `OOMKilled` instead of living on without it. This machine's cgroup v1 has no such
/// switch; the memory cgroup's `oom_kill` count says the same.
async fn wait_as_one_oom_group(s: &mut Started) -> std::io::Result<std::process::ExitStatus> {
    let Handle::Podman(container, _) = s.handle.clone() else {
        return s.child.wait().await;
    };
    let mut control: Option<PathBuf> = None;
    loop {
        tokio::select! {
            status = s.child.wait() => return status,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if control.is_none() {
            control = s
                .cid_file
                .as_deref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .and_then(|id| memory_cgroup(id.trim()))
                .map(|dir| dir.join("memory.oom_control"));
        }
        let killed = control
            .as_deref()
            .and_then(|c| std::fs::read_to_string(c).ok())
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0);
        if killed && !s.oom_group_killed {
            s.oom_group_killed = true;
            let _ = tokio::process::Command::new("podman")
                .args(["kill", "--signal", "KILL", &container])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await;
        }
    }
}

/// The memory cgroup (v1) podman made for the container `id`.
fn memory_cgroup(id: &str) -> Option<PathBuf> {
    if id.is_empty() {
        return None;
    }
    let parent = Path::new("/sys/fs/cgroup/memory/libpod_parent");
    let direct = parent.join(format!("libpod-{id}"));
    if direct.is_dir() {
        return Some(direct);
    }
    std::fs::read_dir(parent)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.to_string_lossy().contains(id))
}

async fn run(client: Client, config: KubeletConfig, pod: Pod, running: Arc<Mutex<Running>>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let name = pod.name_any();
    // Bind it to this "node".
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "test-kubelet"},
    });
    if let Err(e) = pods
        .create_subresource::<serde_json::Value, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        tracing::debug!(pod = %name, error = %e, "binding");
    }
    let Some(spec) = pod.spec.clone() else { return };
    let containers = spec.containers.clone();
    if containers.is_empty() {
        return;
    }
    let waiting =
        |reason: &str, message: String| json!({"waiting": {"reason": reason, "message": message}});
    let mut states: Vec<(String, serde_json::Value)> = containers
        .iter()
        .map(|c| (c.name.clone(), waiting("ContainerCreating", String::new())))
        .collect();
    // Each container's restarts and its last ended state.
    let mut restarts: Vec<(u32, serde_json::Value)> = vec![(0, json!({})); containers.len()];
    let runnable = |image: &str| match &config.containers {
        None => image == config.image,
        Some(_) => std::process::Command::new("podman")
            .args(["image", "exists", image])
            .status()
            .is_ok_and(|s| s.success()),
    };
    if let Some((i, c)) = containers
        .iter()
        .enumerate()
        .find(|(_, c)| !runnable(c.image.as_deref().unwrap_or_default()))
    {
        let image = c.image.clone().unwrap_or_default();
        states[i].1 = waiting(
            "ErrImagePull",
            format!("failed to pull image \"{image}\": not found"),
        );
        report(&pods, &name, "Pending", &states, &restarts).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        states[i].1 = waiting(
            "ImagePullBackOff",
            format!("Back-off pulling image \"{image}\""),
        );
        report(&pods, &name, "Pending", &states, &restarts).await;
        return;
    }
    // Volumes as directories.
    let uid = pod.uid().unwrap_or_default();
    let mut volumes: HashMap<String, PathBuf> = HashMap::new();
    for v in spec.volumes.iter().flatten() {
        let dir = match &v.persistent_volume_claim {
            Some(claim) => config.root.join("claims").join(&claim.claim_name),
            None => config.root.join("pods").join(&uid).join(&v.name),
        };
        if let Some(claim) = &v.persistent_volume_claim
            && !dir.exists()
        {
            // A claim made from another (`dataSource`) starts as its copy, as a CSI
            // driver's volume cloning makes it.
            let claims: Api<PersistentVolumeClaim> =
                Api::namespaced(client.clone(), &config.namespace);
            if let Ok(Some(pvc)) = claims.get_opt(&claim.claim_name).await
                && let Some(source) = pvc.spec.and_then(|s| s.data_source)
                && source.kind == "PersistentVolumeClaim"
            {
                let from = config.root.join("claims").join(&source.name);
                let copied = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(&from)
                    .arg(&dir)
                    .status();
                if !copied.is_ok_and(|s| s.success()) {
                    states[0].1 = waiting(
                        "ContainerCreating",
                        format!("cloning claim \"{}\" failed", source.name),
                    );
                    report(&pods, &name, "Pending", &states, &restarts).await;
                    return;
                }
            }
        }
        let _ = std::fs::create_dir_all(&dir);
        if let Some(secret) = &v.secret {
            // Each key a file (the ServiceAccount token's volume among them).
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
            let name_of = secret.secret_name.clone().unwrap_or_default();
            match secrets.get_opt(&name_of).await {
                Ok(Some(found)) => {
                    for (key, value) in found.data.unwrap_or_default() {
                        let _ = std::fs::write(dir.join(&key), &value.0);
                    }
                }
                _ if secret.optional == Some(true) => {}
                _ => {
                    states[0].1 = waiting(
                        "ContainerCreating",
                        format!(
                            "MountVolume.SetUp failed for volume \"{}\": secret \"{name_of}\" not found",
                            v.name
                        ),
                    );
                    report(&pods, &name, "Pending", &states, &restarts).await;
                    return;
                }
            }
            // The volume's mode (0644 unless it says otherwise).
            use std::os::unix::fs::PermissionsExt;
            let mode = secret.default_mode.unwrap_or(0o644) as u32;
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let _ =
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode));
            }
        }
        if config.containers.is_some()
            && let Some(group) = spec.security_context.as_ref().and_then(|c| c.fs_group)
        {
            // The kubelet's fsGroup: the volume's files belong to the group, which may write
            // them, and new files inherit it (setgid directories).
            own_by_group(&dir, group as u32);
        }
        volumes.insert(v.name.clone(), dir);
    }
    let _ = std::fs::create_dir_all(config.root.join("pods").join(&uid));
    let pid_namespaces = own_pid_namespaces();
    // Every pod has a loopback of its own in a cluster; here they share this machine's, so
    // the keeper's port (the one fixed address a pod's containers agree on) is a free one
    // per pod, named the same way in both containers.
    let keeper_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(operator::cluster::build::KEEPER_PORT);
    running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keeper_ports
        .insert(name.clone(), keeper_port);
    let fixed = format!("127.0.0.1:{}", operator::cluster::build::KEEPER_PORT);
    let own = format!("127.0.0.1:{keeper_port}");
    let mut started: Vec<Started> = Vec::new();
    let mut envs: Vec<Vec<(String, String)>> = Vec::new();
    for (i, container) in containers.iter().enumerate() {
        let env: Vec<(String, String)> =
            match resolve_env(&client, &config.namespace, &pod, container).await {
                Ok(env) => env
                    .into_iter()
                    .map(|(k, v)| (k, v.replace(&fixed, &own)))
                    .collect(),
                Err(message) => {
                    states[i].1 = waiting("CreateContainerConfigError", message);
                    report(&pods, &name, "Pending", &states, &restarts).await;
                    // What started already is ended, as the pod will not run.
                    for s in &started {
                        s.handle.kill();
                    }
                    return;
                }
            };
        envs.push(env.clone());
        let start = match &config.containers {
            None => start_container(&config, &uid, container, &volumes, env, pid_namespaces),
            Some(c) => start_podman(&config, c, &pod, container, &volumes, env),
        };
        match start {
            Ok(s) => {
                states[i].1 = json!({"running": {"startedAt": now()}});
                let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
                if i == 0 {
                    r.pids.insert(name.clone(), s.handle.clone());
                }
                r.containers
                    .entry(name.clone())
                    .or_default()
                    .push(s.handle.clone());
                drop(r);
                started.push(s);
            }
            Err(e) => {
                states[i].1 = json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": e.to_string()}});
                report(&pods, &name, "Failed", &states, &restarts).await;
                return;
            }
        }
    }
    report(&pods, &name, "Running", &states, &restarts).await;
    // Each container to its end; the pod's status after each.
    let ends = futures::stream::FuturesUnordered::new();
    type End = (usize, Started, std::io::Result<std::process::ExitStatus>);
    let mut ends: futures::stream::FuturesUnordered<
        std::pin::Pin<Box<dyn std::future::Future<Output = End> + Send>>,
    > = ends;
    for (i, mut s) in started.into_iter().enumerate() {
        ends.push(Box::pin(async move {
            let status = wait_as_one_oom_group(&mut s).await;
            (i, s, status)
        }));
    }
    let mut exit_codes: Vec<Option<i32>> = vec![None; containers.len()];
    while let Some((i, s, status)) = ends.next().await {
        let killed_as_oom = i == 0 && {
            let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
            r.pids.remove(&name);
            r.oom.remove(&name)
        };
        use std::os::unix::process::ExitStatusExt;
        let (code, signal) = match &status {
            Ok(st) => (st.code(), st.signal()),
            Err(_) => (None, None),
        };
        let mut exit_code = code.unwrap_or_else(|| 128 + signal.unwrap_or(9));
        // In a container, the kernel's own verdict: its OOM killer named the container. A
        // container that ended on its own before the poll saw the kill (its runner reported
        // the agent's death and exited) would have been ended whole by `memory.oom.group`.
        let oom = killed_as_oom
            || s.oom_group_killed
            || s.cid_file
                .as_deref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .is_some_and(|id| killed_out_of_memory(id.trim()));
        if oom {
            exit_code = 137;
        }
        if let Handle::Podman(container, _) = &s.handle {
            let _ = tokio::process::Command::new("podman")
                .args(["rm", "--force", "--ignore", container])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await;
        }
        let reason = if oom {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        // FallbackToLogsOnError: a failed container's message is the tail of its log.
        let message = if exit_code != 0 {
            tail(&s.log_path, 20)
        } else {
            String::new()
        };
        states[i].1 = json!({"terminated": {"exitCode": exit_code, "reason": reason, "message": message,
            "startedAt": now(), "finishedAt": now()}});
        // The pod's restartPolicy (a Deployment's pods: Always), unless it is being deleted.
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let again = policy == "Always" || (policy == "OnFailure" && exit_code != 0);
        let deleting = || {
            running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .deleting
                .contains(&name)
        };
        if again && !deleting() {
            restarts[i].0 += 1;
            restarts[i].1 = states[i].1.clone();
            states[i].1 = waiting(
                "CrashLoopBackOff",
                format!(
                    "back-off restarting failed container {}",
                    containers[i].name
                ),
            );
            report(&pods, &name, "Running", &states, &restarts).await;
            let backoff = Duration::from_millis(500 * (1u64 << restarts[i].0.min(5)));
            tokio::time::sleep(backoff.min(Duration::from_secs(10))).await;
            if !deleting() {
                let env = envs[i].clone();
                let start = match &config.containers {
                    None => start_container(
                        &config,
                        &uid,
                        &containers[i],
                        &volumes,
                        env,
                        pid_namespaces,
                    ),
                    Some(c) => start_podman(&config, c, &pod, &containers[i], &volumes, env),
                };
                if let Ok(mut again) = start {
                    {
                        let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
                        if i == 0 {
                            r.pids.insert(name.clone(), again.handle.clone());
                        }
                        if let Some(handle) = r.containers.get_mut(&name).and_then(|h| h.get_mut(i))
                        {
                            *handle = again.handle.clone();
                        }
                    }
                    states[i].1 = json!({"running": {"startedAt": now()}});
                    report(&pods, &name, "Running", &states, &restarts).await;
                    ends.push(Box::pin(async move {
                        let status = wait_as_one_oom_group(&mut again).await;
                        (i, again, status)
                    }));
                    continue;
                }
            }
        }
        exit_codes[i] = Some(exit_code);
        let phase = if exit_codes.iter().any(Option::is_none) {
            "Running"
        } else if exit_codes.iter().all(|c| *c == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        };
        report(&pods, &name, phase, &states, &restarts).await;
    }
    let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
    r.containers.remove(&name);
    r.deleting.remove(&name);
}

/// Starts one container's process: the runner binary with the container's arguments, its
/// environment, mount paths mapped to the volumes' directories, in a process namespace of
/// its own when the machine allows.
fn start_container(
    config: &KubeletConfig,
    uid: &str,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    env: Vec<(String, String)>,
    pid_namespace: bool,
) -> std::io::Result<Started> {
    let mounts: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let dir = volumes.get(&m.name)?;
            let dir = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
                Some(sub) => dir.join(sub),
                None => dir.clone(),
            };
            let _ = std::fs::create_dir_all(&dir);
            Some((m.mount_path.clone(), dir))
        })
        .collect();
    let host_path = |p: &str| -> String {
        for (mount, dir) in &mounts {
            if p == mount {
                return dir.display().to_string();
            }
            if let Some(rest) = p.strip_prefix(&format!("{mount}/")) {
                return dir.join(rest).display().to_string();
            }
        }
        p.to_owned()
    };
    let workdir = container
        .working_dir
        .as_deref()
        .map(&host_path)
        .unwrap_or_else(|| config.root.display().to_string());
    let log_path = config
        .root
        .join("pods")
        .join(uid)
        .join(format!("{}.log", container.name));
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = if pid_namespace {
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(["--pid", "--fork", "--mount-proc", "--"])
            .arg(&config.runner_bin);
        cmd
    } else {
        tokio::process::Command::new(&config.runner_bin)
    };
    cmd.args(container.args.iter().flatten())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(&workdir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    if let Some(tmp) = mounts.iter().find(|(m, _)| m == "/tmp") {
        cmd.env("TMPDIR", &tmp.1);
    }
    for (k, v) in env {
        cmd.env(k, host_path(&v));
    }
    for (k, v) in &config.extra_env {
        cmd.env(k, v);
    }
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or_default();
    let ticks = hostproc::start_ticks(pid).unwrap_or_default();
    Ok(Started {
        child,
        log_path,
        handle: Handle::Process(pid, ticks),
        cid_file: None,
        oom_group_killed: false,
    })
}

/// Gives `dir` and what is in it to `group`, group-writable, new files inheriting the
/// group (what the kubelet does to a pod's volumes for its `fsGroup`).
fn own_by_group(dir: &Path, group: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::os::unix::fs::lchown(dir, None, Some(group));
    if let Ok(meta) = std::fs::symlink_metadata(dir) {
        let mode = meta.permissions().mode();
        let wanted = if meta.is_dir() {
            mode | 0o2070
        } else {
            mode | 0o060
        };
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(wanted));
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                own_by_group(&entry.path(), group);
            }
        }
    }
}

/// A resource quantity (`512Mi`, `1Gi`, `2`, `500m`) in its base unit, scaled by `per`
/// (1000 for CPU in millicores).
fn quantity(q: &str, per: f64) -> Option<f64> {
    let (number, factor) = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("m", 1e-3),
    ]
    .iter()
    .find_map(|(suffix, f)| q.strip_suffix(suffix).map(|n| (n, *f)))
    .unwrap_or((q, 1.0));
    number.parse::<f64>().ok().map(|n| n * factor * per)
}

/// Starts one container with podman from its image: the pod's and the container's security
/// context, its resources' limits, volumes as bind mounts, its environment (passed by name,
/// never on a command line), host network with `hosts` resolving.
fn start_podman(
    config: &KubeletConfig,
    containers: &Containers,
    pod: &Pod,
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    env: Vec<(String, String)>,
) -> std::io::Result<Started> {
    let uid = pod.uid().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_security = spec.security_context.clone().unwrap_or_default();
    let security = container.security_context.clone().unwrap_or_default();
    let name = format!(
        "kubelet-{}-{}",
        uid.split('-').next().unwrap_or_default(),
        container.name
    );
    let log_path = config
        .root
        .join("pods")
        .join(&uid)
        .join(format!("{}.log", container.name));
    let cid_file = config
        .root
        .join("pods")
        .join(&uid)
        .join(format!("{}.cid", container.name));
    let _ = std::fs::remove_file(&cid_file);
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = tokio::process::Command::new("podman");
    cmd.args([
        "run",
        "--name",
        &name,
        "--pull",
        "never",
        "--runtime",
        "runc",
    ])
    .arg(format!("--cidfile={}", cid_file.display()))
    // What this VM needs for runc (see tools/images.sh).
    .args([
        "--ulimit",
        "nofile=4096:4096",
        "--ulimit",
        "nproc=4096:4096",
    ])
    .args(["--network", "host", "--hostname", &pod.name_any()])
    // No tmpfs where the pod has none (podman's --read-only would add them).
    .arg("--read-only-tmpfs=false");
    for (host, ip) in &containers.hosts {
        cmd.arg(format!("--add-host={host}:{ip}"));
    }
    for (k, v) in &containers.env {
        cmd.arg("--env").arg(k).env(k, v);
    }
    for dir in &containers.mounts {
        cmd.arg(format!("--volume={0}:{0}", dir.display()));
    }
    let run_as_user = security.run_as_user.or(pod_security.run_as_user);
    let run_as_group = security.run_as_group.or(pod_security.run_as_group);
    let non_root = security.run_as_non_root.or(pod_security.run_as_non_root) == Some(true);
    if non_root && run_as_user == Some(0) {
        return Err(std::io::Error::other(
            "container's runAsUser breaks non-root policy",
        ));
    }
    match (run_as_user, run_as_group) {
        (Some(u), Some(g)) => {
            cmd.arg(format!("--user={u}:{g}"));
        }
        (Some(u), None) => {
            cmd.arg(format!("--user={u}:0"));
        }
        (None, _) => {}
    }
    for group in pod_security
        .fs_group
        .into_iter()
        .chain(pod_security.supplemental_groups.into_iter().flatten())
    {
        cmd.arg(format!("--group-add={group}"));
    }
    if security.read_only_root_filesystem == Some(true) {
        cmd.arg("--read-only");
    }
    if security.allow_privilege_escalation == Some(false) {
        cmd.args(["--security-opt", "no-new-privileges"]);
    }
    if security.privileged == Some(true) {
        cmd.arg("--privileged");
    }
    if let Some(caps) = &security.capabilities {
        for c in caps.drop.iter().flatten() {
            cmd.arg(format!("--cap-drop={c}"));
        }
        for c in caps.add.iter().flatten() {
            cmd.arg(format!("--cap-add={c}"));
        }
    }
    let seccomp = security
        .seccomp_profile
        .or(pod_security.seccomp_profile)
        .map(|p| p.type_);
    match seccomp.as_deref() {
        // podman's default profile is the runtime's default.
        None | Some("RuntimeDefault") => {}
        Some("Unconfined") => {
            cmd.args(["--security-opt", "seccomp=unconfined"]);
        }
        Some(other) => {
            return Err(std::io::Error::other(format!(
                "seccomp profile {other} is not supported by this kubelet"
            )));
        }
    }
    let limits = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    if let Some(bytes) = limits.get("memory").and_then(|q| quantity(&q.0, 1.0)) {
        // No swap, as on a node.
        cmd.arg(format!("--memory={}", bytes as u64))
            .arg(format!("--memory-swap={}", bytes as u64));
    }
    if let Some(cpus) = limits.get("cpu").and_then(|q| quantity(&q.0, 1.0)) {
        cmd.arg(format!("--cpus={cpus}"));
    }
    for m in container.volume_mounts.iter().flatten() {
        let Some(dir) = volumes.get(&m.name) else {
            return Err(std::io::Error::other(format!(
                "volume {} is not defined",
                m.name
            )));
        };
        let dir = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
            Some(sub) => {
                let dir = dir.join(sub);
                std::fs::create_dir_all(&dir)?;
                if let Some(group) = pod_security.fs_group {
                    own_by_group(&dir, group as u32);
                }
                dir
            }
            None => dir.clone(),
        };
        let read_only = if m.read_only == Some(true) { ":ro" } else { "" };
        cmd.arg(format!(
            "--volume={}:{}{read_only}",
            dir.display(),
            m.mount_path
        ));
    }
    if let Some(dir) = &container.working_dir {
        cmd.arg(format!("--workdir={dir}"));
    }
    for (k, v) in &env {
        // `-e NAME` takes the value from podman's own environment: no secret on a
        // command line.
        cmd.arg("--env").arg(k).env(k, v);
    }
    if let Some(command) = &container.command {
        cmd.arg(format!(
            "--entrypoint={}",
            serde_json::to_string(command).unwrap_or_default()
        ));
    }
    cmd.arg(container.image.as_deref().unwrap_or_default())
        .args(container.args.iter().flatten())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false);
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or_default();
    Ok(Started {
        child,
        log_path,
        handle: Handle::Podman(name, pid),
        cid_file: Some(cid_file),
        oom_group_killed: false,
    })
}

/// Whether the kernel's OOM killer killed a process of the container `id` (its log names
/// the container's cgroup, `…/libpod-<id>`).
fn killed_out_of_memory(id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    let Ok(out) = std::process::Command::new("dmesg").output() else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.contains("oom-kill:") && l.contains("task_memcg=") && l.contains(id))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// The container's environment as the kubelet makes it.
async fn resolve_env(
    client: &Client,
    namespace: &str,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut cache: HashMap<String, Option<BTreeMap<String, String>>> = HashMap::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.iter().flatten()
    {
        let resolved = if let Some(v) = value {
            Some(expand(v, &out))
        } else if let Some(from) = value_from {
            if let Some(r) = &from.secret_key_ref {
                if !cache.contains_key(&r.name) {
                    let data = secrets.get_opt(&r.name).await.ok().flatten().map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                            .collect()
                    });
                    cache.insert(r.name.clone(), data);
                }
                let optional = r.optional.unwrap_or(false);
                match cache.get(&r.name).cloned().flatten() {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => Some(v.clone()),
                        None if optional => None,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if optional => None,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else if let Some(f) = &from.field_ref {
                match f.field_path.as_str() {
                    "metadata.name" => Some(pod.name_any()),
                    "metadata.namespace" => Some(namespace.to_owned()),
                    "metadata.uid" => pod.uid(),
                    other => return Err(format!("unsupported fieldRef {other}")),
                }
            } else {
                None
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = resolved {
            out.retain(|(k, _)| k != name);
            out.push((name.clone(), v));
        }
    }
    Ok(out)
}

/// `$(VAR)` of a variable defined earlier becomes its value; `$$(VAR)` stays `$(VAR)`.
fn expand(value: &str, defined: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(escaped) = after.strip_prefix("$(") {
            out.push_str("$(");
            rest = escaped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let var = &inner[..end];
            match defined.iter().rev().find(|(k, _)| k == var) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(var);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn references_expand_like_the_kubelet() {
        let defined = vec![("A".to_owned(), "x".to_owned())];
        assert_eq!(expand("$(A)/y", &defined), "x/y");
        assert_eq!(expand("$(B)", &defined), "$(B)");
        assert_eq!(expand("$$(A)", &defined), "$(A)");
        assert_eq!(expand("cost $5", &defined), "cost $5");
    }
}
