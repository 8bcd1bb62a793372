//! What a runner may do; the runner WebSocket (`server::ws::runner`) only carries it. A run's
//! token admits its runner for that run only, while it is live; what the runner sends is
//! taken only if runners produce it, a link only to a host of the session's; the agent's
//! conversation id is recorded for a later continue.

use model::protocol::{ErrorEvent, RunnerEvent, SessionEvent};
use model::session::SessionKey;
use subtle::ConstantTimeEq;

use super::{LiveSession, Services};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::log::LogId;

/// Why a runner or what it sent is refused.
#[derive(Debug)]
pub enum Refusal {
    /// Not the token of the session's current run, or that run has ended.
    Unauthorized(String),
    /// The runner speaks for a run that is not the current one.
    NotCurrent(String),
    /// Runners may not send this.
    BadEvent(String),
    /// The session was deleted.
    Gone,
    /// The platform could not do it.
    Failed(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Failed(e)
    }
}

/// A runner admitted for its run, and what its events may name.
pub struct AdmittedRun {
    /// The session, its log and counters, as the run was admitted.
    pub live: LiveSession,
    /// Hosts a pull request or push of this session may be on: its repositories' and its
    /// configured forges'.
    pub link_hosts: Vec<String>,
}

impl AdmittedRun {
    /// The run's generation.
    pub fn generation(&self) -> u64 {
        self.live.record.run.generation
    }
}

impl Services {
    /// The session, if `token` is the token of its current run and that run is live.
    pub async fn authenticate_runner(
        &self,
        key: &SessionKey,
        token: &str,
    ) -> Result<LiveSession, Refusal> {
        let live = self.live_session(&Caller::system(), key).await?;
        let presented = operator::token::token_hash(token);
        match &live.record.run.token_hash {
            Some(expected) if bool::from(expected.as_slice().ct_eq(&presented)) => {}
            _ => {
                return Err(Refusal::Unauthorized(
                    "invalid runner token for this session".into(),
                ));
            }
        }
        if !live.record.session.phase().is_active() {
            return Err(Refusal::Unauthorized(format!(
                "the run of this token has ended (the session is {})",
                live.record.session.phase()
            )));
        }
        Ok(live)
    }

    /// The session, if `token` is the token of its files runner (`status.filesTokenHash`)
    /// and the session has no run (a run's runner serves its files).
    pub async fn authenticate_files_runner(
        &self,
        key: &SessionKey,
        token: &str,
    ) -> Result<LiveSession, Refusal> {
        let live = self.live_session(&Caller::system(), key).await?;
        let presented = operator::token::token_hash_hex(token);
        let expected = live
            .record
            .session
            .status
            .as_ref()
            .and_then(|s| s.files_token_hash.as_deref());
        match expected {
            Some(expected) if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) => {}
            _ => {
                return Err(Refusal::Unauthorized(
                    "invalid files runner token for this session".into(),
                ));
            }
        }
        if live.record.session.phase().is_active() {
            return Err(Refusal::Unauthorized(format!(
                "the session is {}: its run's runner serves its files",
                live.record.session.phase()
            )));
        }
        Ok(live)
    }

    /// Admits an authenticated runner that says it runs `generation`: only the current run,
    /// whose log is begun here if the server has not seen the run start yet.
    pub async fn admit_runner(
        &self,
        live: LiveSession,
        generation: u64,
    ) -> Result<AdmittedRun, Refusal> {
        let current = live.record.run.generation;
        if generation != current {
            return Err(Refusal::NotCurrent(format!(
                "generation {generation} is not current (the session is at {current})"
            )));
        }
        if live.counters.generation < current {
            // Kubernetes mode: the run was decided in the cluster and its pod connected
            // before the server's follower saw it. Begin it now (once; the follower's turn
            // then changes nothing).
            self.log
                .begin_run(live.log, current, live.record.session.has_conversation())
                .await
                .map_err(|e| Refusal::Failed(e.into()))?;
        }
        let link_hosts = self.link_hosts(&live).await;
        Ok(AdmittedRun { live, link_hosts })
    }

    /// Takes a batch of a runner's events: only what runners produce (anything else refuses
    /// the batch), a link to a host the session has nothing to do with kept as an error
    /// saying so; `on_commit` is told the highest runner sequence once committed; the
    /// agent's conversation id recorded when an event reports it.
    pub async fn take_runner_events(
        &self,
        key: &SessionKey,
        run: &AdmittedRun,
        log: LogId,
        mut batch: Vec<RunnerEvent>,
        on_commit: impl FnOnce(u64) + Send + 'static,
    ) -> Result<(), Refusal> {
        for e in &mut batch {
            if !e.event.from_runner() {
                return Err(Refusal::BadEvent(format!(
                    "runners may not send {} events",
                    e.event.kind()
                )));
            }
            if let Some((what, host)) = foreign_link(&e.event, &run.link_hosts) {
                e.event = SessionEvent::Error(ErrorEvent {
                    message: format!(
                        "a {what} link to {host} was refused: it is not on a host of this session's repositories"
                    ),
                    code: Some("refused_link".into()),
                });
            }
        }
        let asked: Vec<String> = batch
            .iter()
            .filter_map(|e| match &e.event {
                SessionEvent::Ask(a) => Some(a.id.clone()),
                _ => None,
            })
            .collect();
        let appended = self
            .log
            .append_runner_events(log, run.generation(), batch, on_commit)
            .await
            .map_err(|e| match ApiError::from(e) {
                ApiError::NotFound(_) => Refusal::Gone,
                other => Refusal::Failed(other),
            })?;
        if !asked.is_empty() {
            self.runners.asks(log, &asked, &[]);
        }
        if let Some(conversation) = appended.conversation {
            // What a continued session resumes.
            self.records
                .set_sdk_session_id(&Caller::system(), key, &conversation)
                .await
                .map_err(|e| Refusal::Failed(e.into()))?;
        }
        Ok(())
    }

    /// The hosts a session's pull requests may be on: its repositories', and its forges' (the
    /// public ones, and the APIs its project or the server configured).
    async fn link_hosts(&self, live: &LiveSession) -> Vec<String> {
        let mut hosts: Vec<String> = vec!["github.com".into(), "gitlab.com".into()];
        for repo in &live.record.session.spec.repos {
            let url = &repo.url;
            let host = host_of(url).or_else(|| {
                // scp-like `user@host:path`
                let (user_host, _) = url.split_once(':')?;
                Some(user_host.rsplit('@').next()?.to_ascii_lowercase())
            });
            hosts.extend(host);
        }
        let project = live
            .record
            .session
            .metadata
            .namespace
            .clone()
            .unwrap_or_default();
        if let Ok(creds) = self.run_credentials(&Caller::system(), &project).await {
            hosts.extend(
                [creds.github_api_url, creds.gitlab_api_url]
                    .iter()
                    .flatten()
                    .filter_map(|u| host_of(u)),
            );
        }
        hosts
    }
}

/// What kind of link `event` holds and its host, when that host is not among `hosts`: a
/// pull request is always a web link; a push's remote when it is one (a path or an
/// scp-like remote is not shown as a link).
fn foreign_link(event: &SessionEvent, hosts: &[String]) -> Option<(&'static str, String)> {
    let (what, url, must_be_web) = match event {
        SessionEvent::PullRequest(pr) => ("pull request", pr.url.as_str(), true),
        SessionEvent::GitPush(p) => ("push", p.remote.as_str(), false),
        _ => return None,
    };
    match host_of(url) {
        Some(host) if hosts.contains(&host) => None,
        Some(host) => Some((what, host)),
        None if must_be_web => Some((what, url.chars().take(100).collect())),
        None if url.starts_with("http:") || url.starts_with("https:") => {
            Some((what, url.chars().take(100).collect()))
        }
        None => None,
    }
}

/// The host of an http(s) URL, lowercase.
fn host_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https")
        .then(|| parsed.host_str().map(str::to_ascii_lowercase))
        .flatten()
}
