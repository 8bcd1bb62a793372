//! What the agent asks a person (`AskUserQuestion`), and the answers: the runner holds the
//! CLI's request until an answer comes; the log keeps both, so a page reload shows the open
//! question, and a runner that reconnects (after a server restart, say) is given again the
//! answers of its run, which it ignores for asks it no longer holds.

use model::api::AnswerRequest;
use model::protocol::{ASK_USER_QUESTION, Answer, Ask, ServerToRunner, SessionEvent};
use model::session::{Phase, SessionKey};
use model::validate::Invalid;

use super::Services;
use super::sessions::MAX_WINDOW;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::log::LogId;

/// Most answers in one reply (one per question).
pub const MAX_ANSWERS: usize = 16;
/// Longest answer, and longest question it answers.
pub const MAX_ANSWER_TEXT: usize = 4 * 1024;

/// The asks of the current run of a session and their answers.
#[derive(Debug, Default)]
pub struct RunAsks {
    /// Asks no one answered yet, oldest first.
    pub open: Vec<Ask>,
    /// Answers given in this run, oldest first.
    pub answered: Vec<Answer>,
}

impl Services {
    /// The asks of the session's current run (the events since its last start, at most
    /// [`MAX_WINDOW`] back) and their answers.
    pub(crate) async fn run_asks(&self, log: LogId) -> Result<RunAsks, ApiError> {
        let rows = self.log.events_before(log, u64::MAX, MAX_WINDOW).await?;
        let mut asks = RunAsks::default();
        for row in rows.iter().rev() {
            match row.decode()?.event {
                SessionEvent::Phase(p) if p.phase == Phase::Creating => break,
                SessionEvent::Ask(a) => asks.open.push(a),
                SessionEvent::Answer(a) => asks.answered.push(a),
                _ => {}
            }
        }
        asks.open.reverse();
        asks.answered.reverse();
        let answered: Vec<&str> = asks.answered.iter().map(|a| a.id.as_str()).collect();
        asks.open.retain(|a| !answered.contains(&a.id.as_str()));
        Ok(asks)
    }

    /// The questions the session's agent waits to have answered, oldest first.
    pub async fn open_asks(&self, caller: &Caller, key: &SessionKey) -> Result<Vec<Ask>, ApiError> {
        self.require(caller, &key.project, Role::View).await?;
        let live = self.live_session(caller, key).await?;
        if !live.record.session.phase().is_active() {
            // The agent that asked is gone: nothing waits for an answer.
            return Ok(Vec::new());
        }
        Ok(self.run_asks(live.log).await?.open)
    }

    /// Answers an open ask of the session's agent: recorded (every viewer sees it), then
    /// given to the runner, whose agent goes on. A question: `answers` maps each question to
    /// its answer (none declines). An approval: allowed (once, or `always` for the session)
    /// or denied with a `message` for the agent. Refused (409) when no such ask waits.
    pub async fn answer(
        &self,
        caller: &Caller,
        key: &SessionKey,
        req: AnswerRequest,
    ) -> Result<u64, ApiError> {
        let AnswerRequest {
            id,
            answers,
            deny,
            message,
            always,
        } = req;
        if let Some(m) = &message
            && m.len() > MAX_ANSWER_TEXT
        {
            return Err(Invalid::new("message", format!("at most {MAX_ANSWER_TEXT} bytes")).into());
        }
        // A denial is for once: `always` goes with an approval only.
        let always = always && !deny;
        self.require(caller, &key.project, Role::Edit).await?;
        if id.is_empty() || id.len() > 256 {
            return Err(Invalid::new("id", "must name an open question (1 to 256 bytes)").into());
        }
        if answers.len() > MAX_ANSWERS {
            return Err(Invalid::new("answers", format!("at most {MAX_ANSWERS} answers")).into());
        }
        for (question, answer) in &answers {
            if question.len() > MAX_ANSWER_TEXT || answer.len() > MAX_ANSWER_TEXT {
                return Err(Invalid::new(
                    "answers",
                    format!("questions and answers are at most {MAX_ANSWER_TEXT} bytes"),
                )
                .into());
            }
            if answer.trim().is_empty() {
                return Err(Invalid::new("answers", "an answer may not be blank").into());
            }
        }
        let live = self.live_session(caller, key).await?;
        let _guard = self.runners.lock(live.log).await;
        let asks = self.run_asks(live.log).await?;
        let Some(ask) = asks.open.iter().find(|a| a.id == id) else {
            return Err(ApiError::Conflict(format!(
                "no question with id {id} waits for an answer"
            )));
        };
        if !live.record.session.phase().is_active() {
            return Err(ApiError::Conflict(
                "the agent that asked has stopped: send it a message instead".into(),
            ));
        }
        let question = ask.tool == ASK_USER_QUESTION;
        if !question && !answers.is_empty() {
            return Err(Invalid::new(
                "answers",
                format!(
                    "the agent asks to use {}, not a question: allow or deny it",
                    ask.tool
                ),
            )
            .into());
        }
        if let Some(unknown) = answers.keys().find(|q| !asks_about(ask, q)) {
            return Err(
                Invalid::new("answers", format!("the agent did not ask {unknown:?}")).into(),
            );
        }
        let answer = Answer {
            id: id.clone(),
            sender: caller.display_name.clone(),
            answers,
            deny,
            message: message.filter(|m| !m.trim().is_empty()),
            always,
        };
        let seq = self
            .log
            .append(live.log, SessionEvent::Answer(answer.clone()))
            .await?;
        self.runners.asks(live.log, &[], &[id]);
        self.runners.send(live.log, ServerToRunner::Answer(answer));
        Ok(seq)
    }

    /// A runner (re)connected: the hub learns which asks of its run wait, and the runner is
    /// given the answers of its run again.
    pub(crate) async fn replay_answers(&self, log: LogId) -> Result<(), ApiError> {
        let asks = self.run_asks(log).await?;
        let open: Vec<String> = asks.open.iter().map(|a| a.id.clone()).collect();
        self.runners.asks(log, &open, &[]);
        for answer in asks.answered {
            self.runners.send(log, ServerToRunner::Answer(answer));
        }
        Ok(())
    }
}

/// Whether `question` is one of the ask's questions.
fn asks_about(ask: &Ask, question: &str) -> bool {
    ask.input["questions"]
        .as_array()
        .is_some_and(|qs| qs.iter().any(|q| q["question"] == question))
}
