//! The workspace's files, through the session's runner (local mode; Kubernetes mode:
//! `kubernetes::an_interactive_session_keeps_its_agent_warm_in_its_pod_between_turns`):
//! listing, reading, each repository's diff, the archive, uploads the agent is told about;
//! the agent's symbolic links are shown, never followed; viewers read, editors upload; a
//! stopped session's files are served by a files runner started on demand, and what is
//! uploaded meanwhile is told to the next run's agent.

use std::io::Read;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{login, run, text};
use crate::common::forge::bare_repo;
use crate::common::{Api, TestServer, assert_error, call, with_mock};

const SESSIONS: &str = "/api/projects/default/agentic-sessions";

/// Waits until the session's agent has answered `turns` messages and waits.
async fn answered(s: &TestServer, name: &str, turns: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (_, export) = call(s, "GET", &format!("{SESSIONS}/{name}/export"), None).await;
        let done = export["events"]
            .as_array()
            .map(|es| {
                es.iter()
                    .filter(|e| e["event"]["type"] == "turn_result")
                    .count()
            })
            .unwrap_or(0);
        let idle = s.session(name).await["status"]["agentStatus"] == "idle";
        if done >= turns && idle {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} did not answer {turns} messages: {export}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET of raw bytes: status, headers, body.
async fn get_raw(s: &impl Api, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = s.client().get(s.at(path)).send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

async fn put_raw(s: &impl Api, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = s.client().put(s.at(path)).body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn names(listing: &Value) -> Vec<String> {
    listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_sessions_workspace_is_listed_read_diffed_archived_and_uploaded_to() {
    let (s, mock, dir) = with_mock().await;
    let repos = tempfile::tempdir().unwrap();
    let app = bare_repo(repos.path(), "acme", "app", None);
    let (st, created) = call(
        &s,
        "POST",
        SESSIONS,
        Some(json!({"initialPrompt": "create notes.md", "repos": [{"url": app}]})),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let name = created["name"].as_str().unwrap().to_owned();
    let at = format!("{SESSIONS}/{name}");
    answered(&s, &name, 1).await;
    // The agent links out of the workspace (and to its parent), and makes a FIFO that would
    // hang a reader.
    let (st, body) = call(
        &s,
        "POST",
        &format!("{at}/messages"),
        Some(json!({"text": "run: ln -s /etc/passwd pw && ln -s .. up && mkfifo pipe"})),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    answered(&s, &name, 2).await;

    // The root: the agent's folders, not the platform's own.
    let (st, root) = call(&s, "GET", &format!("{at}/workspace"), None).await;
    assert_eq!(st, 200, "{root}");
    let top = names(&root);
    assert!(top.contains(&"repos".to_owned()), "{root}");
    assert!(
        !top.iter().any(|n| n == ".ambient" || n == ".claude"),
        "{root}"
    );
    let (st, repo) = call(&s, "GET", &format!("{at}/workspace?path=repos/app"), None).await;
    assert_eq!(st, 200, "{repo}");
    let items = repo["items"].as_array().unwrap();
    let pw = items
        .iter()
        .find(|i| i["name"] == "pw")
        .expect("the link is listed");
    assert_eq!(pw["link"], "/etc/passwd", "{pw}");
    assert_eq!(pw["isDir"], false, "{pw}");
    assert!(
        items
            .iter()
            .any(|i| i["name"] == "notes.md" && i["size"].as_u64() > Some(0))
    );

    // A file, as an attachment under a sandboxing policy.
    let (st, headers, bytes) = get_raw(&s, &format!("{at}/workspace/repos/app/notes.md")).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(
        bytes,
        std::fs::read(s.workspace(&name).join("repos/app/notes.md")).unwrap()
    );
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // Every way out is refused: the agent's links (to a file, through a directory), `..`,
    // absolute paths, the platform's folder, a FIFO.
    for (path, status, kind) in [
        ("workspace/repos/app/pw", 403, "forbidden"),
        ("workspace/repos/app/up/app/notes.md", 403, "forbidden"),
        ("workspace?path=repos/app/up", 403, "forbidden"),
        ("workspace?path=..", 400, "invalid"),
        ("workspace?path=repos/../..", 400, "invalid"),
        ("workspace?path=/etc", 400, "invalid"),
        ("workspace/repos/..%2F..%2F..%2Fetc/passwd", 400, "invalid"),
        ("workspace/.ambient/runner.json", 404, "not_found"),
        ("workspace/repos/app/pipe", 400, "invalid"),
        ("workspace/repos/app/missing.txt", 404, "not_found"),
    ] {
        let got = call(&s, "GET", &format!("{at}/{path}"), None).await;
        assert_eq!(
            (got.0, got.1["error"].as_str()),
            (status, Some(kind)),
            "{path}: {}",
            got.1
        );
    }

    // The repository's branch and changes.
    let (st, git) = call(&s, "GET", &format!("{at}/git/status"), None).await;
    assert_eq!(st, 200, "{git}");
    let repo = &git["items"][0];
    assert_eq!(repo["name"], "app", "{git}");
    assert_eq!(repo["branch"], "main", "{git}");
    let changes: Vec<&str> = repo["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(changes.contains(&"?? notes.md"), "{git}");

    // Uploads: into file-uploads/ only, the name sanitised, at most 10 MiB.
    let (st, up) = put_raw(
        &s,
        &format!("{at}/workspace/file-uploads/my%20notes.txt"),
        b"pineapple\n".to_vec(),
    )
    .await;
    assert_eq!(st, 201, "{up}");
    assert_eq!(up, json!({"path": "file-uploads/my_notes.txt", "size": 10}));
    let uploaded = s.workspace(&name).join("file-uploads/my_notes.txt");
    assert_eq!(std::fs::read(&uploaded).unwrap(), b"pineapple\n");
    // Nowhere else: the rest of the workspace is the agent's (no PUT there), and a name that
    // is nothing once cleaned is refused.
    for (path, status, kind) in [
        ("workspace/repos/app/evil.sh", 405, "method_not_allowed"),
        ("workspace/file-uploads/a/b.txt", 405, "method_not_allowed"),
        ("workspace/file-uploads/...", 400, "invalid"),
    ] {
        let (st, body) = put_raw(&s, &format!("{at}/{path}"), b"x".to_vec()).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (status, Some(kind)),
            "{path}: {body}"
        );
    }
    // The upload reads back on its own path.
    let (st, _, bytes) = get_raw(&s, &format!("{at}/workspace/file-uploads/my_notes.txt")).await;
    assert_eq!((st, bytes.as_slice()), (200, &b"pineapple\n"[..]));
    let (st, body) = put_raw(
        &s,
        &format!("{at}/workspace/file-uploads/big.bin"),
        vec![7; 10 * 1024 * 1024 + 1],
    )
    .await;
    assert_eq!(
        (st, body["error"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    // The runner drops the partial file once told (the call's cancel follows the answer).
    let uploads = s.workspace(&name).join("file-uploads");
    let listed = || -> Vec<String> {
        std::fs::read_dir(&uploads)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listed().len() > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        listed(),
        ["my_notes.txt"],
        "nothing is left of a refused upload"
    );

    // The agent is told with its next message, and can read it.
    let before = mock.requests().len();
    let (st, _) = call(
        &s,
        "POST",
        &format!("{at}/messages"),
        Some(json!({"text": "run: cat ../../file-uploads/my_notes.txt"})),
    )
    .await;
    assert_eq!(st, 202);
    answered(&s, &name, 3).await;
    let sent = serde_json::to_string(
        &mock.requests()[before..]
            .iter()
            .map(|r| &r.body)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        sent.contains("file-uploads/my_notes.txt (10 bytes"),
        "the agent is told of the upload"
    );
    assert!(sent.contains("pineapple"), "the agent read it");

    // The archive: the workspace, links as links, without the platform's folder.
    let (st, headers, gz) = get_raw(&s, &format!("{at}/workspace.tar.gz")).await;
    assert_eq!(st, 200);
    assert_eq!(headers["content-type"], "application/gzip");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
    let mut seen = std::collections::HashMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut content = String::new();
        if entry.header().entry_type().is_file() {
            entry.read_to_string(&mut content).unwrap_or_default();
        }
        seen.insert(path, (link, content));
    }
    assert_eq!(seen["file-uploads/my_notes.txt"].1, "pineapple\n");
    assert_eq!(seen["repos/app/pw"].0.as_deref(), Some("/etc/passwd"));
    assert!(
        !seen.keys().any(|p| p.starts_with(".ambient")),
        "{:?}",
        seen.keys()
    );

    // The same through the CLI.
    let home = tempfile::tempdir().unwrap();
    let config = login(&s, home.path(), &s.key).await;
    let out = run(&config, &["files", "ls", &name, "repos/app"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("pw -> /etc/passwd") && listed.contains("notes.md"),
        "{listed}"
    );
    let out = run(
        &config,
        &["files", "cat", &name, "file-uploads/my_notes.txt"],
    )
    .await;
    assert_eq!(out.stdout, b"pineapple\n", "{}", text(&out));
    let out = run(&config, &["files", "diff", &name]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("?? notes.md"),
        "{}",
        text(&out)
    );
    let local = home.path().join("report.csv");
    std::fs::write(&local, "a,b\n").unwrap();
    let out = run(
        &config,
        &["files", "upload", &name, local.to_str().unwrap()],
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "file-uploads/report.csv",
        "{}",
        text(&out)
    );
    let tarball = home.path().join("ws.tar.gz");
    let out = run(
        &config,
        &["files", "download", &name, tarball.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success() && tarball.metadata().unwrap().len() > 0,
        "{}",
        text(&out)
    );
    let out = run(&config, &["files", "cat", &name, "repos/app/pw"]).await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "a link is refused (403): {}",
        text(&out)
    );

    // Viewers read; only editors upload.
    let http = testkit::client_with_key(&crate::common::project_key(&s, "v", "view").await);
    let viewer = crate::common::TestServerView {
        http: &http,
        addr: s.addr.to_string(),
    };
    let (st, _) = call(&viewer, "GET", &format!("{at}/workspace"), None).await;
    assert_eq!(st, 200);
    let got = put_raw(
        &viewer,
        &format!("{at}/workspace/file-uploads/x.txt"),
        b"x".to_vec(),
    )
    .await;
    assert_eq!(
        (got.0, got.1["error"].as_str()),
        (403, Some("forbidden")),
        "{}",
        got.1
    );

    // Stopped: a files runner (no agent) serves the same workspace, started on demand.
    let (st, _) = call(&s, "POST", &format!("{at}/stop"), None).await;
    assert_eq!(st, 202);
    s.wait_phase(&name, &["Stopped"], Duration::from_secs(30))
        .await;
    let (st, root) = call(&s, "GET", &format!("{at}/workspace?path=repos/app"), None).await;
    assert_eq!(
        st,
        200,
        "a stopped session's files are served: {root}; the files runner said: {}",
        std::fs::read_to_string(s.workspace(&name).join(".ambient/files-runner.log"))
            .unwrap_or_else(|e| e.to_string())
    );
    assert!(names(&root).contains(&"notes.md".to_owned()), "{root}");
    let (st, _, bytes) = get_raw(&s, &format!("{at}/workspace/repos/app/notes.md")).await;
    assert_eq!(st, 200);
    assert_eq!(
        bytes,
        std::fs::read(s.workspace(&name).join("repos/app/notes.md")).unwrap()
    );
    let got = call(&s, "GET", &format!("{at}/workspace/repos/app/pw"), None).await;
    assert_error(&got, 403, "forbidden", "link");
    let (st, git) = call(&s, "GET", &format!("{at}/git/status"), None).await;
    assert_eq!(st, 200, "{git}");
    assert!(git.to_string().contains("notes.md"), "{git}");
    let (st, headers, gz) = get_raw(&s, &format!("{at}/workspace.tar.gz")).await;
    assert_eq!(
        (st, &headers["content-type"]),
        (200, &"application/gzip".parse().unwrap())
    );
    assert!(!gz.is_empty());
    // Viewers read it too; the phase does not move.
    let (st, _) = call(&viewer, "GET", &format!("{at}/workspace"), None).await;
    assert_eq!(st, 200);
    assert_eq!(s.session(&name).await["status"]["phase"], "Stopped");
    // An upload while stopped: the next run's agent is told.
    let (st, up) = put_raw(
        &s,
        &format!("{at}/workspace/file-uploads/later.txt"),
        b"mango\n".to_vec(),
    )
    .await;
    assert_eq!(st, 201, "{up}");
    assert_eq!(
        std::fs::read(s.workspace(&name).join("file-uploads/later.txt")).unwrap(),
        b"mango\n"
    );
    let before = mock.requests().len();
    let (st, _) = call(
        &s,
        "POST",
        &format!("{at}/messages"),
        Some(json!({"text": "run: cat ../../file-uploads/later.txt"})),
    )
    .await;
    assert_eq!(st, 202);
    s.wait_phase(&name, &["Running"], Duration::from_secs(30))
        .await;
    answered(&s, &name, 4).await;
    let sent = serde_json::to_string(
        &mock.requests()[before..]
            .iter()
            .map(|r| &r.body)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        sent.contains("file-uploads/later.txt (6 bytes"),
        "the agent of the next run is told of the upload made while stopped"
    );
    assert!(sent.contains("mango"), "the agent read it");
    assert!(
        !s.workspace(&name)
            .join("file-uploads/.uploaded-while-stopped")
            .exists(),
        "the note is taken once"
    );
    // The run's runner serves the files again; the files runner was ended.
    let (st, _) = call(&s, "GET", &format!("{at}/workspace"), None).await;
    assert_eq!(st, 200);
    // Stopped again: no runner outlives the test (its workspace goes with it).
    let (st, _) = call(&s, "POST", &format!("{at}/stop"), None).await;
    assert_eq!(st, 202);
    s.wait_phase(&name, &["Stopped"], Duration::from_secs(30))
        .await;
    drop(dir);
}
