//! Steering a session: follow-up messages, interrupt, stop, continue, model switch — and the delivery of
//! user messages to runners.
//!
//! Every user message is persisted first (so every viewer sees it), then delivered to the
//! connected runner if it takes work; otherwise it waits, and the next runner of the session
//! receives it. A finished session that receives a message is continued.

use k8s_openapi::jiff::Timestamp;
use model::annotations::{
    DESIRED_PHASE, DESIRED_RUNNING, DESIRED_STOPPED, START_REQUESTED_AT, STOP_REASON,
    STOP_REQUESTED_AT,
};
use model::protocol::{
    ControlEcho, ModelChange, RunnerControl, RunnerModel, RunnerUserMessage, ServerToRunner,
    SessionEvent, UserMessage,
};
use model::session::SessionKey;
use model::session::StoppedReason;
use model::validate;
use model::{AgenticSession, Phase};

use super::Services;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::log::LogId;
use crate::records::update_session;

/// What a continued session is told when nobody said anything new.
pub const CONTINUE_PROMPT: &str = "Continue where you left off.";

impl Services {
    /// Sends a follow-up message to the agent; continues the session if it had finished.
    /// Returns the message's sequence number.
    pub async fn send_message(
        &self,
        caller: &Caller,
        key: &SessionKey,
        text: String,
    ) -> Result<u64, ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        validate::message_text("text", &text)?;
        let live = self.live_session(caller, key).await?;
        let _guard = self.runners.lock(live.log).await;
        let event = SessionEvent::UserMessage(UserMessage {
            text: text.clone(),
            sender: caller.display_name.clone(),
        });
        let seq = self.log.append(live.log, event).await?;
        let msg = ServerToRunner::UserMessage(RunnerUserMessage {
            seq,
            text,
            sender: caller.display_name.clone(),
        });
        // Read after the message is in the log: a run that completes meanwhile either sees
        // the message when it plans again, or is seen finished here.
        let phase = self.records.get_session(caller, key).await?.session.phase();
        if phase.is_terminal() {
            self.request_start(caller, key).await?;
        } else if !self.runners.send(live.log, msg) {
            tracing::debug!(session = %key, seq, "message waits for the session's next runner");
        }
        Ok(seq)
    }

    /// Interrupts the agent's current turn; the session goes on.
    pub async fn interrupt(&self, caller: &Caller, key: &SessionKey) -> Result<(), ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        let live = self.live_session(caller, key).await?;
        if !self
            .runners
            .is_connected(live.log, live.record.run.generation)
            || live.record.session.phase() != Phase::Running
        {
            return Err(ApiError::Conflict(
                "the session is not running: there is nothing to interrupt".into(),
            ));
        }
        let sender = caller.display_name.clone();
        let echo = SessionEvent::Interrupt(ControlEcho {
            sender: sender.clone(),
        });
        let seq = self.log.append(live.log, echo).await?;
        self.runners.send(
            live.log,
            ServerToRunner::Interrupt(RunnerControl { seq, sender }),
        );
        Ok(())
    }

    /// Switches the session's model: kept in its spec (a later run starts with it) and, while
    /// its agent runs, switched there at once (its next request uses it); the transcript says
    /// who switched to what.
    pub async fn set_model(
        &self,
        caller: &Caller,
        key: &SessionKey,
        model: String,
    ) -> Result<AgenticSession, ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        validate::model("model", &model, &self.settings.models)?;
        let live = self.live_session(caller, key).await?;
        let _guard = self.runners.lock(live.log).await;
        let record = update_session(&*self.records, caller, key, |s| {
            s.spec
                .llm_settings
                .get_or_insert_with(Default::default)
                .model = Some(model.clone());
            Ok::<_, ApiError>(())
        })
        .await?;
        let sender = caller.display_name.clone();
        let event = SessionEvent::ModelChanged(ModelChange {
            model: model.clone(),
            sender,
        });
        let seq = self.log.append(live.log, event).await?;
        self.runners.send(
            live.log,
            ServerToRunner::SetModel(RunnerModel { seq, model }),
        );
        Ok(record.session)
    }

    /// Stops the session: the runner is told, then terminated with everything it started.
    pub async fn stop(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<AgenticSession, ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        let now = Timestamp::now().to_string();
        let record = update_session(&*self.records, caller, key, |s| {
            if s.phase().is_terminal() {
                return Err(ApiError::Conflict(format!(
                    "the session is already {}",
                    s.phase()
                )));
            }
            let a = s.metadata.annotations.get_or_insert_with(Default::default);
            a.insert(DESIRED_PHASE.to_owned(), DESIRED_STOPPED.to_owned());
            a.insert(STOP_REQUESTED_AT.to_owned(), now.clone());
            a.insert(
                STOP_REASON.to_owned(),
                StoppedReason::User.as_str().to_owned(),
            );
            Ok(())
        })
        .await?;
        let log = self.log.open(super::uid_of(&record.session)).await?;
        let sender = caller.display_name.clone();
        let echo = SessionEvent::StopRequested(ControlEcho {
            sender: sender.clone(),
        });
        let seq = self.log.append(log, echo).await?;
        self.runners
            .send(log, ServerToRunner::Stop(RunnerControl { seq, sender }));
        self.notify(key);
        Ok(record.session)
    }

    /// Starts (continues) a finished session. With no new message waiting, the agent is told
    /// to continue where it left off.
    pub async fn start(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<AgenticSession, ApiError> {
        self.require(caller, &key.project, Role::Edit).await?;
        let live = self.live_session(caller, key).await?;
        let phase = live.record.session.phase();
        if !phase.is_terminal() {
            return Err(ApiError::Conflict(format!(
                "the session is already {phase}"
            )));
        }
        let _guard = self.runners.lock(live.log).await;
        if live.record.session.has_conversation() && !live.counters.unhandled_messages {
            let event = SessionEvent::UserMessage(UserMessage {
                text: CONTINUE_PROMPT.to_owned(),
                sender: caller.display_name.clone(),
            });
            self.log.append(live.log, event).await?;
        }
        self.request_start(caller, key).await
    }

    pub(super) async fn request_start(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<AgenticSession, ApiError> {
        let now = Timestamp::now().to_string();
        let record = update_session(&*self.records, caller, key, |s| {
            let a = s.metadata.annotations.get_or_insert_with(Default::default);
            a.insert(DESIRED_PHASE.to_owned(), DESIRED_RUNNING.to_owned());
            a.insert(START_REQUESTED_AT.to_owned(), now.clone());
            a.remove(STOP_REASON);
            Ok::<_, ApiError>(())
        })
        .await?;
        self.notify(key);
        Ok(record.session)
    }

    /// Gives the session's runner the user messages after `handled_through`; with none
    /// waiting, an idle runner (`idle`) is told to finish if its session is a batch one, and
    /// otherwise waits, its agent warm, for a person.
    async fn deliver(
        &self,
        log: LogId,
        generation: u64,
        handled_through: u64,
        idle: Option<Idle>,
    ) -> Result<(), ApiError> {
        let _guard = self.runners.lock(log).await;
        let handled_through = self
            .log
            .set_handled_through(log, generation, handled_through)
            .await?;
        let pending = self.log.pending_messages(log, handled_through).await?;
        match idle {
            Some(Idle { conn, batch: true }) if pending.is_empty() => {
                self.runners.finish(log, conn);
            }
            Some(Idle { conn, batch: false }) if pending.is_empty() => {
                self.runners.idle(log, conn);
            }
            _ => {}
        }
        for (seq, m) in pending {
            self.runners.send(
                log,
                ServerToRunner::UserMessage(RunnerUserMessage {
                    seq,
                    text: m.text,
                    sender: m.sender,
                }),
            );
        }
        Ok(())
    }

    /// A runner said hello: sends it the user messages it has not handled, and the answers
    /// of its run (it ignores those of asks it no longer holds).
    pub async fn deliver_pending(
        &self,
        log: LogId,
        generation: u64,
        handled_through: u64,
    ) -> Result<(), ApiError> {
        self.replay_answers(log).await?;
        self.deliver(log, generation, handled_through, None).await
    }

    /// A runner's agent is idle: gives it what is waiting; with nothing waiting, tells it to
    /// finish if its session is a batch one (`batch`: `spec.stopOnRunFinished` as the run
    /// was admitted), and otherwise lets it wait for a person.
    pub async fn runner_idle(
        &self,
        log: LogId,
        generation: u64,
        conn: u64,
        handled_through: u64,
        batch: bool,
    ) -> Result<(), ApiError> {
        self.deliver(log, generation, handled_through, Some(Idle { conn, batch }))
            .await
    }
}

/// A runner that said its agent is idle.
#[derive(Debug, Clone, Copy)]
struct Idle {
    conn: u64,
    batch: bool,
}
