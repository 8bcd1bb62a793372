use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use model::session::{AgenticSessionSpec, AgenticSessionStatus};

use super::*;

fn at(secs: i64) -> Context {
    Context {
        now: Timestamp::from_second(1_800_000_000 + secs).unwrap(),
        default_inactivity_timeout: 86_400,
        default_model: "claude-sonnet-4-6".into(),
        project_inactivity_timeout: None,
        unhandled_messages: false,
        no_room: None,
        make_room: false,
    }
}

fn session(phase: Phase, annotations: &[(&str, &str)]) -> AgenticSession {
    let mut s = AgenticSession::new("session-1", AgenticSessionSpec::default());
    s.metadata.generation = Some(1);
    if !annotations.is_empty() {
        s.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
    }
    s.status = Some(AgenticSessionStatus {
        phase,
        start_time: Some(Time(at(0).now)),
        ..Default::default()
    });
    s
}

/// Applies a plan's status the way a driver would.
fn apply(mut s: AgenticSession, plan: &Plan) -> AgenticSession {
    if let Some(st) = &plan.status {
        s.status = Some(st.clone());
    }
    if plan.clear_desired_phase
        && let Some(a) = s.metadata.annotations.as_mut()
    {
        for k in model::annotations::REQUEST_ANNOTATIONS {
            a.remove(k);
        }
    }
    s
}

fn phase_of(plan: &Plan) -> Phase {
    plan.status.as_ref().expect("status changes").phase
}

fn condition<'a>(plan: &'a Plan, type_: &str) -> &'a Condition {
    plan.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition set")
}

#[test]
fn pending_starts_a_new_runner() {
    let mut s = session(Phase::Pending, &[]);
    s.status = None;
    let plan = plan(&s, &Runner::Absent, &at(5));
    assert_eq!(plan.action, Some(Action::Start { resume: false }));
    assert_eq!(phase_of(&plan), Phase::Creating);
    assert_eq!(plan.event.as_ref().unwrap().phase, Phase::Creating);
    let st = plan.status.as_ref().unwrap();
    assert_eq!(st.start_time, Some(Time(at(5).now)));
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(condition(&plan, condition::RUNNER_CREATED).status, "True");
}

#[test]
fn a_run_records_the_model_it_uses() {
    // A session that names none (made with kubectl): the default, so `kubectl get` shows it.
    let s = session(Phase::Pending, &[]);
    let plan = plan(&s, &Runner::Absent, &at(5));
    assert_eq!(
        plan.status.as_ref().unwrap().model.as_deref(),
        Some("claude-sonnet-4-6")
    );
    let mut s = session(Phase::Pending, &[]);
    s.spec.llm_settings = Some(model::session::LlmSettings {
        model: Some("claude-opus-4-6".into()),
        ..Default::default()
    });
    let plan = super::plan(&s, &Runner::Absent, &at(5));
    assert_eq!(
        plan.status.as_ref().unwrap().model.as_deref(),
        Some("claude-opus-4-6")
    );
}

#[test]
fn pending_with_stop_requested_never_starts() {
    let s = session(Phase::Pending, &[(DESIRED_PHASE, DESIRED_STOPPED)]);
    let plan = plan(&s, &Runner::Absent, &at(1));
    assert_eq!(plan.action, None);
    assert_eq!(phase_of(&plan), Phase::Stopped);
    assert!(plan.clear_desired_phase);
    assert_eq!(
        plan.status.unwrap().stopped_reason,
        Some(StoppedReason::User)
    );
}

#[test]
fn creating_becomes_running_when_the_runner_connects() {
    let s = session(Phase::Creating, &[]);
    assert_eq!(
        plan(&s, &Runner::Alive { connected: false }, &at(1)).status,
        None
    );
    let p = plan(&s, &Runner::Alive { connected: true }, &at(1));
    assert_eq!(phase_of(&p), Phase::Running);
    assert_eq!(condition(&p, condition::READY).status, "True");
    assert_eq!(p.action, None);
}

#[test]
fn exit_codes_decide_completed_or_failed() {
    let s = session(Phase::Running, &[]);
    let exit = |code: Option<i32>, signal: Option<i32>| {
        Runner::Exited(Exit {
            code,
            signal,
            stderr_tail: vec!["boom".into()],
            summary: None,
            reason: None,
        })
    };

    let ok = plan(&s, &exit(Some(0), None), &at(9));
    assert_eq!(phase_of(&ok), Phase::Completed);
    assert_eq!(
        ok.status.as_ref().unwrap().completion_time,
        Some(Time(at(9).now))
    );
    assert_eq!(ok.status.unwrap().result.unwrap().exit_code, Some(0));

    let prereq = plan(&s, &exit(Some(2), None), &at(9));
    assert_eq!(phase_of(&prereq), Phase::Failed);
    assert_eq!(
        condition(&prereq, condition::READY).reason,
        "PrerequisiteFailed"
    );

    let crash = plan(&s, &exit(Some(1), None), &at(9));
    let ready = condition(&crash, condition::READY);
    assert_eq!(ready.reason, "RunnerExit");
    assert!(
        ready.message.contains("code 1") && ready.message.ends_with("boom"),
        "{}",
        ready.message
    );
    assert_eq!(
        crash.event.as_ref().unwrap().message.as_deref(),
        Some(ready.message.as_str())
    );

    let killed = plan(&s, &exit(None, Some(9)), &at(9));
    assert!(
        condition(&killed, condition::READY)
            .message
            .contains("signal 9")
    );
}

#[test]
fn a_lost_runner_fails_with_the_reason() {
    let s = session(Phase::Running, &[]);
    let p = plan(
        &s,
        &Runner::Lost {
            reason: "the runner exited while the server was down".into(),
        },
        &at(3),
    );
    assert_eq!(phase_of(&p), Phase::Failed);
    assert_eq!(condition(&p, condition::READY).reason, "RunnerLost");
    assert!(
        condition(&p, condition::READY)
            .message
            .contains("server was down")
    );
}

#[test]
fn stop_goes_through_stopping_to_stopped() {
    let s = session(Phase::Running, &[(DESIRED_PHASE, DESIRED_STOPPED)]);
    let p = plan(&s, &Runner::Alive { connected: true }, &at(2));
    assert_eq!(
        p.action,
        Some(Action::Stop {
            reason: StoppedReason::User
        })
    );
    assert_eq!(phase_of(&p), Phase::Stopping);
    assert!(p.clear_desired_phase);

    let s = apply(s, &p);
    // Still alive: the stop is re-issued (idempotent), phase unchanged.
    let again = plan(&s, &Runner::Alive { connected: true }, &at(3));
    assert_eq!(
        again.action,
        Some(Action::Stop {
            reason: StoppedReason::User
        })
    );
    assert_eq!(again.status, None);

    let done = plan(
        &s,
        &Runner::Exited(Exit {
            code: None,
            signal: Some(15),
            ..Default::default()
        }),
        &at(4),
    );
    assert_eq!(phase_of(&done), Phase::Stopped);
    let st = done.status.unwrap();
    assert_eq!(st.stopped_reason, Some(StoppedReason::User));
    assert_eq!(st.completion_time, Some(Time(at(4).now)));
}

#[test]
fn a_runner_that_ends_before_the_stop_is_applied_counts_as_stopped() {
    let s = session(Phase::Running, &[(DESIRED_PHASE, DESIRED_STOPPED)]);
    let p = plan(
        &s,
        &Runner::Exited(Exit {
            code: Some(0),
            ..Default::default()
        }),
        &at(2),
    );
    assert_eq!(phase_of(&p), Phase::Stopped);
}

#[test]
fn stop_reason_annotation_is_kept() {
    let s = session(
        Phase::Running,
        &[
            (DESIRED_PHASE, DESIRED_STOPPED),
            (STOP_REASON, "inactivity"),
        ],
    );
    let p = plan(&s, &Runner::Alive { connected: true }, &at(2));
    assert_eq!(
        p.action,
        Some(Action::Stop {
            reason: StoppedReason::Inactivity
        })
    );
}

#[test]
fn timeout_and_inactivity_stop_a_running_session() {
    let mut s = session(Phase::Running, &[]);
    s.spec.timeout = Some(60);
    s.spec.inactivity_timeout = Some(30);

    let early = plan(&s, &Runner::Alive { connected: true }, &at(10));
    assert_eq!(early.action, None);
    assert_eq!(
        early.requeue_after,
        Some(Duration::from_secs(20)),
        "next check at the inactivity deadline"
    );

    let idle = plan(&s, &Runner::Alive { connected: true }, &at(31));
    assert_eq!(
        idle.action,
        Some(Action::Stop {
            reason: StoppedReason::Inactivity
        })
    );
    assert_eq!(
        condition(&idle, condition::READY).reason,
        "InactivityTimeout"
    );

    // Activity pushes the inactivity deadline, not the timeout.
    s.status.as_mut().unwrap().last_activity_time = Some(Time(at(50).now));
    let busy = plan(&s, &Runner::Alive { connected: true }, &at(55));
    assert_eq!(busy.requeue_after, Some(Duration::from_secs(5)));
    let late = plan(&s, &Runner::Alive { connected: true }, &at(61));
    assert_eq!(
        late.action,
        Some(Action::Stop {
            reason: StoppedReason::Timeout
        })
    );
}

/// A record that bypassed validation (edited in the cluster, or stored before the caps)
/// must not overflow the deadline arithmetic: that panicked the driver (debug) or stopped
/// the session at once (release).
#[test]
fn huge_timeouts_never_overflow() {
    let mut s = session(Phase::Running, &[]);
    s.spec.timeout = Some(i64::MAX);
    s.spec.inactivity_timeout = Some(i64::MAX);
    let p = plan(&s, &Runner::Alive { connected: true }, &at(10));
    assert_eq!(p.action, None, "not expired");
    assert!(p.requeue_after.is_some());
    s.status.as_mut().unwrap().sdk_restart_count = Some(i64::MAX);
    s.spec.timeout = Some(i64::MIN);
    let p = plan(&s, &Runner::Alive { connected: true }, &at(10));
    assert_eq!(p.action, None, "a negative timeout is no timeout");
}

#[test]
fn inactivity_falls_back_to_project_then_default_and_zero_disables() {
    let s = session(Phase::Running, &[]);
    let mut ctx = at(100);
    ctx.project_inactivity_timeout = Some(50);
    assert_eq!(
        plan(&s, &Runner::Alive { connected: true }, &ctx).action,
        Some(Action::Stop {
            reason: StoppedReason::Inactivity
        })
    );
    ctx.project_inactivity_timeout = None;
    ctx.default_inactivity_timeout = 99;
    assert!(
        plan(&s, &Runner::Alive { connected: true }, &ctx)
            .action
            .is_some()
    );
    ctx.default_inactivity_timeout = 0;
    let off = plan(&s, &Runner::Alive { connected: true }, &ctx);
    assert_eq!((off.action, off.requeue_after), (None, None));
}

#[test]
fn continue_restarts_a_finished_session_and_resumes() {
    for phase in [Phase::Completed, Phase::Failed, Phase::Stopped] {
        let mut s = session(phase, &[(DESIRED_PHASE, DESIRED_RUNNING)]);
        let st = s.status.as_mut().unwrap();
        st.completion_time = Some(Time(at(5).now));
        st.stopped_reason = Some(StoppedReason::User);
        st.sdk_session_id = Some("conversation-1".into());
        let p = plan(&s, &Runner::Absent, &at(100));
        assert_eq!(p.action, Some(Action::Start { resume: true }), "{phase}");
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase, Phase::Creating);
        assert_eq!(
            (st.completion_time.clone(), st.stopped_reason),
            (None, None)
        );
        assert_eq!(st.start_time, Some(Time(at(100).now)));
        assert_eq!(st.sdk_restart_count, Some(1));
        assert!(p.clear_desired_phase);
    }
}

#[test]
fn finished_sessions_stay_put_without_a_request() {
    for phase in [Phase::Completed, Phase::Failed, Phase::Stopped] {
        let s = session(phase, &[]);
        assert_eq!(
            plan(&s, &Runner::Absent, &at(1)),
            Plan::default(),
            "{phase}"
        );
    }
}

#[test]
fn condition_transition_time_moves_only_when_status_flips() {
    let s = session(Phase::Creating, &[]);
    let p = plan(&s, &Runner::Alive { connected: true }, &at(1));
    let s = apply(s, &p);
    let first = condition(&p, condition::READY).last_transition_time.clone();
    // Same status again later: no change at all.
    let again = plan(&s, &Runner::Alive { connected: true }, &at(2));
    assert_eq!(again.status, None);
    let stop = plan(
        &s,
        &Runner::Exited(Exit {
            code: Some(0),
            ..Default::default()
        }),
        &at(3),
    );
    assert_ne!(
        condition(&stop, condition::READY).last_transition_time,
        first
    );
}

#[test]
fn continue_without_a_conversation_runs_fresh() {
    let s = session(Phase::Failed, &[(DESIRED_PHASE, DESIRED_RUNNING)]);
    assert!(!s.has_conversation());
    let p = plan(&s, &Runner::Absent, &at(10));
    assert_eq!(p.action, Some(Action::Start { resume: false }));
    assert_eq!(phase_of(&p), Phase::Creating);
}

#[test]
fn a_run_that_completes_with_unhandled_messages_goes_on() {
    let mut waiting = at(9);
    waiting.unhandled_messages = true;
    let mut s = session(Phase::Running, &[]);
    s.status.as_mut().unwrap().sdk_session_id = Some("c".into());
    let exit0 = Runner::Exited(Exit {
        code: Some(0),
        ..Default::default()
    });
    // First the run completes, and asks to be planned again at once ...
    let done = plan(&s, &exit0, &waiting);
    assert_eq!(phase_of(&done), Phase::Completed);
    assert_eq!(done.requeue_after, Some(Duration::ZERO));
    // ... then it goes on with what waits, resuming the conversation.
    let s = apply(s, &done);
    let next = plan(&s, &Runner::Absent, &waiting);
    assert_eq!(next.action, Some(Action::Start { resume: true }));
    assert_eq!(phase_of(&next), Phase::Creating);
    assert!(!next.clear_desired_phase);
    // Without waiting messages a completed session stays put; a failed one always does.
    assert_eq!(plan(&s, &Runner::Absent, &at(9)), Plan::default());
    let failed = session(Phase::Failed, &[]);
    assert_eq!(plan(&failed, &Runner::Absent, &waiting), Plan::default());
}

/// Kubernetes mode: the operator does not keep the log; the server's word
/// (`status.unhandledMessages`) is the same fact, decided by the same rule.
#[test]
fn the_servers_word_that_messages_wait_continues_a_completed_session() {
    let mut s = session(Phase::Completed, &[]);
    s.status.as_mut().unwrap().sdk_session_id = Some("c".into());
    s.status.as_mut().unwrap().unhandled_messages = Some(true);
    let next = plan(&s, &Runner::Absent, &at(9));
    assert_eq!(next.action, Some(Action::Start { resume: true }));
    assert_eq!(phase_of(&next), Phase::Creating);
    assert_eq!(
        next.status.as_ref().unwrap().unhandled_messages,
        None,
        "the run that starts takes what waits"
    );
    // A stopped session stays stopped until someone asks; a stop asked of a completed
    // session wins over what waits.
    let mut stopped = s.clone();
    stopped.status.as_mut().unwrap().phase = Phase::Stopped;
    assert_eq!(plan(&stopped, &Runner::Absent, &at(9)), Plan::default());
    let mut asked = session(Phase::Completed, &[(DESIRED_PHASE, DESIRED_STOPPED)]);
    asked.status.as_mut().unwrap().unhandled_messages = Some(true);
    let p = plan(&asked, &Runner::Absent, &at(9));
    assert_eq!(p.action, None);
    assert!(p.clear_desired_phase);
}

#[test]
fn a_waiting_runner_keeps_the_session_creating_and_says_why() {
    let s = session(Phase::Creating, &[]);
    let waiting = Runner::Waiting {
        reason: "Unschedulable".into(),
        message: "0/3 nodes are available: insufficient memory".into(),
    };
    let p = plan(&s, &waiting, &at(5));
    let ready = condition(&p, condition::READY);
    assert_eq!(ready.reason, "Unschedulable");
    assert!(ready.message.contains("insufficient memory"));
    assert_eq!(phase_of(&p), Phase::Creating);
    assert_eq!(p.event, None);
    // A stop of a waiting runner goes through Stopping (the runner must be removed).
    let stop = session(Phase::Creating, &[(DESIRED_PHASE, DESIRED_STOPPED)]);
    assert_eq!(phase_of(&plan(&stop, &waiting, &at(6))), Phase::Stopping);
}

#[test]
fn an_unstartable_runner_fails_with_its_reason() {
    let s = session(Phase::Creating, &[]);
    let p = plan(
        &s,
        &Runner::Unstartable {
            reason: "ImagePullBackOff".into(),
            message: "cannot pull image runner:latest".into(),
        },
        &at(5),
    );
    assert_eq!(phase_of(&p), Phase::Failed);
    let ready = condition(&p, condition::READY);
    assert_eq!(
        (ready.reason.as_str(), ready.message.as_str()),
        ("ImagePullBackOff", "cannot pull image runner:latest")
    );
}

#[test]
fn an_exit_reason_names_the_failure() {
    let s = session(Phase::Running, &[]);
    let oom = Runner::Exited(Exit {
        code: Some(137),
        reason: Some("OOMKilled".into()),
        stderr_tail: vec!["allocating".into()],
        ..Default::default()
    });
    let p = plan(&s, &oom, &at(5));
    let ready = condition(&p, condition::READY);
    assert_eq!(ready.reason, "OOMKilled");
    assert!(
        ready.message.contains("OOMKilled (exit code 137)")
            && ready.message.ends_with("allocating"),
        "{}",
        ready.message
    );
    // A clean exit stays Completed whatever the reason says.
    let done = Runner::Exited(Exit {
        code: Some(0),
        reason: Some("Completed".into()),
        ..Default::default()
    });
    assert_eq!(phase_of(&plan(&s, &done, &at(5))), Phase::Completed);
}

#[test]
fn without_room_a_session_waits_in_pending_and_says_why() {
    let s = session(Phase::Pending, &[]);
    let mut ctx = at(10);
    ctx.no_room = Some("2 of 2 sessions are running".into());
    let p = plan(&s, &Runner::Absent, &ctx);
    assert_eq!(p.action, None);
    assert_eq!(phase_of(&p), Phase::Pending);
    let ready = condition(&p, condition::READY);
    assert_eq!(
        (ready.reason.as_str(), ready.message.as_str()),
        (WAITING_FOR_ROOM, "2 of 2 sessions are running")
    );
    // With room it starts.
    let waited = apply(s, &p);
    let p = plan(&waited, &Runner::Absent, &at(20));
    assert_eq!(p.action, Some(Action::Start { resume: false }));
    assert_eq!(phase_of(&p), Phase::Creating);
}

#[test]
fn a_restart_without_room_waits_and_then_resumes() {
    let mut s = session(Phase::Completed, &[(DESIRED_PHASE, DESIRED_RUNNING)]);
    s.status.as_mut().unwrap().sdk_session_id = Some("conv-1".into());
    let mut ctx = at(10);
    ctx.no_room = Some("full".into());
    let p = plan(&s, &Runner::Absent, &ctx);
    assert_eq!(p.action, None);
    assert!(p.clear_desired_phase);
    assert_eq!(phase_of(&p), Phase::Pending);
    let mut waited = apply(s, &p);
    waited.metadata.annotations = None;
    let p = plan(&waited, &Runner::Absent, &at(20));
    assert_eq!(p.action, Some(Action::Start { resume: true }));
}

/// The start request of a run that ended before the request was taken (its removal lost a
/// race with another write) does not start the session once more.
#[test]
fn a_start_request_left_on_a_run_that_ends_does_not_start_another() {
    let mut s = session(Phase::Creating, &[(DESIRED_PHASE, DESIRED_RUNNING)]);
    s.status.as_mut().unwrap().sdk_session_id = Some("c".into());
    let exit0 = Runner::Exited(Exit {
        code: Some(0),
        ..Default::default()
    });
    let done = plan(&s, &exit0, &at(5));
    assert_eq!(phase_of(&done), Phase::Completed);
    assert!(
        done.clear_desired_phase,
        "the request was served by this run"
    );
    let s = apply(s, &done);
    assert_eq!(plan(&s, &Runner::Absent, &at(6)), Plan::default());
    // Before the runner exists (the Job being made) the request is taken as well.
    let creating = session(Phase::Creating, &[(DESIRED_PHASE, DESIRED_RUNNING)]);
    assert!(plan(&creating, &Runner::Absent, &at(1)).clear_desired_phase);
}

/// A running session whose slot the driver needs (its agent waits for a person) stops with
/// reason `capacity`, and ends Stopped for that reason once its runner is gone; a session
/// still being created is never taken.
#[test]
fn a_session_stopped_to_make_room_says_so() {
    let s = session(Phase::Running, &[]);
    let ctx = Context {
        make_room: true,
        ..at(5)
    };
    let p = plan(&s, &Runner::Alive { connected: true }, &ctx);
    assert_eq!(phase_of(&p), Phase::Stopping);
    assert_eq!(
        p.action,
        Some(Action::Stop {
            reason: StoppedReason::Capacity
        })
    );
    let stopping = apply(s, &p);
    let gone = plan(
        &stopping,
        &Runner::Exited(Exit {
            code: Some(0),
            ..Default::default()
        }),
        &at(6),
    );
    assert_eq!(phase_of(&gone), Phase::Stopped);
    assert_eq!(
        gone.status.unwrap().stopped_reason,
        Some(StoppedReason::Capacity)
    );
    let creating = session(Phase::Creating, &[]);
    assert_ne!(
        plan(&creating, &Runner::Alive { connected: false }, &ctx).action,
        Some(Action::Stop {
            reason: StoppedReason::Capacity
        })
    );
}

#[test]
fn a_restart_stops_the_runner_then_starts_again_with_the_conversation() {
    let mut s = session(Phase::Running, &[(DESIRED_PHASE, DESIRED_RESTART)]);
    s.status.as_mut().unwrap().sdk_session_id = Some("conversation-1".into());
    let p = plan(&s, &Runner::Alive { connected: true }, &at(2));
    assert_eq!(
        p.action,
        Some(Action::Stop {
            reason: StoppedReason::Restart
        })
    );
    assert_eq!(phase_of(&p), Phase::Stopping);
    assert!(
        !p.clear_desired_phase,
        "the request stays until the runner is gone"
    );
    let s = apply(s, &p);
    // Still alive: the stop is re-issued, nothing else.
    let again = plan(&s, &Runner::Alive { connected: true }, &at(3));
    assert_eq!(
        again.action,
        Some(Action::Stop {
            reason: StoppedReason::Restart
        })
    );
    assert_eq!(again.status, None);
    // Gone: it starts again at once, resuming, never Stopped.
    let exit = Runner::Exited(Exit {
        code: None,
        signal: Some(15),
        ..Default::default()
    });
    let p = plan(&s, &exit, &at(4));
    assert_eq!(p.action, Some(Action::Start { resume: true }));
    let st = p.status.as_ref().unwrap();
    assert_eq!((st.phase, st.stopped_reason), (Phase::Creating, None));
    assert!(p.clear_desired_phase);
    let s = apply(s, &p);
    assert_eq!(s.annotation(DESIRED_PHASE), None);

    // A stop asked while it restarts wins: it stops and stays stopped.
    let mut s = session(Phase::Stopping, &[(DESIRED_PHASE, DESIRED_STOPPED)]);
    s.status.as_mut().unwrap().stopped_reason = Some(StoppedReason::Restart);
    let p = plan(&s, &Runner::Alive { connected: true }, &at(5));
    assert_eq!(
        p.action,
        Some(Action::Stop {
            reason: StoppedReason::User
        })
    );
    let s = apply(s, &p);
    let p = plan(&s, &exit, &at(6));
    assert_eq!(phase_of(&p), Phase::Stopped);
    assert_eq!(p.action, None);
    assert_eq!(p.status.unwrap().stopped_reason, Some(StoppedReason::User));
    // Also when the runner is already gone as the stop arrives.
    let mut s = session(Phase::Stopping, &[(DESIRED_PHASE, DESIRED_STOPPED)]);
    s.status.as_mut().unwrap().stopped_reason = Some(StoppedReason::Restart);
    let p = plan(&s, &exit, &at(6));
    assert_eq!((phase_of(&p), p.action.clone()), (Phase::Stopped, None));
    assert_eq!(p.status.unwrap().stopped_reason, Some(StoppedReason::User));

    // A request seen again once a later run is under way (its removal lost to another
    // change of the session) restarts nothing twice.
    let mut s = session(
        Phase::Creating,
        &[(DESIRED_PHASE, DESIRED_RESTART), (RESTART_OF_RUN, "1")],
    );
    s.status.as_mut().unwrap().run_generation = Some(2);
    let p = plan(&s, &Runner::Alive { connected: true }, &at(8));
    assert_eq!(p.action, None);
    assert!(p.clear_desired_phase);
    assert_eq!(phase_of(&p), Phase::Running);
    // Asked of the run under way: it restarts.
    s.status.as_mut().unwrap().run_generation = Some(1);
    let p = plan(&s, &Runner::Alive { connected: true }, &at(8));
    assert_eq!(
        p.action,
        Some(Action::Stop {
            reason: StoppedReason::Restart
        })
    );

    // A finished session is not restarted by a late request: its next run uses the change.
    for phase in [Phase::Completed, Phase::Stopped] {
        let s = session(phase, &[(DESIRED_PHASE, DESIRED_RESTART)]);
        let p = plan(&s, &Runner::Absent, &at(7));
        assert_eq!(
            (p.action.clone(), p.clear_desired_phase),
            (None, true),
            "{phase}"
        );
    }
}
