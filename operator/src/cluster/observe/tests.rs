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
