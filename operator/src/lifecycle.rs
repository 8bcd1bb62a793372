//! The session state machine: a pure function from what the session asks for and what is
//! observed of its runner to a [`Plan`]. Drivers only apply plans.
//!
//! ```text
//! Pending ─start─▶ Creating ─connected─▶ Running ─exit 0─▶ Completed
//!    │                │  └──exit≠0 / lost──────┴─exit≠0──▶ Failed
//!    │                └──────stop──▶ Stopping ◀──stop / timeout / inactivity
//!    └─stop─▶ Stopped ◀──runner gone── Stopping
//! Stopped | Completed | Failed ─desired Running─▶ Creating (resumes the conversation)
//! ```

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use model::annotations::{
    DESIRED_PHASE, DESIRED_RESTART, DESIRED_RUNNING, DESIRED_STOPPED, RESTART_OF_RUN, STOP_REASON,
};
use model::protocol::PhaseChange;

use model::session::{AgenticSessionStatus, RunSummary, StoppedReason};
use model::{AgenticSession, Phase};

use model::runner_env::exit as exit_code;

/// What is observed of the session's runner: a driver maps what it sees (a process, a Job and
/// its Pod) to one of these.
#[derive(Debug, Clone, PartialEq)]
pub enum Runner {
    /// No runner exists and none is known to have existed for this run.
    Absent,
    /// The runner was created but does not run yet, for a reason that may pass (a pod waiting
    /// to be scheduled, its image being pulled).
    Waiting {
        /// Short machine-readable reason (`Unschedulable`, `ContainerCreating` ...).
        reason: String,
        /// What the platform or the cluster says about it.
        message: String,
    },
    /// The runner cannot start and will not without a change (an image that cannot be
    /// pulled, a configuration that cannot be satisfied, an executable that cannot run).
    Unstartable {
        /// Short machine-readable reason (`ImagePullBackOff`, `CreateContainerConfigError` ...).
        reason: String,
        /// What went wrong.
        message: String,
    },
    /// A runner runs; `connected` once it said hello to the server.
    Alive {
        /// Whether it is connected to the server now.
        connected: bool,
    },
    /// The runner exited.
    Exited(Exit),
    /// A runner existed but is gone without an exit status (it died while the server was
    /// down, or could not be started).
    Lost {
        /// Human-readable explanation.
        reason: String,
    },
}

/// How a runner ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exit {
    /// Exit code, when it exited normally.
    pub code: Option<i32>,
    /// Signal that killed it, if any.
    pub signal: Option<i32>,
    /// Why it ended, when the driver knows more than the code (`OOMKilled`, `Evicted`,
    /// `DeadlineExceeded`).
    pub reason: Option<String>,
    /// Last lines of its standard error.
    pub stderr_tail: Vec<String>,
    /// Totals reported by the runner's final result event.
    pub summary: Option<RunSummary>,
}

/// Settings that shape decisions.
#[derive(Debug, Clone)]
pub struct Context {
    /// The current time.
    pub now: Timestamp,
    /// Inactivity timeout when neither the session nor its project sets one (seconds; 0 off).
    pub default_inactivity_timeout: i64,
    /// The model of a session that names none.
    pub default_model: String,
    /// The project's inactivity timeout, if it sets one.
    pub project_inactivity_timeout: Option<i64>,
    /// Whether the session's log holds user messages no agent has handled yet (sent while its
    /// last runner was finishing): a session that completes with such messages goes on. A
    /// driver that does not keep the log passes `false` and the fact arrives as
    /// `status.unhandledMessages` (Kubernetes mode: the server writes it); either tells.
    pub unhandled_messages: bool,
    /// Why no runner may start now (the cap on running sessions is reached), if so: a
    /// session that would start waits in `Pending` saying this, and starts when the driver
    /// plans it again with room.
    pub no_room: Option<String>,
    /// The driver needs this running session's slot for one that waits, and its agent waits
    /// for a person: stop it (reason `capacity`).
    pub make_room: bool,
}

/// What a driver must do for a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a runner; `resume` continues the earlier conversation.
    Start {
        /// Continue the previous Claude conversation instead of starting a new one (only when
        /// there is one: a session whose agent never started runs fresh).
        resume: bool,
    },
    /// Stop the runner: terminate it and everything it started.
    Stop {
        /// Why.
        reason: StoppedReason,
    },
}

/// The outcome of planning one session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The new status, when it changes.
    pub status: Option<AgenticSessionStatus>,
    /// Remove the desired-phase and stop-reason annotations: the request was taken.
    pub clear_desired_phase: bool,
    /// What the driver must do.
    pub action: Option<Action>,
    /// The phase change to record in the session's event log.
    pub event: Option<PhaseChange>,
    /// Plan again after this long even if nothing is observed to change (timeouts).
    pub requeue_after: Option<Duration>,
}

/// The reason of a session waiting in `Pending` for a free slot.
pub const WAITING_FOR_ROOM: &str = "WaitingForCapacity";

/// Condition types written by the operator.
pub mod condition {
    /// The runner is running and connected.
    pub const READY: &str = "Ready";
    /// A runner process (or Job) was created for the current run.
    pub const RUNNER_CREATED: &str = "RunnerCreated";
    /// The runner connected to the server.
    pub const RUNNER_STARTED: &str = "RunnerStarted";
}

/// Decides what should happen to `session` given what is observed of its runner.
pub fn plan(session: &AgenticSession, runner: &Runner, ctx: &Context) -> Plan {
    let mut st = session.status.clone().unwrap_or_default();
    let phase = st.phase;
    let desired = session.annotation(DESIRED_PHASE);
    let requested_reason = session
        .annotation(STOP_REASON)
        .and_then(StoppedReason::parse)
        .unwrap_or(StoppedReason::User);
    let generation = session.metadata.generation;
    let mut b = Builder {
        st: &mut st,
        ctx,
        generation,
        has_conversation: session.has_conversation(),
        model: session.model().unwrap_or(&ctx.default_model),
        plan: Plan::default(),
    };

    match phase {
        Phase::Pending if desired == Some(DESIRED_STOPPED) => {
            b.plan.clear_desired_phase = true;
            b.stopped(requested_reason);
        }
        Phase::Pending => {
            b.plan.clear_desired_phase = desired.is_some();
            // A restart that waited for room continues its conversation.
            b.start(b.has_conversation);
        }
        Phase::Creating | Phase::Running if desired == Some(DESIRED_STOPPED) => {
            b.plan.clear_desired_phase = true;
            match runner {
                Runner::Alive { .. } | Runner::Waiting { .. } => b.stopping(requested_reason),
                // The runner ended on its own before the stop was applied: the user's
                // intent decides the phase.
                Runner::Exited(exit) => {
                    b.record_result(exit);
                    b.stopped(requested_reason);
                }
                Runner::Absent | Runner::Lost { .. } | Runner::Unstartable { .. } => {
                    b.stopped(requested_reason)
                }
            }
        }
        Phase::Creating | Phase::Running
            if desired == Some(DESIRED_RESTART) && restart_served(session) =>
        {
            // A run after the one the restart was asked of serves it: only take the request.
            b.plan.clear_desired_phase = true;
            b.active(session, runner, phase);
        }
        Phase::Creating | Phase::Running if desired == Some(DESIRED_RESTART) => match runner {
            // The request stays until the runner is gone: then the session starts again.
            Runner::Alive { .. } | Runner::Waiting { .. } => b.stopping(StoppedReason::Restart),
            Runner::Exited(_)
            | Runner::Absent
            | Runner::Lost { .. }
            | Runner::Unstartable { .. } => {
                b.plan.clear_desired_phase = true;
                b.restart();
            }
        },
        Phase::Running if ctx.make_room && matches!(runner, Runner::Alive { .. }) => {
            b.plan.clear_desired_phase = desired.is_some();
            b.stopping(StoppedReason::Capacity);
        }
        Phase::Creating | Phase::Running => {
            // A start asked of an active session is served by the run under way, whatever
            // its runner is doing: left in place, a run that ends before it is taken (a quick
            // run, a write that lost a race) would be started again.
            b.plan.clear_desired_phase = desired.is_some();
            b.active(session, runner, phase);
        }
        Phase::Stopping => {
            // A stop asked while it stops (for a restart, say) wins, with its own reason.
            let stop = desired == Some(DESIRED_STOPPED);
            let reason = if stop {
                b.plan.clear_desired_phase = true;
                requested_reason
            } else {
                b.st.stopped_reason.unwrap_or(requested_reason)
            };
            let restart = reason == StoppedReason::Restart && desired == Some(DESIRED_RESTART);
            match runner {
                Runner::Alive { .. } | Runner::Waiting { .. } if stop => b.stopping(reason),
                Runner::Exited(exit) if restart => {
                    b.record_result(exit);
                    b.plan.clear_desired_phase = true;
                    b.restart();
                }
                Runner::Absent | Runner::Lost { .. } | Runner::Unstartable { .. } if restart => {
                    b.plan.clear_desired_phase = true;
                    b.restart();
                }
                Runner::Alive { .. } | Runner::Waiting { .. } => {
                    // Re-issue the stop: after a restart the driver has no timer left.
                    b.plan.action = Some(Action::Stop { reason });
                    b.plan.requeue_after = Some(Duration::from_secs(1));
                }
                Runner::Exited(exit) => {
                    b.record_result(exit);
                    b.stopped(reason);
                }
                Runner::Absent | Runner::Lost { .. } | Runner::Unstartable { .. } => {
                    b.stopped(reason)
                }
            }
        }
        Phase::Stopped | Phase::Completed | Phase::Failed => {
            // A run that completed while a user message waited for it goes on at once.
            let continues = phase == Phase::Completed
                && desired.is_none()
                && (ctx.unhandled_messages || b.st.unhandled_messages == Some(true));
            if desired == Some(DESIRED_RUNNING) || continues {
                b.plan.clear_desired_phase = desired.is_some();
                b.restart();
            } else if desired.is_some() {
                // Asking a finished session to stop: nothing to do.
                b.plan.clear_desired_phase = true;
            }
        }
    }

    let mut plan = b.plan;
    if session.status.as_ref() != Some(&st) {
        plan.status = Some(st);
    }
    plan
}

/// Mutable state of one planning step.
struct Builder<'a> {
    st: &'a mut AgenticSessionStatus,
    ctx: &'a Context,
    generation: Option<i64>,
    has_conversation: bool,
    /// The model a run started now uses.
    model: &'a str,
    plan: Plan,
}

impl Builder<'_> {
    fn now(&self) -> Time {
        Time(self.ctx.now)
    }

    fn set_phase(&mut self, phase: Phase, reason: &str, message: Option<String>) {
        if self.st.phase != phase {
            self.st.phase = phase;
            self.plan.event = Some(PhaseChange {
                phase,
                reason: Some(reason.to_owned()),
                message,
            });
        }
    }

    fn condition(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
        let status = if ok { "True" } else { "False" };
        let now = self.now();
        let generation = self.generation;
        match self.st.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status.to_owned();
                c.reason = reason.to_owned();
                c.message = message.to_owned();
                c.observed_generation = generation;
            }
            None => self.st.conditions.push(Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: now,
                observed_generation: generation,
            }),
        }
    }

    /// A runner exists (or should) for the current run: follow what it does.
    fn active(&mut self, session: &AgenticSession, runner: &Runner, phase: Phase) {
        match runner {
            Runner::Exited(exit) => self.exited(exit),
            Runner::Lost { reason } => self.failed("RunnerLost", reason.clone()),
            Runner::Absent => self.failed(
                "RunnerLost",
                "the runner is gone and left no exit status".into(),
            ),
            Runner::Unstartable { reason, message } => self.failed(reason, message.clone()),
            Runner::Waiting { reason, message } => {
                self.condition(condition::READY, false, reason, message);
                self.expire(session);
            }
            Runner::Alive { connected } => {
                if *connected && phase == Phase::Creating {
                    self.running();
                }
                self.expire(session);
            }
        }
    }

    /// Stops the run if it is past its timeout or idle for too long.
    fn expire(&mut self, session: &AgenticSession) {
        if let Some(reason) = self.expired(session) {
            self.stopping(reason);
        }
    }

    /// Starts a finished session again, continuing its conversation when it has one.
    fn restart(&mut self) {
        self.st.completion_time = None;
        self.st.stopped_reason = None;
        self.st.result = None;
        self.st.sdk_restart_count = Some(self.st.sdk_restart_count.unwrap_or(0).saturating_add(1));
        self.start(true);
    }

    fn start(&mut self, restart: bool) {
        if let Some(why) = &self.ctx.no_room {
            self.condition(condition::READY, false, WAITING_FOR_ROOM, why);
            self.set_phase(Phase::Pending, WAITING_FOR_ROOM, Some(why.clone()));
            return;
        }
        self.st.start_time = Some(self.now());
        self.st.last_activity_time = None;
        // The run about to start is given what waits.
        self.st.unhandled_messages = None;
        self.st.model = Some(self.model.to_owned());
        self.st.observed_generation = self.generation;
        self.plan.action = Some(Action::Start {
            resume: restart && self.has_conversation,
        });
        let (reason, message) = if restart {
            ("Restarting", "continuing the previous conversation")
        } else {
            ("RunnerCreated", "starting the runner")
        };
        self.condition(condition::RUNNER_CREATED, true, reason, message);
        self.condition(
            condition::RUNNER_STARTED,
            false,
            "Starting",
            "waiting for the runner to connect",
        );
        self.condition(
            condition::READY,
            false,
            "Starting",
            "the runner is starting",
        );
        self.set_phase(Phase::Creating, reason, Some(message.to_owned()));
    }

    fn running(&mut self) {
        self.condition(
            condition::RUNNER_STARTED,
            true,
            "RunnerConnected",
            "the runner is connected",
        );
        self.condition(
            condition::READY,
            true,
            "RunnerConnected",
            "the agent is running",
        );
        self.set_phase(Phase::Running, "RunnerConnected", None);
    }

    fn stopping(&mut self, reason: StoppedReason) {
        self.st.stopped_reason = Some(reason);
        self.plan.action = Some(Action::Stop { reason });
        self.plan.requeue_after = Some(Duration::from_secs(1));
        let message = match reason {
            StoppedReason::User => "stop requested".to_owned(),
            StoppedReason::Inactivity => {
                "no activity for longer than the inactivity timeout".to_owned()
            }
            StoppedReason::Timeout => "the run exceeded its timeout".to_owned(),
            StoppedReason::RunFinished => "the run finished".to_owned(),
            StoppedReason::Capacity => "stopped while it waited for a person, to make room for \
                another session (the cap on running sessions is reached); a message continues it"
                .to_owned(),
            StoppedReason::Restart => {
                "restarting in its new workflow; the conversation goes on".to_owned()
            }
        };
        self.condition(
            condition::READY,
            false,
            stop_condition_reason(reason),
            &message,
        );
        self.set_phase(
            Phase::Stopping,
            stop_condition_reason(reason),
            Some(message),
        );
    }

    fn stopped(&mut self, reason: StoppedReason) {
        self.st.stopped_reason = Some(reason);
        self.st.completion_time = Some(self.now());
        self.condition(
            condition::READY,
            false,
            stop_condition_reason(reason),
            "the session is stopped",
        );
        self.set_phase(Phase::Stopped, stop_condition_reason(reason), None);
    }

    /// Keeps the run's totals and exit code.
    fn record_result(&mut self, exit: &Exit) {
        self.st.result = Some(RunSummary {
            exit_code: exit.code,
            ..exit.summary.clone().unwrap_or_default()
        });
    }

    fn exited(&mut self, exit: &Exit) {
        self.record_result(exit);
        match (exit.code, exit.signal, exit.reason.as_deref()) {
            (Some(exit_code::OK), _, _) => {
                self.st.completion_time = Some(self.now());
                self.condition(condition::READY, false, "Completed", "the runner finished");
                self.set_phase(Phase::Completed, "Completed", None);
                if self.ctx.unhandled_messages {
                    // Plan again at once: the run goes on with what is waiting.
                    self.plan.requeue_after = Some(Duration::ZERO);
                }
            }
            (Some(exit_code::PREREQUISITE), _, _) => self.failed(
                "PrerequisiteFailed",
                with_tail("the runner's configuration or prerequisites failed", exit),
            ),
            (code, signal, Some(reason)) => {
                let how = match (code, signal) {
                    (Some(c), _) => format!(" (exit code {c})"),
                    (None, Some(s)) => format!(" (signal {s})"),
                    (None, None) => String::new(),
                };
                self.failed(
                    reason,
                    with_tail(&format!("the runner ended: {reason}{how}"), exit),
                )
            }
            (Some(code), _, None) => self.failed(
                "RunnerExit",
                with_tail(&format!("the runner exited with code {code}"), exit),
            ),
            (None, Some(sig), None) => self.failed(
                "RunnerExit",
                with_tail(&format!("the runner was killed by signal {sig}"), exit),
            ),
            (None, None, None) => self.failed(
                "RunnerExit",
                with_tail("the runner ended without an exit code", exit),
            ),
        }
    }

    fn failed(&mut self, reason: &str, message: String) {
        self.st.completion_time = Some(self.now());
        self.condition(condition::READY, false, reason, &message);
        self.set_phase(Phase::Failed, reason, Some(message));
    }

    /// The stop reason if the run is past its timeout or idle for too long; otherwise
    /// schedules the next check.
    fn expired(&mut self, session: &AgenticSession) -> Option<StoppedReason> {
        let now = self.ctx.now.as_second();
        let started = self
            .st
            .start_time
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(now);
        let active = self
            .st
            .last_activity_time
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(started)
            .max(started);
        let mut next: Option<i64> = None;
        if let Some(limit) = session.spec.timeout.filter(|t| *t > 0) {
            let left = started.saturating_add(limit).saturating_sub(now);
            if left <= 0 {
                return Some(StoppedReason::Timeout);
            }
            next = Some(left);
        }
        let inactivity = session
            .spec
            .inactivity_timeout
            .or(self.ctx.project_inactivity_timeout)
            .unwrap_or(self.ctx.default_inactivity_timeout);
        if inactivity > 0 {
            let left = active.saturating_add(inactivity).saturating_sub(now);
            if left <= 0 {
                return Some(StoppedReason::Inactivity);
            }
            next = Some(next.map_or(left, |n| n.min(left)));
        }
        // At most a day ahead: the next plan looks again, and no timer is set decades out.
        self.plan.requeue_after = next.map(|s| Duration::from_secs(s.clamp(1, 86_400) as u64));
        None
    }
}

/// Whether the run under way came after the run a restart was asked of (known only where
/// the status carries the run's generation: Kubernetes mode, whose request may be seen again
/// after the run it started).
fn restart_served(session: &AgenticSession) -> bool {
    let asked_of = session
        .annotation(RESTART_OF_RUN)
        .and_then(|g| g.parse::<i64>().ok());
    let current = session.status.as_ref().and_then(|s| s.run_generation);
    matches!((asked_of, current), (Some(a), Some(c)) if c > a)
}

fn stop_condition_reason(reason: StoppedReason) -> &'static str {
    match reason {
        StoppedReason::User => "UserStopped",
        StoppedReason::Inactivity => "InactivityTimeout",
        StoppedReason::Timeout => "Timeout",
        StoppedReason::RunFinished => "RunFinished",
        StoppedReason::Capacity => "StoppedForCapacity",
        StoppedReason::Restart => "Restarting",
    }
}

fn with_tail(message: &str, exit: &Exit) -> String {
    if exit.stderr_tail.is_empty() {
        message.to_owned()
    } else {
        format!("{message}:\n{}", exit.stderr_tail.join("\n"))
    }
}

#[cfg(test)]
mod tests;
