//! "Run N": several sessions from one request, compared side by side, one kept.
//!
//! The attempts of a group are named `<group>-1` … `<group>-N` and carry `spec.attempt`.
//! Each is a batch session (it completes after answering) whose runner holds its work: it
//! commits it in its workspace and reports what it changed ([`SessionEvent::Changes`]),
//! and pushes nothing. Keeping one marks it kept and runs it once more with nothing to
//! do: that run delivers (pushes its branch, opens its pull request); the others are
//! stopped, their work left unpushed in their workspaces.
//!
//! [`SessionEvent::Changes`]: model::protocol::SessionEvent::Changes

use model::api::{
    AttemptGroup, AttemptSummary, AttemptsCreated, CreateAttemptsRequest, KeepAttemptRequest,
    MAX_ATTEMPTS,
};
use model::session::{Attempt, SessionKey};
use model::validate::{self, Invalid};

use super::Services;
use super::sessions::Origin;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::records::update_session;

/// The session name of attempt `index` of `group`.
fn member(group: &str, index: u32) -> String {
    format!("{group}-{index}")
}

/// Whether `group` can name a group of attempts (what [`Services::create_attempts`]
/// names them: `attempts-` and 8 hex digits).
fn check_group(group: &str) -> Result<(), ApiError> {
    let ok = group.strip_prefix("attempts-").is_some_and(|id| {
        id.len() == 8
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "no group of attempts {group:?}"
        )))
    }
}

/// Attempt `index` of `of`'s display name: the request's (or the start of its prompt, with
/// no control character), then "(attempt i of n)", within the display name's limit.
fn display_name(given: Option<&str>, prompt: &str, index: u32, of: u32) -> String {
    let base = given
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| {
            // A prompt may hold what a display name may not (control characters).
            let from_prompt: String = super::sessions::display_name_from_prompt(prompt)
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            match from_prompt.trim() {
                "" => "Attempts".to_owned(),
                name => name.to_owned(),
            }
        });
    let suffix = format!(" (attempt {index} of {of})");
    let shown: String = base
        .chars()
        .take(validate::MAX_DISPLAY_NAME.saturating_sub(suffix.chars().count()))
        .collect();
    format!("{}{suffix}", shown.trim_end())
}

impl Services {
    /// Starts `attempts` sessions from one request, each a batch session holding its work
    /// until a person keeps one of them (Edit role).
    pub async fn create_attempts(
        &self,
        caller: &Caller,
        project: &str,
        req: CreateAttemptsRequest,
    ) -> Result<AttemptsCreated, ApiError> {
        self.require(caller, project, Role::Edit).await?;
        if !(2..=MAX_ATTEMPTS).contains(&req.attempts) {
            return Err(Invalid::new(
                "attempts",
                format!("must be from 2 to {MAX_ATTEMPTS} (is {})", req.attempts),
            )
            .into());
        }
        let mut session = req.session;
        session.stop_on_run_finished = Some(true);
        // Each repository's work goes to the attempt's branch: held, compared, and pushed
        // for the one kept (without a working branch there would be nothing to compare).
        for repo in &mut session.repos {
            repo.auto_push = Some(true);
        }
        // Every attempt or none: the request is checked before the first is made.
        self.check_new_session(caller, project, &session)?;
        let group = format!(
            "attempts-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut sessions = Vec::with_capacity(req.attempts as usize);
        for index in 1..=req.attempts {
            let mut one = session.clone();
            one.display_name = Some(display_name(
                session.display_name.as_deref(),
                &session.initial_prompt,
                index,
                req.attempts,
            ));
            let origin = Origin {
                attempt: Some(Attempt {
                    group: group.clone(),
                    index,
                    of: req.attempts,
                    kept: false,
                }),
                ..Origin::default()
            };
            let name = member(&group, index);
            match self
                .create_named_session(caller, project, name, one, origin)
                .await
            {
                Ok(created) => sessions.push(created.name),
                Err(e) => {
                    // Those made already go: a group is whole or absent.
                    for name in &sessions {
                        let key = SessionKey::new(project, name);
                        if let Err(why) = self.delete_session(caller, &key).await {
                            tracing::warn!(session = %key, error = %why, "could not remove an attempt of a group that failed");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(AttemptsCreated { group, sessions })
    }

    /// The attempts of `group` side by side: phase, turns, cost, what each changed per
    /// repository, which one was kept (View role).
    pub async fn attempt_group(
        &self,
        caller: &Caller,
        project: &str,
        group: &str,
    ) -> Result<AttemptGroup, ApiError> {
        self.require(caller, project, Role::View).await?;
        check_group(group)?;
        let mut attempts = Vec::new();
        let mut prompt = None;
        let mut of = MAX_ATTEMPTS;
        let mut index = 1;
        while index <= of {
            let key = SessionKey::new(project, member(group, index));
            index += 1;
            let live = match self.live_session(caller, &key).await {
                Ok(live) => live,
                // One deleted: the others are still compared.
                Err(ApiError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let s = &live.record.session;
            let Some(attempt) = s.spec.attempt.clone().filter(|a| a.group == group) else {
                continue;
            };
            of = attempt.of.min(MAX_ATTEMPTS);
            if prompt.is_none() {
                prompt = Some(s.spec.initial_prompt.clone().unwrap_or_default());
            }
            let (changes, pull_requests) = self.log.work(live.log).await?;
            let result = s.status.as_ref().and_then(|st| st.result.clone());
            attempts.push(AttemptSummary {
                name: key.name.clone(),
                display_name: s
                    .spec
                    .display_name
                    .clone()
                    .unwrap_or_else(|| key.name.clone()),
                index: attempt.index,
                phase: s.phase(),
                turns: result.as_ref().map_or(0, |r| r.turns),
                cost_usd: result.as_ref().map_or(0.0, |r| r.cost_usd),
                kept: attempt.kept,
                changes,
                pull_requests,
            });
        }
        let Some(prompt) = prompt else {
            return Err(ApiError::NotFound(format!(
                "no group of attempts {group:?} in project {project:?}"
            )));
        };
        Ok(AttemptGroup {
            group: group.to_owned(),
            prompt,
            kept: attempts.iter().find(|a| a.kept).map(|a| a.name.clone()),
            attempts,
        })
    }

    /// Keeps one finished attempt of `group` (Edit role): it runs once more with nothing to
    /// do, and that run delivers its work (pushes its branch, opens its pull request); the
    /// others still running are stopped. A group keeps one attempt only; keeping the kept one
    /// again asks for its delivery again. The check and the mark are one step on this
    /// server (a lock on the group's first log), not across several servers.
    pub async fn keep_attempt(
        &self,
        caller: &Caller,
        project: &str,
        group: &str,
        req: KeepAttemptRequest,
    ) -> Result<AttemptGroup, ApiError> {
        self.require(caller, project, Role::Edit).await?;
        let before = self.attempt_group(caller, project, group).await?;
        let Some(chosen) = before.attempts.iter().find(|a| a.name == req.session) else {
            return Err(Invalid::new(
                "session",
                format!("{:?} is not an attempt of {group}", req.session),
            )
            .into());
        };
        // One keep of a group at a time (on this server): the check below and the mark
        // are one step.
        let first = self
            .live_session(caller, &SessionKey::new(project, &before.attempts[0].name))
            .await?;
        let _guard = self.runners.lock(first.log).await;
        let now = self.attempt_group(caller, project, group).await?;
        match &now.kept {
            // Asked again (a keep whose start failed): its delivery is asked again.
            Some(kept) if *kept == chosen.name => {}
            Some(kept) => {
                return Err(ApiError::Conflict(format!(
                    "{kept} was kept already; a group keeps one attempt"
                )));
            }
            None => {}
        }
        let key = SessionKey::new(project, &chosen.name);
        update_session(&*self.records, caller, &key, |s| {
            if s.phase().is_active() {
                return Err(ApiError::Conflict(format!(
                    "{} is {}: wait until it finishes (or stop it) before keeping it",
                    chosen.name,
                    s.phase()
                )));
            }
            // Without a conversation its next run would do the task again, unseen: there
            // is nothing of it to keep.
            if !s.has_conversation() {
                return Err(ApiError::Conflict(format!(
                    "{} has no work to keep: its agent never started",
                    chosen.name
                )));
            }
            match s.spec.attempt.as_mut() {
                Some(a) => a.kept = true,
                None => {
                    return Err(ApiError::Conflict(format!(
                        "{} is no longer an attempt",
                        chosen.name
                    )));
                }
            }
            Ok(())
        })
        .await?;
        for other in now.attempts.iter().filter(|a| a.name != chosen.name) {
            if other.phase.is_active() {
                let key = SessionKey::new(project, &other.name);
                match self.stop(caller, &key).await {
                    Ok(_) | Err(ApiError::Conflict(_) | ApiError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // The kept one's next run holds nothing back: with no message waiting, its batch
        // run ends at once and delivers.
        self.request_start(caller, &key).await?;
        self.attempt_group(caller, project, group).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_this_platform_gives_groups_are_looked_up() {
        assert!(check_group("attempts-0a1b2c3d").is_ok());
        for bad in [
            "attempts-0A1B2C3D",
            "attempts-0a1b2c3",
            "attempts-0a1b2c3d4",
            "session-0a1b2c3d",
            "attempts-../../x",
            "",
        ] {
            assert!(
                matches!(check_group(bad), Err(ApiError::NotFound(_))),
                "{bad:?}"
            );
        }
        assert_eq!(member("attempts-0a1b2c3d", 2), "attempts-0a1b2c3d-2");
    }

    #[test]
    fn each_attempts_name_is_a_valid_display_name_whatever_the_prompt() {
        for (given, prompt, want) in [
            (Some("Fix it"), "x", "Fix it (attempt 2 of 3)"),
            (
                None,
                "fix \u{85}the\u{1b} bug",
                "fix the bug (attempt 2 of 3)",
            ),
            (None, "\u{7}", "Attempts (attempt 2 of 3)"),
            (Some("  "), "tidy up", "tidy up (attempt 2 of 3)"),
        ] {
            let name = display_name(given, prompt, 2, 3);
            assert_eq!(name, want);
            validate::display_name("displayName", &name).unwrap();
        }
        let long = display_name(Some(&"é".repeat(400)), "x", 5, 5);
        assert_eq!(long.chars().count(), validate::MAX_DISPLAY_NAME);
        assert!(long.ends_with(" (attempt 5 of 5)"));
    }
}
