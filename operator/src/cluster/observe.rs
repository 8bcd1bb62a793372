//! What the cluster says about a run, as the lifecycle's [`Runner`]: a pure function of the
//! run's Job and its Pods (the original operator's phase table, §4.2 of the catalogue).

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::build::{CONTAINER, FILES_LABEL, RUN_LABEL, SESSION_LABEL};
use crate::lifecycle::{Exit, Runner};

/// Container waiting reasons after which the runner will not start without a change.
const UNSTARTABLE: [&str; 5] = [
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImageNeverPull",
];

/// The run as the cluster shows it. `job` is the current run's Job (if it exists), `pods`
/// its pods (any order), `connected` whether the server saw this run's runner connect,
/// `was_running` whether the session had reached `Running` (a runner that vanishes then is
/// lost, not absent).
pub fn observe(job: Option<&Job>, pods: &[Pod], connected: bool, was_running: bool) -> Runner {
    let Some(job) = job else {
        return if was_running {
            Runner::Lost {
                reason: "the runner's Job is gone".into(),
            }
        } else {
            Runner::Absent
        };
    };
    // The newest pod speaks for the run (a Job may have replaced a deleted one); a pod
    // being deleted speaks only when no other is left (a runner stopping still runs).
    let newest = |deleting: bool| {
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() == deleting)
            .max_by_key(|p| p.metadata.creation_timestamp.clone())
    };
    let pod = newest(false).or_else(|| newest(true));
    if let Some(reason) = job_failure(job) {
        let (reason, message) = reason;
        return Runner::Exited(Exit {
            code: pod.and_then(container).and_then(terminated_code),
            reason: Some(reason),
            stderr_tail: vec![message],
            ..Exit::default()
        });
    }
    let Some(pod) = pod else {
        if was_running || job.metadata.deletion_timestamp.is_some() {
            return Runner::Lost {
                reason: "the runner's pod vanished".into(),
            };
        }
        return Runner::Waiting {
            reason: "PodPending".into(),
            message: "waiting for the Job to create the runner's pod".into(),
        };
    };
    let status = pod.status.clone().unwrap_or_default();
    // Evicted (node pressure) or otherwise failed before any container state is known.
    if status.phase.as_deref() == Some("Failed") && status.reason.is_some() {
        let reason = status.reason.clone().unwrap_or_default();
        return Runner::Exited(Exit {
            code: container(pod).and_then(terminated_code),
            reason: Some(reason),
            stderr_tail: status.message.clone().into_iter().collect(),
            ..Exit::default()
        });
    }
    if let Some(c) = container(pod) {
        let state = c.state.clone().unwrap_or_default();
        if let Some(t) = state.terminated {
            let reason = match t.reason.as_deref() {
                // What the kubelet calls a plain exit is not a reason of its own.
                None | Some("Completed" | "Error") => None,
                Some(other) => Some(other.to_owned()),
            };
            return Runner::Exited(Exit {
                code: Some(t.exit_code),
                signal: t.signal,
                reason,
                stderr_tail: tail(t.message.as_deref()),
                ..Exit::default()
            });
        }
        if state.running.is_some() {
            return Runner::Alive { connected };
        }
        if let Some(w) = state.waiting {
            let reason = w.reason.unwrap_or_else(|| "ContainerCreating".into());
            let message = w.message.unwrap_or_else(|| reason.clone());
            return if UNSTARTABLE.contains(&reason.as_str()) {
                Runner::Unstartable { reason, message }
            } else {
                Runner::Waiting { reason, message }
            };
        }
    }
    // Not scheduled: say why (the scheduler's message names what is missing).
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        return Runner::Waiting {
            reason: c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
            message: c
                .message
                .clone()
                .unwrap_or_else(|| "the pod cannot be scheduled".into()),
        };
    }
    Runner::Waiting {
        reason: "PodPending".into(),
        message: "the runner's pod is starting".into(),
    }
}

/// A run's Pod as the operator watches and caches it: its metadata and status only (the
/// spec is never even decoded). At 5,000 sessions the cache holds 5,000 Pods; as
/// `k8s_openapi`'s `Pod`, each took over 2 KiB before a field was set (its spec is inline).
#[derive(kube::Resource, Clone, Debug, Default, serde::Deserialize)]
#[resource(inherit = "Pod")]
pub struct RunPod {
    /// The Pod's metadata.
    pub metadata: ObjectMeta,
    /// The Pod's status.
    pub status: Option<PodStatus>,
}

impl From<RunPod> for Pod {
    fn from(p: RunPod) -> Pod {
        Pod {
            metadata: p.metadata,
            spec: None,
            status: p.status,
        }
    }
}

/// A run's Job as the operator watches and caches it (see [`RunPod`]).
#[derive(kube::Resource, Clone, Debug, Default, serde::Deserialize)]
#[resource(inherit = "Job")]
pub struct RunJob {
    /// The Job's metadata.
    pub metadata: ObjectMeta,
    /// The Job's status.
    pub status: Option<JobStatus>,
}

impl From<RunJob> for Job {
    fn from(j: RunJob) -> Job {
        Job {
            metadata: j.metadata,
            spec: None,
            status: j.status,
        }
    }
}

/// What of a run's Pod is kept in the cache: what [`observe`] reads and what finds the
/// pod's session (its name, namespace and the session and run labels), nothing else.
pub fn slim_pod(pod: &mut RunPod) {
    pod.metadata = slim_meta(std::mem::take(&mut pod.metadata), false);
    pod.status = pod.status.take().map(|st| PodStatus {
        phase: st.phase,
        reason: st.reason,
        message: st.message,
        conditions: st.conditions.map(|cs| {
            cs.into_iter()
                .filter(|c| c.type_ == "PodScheduled" && c.status == "False")
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    ..PodCondition::default()
                })
                .collect()
        }),
        container_statuses: st.container_statuses.map(|cs| {
            cs.into_iter()
                .filter(|c| c.name == CONTAINER)
                .map(|c| ContainerStatus {
                    name: c.name,
                    state: c.state.map(|s| ContainerState {
                        running: s.running.map(|_| Default::default()),
                        terminated: s.terminated.map(|t| ContainerStateTerminated {
                            exit_code: t.exit_code,
                            signal: t.signal,
                            reason: t.reason,
                            message: t.message,
                            ..ContainerStateTerminated::default()
                        }),
                        waiting: s.waiting.map(|w| ContainerStateWaiting {
                            reason: w.reason,
                            message: w.message,
                        }),
                    }),
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

/// What of a run's Job is kept in the cache: its identity, its owner (the session it
/// triggers), its `Failed` conditions and (a files runner's Job ending) its counts of
/// succeeded and failed pods.
pub fn slim_job(job: &mut RunJob) {
    job.metadata = slim_meta(std::mem::take(&mut job.metadata), true);
    job.status = job.status.take().map(|st| JobStatus {
        conditions: st
            .conditions
            .map(|cs| cs.into_iter().filter(|c| c.type_ == "Failed").collect()),
        succeeded: st.succeeded,
        failed: st.failed,
        ..JobStatus::default()
    });
}

fn slim_meta(m: ObjectMeta, owners: bool) -> ObjectMeta {
    ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        labels: m.labels.map(|mut l| {
            l.retain(|k, _| k == SESSION_LABEL || k == RUN_LABEL || k == FILES_LABEL);
            l
        }),
        owner_references: if owners { m.owner_references } else { None },
        ..ObjectMeta::default()
    }
}

/// The runner container's status.
fn container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)
}

fn terminated_code(c: &ContainerStatus) -> Option<i32> {
    Some(c.state.as_ref()?.terminated.as_ref()?.exit_code)
}

/// Why a Job failed as a whole (its deadline passed), if it did.
fn job_failure(job: &Job) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "Failed"
                && c.status == "True"
                && c.reason.as_deref() == Some("DeadlineExceeded")
        })
        .map(|c| {
            (
                "DeadlineExceeded".to_owned(),
                c.message
                    .clone()
                    .unwrap_or_else(|| "the Job ran past its deadline".into()),
            )
        })
}

/// The last lines of a termination message (the log's tail with `FallbackToLogsOnError`).
fn tail(message: Option<&str>) -> Vec<String> {
    let lines: Vec<String> = message
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    lines[lines.len().saturating_sub(20)..].to_vec()
}

#[cfg(test)]
mod tests;
