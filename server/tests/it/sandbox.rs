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
        "echo ENVIRON; tr '\\0' '\\n' < /proc/$PPID/environ; \
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
        .split("PROCS")
        .nth(1)
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
