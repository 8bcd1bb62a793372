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

/// A forge the run may talk to: where its API is and which host its repositories are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forge {
    /// GitHub or GitLab.
    pub provider: GitProvider,
    /// Base URL of its REST API.
    pub api: String,
    /// Host name of its repositories (`github.com`, `ghe.corp`, the API's own host when
    /// configured).
    pub host: String,
    /// Whether its API was configured (not the public default).
    pub configured: bool,
}

/// The forges of a run, from its configuration only: tokens and API calls go to these and
/// nowhere a repository URL names.
#[derive(Debug, Clone)]
pub struct Forges {
    github: Forge,
    gitlab: Forge,
}

impl Forges {
    /// GitHub at `GITHUB_API_URL` (default: github.com), GitLab at `GITLAB_API_URL`
    /// (default: gitlab.com).
    pub fn new(apis: &ApiUrls) -> Forges {
        let forge = |provider, api: &Option<String>, default_api: &str, default_host: &str| {
            let configured = api.is_some();
            let api = api
                .clone()
                .unwrap_or_else(|| default_api.to_owned())
                .trim_end_matches('/')
                .to_owned();
            let host = if configured {
                host_and_path(&format!("{api}/"))
                    .map(|(h, _)| h)
                    .unwrap_or_default()
            } else {
                default_host.to_owned()
            };
            Forge {
                provider,
                api,
                host,
                configured,
            }
        };
        Forges {
            github: forge(
                GitProvider::Github,
                &apis.github,
                "https://api.github.com",
                "github.com",
            ),
            gitlab: forge(
                GitProvider::Gitlab,
                &apis.gitlab,
                "https://gitlab.com/api/v4",
                "gitlab.com",
            ),
        }
    }

    fn get(&self, provider: GitProvider) -> &Forge {
        match provider {
            GitProvider::Github => &self.github,
            GitProvider::Gitlab => &self.gitlab,
        }
    }

    /// The forge a remote is on: the configured one whose host is the remote's (and, when
    /// given, of that provider). A local file remote belongs to the forge it names, or else
    /// to a configured one. `None`: the remote is on no forge of this run, and gets no token
    /// and no pull request.
    pub fn of(&self, url: &str, provider: Option<GitProvider>) -> Option<&Forge> {
        let (host, _) = host_and_path(url)?;
        let candidates = [&self.github, &self.gitlab];
        if host.is_empty() {
            return match provider {
                Some(p) => Some(self.get(p)),
                None => candidates.into_iter().find(|f| f.configured),
            };
        }
        candidates
            .into_iter()
            .find(|f| f.host == host && provider.is_none_or(|p| p == f.provider))
    }

    /// Where a remote lives on its forge, for opening a pull request.
    pub fn locate(&self, url: &str, provider: Option<GitProvider>) -> Option<ForgeRepo> {
        let forge = self.of(url, provider)?;
        let (host, path) = host_and_path(url)?;
        let path = path
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .trim_start_matches('/')
            .to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let path = match forge.provider {
            // owner/repo: the last two segments.
            GitProvider::Github => segments[segments.len().saturating_sub(2)..].join("/"),
            GitProvider::Gitlab if host.is_empty() => {
                segments[segments.len().saturating_sub(2)..].join("/")
            }
            GitProvider::Gitlab => segments.join("/"),
        };
        (path.contains('/')).then(|| ForgeRepo {
            provider: forge.provider,
            api: forge.api.clone(),
            path,
        })
    }
}

/// The host of a web link (a pull request's), lowercase.
pub fn link_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    host_and_path(&format!("https://{rest}")).map(|(h, _)| h)
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
    // Never through a proxy the environment names: it would see the token.
    let client = reqwest::Client::builder()
        .no_proxy()
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

    fn forges(github: Option<&str>, gitlab: Option<&str>) -> Forges {
        Forges::new(&ApiUrls {
            github: github.map(str::to_owned),
            gitlab: gitlab.map(str::to_owned),
        })
    }

    #[test]
    fn remotes_map_to_their_configured_forge_only() {
        let public = forges(None, None);
        let gh = public
            .locate("https://github.com/ambient-code/platform.git", None)
            .unwrap();
        assert_eq!(
            (gh.provider, gh.api.as_str(), gh.path.as_str()),
            (
                GitProvider::Github,
                "https://api.github.com",
                "ambient-code/platform"
            )
        );
        let gl = public
            .locate("https://gitlab.com/group/sub/project.git", None)
            .unwrap();
        assert_eq!(
            (gl.provider, gl.api.as_str(), gl.path.as_str()),
            (
                GitProvider::Gitlab,
                "https://gitlab.com/api/v4",
                "group/sub/project"
            )
        );
        // A host no forge of the run is on gets no API call (and no token): its URL does not
        // decide where the token goes.
        for url in [
            "https://evil.example.com/o/r.git",
            "git@ghe.corp.example:team/app.git",
            "https://github.com.evil.example/o/r",
        ] {
            assert_eq!(public.of(url, None), None, "{url}");
        }
        assert_eq!(
            public.of("https://evil.example.com/o/r", Some(GitProvider::Github)),
            None
        );
        // A self-hosted forge is the configured one, on its API's host.
        let own = forges(
            Some("https://ghe.corp.example/api/v3"),
            Some("https://gitlab.example.com:8443/api/v4"),
        );
        let ghe = own
            .locate("git@ghe.corp.example:team/app.git", None)
            .unwrap();
        assert_eq!(
            (ghe.api.as_str(), ghe.path.as_str()),
            ("https://ghe.corp.example/api/v3", "team/app")
        );
        assert!(own.of("https://github.com/o/r", None).is_none());
        let sub = own
            .locate(
                "https://gitlab.example.com:8443/group/sub/project.git",
                None,
            )
            .unwrap();
        assert_eq!(sub.path, "group/sub/project");
        // A local file remote needs a configured API.
        assert_eq!(public.locate("file:///srv/git/org/app.git", None), None);
        let local = forges(Some("http://127.0.0.1:9/"), None);
        let f = local.locate("file:///srv/git/org/app.git", None).unwrap();
        assert_eq!(
            (f.api.as_str(), f.path.as_str()),
            ("http://127.0.0.1:9", "org/app")
        );
        assert_eq!(
            link_host("https://GitHub.com/o/r/pull/1").as_deref(),
            Some("github.com")
        );
    }
}
