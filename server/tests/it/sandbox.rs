//! The agent's sandbox, tried from inside: a prompt-injected agent (here a scripted mock
//! model) runs shell commands looking for the runner's token, the model key, git tokens,
//! the database and other sessions' workspaces, and finds none of them.

use std::time::Duration;

use model::protocol::SessionEvent;
use serde_json::json;

use crate::common::{call, exported_events, with_mock};

/// The output of every Bash call of a session, as the transcript shows it.
async fn tool_output(s: &crate::common::TestServer, name: &str) -> String {
    exported_events(s, name)
        .await
        .into_iter()
        .filter_map(|e| match e.event {
            SessionEvent::ToolResult(r) => Some(r.content),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sees_no_secret_no_database_and_no_other_workspace() {
    operator::local::probe_sandbox().expect("bubblewrap runs here (`make setup` installs it)");
    let (s, _mock, _dir) = with_mock().await;
    const GIT_TOKEN: &str = "ghp_sandboxtest_0123456789";
    let (st, body) = call(
        &s,
        "PUT",
        "/api/projects/default/runner-secrets",
        Some(json!({"data": {"GITHUB_TOKEN": GIT_TOKEN}})),
    )
    .await;
    assert!(st < 300, "{body}");
    // Another session, with a workspace of its own.
    let other = s.create_session("create other.txt").await;
    s.wait_phase(&other, &["Completed"], Duration::from_secs(90))
        .await;
    let other_ws = s.workspace(&other);
    assert!(other_ws.join("artifacts/other.txt").exists());

    let data = s.data_dir.display();
    let command = format!(
        "echo ENVIRON; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do \
           echo \"== $f\"; tr '\\0' '\\n' < $f; echo; done 2>&1; echo END-PROC; \
         echo DATA; ls -a {data}; cat {data}/install-secret; \
         echo OTHER; ls -a {}; \
         echo ENV; env; \
         echo PROCS; ls /proc | grep -c '^[0-9]'; \
         echo HOME; ls -a $HOME ~root 2>&1 | head -5",
        other_ws.display()
    );
    let name = s.create_session(&format!("run: {command}; sleep 2")).await;
    // The server found the sandbox working at start, so its runners must not do without:
    // a runner whose sandbox fails later fails its run rather than free its agent.
    s.wait_phase(&name, &["Running"], Duration::from_secs(30))
        .await;
    let runner = crate::common::processes_in(&s.workspace(&name))
        .into_iter()
        .find(|(_, cmd)| {
            cmd.split(' ')
                .next()
                .is_some_and(|e| e.ends_with("/runner"))
        })
        .expect("the session's runner");
    let environ = std::fs::read(format!("/proc/{}/environ", runner.0)).unwrap();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == format!("{}=required", model::runner_env::SANDBOX).as_bytes()),
        "the runner is not told the sandbox is required"
    );
    let phase = s
        .wait_phase(&name, &["Completed", "Failed"], Duration::from_secs(90))
        .await;
    let out = tool_output(&s, &name).await;
    assert_eq!(phase, "Completed", "{out}");
    assert!(out.contains("ENVIRON") && out.contains("PROCS"), "{out}");

    // No secret of the runner, the project or the server.
    for secret in [
        model::runner_env::RUNNER_TOKEN_PREFIX,
        "AMBIENT_RUNNER_TOKEN",
        "sk-test",
        GIT_TOKEN,
        "GITHUB_TOKEN",
        s.key.as_str(),
    ] {
        assert!(!out.contains(secret), "the agent saw {secret}:\n{out}");
    }
    // Every process the agent sees: bubblewrap's own (pid 1) has an empty environment and
    // nothing of the agent's set-up on its command line; the proxy token is in the agent's
    // own environment only (it is the agent's key to the proxy, and opens nothing else).
    let procs_seen = out.split("END-PROC").next().unwrap_or_default().to_owned();
    assert!(procs_seen.contains("== /proc/1/environ"), "{out}");
    assert!(!procs_seen.contains("--setenv"), "{procs_seen}");
    let pid1_environ = procs_seen
        .split("== /proc/1/environ")
        .nth(1)
        .and_then(|rest| rest.split("== ").next())
        .unwrap_or_default();
    assert!(pid1_environ.trim().is_empty(), "{pid1_environ}");
    let pid1_cmdline = procs_seen
        .split("== /proc/1/cmdline")
        .nth(1)
        .and_then(|rest| rest.split("== ").next())
        .unwrap_or_default();
    assert!(!pid1_cmdline.contains("proxy-"), "{pid1_cmdline}");
    // No database, no install secret, no other workspace.
    assert!(!out.contains("ambient.db"), "{out}");
    assert!(!out.contains("other.txt"), "{out}");
    assert!(
        out.contains(&format!(
            "{}': No such file or directory",
            other_ws.display()
        )),
        "{out}"
    );
    // Its own process tree only: claude, its shell, these commands.
    let procs: usize = out
        // The last: the shell's own command line (now read too) names PROCS before.
        .rsplit("PROCS")
        .next()
        .and_then(|rest| rest.lines().nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(usize::MAX);
    assert!(procs < 20, "the agent sees {procs} processes:\n{out}");
    // The model answered through the runner's proxy, with the real key added there.
    assert!(
        out.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:"),
        "{out}"
    );
}

/// Where the agent shares the runner's uid (a Kubernetes pod, a run without the sandbox), it
/// reads `/proc/<runner>/environ` directly: the runner is not dumpable, so the kernel refuses
/// that to every process of its user (a control process of the same user shows the attack
/// works against one that is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_of_the_runners_own_user_cannot_read_its_secrets() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipped: running the runner as another user needs root");
        return;
    }
    const NOBODY: u32 = 65534;
    const KEY: &str = "sk-ant-dumpable-secret-42";
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // An agent that waits, and a server that accepts and never answers: the runner stays up.
    let agent = dir.path().join("agent.sh");
    std::fs::write(&agent, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = format!("http://{}/api", server.local_addr().unwrap());
    let workspace = dir.path().join("ws");
    let spawn_as_nobody = |program: &std::path::Path, args: &[&str], env: &[(&str, &str)]| {
        std::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut runner = spawn_as_nobody(
        &crate::common::runner_bin(),
        &[],
        &[
            (model::runner_env::SESSION_NAME, "s"),
            (model::runner_env::SESSION_NAMESPACE, "p"),
            (
                model::runner_env::WORKSPACE_PATH,
                &workspace.to_string_lossy(),
            ),
            (model::runner_env::BACKEND_API_URL, &api),
            (model::runner_env::RUNNER_TOKEN, "art_dumpable_runner_token"),
            (model::runner_env::RUNNER_GENERATION, "1"),
            (model::runner_env::SANDBOX, "off"),
            (model::runner_env::CLAUDE_BIN, &agent.to_string_lossy()),
            (model::runner_env::ANTHROPIC_API_KEY, KEY),
        ],
    );
    let mut control = spawn_as_nobody(std::path::Path::new("sleep"), &["60"], &[("CONTROL", KEY)]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        runner.try_wait().unwrap().is_none(),
        "the runner ended early"
    );
    let read_as_nobody = |pid: u32| {
        std::process::Command::new("cat")
            .arg(format!("/proc/{pid}/environ"))
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap()
    };
    let stolen = read_as_nobody(control.id());
    assert!(
        String::from_utf8_lossy(&stolen.stdout).contains(KEY),
        "the control process's environment should be readable by its user"
    );
    let attempt = read_as_nobody(runner.id());
    if let Some(ticks) = operator::local::start_ticks(runner.id()) {
        operator::local::kill_tree(runner.id(), ticks);
    }
    let _ = runner.kill();
    let _ = control.kill();
    let _ = runner.wait();
    let _ = control.wait();
    let got = String::from_utf8_lossy(&attempt.stdout);
    assert!(
        !attempt.status.success(),
        "read the runner's environment: {got}"
    );
    assert!(!got.contains(KEY) && !got.contains("art_dumpable"), "{got}");
}

/// The agent has a network of its own: from inside it reaches neither this machine's
/// loopback (the server, by its port or through the NAT's gateway) nor its abstract unix
/// sockets, and a page it serves on "127.0.0.1" is on its own loopback, so the owner's
/// browser (on this machine's) never sends it a cookie. Its model calls still work: the
/// proxy listens inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reaches_no_loopback_service_and_serves_nothing_on_this_machine() {
    use std::os::linux::net::SocketAddrExt;
    operator::local::probe_sandbox().expect("bubblewrap runs here (`make setup` installs it)");
    assert!(
        std::process::Command::new("slirp4netns")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "slirp4netns is installed by `make setup`"
    );
    let (s, _mock, _dir) = with_mock().await;
    let server_port = s.addr.port();
    let abstract_name = format!("ambient-test-{}", std::process::id());
    let _host_socket = std::os::unix::net::UnixListener::bind_addr(
        &std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap(),
    )
    .unwrap();
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let command = format!(
        "(exec 3<>/dev/tcp/127.0.0.1/{server_port} && echo SERVER-REACHED) 2>&1; \
         (timeout 3 bash -c 'exec 3<>/dev/tcp/10.0.2.2/{server_port}' && echo GATEWAY-REACHED) 2>&1; \
         python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); s.connect('\\0{abstract_name}'); print('ABSTRACT-REACHED')\" 2>&1 | tail -1; \
         python3 -m http.server {page_port} --bind 127.0.0.1 >/dev/null 2>&1 & sleep 1; \
         (exec 3<>/dev/tcp/127.0.0.1/{page_port} && echo SELF-SERVED) 2>&1; sleep 5; kill $!; echo DONE"
    );
    let name = s.create_session(&format!("run: {command}")).await;
    s.wait_phase(&name, &["Running"], Duration::from_secs(30))
        .await;
    // Meanwhile, the owner's browser would open the agent's "preview" on this machine.
    let mut reached = false;
    for _ in 0..60 {
        if std::net::TcpStream::connect(("127.0.0.1", page_port)).is_ok() {
            reached = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let phase = s
        .wait_phase(&name, &["Completed", "Failed"], Duration::from_secs(90))
        .await;
    let out = tool_output(&s, &name).await;
    assert_eq!(phase, "Completed", "{out}");
    assert!(out.contains("SELF-SERVED") && out.contains("DONE"), "{out}");
    for reached in ["SERVER-REACHED", "GATEWAY-REACHED", "ABSTRACT-REACHED"] {
        assert!(!out.contains(reached), "{reached}:\n{out}");
    }
    assert!(
        !reached,
        "the agent's page was served on this machine's loopback"
    );
}
