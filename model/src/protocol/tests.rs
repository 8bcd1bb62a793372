//! Pins the exact JSON of every message: a change here is a protocol change.

use serde_json::json;

use super::*;
use crate::session::Phase;

/// Asserts that `value` encodes to exactly `wire` and that `wire` decodes back to `value`.
fn pin<T: Frame + std::fmt::Debug + PartialEq>(value: T, wire: &str) {
    assert_eq!(value.encode(), wire, "encoding of {value:?}");
    assert_eq!(
        T::decode(wire).expect("decodes"),
        value,
        "decoding of {wire}"
    );
}

fn stored(seq: u64, event: SessionEvent) -> ServerToBrowser {
    ServerToBrowser::Event(StoredEvent {
        seq,
        ts: 1_700_000_000_000,
        event,
    })
}

#[test]
fn every_session_event_has_a_pinned_encoding() {
    let cases: Vec<(SessionEvent, &str)> = vec![
        (
            SessionEvent::UserMessage(UserMessage {
                text: "fix the bug".into(),
                sender: "ada".into(),
            }),
            r#"{"type":"user_message","text":"fix the bug","sender":"ada"}"#,
        ),
        (
            SessionEvent::AgentMessage(AgentMessage {
                message_id: Some("msg_1".into()),
                text: "On it.".into(),
                parent_tool_use_id: None,
            }),
            r#"{"type":"agent_message","messageId":"msg_1","text":"On it."}"#,
        ),
        (
            SessionEvent::AgentDelta(AgentDelta {
                message_id: Some("msg_1".into()),
                text: "On".into(),
            }),
            r#"{"type":"agent_delta","messageId":"msg_1","text":"On"}"#,
        ),
        (
            SessionEvent::Thinking(Thinking {
                message_id: None,
                text: "hmm".into(),
            }),
            r#"{"type":"thinking","text":"hmm"}"#,
        ),
        (
            SessionEvent::ToolUse(ToolUse {
                id: "toolu_1".into(),
                name: "Write".into(),
                input: json!({"content": "hi", "file_path": "/w/a.txt"}),
                parent_tool_use_id: Some("toolu_0".into()),
            }),
            r#"{"type":"tool_use","id":"toolu_1","name":"Write","input":{"content":"hi","file_path":"/w/a.txt"},"parentToolUseId":"toolu_0"}"#,
        ),
        (
            SessionEvent::ToolResult(ToolResult {
                tool_use_id: "toolu_1".into(),
                content: "File created".into(),
                is_error: false,
            }),
            r#"{"type":"tool_result","toolUseId":"toolu_1","content":"File created","isError":false}"#,
        ),
        (
            SessionEvent::Log(LogLine {
                level: LogLevel::Warn,
                message: "slow clone".into(),
            }),
            r#"{"type":"log","level":"warn","message":"slow clone"}"#,
        ),
        (
            SessionEvent::Phase(PhaseChange {
                phase: Phase::Failed,
                reason: Some("RunnerExit".into()),
                message: Some("exit code 1".into()),
            }),
            r#"{"type":"phase","phase":"Failed","reason":"RunnerExit","message":"exit code 1"}"#,
        ),
        (
            SessionEvent::Error(ErrorEvent {
                message: "API error 429".into(),
                code: Some("api_error".into()),
            }),
            r#"{"type":"error","message":"API error 429","code":"api_error"}"#,
        ),
        (
            SessionEvent::AgentStarted(AgentStarted {
                model: "claude-sonnet-4-6".into(),
                claude_session_id: "5f0c".into(),
                cwd: "/w/repos/app".into(),
                resumed: true,
            }),
            r#"{"type":"agent_started","model":"claude-sonnet-4-6","claudeSessionId":"5f0c","cwd":"/w/repos/app","resumed":true}"#,
        ),
        (
            SessionEvent::TurnResult(TurnResult {
                is_error: false,
                subtype: "success".into(),
                num_turns: 2,
                duration_ms: 508,
                usage: Usage {
                    input_tokens: 25,
                    output_tokens: 10,
                    cache_read_input_tokens: 3,
                    cache_creation_input_tokens: 4,
                    cost_usd: 0.5,
                },
                text: Some("Done".into()),
                resume_at: Some("m-1".into()),
            }),
            r#"{"type":"turn_result","isError":false,"subtype":"success","numTurns":2,"durationMs":508,"usage":{"inputTokens":25,"outputTokens":10,"cacheReadInputTokens":3,"cacheCreationInputTokens":4,"costUsd":0.5},"text":"Done","resumeAt":"m-1"}"#,
        ),
        (
            SessionEvent::Result(RunResult {
                exit_code: 0,
                is_error: false,
                num_turns: 3,
                duration_ms: 1200,
                usage: Usage {
                    input_tokens: 1,
                    output_tokens: 2,
                    cost_usd: 0.25,
                    ..Usage::default()
                },
                text: None,
            }),
            r#"{"type":"result","exitCode":0,"isError":false,"numTurns":3,"durationMs":1200,"usage":{"inputTokens":1,"outputTokens":2,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"costUsd":0.25}}"#,
        ),
        (
            SessionEvent::Interrupt(ControlEcho {
                sender: "ada".into(),
            }),
            r#"{"type":"interrupt","sender":"ada"}"#,
        ),
        (
            SessionEvent::StopRequested(ControlEcho {
                sender: "ada".into(),
            }),
            r#"{"type":"stop_requested","sender":"ada"}"#,
        ),
        (
            SessionEvent::Ask(Ask {
                id: "r1".into(),
                tool: "AskUserQuestion".into(),
                input: json!({"questions": []}),
            }),
            r#"{"type":"ask","id":"r1","tool":"AskUserQuestion","input":{"questions":[]}}"#,
        ),
        (
            SessionEvent::Answer(Answer {
                id: "r1".into(),
                sender: "ada".into(),
                answers: [("Which?".to_owned(), "Blue".to_owned())].into(),
                ..Default::default()
            }),
            r#"{"type":"answer","id":"r1","sender":"ada","answers":{"Which?":"Blue"}}"#,
        ),
        (
            SessionEvent::ModelChanged(ModelChange {
                model: "claude-opus-4-6".into(),
                sender: "ada".into(),
            }),
            r#"{"type":"model_changed","model":"claude-opus-4-6","sender":"ada"}"#,
        ),
        (
            SessionEvent::GitPush(GitPush {
                repo: "app".into(),
                remote: "https://github.com/o/app.git".into(),
                branch: "ambient/session-1".into(),
                commit: "abc123".into(),
            }),
            r#"{"type":"git_push","repo":"app","remote":"https://github.com/o/app.git","branch":"ambient/session-1","commit":"abc123"}"#,
        ),
        (
            SessionEvent::PullRequest(PullRequest {
                repo: "app".into(),
                url: "https://github.com/o/app/pull/7".into(),
                number: 7,
            }),
            r#"{"type":"pull_request","repo":"app","url":"https://github.com/o/app/pull/7","number":7}"#,
        ),
        (
            SessionEvent::Changes(RepoChanges {
                repo: "app".into(),
                branch: "ambient/session-1".into(),
                base: "main".into(),
                commit: "abc123".into(),
                files: 2,
                insertions: 5,
                deletions: 1,
                diff: "diff --git a/x b/x\n".into(),
                truncated: false,
                held: true,
            }),
            r#"{"type":"changes","repo":"app","branch":"ambient/session-1","base":"main","commit":"abc123","files":2,"insertions":5,"deletions":1,"diff":"diff --git a/x b/x\n","truncated":false,"held":true}"#,
        ),
    ];
    for (event, event_wire) in cases {
        assert_eq!(encode_event(&event), event_wire);
        assert_eq!(
            event.kind(),
            serde_json::from_str::<serde_json::Value>(event_wire).unwrap()["type"]
        );
        // Inside a viewer frame, and through the hub's pre-encoded path.
        let frame =
            format!(r#"{{"type":"event","seq":9,"ts":1700000000000,"event":{event_wire}}}"#);
        assert_eq!(encode_event_frame(9, 1_700_000_000_000, event_wire), frame);
        pin(stored(9, event.clone()), &frame);
        // Inside a runner frame.
        let runner =
            format!(r#"{{"type":"event","rseq":4,"ts":1700000000000,"event":{event_wire}}}"#);
        pin(
            RunnerToServer::Event(RunnerEvent {
                rseq: 4,
                ts: 1_700_000_000_000,
                event,
            }),
            &runner,
        );
    }
}

#[test]
fn runner_to_server_messages_are_pinned() {
    pin(
        RunnerToServer::Hello(RunnerHello {
            protocol: 1,
            generation: 3,
            handled_through: 12,
        }),
        r#"{"type":"hello","protocol":1,"generation":3,"handledThrough":12}"#,
    );
    pin(
        RunnerToServer::Idle(RunnerIdle {
            handled_through: 12,
        }),
        r#"{"type":"idle","handledThrough":12}"#,
    );
    pin(RunnerToServer::Ping, r#"{"type":"ping"}"#);
    pin(RunnerToServer::Pong, r#"{"type":"pong"}"#);
}

#[test]
fn server_to_runner_messages_are_pinned() {
    pin(
        ServerToRunner::Welcome(Welcome { acked_rseq: 41 }),
        r#"{"type":"welcome","ackedRseq":41}"#,
    );
    pin(
        ServerToRunner::Ack(Ack { rseq: 42 }),
        r#"{"type":"ack","rseq":42}"#,
    );
    pin(
        ServerToRunner::UserMessage(RunnerUserMessage {
            seq: 7,
            text: "and tests".into(),
            sender: "ada".into(),
        }),
        r#"{"type":"user_message","seq":7,"text":"and tests","sender":"ada"}"#,
    );
    pin(
        ServerToRunner::Interrupt(RunnerControl {
            seq: 8,
            sender: "ada".into(),
        }),
        r#"{"type":"interrupt","seq":8,"sender":"ada"}"#,
    );
    pin(
        ServerToRunner::Stop(RunnerControl {
            seq: 9,
            sender: "ada".into(),
        }),
        r#"{"type":"stop","seq":9,"sender":"ada"}"#,
    );
    pin(ServerToRunner::Finish, r#"{"type":"finish"}"#);
    pin(
        ServerToRunner::SetModel(RunnerModel {
            seq: 9,
            model: "claude-opus-4-6".into(),
        }),
        r#"{"type":"set_model","seq":9,"model":"claude-opus-4-6"}"#,
    );
    pin(ServerToRunner::Ping, r#"{"type":"ping"}"#);
    pin(ServerToRunner::Pong, r#"{"type":"pong"}"#);
}

#[test]
fn browser_messages_are_pinned() {
    pin(
        BrowserToServer::SendMessage(SendMessage {
            text: "also add docs".into(),
        }),
        r#"{"type":"send_message","text":"also add docs"}"#,
    );
    pin(BrowserToServer::Interrupt, r#"{"type":"interrupt"}"#);
    pin(BrowserToServer::Stop, r#"{"type":"stop"}"#);
    pin(BrowserToServer::Ping, r#"{"type":"ping"}"#);

    pin(
        ServerToBrowser::Live(Live { seq: 12 }),
        r#"{"type":"live","seq":12}"#,
    );
    pin(
        ServerToBrowser::Error(Refusal {
            error: "conflict".into(),
            message: "session is not running".into(),
        }),
        r#"{"type":"error","error":"conflict","message":"session is not running"}"#,
    );
    pin(ServerToBrowser::Pong, r#"{"type":"pong"}"#);
}

#[test]
fn decoders_refuse_oversized_and_malformed_frames() {
    let huge = format!(
        r#"{{"type":"send_message","text":"{}"}}"#,
        "x".repeat(MAX_BROWSER_FRAME)
    );
    assert!(matches!(
        BrowserToServer::decode(&huge),
        Err(DecodeError::TooLarge { .. })
    ));
    for bad in [
        "",
        "null",
        "[]",
        "{}",
        r#"{"type":"nope"}"#,
        r#"{"type":"send_message"}"#,
        "{\"type\":",
    ] {
        assert!(
            matches!(BrowserToServer::decode(bad), Err(DecodeError::Malformed(_))),
            "{bad}"
        );
        assert!(
            matches!(RunnerToServer::decode(bad), Err(DecodeError::Malformed(_))),
            "{bad}"
        );
    }
    // An event of an unknown type is refused rather than half-understood.
    let unknown = r#"{"type":"event","rseq":1,"ts":0,"event":{"type":"telepathy"}}"#;
    assert!(RunnerToServer::decode(unknown).is_err());
    // Negative or fractional sequence numbers are not sequence numbers.
    assert!(RunnerToServer::decode(r#"{"type":"idle","handledThrough":-1}"#).is_err());
    assert!(ServerToRunner::decode(r#"{"type":"ack","rseq":1.5}"#).is_err());
}

#[test]
fn close_codes_are_distinct_application_codes() {
    use close::*;
    let codes = [
        BAD_FRAME,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        HEARTBEAT_TIMEOUT,
        SUPERSEDED,
        GONE,
        TOO_LARGE,
        TOO_SLOW,
        INTERNAL,
    ];
    for (i, a) in codes.iter().enumerate() {
        assert!((4000..5000).contains(a));
        assert!(!codes[i + 1..].contains(a), "duplicate close code {a}");
    }
}

/// Whatever a runner's event holds, once bounded it fits a frame: an event the server cannot
/// take was re-sent about ten times a second forever, and every later event was lost.
#[test]
fn every_bounded_event_fits_a_runner_frame() {
    let big = 5 * 1024 * 1024;
    let text = |t: String| {
        SessionEvent::AgentMessage(AgentMessage {
            message_id: None,
            text: t,
            parent_tool_use_id: None,
        })
    };
    let cases = [
        text("x".repeat(big)),
        // Six bytes of JSON per character.
        text("\u{1}".repeat(big)),
        SessionEvent::ToolResult(ToolResult {
            tool_use_id: "t".into(),
            content: "\"".repeat(big),
            is_error: false,
        }),
        SessionEvent::ToolUse(ToolUse {
            id: "t".into(),
            name: "Write".into(),
            input: serde_json::json!({"content": "y".repeat(big)}),
            parent_tool_use_id: None,
        }),
        SessionEvent::PullRequest(PullRequest {
            repo: "app".into(),
            url: format!("https://github.com/{}", "a".repeat(big)),
            number: 1,
        }),
    ];
    for event in cases {
        let kind = event.kind();
        let bounded = event.bounded();
        let frame = RunnerToServer::Event(RunnerEvent {
            rseq: u64::MAX,
            ts: i64::MAX,
            event: bounded.clone(),
        })
        .encode();
        assert!(frame.len() <= MAX_RUNNER_FRAME, "{kind}: {}", frame.len());
        assert!(RunnerToServer::decode(&frame).is_ok(), "{kind}");
        match bounded {
            SessionEvent::AgentMessage(m) => assert!(m.text.contains("more bytes not shown")),
            SessionEvent::ToolResult(r) => assert!(r.content.contains("more bytes not shown")),
            SessionEvent::ToolUse(t) => assert!(t.input.to_string().contains("too large")),
            SessionEvent::Error(e) => {
                assert_eq!(kind, "pull_request");
                assert_eq!(e.code.as_deref(), Some("event_too_large"));
            }
            other => panic!("{other:?}"),
        }
    }
    // Small events are left alone.
    let small = text("hello".into());
    assert_eq!(small.clone().bounded(), small);
}
