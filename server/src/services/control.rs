//! Steering a session: follow-up messages, interrupt, stop, continue — and the delivery of
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
    ControlEcho, RunnerControl, RunnerUserMessage, ServerToRunner, SessionEvent, UserMessage,
};
use model::session::StoppedReason;
use model::validate;
use model::{AgenticSession, Phase};

use super::{Caller, Services};
use crate::error::ApiError;
use crate::store::StoreError;

/// What a continued session is told when nobody said anything new.
pub const CONTINUE_PROMPT: &str = "Continue where you left off.";

impl Services {
    /// Sends a follow-up message to the agent; continues the session if it had finished.
    /// Returns the message's sequence number.
    pub async fn send_message(
        &self,
        project: &str,
        name: &str,
        text: String,
        caller: &Caller,
    ) -> Result<u64, ApiError> {
        validate::message_text("text", &text)?;
        let row = self.store.session_row(project, name).await?;
        let _guard = self.runners.lock(row.id).await;
        let event = SessionEvent::UserMessage(UserMessage {
            text: text.clone(),
            sender: caller.display_name.clone(),
        });
        let seq = self.store.append_event(row.id, event).await?;
        let msg = ServerToRunner::UserMessage(RunnerUserMessage {
            seq,
            text,
            sender: caller.display_name.clone(),
        });
        let phase = self.store.get_session(project, name).await?.phase();
        if phase.is_terminal() {
            self.request_start(project, name).await?;
        } else if !self.runners.send(row.id, msg) {
            tracing::debug!(
                project,
                name,
                seq,
                "message waits for the session's next runner"
            );
        }
        Ok(seq)
    }

    /// Interrupts the agent's current turn; the session goes on.
    pub async fn interrupt(
        &self,
        project: &str,
        name: &str,
        caller: &Caller,
    ) -> Result<(), ApiError> {
        let row = self.store.session_row(project, name).await?;
        if !self.runners.is_connected(row.id, row.run_generation)
            || row.session.phase() != Phase::Running
        {
            return Err(ApiError::Conflict(
                "the session is not running: there is nothing to interrupt".into(),
            ));
        }
        let seq = self
            .store
            .append_event(
                row.id,
                SessionEvent::Interrupt(ControlEcho {
                    sender: caller.display_name.clone(),
                }),
            )
            .await?;
        self.runners.send(
            row.id,
            ServerToRunner::Interrupt(RunnerControl {
                seq,
                sender: caller.display_name.clone(),
            }),
        );
        Ok(())
    }

    /// Stops the session: the runner is told, then terminated with everything it started.
    pub async fn stop(
        &self,
        project: &str,
        name: &str,
        caller: &Caller,
    ) -> Result<AgenticSession, ApiError> {
        let sender = caller.display_name.clone();
        let now = Timestamp::now().to_string();
        let row = self
            .store
            .update_session(project, name, move |s| {
                if s.phase().is_terminal() {
                    return Err(StoreError::Conflict(format!(
                        "the session is already {}",
                        s.phase()
                    )));
                }
                let a = s.metadata.annotations.get_or_insert_with(Default::default);
                a.insert(DESIRED_PHASE.to_owned(), DESIRED_STOPPED.to_owned());
                a.insert(STOP_REQUESTED_AT.to_owned(), now);
                a.insert(
                    STOP_REASON.to_owned(),
                    StoppedReason::User.as_str().to_owned(),
                );
                Ok(Some(SessionEvent::StopRequested(ControlEcho { sender })))
            })
            .await?;
        self.runners.send(
            row.id,
            ServerToRunner::Stop(RunnerControl {
                seq: row.last_seq,
                sender: caller.display_name.clone(),
            }),
        );
        self.notify(project, name);
        Ok(row.session)
    }

    /// Starts (continues) a finished session. With no new message waiting, the agent is told
    /// to continue where it left off.
    pub async fn start(
        &self,
        project: &str,
        name: &str,
        caller: &Caller,
    ) -> Result<AgenticSession, ApiError> {
        let row = self.store.session_row(project, name).await?;
        let phase = row.session.phase();
        if !phase.is_terminal() {
            return Err(ApiError::Conflict(format!(
                "the session is already {phase}"
            )));
        }
        let _guard = self.runners.lock(row.id).await;
        let has_conversation = row
            .session
            .status
            .as_ref()
            .is_some_and(|s| s.sdk_session_id.is_some());
        let pending = self
            .store
            .pending_messages(row.id, row.handled_through)
            .await?;
        if has_conversation && pending.is_empty() {
            let event = SessionEvent::UserMessage(UserMessage {
                text: CONTINUE_PROMPT.to_owned(),
                sender: caller.display_name.clone(),
            });
            self.store.append_event(row.id, event).await?;
        }
        Ok(self.request_start(project, name).await?)
    }

    async fn request_start(&self, project: &str, name: &str) -> Result<AgenticSession, StoreError> {
        let now = Timestamp::now().to_string();
        let row = self
            .store
            .update_session(project, name, move |s| {
                let a = s.metadata.annotations.get_or_insert_with(Default::default);
                a.insert(DESIRED_PHASE.to_owned(), DESIRED_RUNNING.to_owned());
                a.insert(START_REQUESTED_AT.to_owned(), now);
                a.remove(STOP_REASON);
                Ok(None)
            })
            .await?;
        self.notify(project, name);
        Ok(row.session)
    }

    /// Sends user messages (with their sequence numbers) to the session's runner.
    fn send_messages(&self, session_id: i64, messages: Vec<(u64, model::protocol::UserMessage)>) {
        for (seq, m) in messages {
            self.runners.send(
                session_id,
                ServerToRunner::UserMessage(RunnerUserMessage {
                    seq,
                    text: m.text,
                    sender: m.sender,
                }),
            );
        }
    }

    /// A runner said hello: sends it the user messages it has not handled.
    pub async fn deliver_pending(
        &self,
        session_id: i64,
        generation: u64,
        handled_through: u64,
    ) -> Result<(), StoreError> {
        let _guard = self.runners.lock(session_id).await;
        self.store
            .set_handled_through(session_id, generation, handled_through)
            .await?;
        let pending = self
            .store
            .pending_messages(session_id, handled_through)
            .await?;
        self.send_messages(session_id, pending);
        Ok(())
    }

    /// A runner's agent is idle: gives it what is waiting, or tells it to finish.
    pub async fn runner_idle(
        &self,
        session_id: i64,
        generation: u64,
        conn: u64,
        handled_through: u64,
    ) -> Result<(), StoreError> {
        let _guard = self.runners.lock(session_id).await;
        self.store
            .set_handled_through(session_id, generation, handled_through)
            .await?;
        let pending = self
            .store
            .pending_messages(session_id, handled_through)
            .await?;
        if pending.is_empty() {
            self.runners.finish(session_id, conn);
        } else {
            self.send_messages(session_id, pending);
        }
        Ok(())
    }
}
