//! Delivering the agent's work: for each repository whose work is pushed, commit what the
//! agent left, push the working branch, open a pull request. Each step is reported as an
//! event; a failure is an error event and never changes the run's result.
//!
//! The commit is the runner's (inside the agent's confinement); the push and the pull
//! request need the credentials, so they are done by whoever holds them ([`Keeper`]): the
//! runner itself ([`here`]), or the keeper container of a runner pod, which runs [`push`]
//! and [`propose`] on the commits the runner hands it.

use model::protocol::{
    ErrorEvent, GitPush, LogLevel, LogLine, MAX_CHANGES_DIFF, PullRequest, RepoChanges,
    SessionEvent,
};

use crate::config::Config;
use crate::forge;
use crate::git;
use crate::keeper::{Holdings, Keeper};
use crate::link::Link;
use crate::workspace::{Repo, Workspace};

/// What the pull request says about the run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The last thing the user asked in this run.
    pub last_request: Option<String>,
    /// The agent's last result text.
    pub result: Option<String>,
    /// Model calls in this run.
    pub turns: u32,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

fn error(link: &Link, code: &str, message: String) {
    tracing::warn!(code, "{message}");
    link.emit(error_event(code, message));
}

/// A failed step, as an event.
pub fn error_event(code: &str, message: String) -> SessionEvent {
    SessionEvent::Error(ErrorEvent {
        message,
        code: Some(code.into()),
    })
}

fn log_event(message: String) -> SessionEvent {
    SessionEvent::Log(LogLine {
        level: LogLevel::Info,
        message,
    })
}

/// Delivers every repository whose work is pushed: commits it, reports what it changed
/// ([`SessionEvent::Changes`]), then pushes and proposes it, unless the run holds its work
/// (an attempt no one has kept: the commit and the report only).
pub async fn deliver(
    config: &Config,
    ws: &Workspace,
    keeper: &Keeper,
    link: &Link,
    summary: &Summary,
) {
    for (index, repo) in ws.repos.iter().enumerate() {
        if let Some(branch) = &repo.work_branch {
            let proposal = Proposal {
                branch,
                title: title(config, summary),
                body: body(config, summary, branch),
            };
            deliver_repo(config, ws, keeper, index, repo, &proposal, link).await;
        }
    }
}

/// The branch the work goes to and the pull request that proposes it.
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    /// The working branch (`ambient/<session>`).
    pub branch: &'a str,
    /// The pull request's title.
    pub title: String,
    /// Its description.
    pub body: String,
}

/// Commits what the agent left (confined: the repository is the agent's), then hands the
/// commits to whoever holds the credentials (the runner itself, or the keeper of its pod),
/// which pushes and proposes them: no git outside the agent's confinement reads anything
/// the agent wrote.
async fn deliver_repo(
    config: &Config,
    ws: &Workspace,
    keeper: &Keeper,
    index: usize,
    repo: &Repo,
    proposal: &Proposal<'_>,
    link: &Link,
) {
    let jail = &ws.confinement;
    match git::confined(jail, &repo.dir, &["status", "--porcelain"]).await {
        Ok(status) if !status.trim().is_empty() => {
            let message = format!(
                "{}\n\nCommitted by the Ambient Code Platform at the end of session {}.",
                proposal.title, config.session_name
            );
            let committed = async {
                git::confined(jail, &repo.dir, &["add", "--all"]).await?;
                git::confined(jail, &repo.dir, &["commit", "--quiet", "-m", &message]).await
            };
            if let Err(e) = committed.await {
                return error(
                    link,
                    "commit_failed",
                    format!("could not commit the work in {}: {}", repo.name, e.message),
                );
            }
        }
        Ok(_) => {}
        Err(e) => {
            return error(
                link,
                "commit_failed",
                format!("could not read the state of {}: {}", repo.name, e.message),
            );
        }
    }
    match changes(jail, repo, proposal.branch, config.hold_delivery).await {
        Ok(changes) => link.emit(SessionEvent::Changes(changes)),
        Err(e) => link.emit(SessionEvent::Log(LogLine {
            level: LogLevel::Warn,
            message: format!(
                "could not measure what changed in {}: {}",
                repo.name, e.message
            ),
        })),
    }
    if config.hold_delivery {
        link.emit(log_event(format!(
            "{}: the work is held in the workspace until a person keeps this attempt; nothing was pushed",
            repo.name
        )));
        return;
    }
    for event in keeper.deliver(ws, index, repo, proposal).await {
        if let SessionEvent::Error(e) = &event {
            tracing::warn!(
                code = e.code.as_deref().unwrap_or_default(),
                "{}",
                e.message
            );
        }
        link.emit(event);
    }
}

/// What the work on `branch` changed in `repo`: its `HEAD` against the base branch as the
/// agent's repository has it (`origin/<base>`), from git confined as the agent is, the
/// diff cut at [`MAX_CHANGES_DIFF`] (git stopped there).
async fn changes(
    jail: &git::Confinement,
    repo: &Repo,
    branch: &str,
    held: bool,
) -> Result<RepoChanges, git::GitError> {
    let range = format!("refs/remotes/origin/{}...HEAD", repo.base);
    let commit = git::confined(jail, &repo.dir, &["rev-parse", "--verify", "HEAD"])
        .await?
        .trim()
        .to_owned();
    let diff_args = ["diff", "--no-ext-diff", "--no-textconv", "--no-color"];
    let (numstat, numstat_cut) = git::confined_capped(
        jail,
        &repo.dir,
        &[&diff_args[..], &["--numstat", &range]].concat(),
        MAX_CHANGES_DIFF,
    )
    .await?;
    let (files, insertions, deletions) = numstat_totals(&numstat);
    let (diff, truncated) = git::confined_capped(
        jail,
        &repo.dir,
        &[&diff_args[..], &[&range]].concat(),
        MAX_CHANGES_DIFF,
    )
    .await?;
    Ok(RepoChanges {
        repo: repo.name.clone(),
        branch: branch.to_owned(),
        base: repo.base.clone(),
        commit,
        files,
        insertions,
        deletions,
        diff,
        // Totals of a cut listing count only what it holds.
        truncated: truncated || numstat_cut,
        held,
    })
}

/// Files, lines added and lines removed of `git diff --numstat` (a binary file counts as a
/// file, with no lines).
fn numstat_totals(numstat: &str) -> (u32, u64, u64) {
    numstat
        .lines()
        .filter(|l| !l.trim().is_empty())
        .fold((0, 0, 0), |(files, ins, del), line| {
            let mut fields = line.split('\t');
            let mut count = || {
                fields
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let (i, d) = (count(), count());
            (files + 1, ins + i, del + d)
        })
}

/// Where one repository's work goes: its remote and the branches of its pull request.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Its name in the workspace.
    pub name: &'a str,
    /// Its remote, as the session configures it.
    pub url: &'a str,
    /// Its hosting, if given.
    pub provider: Option<model::session::GitProvider>,
    /// The pull request's base branch.
    pub base: &'a str,
}

/// The agent's commits, fetched into the runner's own delivery repository (the reading
/// side confined), pushed and proposed from there.
pub async fn here(
    holdings: &Holdings,
    ws: &Workspace,
    repo: &Repo,
    proposal: &Proposal<'_>,
) -> Vec<SessionEvent> {
    let target = Target {
        name: &repo.name,
        url: &repo.url,
        provider: repo.provider,
        base: &repo.base,
    };
    let fetched = async {
        let delivery = git::Delivery::open(ws.delivery_dir(repo), &repo.url).await?;
        delivery
            .fetch(&ws.confinement, &repo.dir, &repo.base)
            .await?;
        Ok::<_, git::GitError>(delivery)
    };
    match fetched.await {
        Ok(delivery) => {
            let mut events = push(holdings, &delivery, &target, proposal.branch).await;
            if pushed(&events) {
                events.push(propose(holdings, &target, proposal).await);
            }
            events
        }
        Err(e) => vec![error_event(
            "push_rejected",
            format!(
                "could not take the work of {} for delivery: {}",
                repo.name, e.message
            ),
        )],
    }
}

/// Whether these steps pushed the work.
pub fn pushed(events: &[SessionEvent]) -> bool {
    events.iter().any(|e| matches!(e, SessionEvent::GitPush(_)))
}

/// Pushes what a delivery repository holds (its `DELIVERED_HEAD`) to the working branch,
/// with the token of the remote's forge and a lease on what this repository last saw
/// there; the steps as events (a log when there is nothing to push).
pub async fn push(
    holdings: &Holdings,
    delivery: &git::Delivery,
    target: &Target<'_>,
    branch: &str,
) -> Vec<SessionEvent> {
    let credential = match holdings.credential_for(target.url, target.provider) {
        Ok(c) => c,
        Err(why) => {
            return vec![error_event(
                "push_rejected",
                format!("{}: {why}", target.name),
            )];
        }
    };
    let range = format!("{}..{}", git::DELIVERED_BASE, git::DELIVERED_HEAD);
    let ahead = git::git(&delivery.dir, &["rev-list", "--count", &range], None).await;
    if ahead.as_deref().is_ok_and(|n| n.trim() == "0") {
        return vec![log_event(format!("{}: no changes to push", target.name))];
    }
    let refspec = format!("{}:refs/heads/{branch}", git::DELIVERED_HEAD);
    let lease = format!("--force-with-lease=refs/heads/{branch}");
    if let Err(e) = git::git(
        &delivery.dir,
        &["push", "--quiet", &lease, "origin", &refspec],
        credential.as_ref(),
    )
    .await
    {
        return vec![error_event(
            "push_rejected",
            format!("pushing {} to {branch} failed: {}", target.name, e.message),
        )];
    }
    let commit = git::git(&delivery.dir, &["rev-parse", git::DELIVERED_HEAD], None)
        .await
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    vec![SessionEvent::GitPush(GitPush {
        repo: target.name.to_owned(),
        remote: git::redact_url(target.url),
        branch: branch.to_owned(),
        commit,
    })]
}

/// Opens (or finds) the pull request of a pushed branch.
pub async fn propose(
    holdings: &Holdings,
    target: &Target<'_>,
    proposal: &Proposal<'_>,
) -> SessionEvent {
    let name = target.name;
    let branch = proposal.branch;
    let Some(forge) = holdings.forges.locate(target.url, target.provider) else {
        return log_event(format!(
            "{name}: pushed {branch}; no pull request, as the remote is on no GitHub or GitLab this project is configured for"
        ));
    };
    // The API token goes to the forge's configured API (never to a host a repository URL
    // names), and never in clear text beyond this machine.
    let (var, token) = match forge.provider {
        model::session::GitProvider::Github => ("GITHUB_TOKEN", &holdings.credentials.github_token),
        model::session::GitProvider::Gitlab => ("GITLAB_TOKEN", &holdings.credentials.gitlab_token),
    };
    if forge.api.starts_with("http://") && !is_loopback_url(&forge.api) {
        return error_event(
            "pr_failed",
            format!(
                "cannot open a pull request for {name}: refusing to send {var} to {} over plain http",
                forge.api
            ),
        );
    }
    let Some(token) = token else {
        return error_event(
            "pr_failed",
            format!(
                "cannot open a pull request for {name}: no {var} is set in the project's settings"
            ),
        );
    };
    match forge::open_pull_request(
        &forge,
        token,
        branch,
        target.base,
        &proposal.title,
        &proposal.body,
    )
    .await
    {
        Ok(pr) => SessionEvent::PullRequest(PullRequest {
            repo: name.to_owned(),
            url: pr.url,
            number: pr.number,
        }),
        Err(why) => error_event(
            "pr_failed",
            format!("opening a pull request for {name} failed: {why}"),
        ),
    }
}

fn title(config: &Config, summary: &Summary) -> String {
    let text = config
        .display_name
        .clone()
        .or_else(|| config.initial_prompt.clone())
        .or_else(|| summary.last_request.clone())
        .unwrap_or_else(|| config.session_name.clone());
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("Agent changes")
        .to_owned();
    let short: String = line.chars().take(72).collect();
    if short.len() < line.len() {
        format!("{}…", short.trim_end())
    } else {
        short
    }
}

fn body(config: &Config, summary: &Summary, branch: &str) -> String {
    let mut b = format!(
        "Opened by the Ambient Code Platform for session `{}` (branch `{branch}`).\n",
        config.session_name
    );
    if let Some(task) = config
        .initial_prompt
        .as_ref()
        .or(summary.last_request.as_ref())
    {
        b.push_str(&format!(
            "\n### Task\n\n{}\n",
            crate::translate::truncate(task.clone(), 2000)
        ));
    }
    if let Some(result) = &summary.result {
        b.push_str(&format!(
            "\n### Result\n\n{}\n",
            crate::translate::truncate(result.clone(), 4000)
        ));
    }
    b.push_str(&format!(
        "\n---\n{} model turns, ${:.4} at list price.\n",
        summary.turns, summary.cost_usd
    ));
    b
}

/// Whether an http URL is on this machine's loopback interface.
fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numstat_counts_files_and_lines_binary_files_without_lines() {
        let numstat = "3\t1\tsrc/lib.rs\n-\t-\tlogo.png\n10\t0\tREADME.md\n";
        assert_eq!(numstat_totals(numstat), (3, 13, 1));
        assert_eq!(numstat_totals(""), (0, 0, 0));
    }
}
