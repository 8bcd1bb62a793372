//! One test per row of the phase table: what the cluster reports → what the lifecycle sees.

use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    PodCondition, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::*;

fn job() -> Job {
    Job::default()
}

fn pod_with(state: ContainerState) -> Pod {
    Pod {
        metadata: ObjectMeta {
            creation_timestamp: Some(Time(Timestamp::from_second(1_800_000_000).unwrap())),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: CONTAINER.into(),
                state: Some(state),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

fn waiting(reason: &str) -> Pod {
    pod_with(ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some(format!("{reason}: details")),
        }),
        ..ContainerState::default()
    })
}

fn terminated(code: i32, reason: &str, message: &str) -> Pod {
    pod_with(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    })
}

#[test]
fn no_job_is_absent_before_running_and_lost_after() {
    assert_eq!(observe(None, &[], false, false), Runner::Absent);
    assert!(matches!(
        observe(None, &[], false, true),
        Runner::Lost { .. }
    ));
}

#[test]
fn a_job_without_a_pod_waits_and_a_vanished_pod_is_lost() {
    assert!(matches!(
        observe(Some(&job()), &[], false, false),
        Runner::Waiting { .. }
    ));
    assert!(matches!(
        observe(Some(&job()), &[], true, true),
        Runner::Lost { .. }
    ));
}

#[test]
fn a_running_container_is_alive_and_connected_when_the_server_says_so() {
    let running = pod_with(ContainerState {
        running: Some(ContainerStateRunning::default()),
        ..ContainerState::default()
    });
    assert_eq!(
        observe(Some(&job()), std::slice::from_ref(&running), false, false),
        Runner::Alive { connected: false }
    );
    assert_eq!(
        observe(Some(&job()), &[running], true, false),
        Runner::Alive { connected: true }
    );
}

#[test]
fn exit_codes_and_reasons() {
    for (code, reason, want_reason) in [
        (0, "Completed", None),
        (2, "Error", None),
        (1, "Error", None),
        (137, "OOMKilled", Some("OOMKilled")),
    ] {
        let pod = terminated(code, reason, "line 1\nline 2\n");
        match observe(Some(&job()), &[pod], true, true) {
            Runner::Exited(e) => {
                assert_eq!(e.code, Some(code));
                assert_eq!(e.reason.as_deref(), want_reason);
                assert_eq!(e.stderr_tail, ["line 1", "line 2"]);
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

#[test]
fn images_and_configuration_that_cannot_work_are_unstartable() {
    for reason in [
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
    ] {
        match observe(Some(&job()), &[waiting(reason)], false, false) {
            Runner::Unstartable { reason: r, message } => {
                assert_eq!(r, reason);
                assert!(message.contains("details"));
            }
            other => panic!("{reason}: {other:?}"),
        }
    }
    // A first failed pull is retried: it waits.
    assert!(matches!(
        observe(Some(&job()), &[waiting("ErrImagePull")], false, false),
        Runner::Waiting { .. }
    ));
    assert!(matches!(
        observe(Some(&job()), &[waiting("ContainerCreating")], false, false),
        Runner::Waiting { .. }
    ));
}

#[test]
fn an_unschedulable_pod_waits_with_the_schedulers_message() {
    let pod = Pod {
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some("0/3 nodes are available: 3 Insufficient memory.".into()),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    assert_eq!(
        observe(Some(&job()), &[pod], false, false),
        Runner::Waiting {
            reason: "Unschedulable".into(),
            message: "0/3 nodes are available: 3 Insufficient memory.".into()
        }
    );
}

#[test]
fn eviction_and_deadline_fail_with_their_reason() {
    let evicted = Pod {
        status: Some(PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            message: Some("The node was low on resource: memory.".into()),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    match observe(Some(&job()), &[evicted], true, true) {
        Runner::Exited(e) => assert_eq!(e.reason.as_deref(), Some("Evicted")),
        other => panic!("{other:?}"),
    }
    let late = Job {
        status: Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("DeadlineExceeded".into()),
                message: Some("Job was active longer than specified deadline".into()),
                ..JobCondition::default()
            }]),
            ..JobStatus::default()
        }),
        ..Job::default()
    };
    match observe(Some(&late), &[], true, true) {
        Runner::Exited(e) => assert_eq!(e.reason.as_deref(), Some("DeadlineExceeded")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_newest_pod_speaks_for_the_run() {
    let mut old = terminated(1, "Error", "old");
    old.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1_700_000_000).unwrap()));
    let new = waiting("ContainerCreating");
    assert!(matches!(
        observe(Some(&job()), &[old, new], false, false),
        Runner::Waiting { .. }
    ));
}

#[test]
fn a_runner_being_stopped_runs_until_its_pod_is_gone() {
    let now = Some(Time(Timestamp::from_second(1_800_000_100).unwrap()));
    let mut stopping = pod_with(ContainerState {
        running: Some(ContainerStateRunning::default()),
        ..ContainerState::default()
    });
    stopping.metadata.deletion_timestamp = now.clone();
    let mut deleted_job = job();
    deleted_job.metadata.deletion_timestamp = now;
    assert_eq!(
        observe(Some(&deleted_job), &[stopping], true, true),
        Runner::Alive { connected: true }
    );
    // The Job going and no pod left: the runner is gone.
    assert!(matches!(
        observe(Some(&deleted_job), &[], true, false),
        Runner::Lost { .. }
    ));
}

#[test]
fn the_cached_pod_and_job_observe_as_the_full_ones_do() {
    use std::collections::BTreeMap;
    let full = |mut p: Pod, created: i64| {
        p.metadata.name = Some(format!("run-{created}"));
        p.metadata.namespace = Some("p".into());
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        p.metadata.labels = Some(BTreeMap::from([
            (SESSION_LABEL.into(), "s".into()),
            (RUN_LABEL.into(), "1".into()),
            ("controller-uid".into(), "u".into()),
        ]));
        p.metadata.annotations = Some(BTreeMap::from([("a".into(), "b".into())]));
        p.spec = Some(Default::default());
        let st = p.status.get_or_insert_with(Default::default);
        st.host_ip = Some("10.0.0.1".into());
        st.conditions
            .get_or_insert_with(Vec::new)
            .push(PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..PodCondition::default()
            });
        for c in st.container_statuses.iter_mut().flatten() {
            c.image = "runner:latest".into();
        }
        if let Some(cs) = &mut st.container_statuses {
            cs.push(ContainerStatus {
                name: "keeper".into(),
                ..ContainerStatus::default()
            });
        }
        p
    };
    let running = pod_with(ContainerState {
        running: Some(ContainerStateRunning::default()),
        ..ContainerState::default()
    });
    let unscheduled = Pod {
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some("no node".into()),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    let evicted = Pod {
        status: Some(PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            message: Some("low on memory".into()),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    let mut deleting = running.clone();
    deleting.metadata.deletion_timestamp =
        Some(Time(Timestamp::from_second(1_800_000_100).unwrap()));
    let sets: Vec<Vec<Pod>> = vec![
        vec![],
        vec![waiting("ContainerCreating")],
        vec![waiting("ImagePullBackOff")],
        vec![terminated(137, "OOMKilled", "line 1\nline 2")],
        vec![terminated(0, "Completed", "")],
        vec![running.clone()],
        vec![unscheduled],
        vec![evicted],
        vec![deleting],
        vec![terminated(1, "Error", "old"), waiting("ContainerCreating")],
    ];
    let late = Job {
        status: Some(JobStatus {
            conditions: Some(vec![
                JobCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some("DeadlineExceeded".into()),
                    message: Some("past its deadline".into()),
                    ..JobCondition::default()
                },
                JobCondition {
                    type_: "Complete".into(),
                    status: "False".into(),
                    ..JobCondition::default()
                },
            ]),
            active: Some(1),
            ..JobStatus::default()
        }),
        spec: Some(Default::default()),
        ..Job::default()
    };
    // As the watch decodes them (no spec read), then slimmed as the cache keeps them.
    fn decoded<T: serde::de::DeserializeOwned>(full: &impl serde::Serialize) -> T {
        serde_json::from_value(serde_json::to_value(full).unwrap()).unwrap()
    }
    for job in [job(), late] {
        let mut slim: RunJob = decoded(&job);
        slim_job(&mut slim);
        let slim = Job::from(slim);
        for pods in &sets {
            let pods: Vec<Pod> = pods
                .iter()
                .enumerate()
                .map(|(i, p)| full(p.clone(), 1_800_000_000 + i as i64))
                .collect();
            let slim_pods: Vec<Pod> = pods
                .iter()
                .map(|p| {
                    let mut p: RunPod = decoded(p);
                    slim_pod(&mut p);
                    Pod::from(p)
                })
                .collect();
            for (connected, was_running) in [(false, false), (true, true), (false, true)] {
                assert_eq!(
                    observe(Some(&slim), &slim_pods, connected, was_running),
                    observe(Some(&job), &pods, connected, was_running),
                    "{pods:?}"
                );
            }
            for p in &slim_pods {
                // What finds the pod's session stays; the rest goes.
                let labels = p.metadata.labels.clone().unwrap_or_default();
                assert_eq!(labels.len(), 2, "{labels:?}");
                assert!(p.metadata.name.is_some() && p.metadata.namespace.is_some());
                assert!(p.spec.is_none() && p.metadata.annotations.is_none());
                let st = p.status.as_ref().unwrap();
                assert!(st.host_ip.is_none());
                assert!(
                    st.container_statuses
                        .iter()
                        .flatten()
                        .all(|c| c.name == CONTAINER && c.image.is_empty())
                );
            }
        }
    }
}
