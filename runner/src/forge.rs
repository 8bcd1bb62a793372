//! Pull requests (GitHub) and merge requests (GitLab), including self-hosted instances.

use std::time::Duration;

use model::session::GitProvider;
use serde_json::{Value, json};

/// Where a repository lives on its forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeRepo {
    /// GitHub or GitLab.
    pub provider: GitProvider,
    /// Base URL of the REST API (`https://api.github.com`, `https://host/api/v4` ...).
    pub api: String,
    /// `owner/repo` (GitHub) or `group/sub/project` (GitLab).
    pub path: String,
}

/// An opened (or already open) pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Web URL.
    pub url: String,
    /// Number (GitHub) or iid (GitLab).
    pub number: u64,
}

/// API base URLs configured for the run (`GITHUB_API_URL`, `GITLAB_API_URL`).
#[derive(Debug, Clone, Default)]
pub struct ApiUrls {
    /// GitHub's API base, if set.
    pub github: Option<String>,
    /// GitLab's API base, if set.
    pub gitlab: Option<String>,
}

/// The forge of a remote URL: its provider (given, or guessed from the host), API base and
/// repository path. `None` when there is no way to reach an API (a local file remote with no
/// API configured).
pub fn locate(url: &str, provider: Option<GitProvider>, apis: &ApiUrls) -> Option<ForgeRepo> {
    let (host, path) = host_and_path(url)?;
    let provider = provider.unwrap_or(if host.contains("gitlab") {
        GitProvider::Gitlab
    } else {
        GitProvider::Github
    });
    let path = path
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .to_owned();
    let (api, path) = match provider {
        GitProvider::Github => {
            let api = apis.github.clone().or_else(|| match host.as_str() {
                "" => None,
                "github.com" => Some("https://api.github.com".into()),
                h => Some(format!("https://{h}/api/v3")),
            })?;
            // owner/repo: the last two segments.
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            (api, segments[segments.len().saturating_sub(2)..].join("/"))
        }
        GitProvider::Gitlab => {
            let api = apis
                .gitlab
                .clone()
                .or_else(|| (!host.is_empty()).then(|| format!("https://{host}/api/v4")))?;
            let path = if host.is_empty() {
                let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                segments[segments.len().saturating_sub(2)..].join("/")
            } else {
                path.trim_start_matches('/').to_owned()
            };
            (api, path)
        }
    };
    (path.contains('/')).then_some(ForgeRepo {
        provider,
        api: api.trim_end_matches('/').to_owned(),
        path,
    })
}

/// Host (empty for file URLs) and path of a remote URL.
fn host_and_path(url: &str) -> Option<(String, String)> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some((String::new(), path.to_owned()));
    }
    if let Some((_, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host.split(':').next().unwrap_or(host);
        return Some((host.to_ascii_lowercase(), path.to_owned()));
    }
    // scp-like: user@host:path
    let (user_host, path) = url.split_once(':')?;
    let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
    Some((host.to_ascii_lowercase(), path.to_owned()))
}

/// Opens a pull request from `head` into `base`, or finds the one already open.
pub async fn open_pull_request(
    repo: &ForgeRepo,
    token: &str,
    head: &str,
    base: &str,
    title: &str,
    body: &str,
) -> Result<Opened, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .user_agent("ambient-code-runner")
        .build()
        .map_err(|e| e.to_string())?;
    match repo.provider {
        GitProvider::Github => github(&client, repo, token, head, base, title, body).await,
        GitProvider::Gitlab => gitlab(&client, repo, token, head, base, title, body).await,
    }
}

async fn github(
    client: &reqwest::Client,
    repo: &ForgeRepo,
    token: &str,
    head: &str,
    base: &str,
    title: &str,
    body: &str,
) -> Result<Opened, String> {
    let url = format!("{}/repos/{}/pulls", repo.api, repo.path);
    let auth = |r: reqwest::RequestBuilder| {
        r.bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
    };
    let resp = auth(client.post(&url))
        .json(&json!({"title": title, "head": head, "base": base, "body": body}))
        .send()
        .await
        .map_err(|e| format!("GitHub is unreachable: {e}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return opened(&v, "html_url", "number");
    }
    // 422 when a pull request for the branch exists already: report that one.
    if status.as_u16() == 422 && v.to_string().contains("already exists") {
        let owner = repo.path.split('/').next().unwrap_or_default();
        let list: Value = auth(client.get(&url))
            .query(&[
                ("head", format!("{owner}:{head}")),
                ("state", "open".into()),
            ])
            .send()
            .await
            .map_err(|e| format!("GitHub is unreachable: {e}"))?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(first) = list.as_array().and_then(|a| a.first()) {
            return opened(first, "html_url", "number");
        }
    }
    Err(format!("GitHub answered {status}: {}", api_message(&v)))
}

async fn gitlab(
    client: &reqwest::Client,
    repo: &ForgeRepo,
    token: &str,
    head: &str,
    base: &str,
    title: &str,
    body: &str,
) -> Result<Opened, String> {
    let project = repo.path.replace('/', "%2F");
    let url = format!("{}/projects/{project}/merge_requests", repo.api);
    let resp = client
        .post(&url)
        .header("private-token", token)
        .json(&json!({"source_branch": head, "target_branch": base, "title": title, "description": body}))
        .send()
        .await
        .map_err(|e| format!("GitLab is unreachable: {e}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return opened(&v, "web_url", "iid");
    }
    if status.as_u16() == 409 {
        let list: Value = client
            .get(&url)
            .header("private-token", token)
            .query(&[("source_branch", head), ("state", "opened")])
            .send()
            .await
            .map_err(|e| format!("GitLab is unreachable: {e}"))?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(first) = list.as_array().and_then(|a| a.first()) {
            return opened(first, "web_url", "iid");
        }
    }
    Err(format!("GitLab answered {status}: {}", api_message(&v)))
}

fn opened(v: &Value, url_key: &str, number_key: &str) -> Result<Opened, String> {
    match (v[url_key].as_str(), v[number_key].as_u64()) {
        (Some(url), Some(number)) => Ok(Opened {
            url: url.to_owned(),
            number,
        }),
        _ => Err(format!(
            "unexpected answer: {}",
            crate::translate::truncate(v.to_string(), 300)
        )),
    }
}

fn api_message(v: &Value) -> String {
    let text = v["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string());
    crate::translate::truncate(text, 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apis() -> ApiUrls {
        ApiUrls::default()
    }

    #[test]
    fn remotes_map_to_their_forge() {
        let gh = locate(
            "https://github.com/ambient-code/platform.git",
            None,
            &apis(),
        )
        .unwrap();
        assert_eq!(
            (gh.provider, gh.api.as_str(), gh.path.as_str()),
            (
                GitProvider::Github,
                "https://api.github.com",
                "ambient-code/platform"
            )
        );
        let ghe = locate("git@ghe.corp.example:team/app.git", None, &apis()).unwrap();
        assert_eq!(
            (ghe.api.as_str(), ghe.path.as_str()),
            ("https://ghe.corp.example/api/v3", "team/app")
        );
        let gl = locate(
            "https://gitlab.example.com:8443/group/sub/project.git",
            None,
            &apis(),
        )
        .unwrap();
        assert_eq!(
            (gl.provider, gl.api.as_str(), gl.path.as_str()),
            (
                GitProvider::Gitlab,
                "https://gitlab.example.com/api/v4",
                "group/sub/project"
            )
        );
        let forced = locate(
            "https://code.example.com/g/p",
            Some(GitProvider::Gitlab),
            &apis(),
        )
        .unwrap();
        assert_eq!(forced.api, "https://code.example.com/api/v4");
        // A file remote needs a configured API.
        assert_eq!(locate("file:///srv/git/org/app.git", None, &apis()), None);
        let local = ApiUrls {
            github: Some("http://127.0.0.1:9/".into()),
            gitlab: None,
        };
        let f = locate(
            "file:///srv/git/org/app.git",
            Some(GitProvider::Github),
            &local,
        )
        .unwrap();
        assert_eq!(
            (f.api.as_str(), f.path.as_str()),
            ("http://127.0.0.1:9", "org/app")
        );
    }
}
