//! Delivering the agent's work: for each repository whose work is pushed, commit what the
//! agent left, push the working branch, open a pull request. Each step is reported as an
//! event; a failure is an error event and never changes the run's result.

use model::protocol::{ErrorEvent, GitPush, LogLevel, LogLine, PullRequest, SessionEvent};

use crate::config::Config;
use crate::forge;
use crate::git;
use crate::link::Link;
use crate::workspace::{Repo, Workspace, credential_for};

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
    link.emit(SessionEvent::Error(ErrorEvent {
        message,
        code: Some(code.into()),
    }));
}

fn log(link: &Link, message: String) {
    link.emit(SessionEvent::Log(LogLine {
        level: LogLevel::Info,
        message,
    }));
}

/// Delivers every repository whose work is pushed.
pub async fn deliver(config: &Config, ws: &Workspace, link: &Link, summary: &Summary) {
    for repo in &ws.repos {
        if let Some(branch) = &repo.work_branch {
            deliver_repo(config, ws, repo, branch, link, summary).await;
        }
    }
}

/// Commits what the agent left (confined: the repository is the agent's), brings the
/// commits into the runner's delivery repository (the reading side confined), and pushes
/// from there with the token, so no git outside the sandbox reads anything the agent wrote.
async fn deliver_repo(
    config: &Config,
    ws: &Workspace,
    repo: &Repo,
    branch: &str,
    link: &Link,
    summary: &Summary,
) {
    let credential = match credential_for(config, &repo.url, repo.provider) {
        Ok(c) => c,
        Err(why) => return error(link, "push_rejected", format!("{}: {why}", repo.name)),
    };
    let title = title(config, summary);
    let jail = &ws.confinement;
    // 1. Commit what the agent left uncommitted.
    match git::confined(jail, &repo.dir, &["status", "--porcelain"]).await {
        Ok(status) if !status.trim().is_empty() => {
            let message = format!(
                "{title}\n\nCommitted by the Ambient Code Platform at the end of session {}.",
                config.session_name
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
    // 2. The commits, into the runner's own repository.
    let fetched = async {
        let delivery = git::Delivery::open(ws.delivery_dir(repo), &repo.url).await?;
        delivery.fetch(jail, &repo.dir, &repo.base).await?;
        Ok::<_, git::GitError>(delivery)
    };
    let delivery = match fetched.await {
        Ok(d) => d,
        Err(e) => {
            return error(
                link,
                "push_rejected",
                format!(
                    "could not take the work of {} for delivery: {}",
                    repo.name, e.message
                ),
            );
        }
    };
    // 3. Anything to deliver at all?
    let range = format!("{}..{}", git::DELIVERED_BASE, git::DELIVERED_HEAD);
    let ahead = git::git(&delivery.dir, &["rev-list", "--count", &range], None).await;
    if ahead.as_deref().is_ok_and(|n| n.trim() == "0") {
        return log(link, format!("{}: no changes to push", repo.name));
    }
    // 4. Push the working branch.
    let refspec = format!("{}:refs/heads/{branch}", git::DELIVERED_HEAD);
    let lease = format!("--force-with-lease=refs/heads/{branch}");
    if let Err(e) = git::git(
        &delivery.dir,
        &["push", "--quiet", &lease, "origin", &refspec],
        credential.as_ref(),
    )
    .await
    {
        return error(
            link,
            "push_rejected",
            format!("pushing {} to {branch} failed: {}", repo.name, e.message),
        );
    }
    let commit = git::git(&delivery.dir, &["rev-parse", git::DELIVERED_HEAD], None)
        .await
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    link.emit(SessionEvent::GitPush(GitPush {
        repo: repo.name.clone(),
        remote: git::redact_url(&repo.url),
        branch: branch.to_owned(),
        commit,
    }));
    // 5. Open the pull request.
    open_pr(config, repo, branch, link, &title, summary).await;
}

async fn open_pr(
    config: &Config,
    repo: &Repo,
    branch: &str,
    link: &Link,
    title: &str,
    summary: &Summary,
) {
    let Some(forge) = config.forges.locate(&repo.url, repo.provider) else {
        return log(
            link,
            format!(
                "{}: pushed {branch}; no pull request, as the remote is on no GitHub or GitLab this project is configured for",
                repo.name
            ),
        );
    };
    // The API token goes to the forge's configured API (never to a host a repository URL
    // names), and never in clear text beyond this machine.
    let (var, token) = match forge.provider {
        model::session::GitProvider::Github => ("GITHUB_TOKEN", &config.credentials.github_token),
        model::session::GitProvider::Gitlab => ("GITLAB_TOKEN", &config.credentials.gitlab_token),
    };
    if forge.api.starts_with("http://") && !is_loopback_url(&forge.api) {
        return error(
            link,
            "pr_failed",
            format!(
                "cannot open a pull request for {}: refusing to send {var} to {} over plain http",
                repo.name, forge.api
            ),
        );
    }
    let Some(token) = token else {
        return error(
            link,
            "pr_failed",
            format!(
                "cannot open a pull request for {}: no {var} is set in the project's settings",
                repo.name
            ),
        );
    };
    let body = body(config, summary, branch);
    match forge::open_pull_request(&forge, token, branch, &repo.base, title, &body).await {
        Ok(pr) => link.emit(SessionEvent::PullRequest(PullRequest {
            repo: repo.name.clone(),
            url: pr.url,
            number: pr.number,
        })),
        Err(why) => error(
            link,
            "pr_failed",
            format!("opening a pull request for {} failed: {why}", repo.name),
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
