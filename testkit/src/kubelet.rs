//! A kubelet for tests: the test API server has none, so this plays its part for the runner
//! pods of one namespace. It binds each pod, resolves the container's environment the way the
//! kubelet does (`value` with `$(VAR)` references, `secretKeyRef`, `fieldRef`; a missing
//! required key is `CreateContainerConfigError`), maps volumes to directories (one per
//! claim, so a later run sees the same files; one per `emptyDir`; a `subPath` is a folder
//! of it), maps the runner image to the built runner binary and runs every container of the
//! pod (the runner and its credentials keeper) as a real process with the container's
//! arguments, each in a process namespace of its own with its own `/proc` (as root, through
//! `unshare`; the pods share this machine's network, so each pod's keeper gets a port of its
//! own), and reports what really happens in `pods/status`: each container running,
//! terminated with its exit code and its log's tail; the pod done when all are. A deleted pod's
//! process gets SIGTERM, then SIGKILL after the grace period. An unknown image is
//! `ErrImagePull` then `ImagePullBackOff`; [`Kubelet::oom`] kills a runner as the kernel's
//! OOM killer would (exit 137, `OOMKilled`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Secret};
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
}

#[derive(Default)]
struct Running {
    /// Process ids (and their start times) by pod name.
    pids: HashMap<String, (u32, u64)>,
    /// Pods whose runner was killed as out of memory.
    oom: std::collections::HashSet<String>,
    /// Every container's process (and start time) by pod name.
    containers: HashMap<String, Vec<(u32, u64)>>,
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
        for (pid, ticks) in running.containers.values().flatten() {
            kill_container(*pid, *ticks);
        }
    }
}

/// Ends everything in a "container" at once, as a kubelet ending its cgroup does: the
/// runner and every process below it (the agent runs in a process group of its own).
fn kill_container(pid: u32, ticks: u64) {
    operator::local::process::kill_tree(pid, ticks);
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

    /// The workspace in a claim: the folder the runner's container mounts.
    pub fn workspace_dir(&self, claim: &str) -> PathBuf {
        self.claim_dir(claim)
            .join(operator::cluster::build::WORKSPACE_SUBPATH)
    }

    /// Kills the runner of `pod` as the OOM killer would; `false` if it does not run.
    pub fn oom(&self, pod: &str) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let Some((pid, ticks)) = running.pids.get(pod).copied() else {
            return false;
        };
        running.oom.insert(pod.to_owned());
        kill_container(pid, ticks);
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
            .copied();
        match found {
            Some((pid, ticks)) => {
                kill_container(pid, ticks);
                true
            }
            None => false,
        }
    }

    /// The pid of the runner of `pod`, while it runs.
    pub fn pid(&self, pod: &str) -> Option<u32> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.pids.get(pod).map(|(pid, _)| *pid)
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
    let processes = running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .containers
        .get(&name)
        .cloned()
        .unwrap_or_default();
    if !processes.is_empty() {
        // SIGTERM to each container's first process (the runner stops its agent), as the
        // kubelet signals them.
        for (pid, _) in &processes {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(main_process(*pid) as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
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
        for (pid, ticks) in processes {
            kill_container(pid, ticks);
        }
    }
    let _ = pods
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;
}

/// The pod's status: its phase and each container's state (in the pod's order).
async fn report(pods: &Api<Pod>, name: &str, phase: &str, states: &[(String, serde_json::Value)]) {
    let ready = phase == "Running";
    let statuses: Vec<serde_json::Value> = states
        .iter()
        .map(|(container, state)| {
            json!({
                "name": container, "image": "", "imageID": "",
                "ready": state.get("running").is_some(),
                "restartCount": 0, "state": state,
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
    nix::unistd::geteuid().is_root()
        && operator::local::process::system_program("unshare").is_some()
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
    name: String,
    child: tokio::process::Child,
    log_path: PathBuf,
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
    if let Some((i, c)) = containers
        .iter()
        .enumerate()
        .find(|(_, c)| c.image.as_deref() != Some(config.image.as_str()))
    {
        let image = c.image.clone().unwrap_or_default();
        states[i].1 = waiting(
            "ErrImagePull",
            format!("failed to pull image \"{image}\": not found"),
        );
        report(&pods, &name, "Pending", &states).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        states[i].1 = waiting(
            "ImagePullBackOff",
            format!("Back-off pulling image \"{image}\""),
        );
        report(&pods, &name, "Pending", &states).await;
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
        let _ = std::fs::create_dir_all(&dir);
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
    let fixed = format!("127.0.0.1:{}", operator::cluster::build::KEEPER_PORT);
    let own = format!("127.0.0.1:{keeper_port}");
    let mut started: Vec<Started> = Vec::new();
    for (i, container) in containers.iter().enumerate() {
        let env = match resolve_env(&client, &config.namespace, &pod, container).await {
            Ok(env) => env
                .into_iter()
                .map(|(k, v)| (k, v.replace(&fixed, &own)))
                .collect(),
            Err(message) => {
                states[i].1 = waiting("CreateContainerConfigError", message);
                report(&pods, &name, "Pending", &states).await;
                // What started already is ended, as the pod will not run.
                for s in &started {
                    if let Some(pid) = s.child.id() {
                        kill_container(
                            pid,
                            operator::local::process::start_ticks(pid).unwrap_or_default(),
                        );
                    }
                }
                return;
            }
        };
        match start_container(&config, &uid, container, &volumes, env, pid_namespaces) {
            Ok(s) => {
                states[i].1 = json!({"running": {"startedAt": now()}});
                if i == 0 {
                    let pid = s.child.id().unwrap_or_default();
                    let ticks = operator::local::process::start_ticks(pid).unwrap_or_default();
                    running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .pids
                        .insert(name.clone(), (pid, ticks));
                }
                let pid = s.child.id().unwrap_or_default();
                let ticks = operator::local::process::start_ticks(pid).unwrap_or_default();
                running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .containers
                    .entry(name.clone())
                    .or_default()
                    .push((pid, ticks));
                started.push(s);
            }
            Err(e) => {
                states[i].1 = json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": e.to_string()}});
                report(&pods, &name, "Failed", &states).await;
                return;
            }
        }
    }
    report(&pods, &name, "Running", &states).await;
    // Each container to its end; the pod's status after each.
    let mut ends = futures::stream::FuturesUnordered::new();
    for (i, mut s) in started.into_iter().enumerate() {
        ends.push(async move {
            let status = s.child.wait().await;
            (i, s, status)
        });
    }
    let mut exit_codes: Vec<Option<i32>> = vec![None; containers.len()];
    while let Some((i, s, status)) = ends.next().await {
        let oom = i == 0 && {
            let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
            r.pids.remove(&name);
            r.oom.remove(&name)
        };
        use std::os::unix::process::ExitStatusExt;
        let (code, signal) = match &status {
            Ok(st) => (st.code(), st.signal()),
            Err(_) => (None, None),
        };
        let exit_code = code.unwrap_or_else(|| 128 + signal.unwrap_or(9));
        exit_codes[i] = Some(exit_code);
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
        let _ = &s.name;
        let phase = if exit_codes.iter().any(Option::is_none) {
            "Running"
        } else if exit_codes.iter().all(|c| *c == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        };
        report(&pods, &name, phase, &states).await;
    }
    running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .containers
        .remove(&name);
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
    Ok(Started {
        name: container.name.clone(),
        child,
        log_path,
    })
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
