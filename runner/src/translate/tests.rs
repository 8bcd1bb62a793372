//! Lines as the CLI 2.1.330 prints them (abridged from real runs).

use model::protocol::SessionEvent;

use super::*;

fn events(out: Vec<Output>) -> Vec<SessionEvent> {
    out.into_iter()
        .filter_map(|o| {
            if let Output::Event(e) = o {
                Some(e)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn init_is_reported_once_per_conversation() {
    let mut t = Translator::new(false);
    let init = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"abc","tools":["Bash"],"model":"claude-opus-5-5","permissionMode":"bypassPermissions"}"#;
    let first = events(t.line(init));
    assert!(
        matches!(&first[..], [SessionEvent::AgentStarted(a)] if a.claude_session_id == "abc" && a.cwd == "/w" && !a.resumed)
    );
    assert!(t.line(init).is_empty(), "the next turn's init is not news");
    assert_eq!(t.session_id.as_deref(), Some("abc"));
}

#[test]
fn mcp_servers_are_reported_when_their_state_changes() {
    let mut t = Translator::new(false);
    let init = |status: &str| {
        format!(
            r#"{{"type":"system","subtype":"init","cwd":"/w","session_id":"abc","tools":["Bash","mcp__tiny__echo","mcp__tiny__add","mcp__web__search"],"mcp_servers":[{{"name":"tiny","status":"connected","source":"dynamic"}},{{"name":"web","status":"{status}"}}],"model":"m"}}"#
        )
    };
    let first = events(t.line(&init("pending")));
    let [SessionEvent::AgentStarted(_), SessionEvent::McpStatus(m)] = &first[..] else {
        panic!("{first:?}")
    };
    assert_eq!(
        m.servers[0],
        McpServerState {
            name: "tiny".into(),
            status: "connected".into(),
            tools: vec!["mcp__tiny__echo".into(), "mcp__tiny__add".into()],
        }
    );
    assert_eq!(
        (m.servers[1].status.as_str(), m.servers[1].tools.len()),
        ("pending", 1)
    );
    assert!(t.line(&init("pending")).is_empty(), "no change, no event");
    let next = events(t.line(&init("connected")));
    assert!(
        matches!(&next[..], [SessionEvent::McpStatus(m)] if m.servers[1].status == "connected"),
        "{next:?}"
    );
    // Without MCP servers there is nothing to say.
    let mut plain = Translator::new(false);
    let none = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"x","tools":[],"mcp_servers":[],"model":"m"}"#;
    assert_eq!(events(plain.line(none)).len(), 1);
}

#[test]
fn assistant_blocks_become_text_thinking_and_tool_calls() {
    let mut t = Translator::new(false);
    let line = r#"{"type":"assistant","message":{"id":"msg_1","role":"assistant","content":[
        {"type":"thinking","thinking":"plan","signature":"s"},
        {"type":"text","text":"I'll create it."},
        {"type":"tool_use","id":"toolu_1","name":"Write","input":{"file_path":"/w/a.txt","content":"hi"}}]},
        "parent_tool_use_id":null,"session_id":"abc"}"#;
    let ev = events(t.line(&line.replace('\n', " ")));
    assert_eq!(ev.len(), 3);
    assert!(matches!(&ev[0], SessionEvent::Thinking(th) if th.text == "plan"));
    assert!(
        matches!(&ev[1], SessionEvent::AgentMessage(m) if m.text == "I'll create it." && m.message_id.as_deref() == Some("msg_1"))
    );
    assert!(
        matches!(&ev[2], SessionEvent::ToolUse(u) if u.name == "Write" && u.input["file_path"] == "/w/a.txt")
    );
}

#[test]
fn tool_results_accept_string_and_block_content() {
    let mut t = Translator::new(false);
    let s = r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":"File created"}]}}"#;
    assert!(
        matches!(&events(t.line(s))[..], [SessionEvent::ToolResult(r)] if r.content == "File created" && !r.is_error)
    );
    let b = r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"t2","type":"tool_result","is_error":true,"content":[{"type":"text","text":"denied"},{"type":"image"}]}]}}"#;
    assert!(
        matches!(&events(t.line(b))[..], [SessionEvent::ToolResult(r)] if r.content == "denied\n[image]" && r.is_error)
    );
    // A replayed prompt (string content) is not a tool result.
    assert!(
        t.line(r#"{"type":"user","message":{"role":"user","content":"hello"},"isReplay":true}"#)
            .is_empty()
    );
}

#[test]
fn huge_tool_results_are_cut_on_a_char_boundary() {
    let s = "é".repeat(MAX_TOOL_RESULT);
    let cut = truncate(s.clone(), MAX_TOOL_RESULT);
    assert!(cut.len() < s.len() && cut.contains("more bytes not shown"));
}

#[test]
fn text_deltas_stream_but_other_deltas_do_not() {
    let mut t = Translator::new(false);
    let text = r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}},"parent_tool_use_id":null,"api_message_id":"msg_1"}"#;
    assert!(
        matches!(&events(t.line(text))[..], [SessionEvent::AgentDelta(d)] if d.text == "Hel" && d.message_id.as_deref() == Some("msg_1"))
    );
    let json = r#"{"type":"stream_event","event":{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{"}},"parent_tool_use_id":null}"#;
    assert!(t.line(json).is_empty());
}

#[test]
fn results_give_per_turn_cost_from_the_cumulative_total() {
    let mut t = Translator::new(false);
    let r1 = r#"{"type":"result","subtype":"success","is_error":false,"num_turns":2,"result":"Done","total_cost_usd":0.10,"duration_ms":500,"usage":{"input_tokens":100,"output_tokens":10,"cache_read_input_tokens":5}}"#;
    let r2 = r#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"Again","total_cost_usd":0.25,"duration_ms":300,"usage":{"input_tokens":50,"output_tokens":5}}"#;
    let out = t.line(r1);
    assert_eq!(out.last(), Some(&Output::TurnEnded { is_error: false }));
    let ev = events(t.line(r2));
    let SessionEvent::TurnResult(turn) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert!((turn.usage.cost_usd - 0.15).abs() < 1e-9);
    assert_eq!(t.totals.num_turns, 3);
    assert_eq!(
        (t.totals.usage.input_tokens, t.totals.usage.output_tokens),
        (150, 15)
    );
    assert!((t.totals.usage.cost_usd - 0.25).abs() < 1e-9);
}

#[test]
fn failures_become_readable_error_events() {
    let mut t = Translator::new(false);
    let api = r#"{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"API Error: 429 rate limited","terminal_reason":"api_error","api_error_status":429,"total_cost_usd":0}"#;
    let ev = events(t.line(api));
    assert!(
        matches!(&ev[1], SessionEvent::Error(e) if e.code.as_deref() == Some("api_error") && e.message.contains("rate limited; try again later"))
    );
    let max = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":2,"errors":["Reached maximum number of turns (2)"],"terminal_reason":"max_turns"}"#;
    let ev = events(t.line(max));
    assert!(
        matches!(&ev[1], SessionEvent::Error(e) if e.code.as_deref() == Some("max_turns") && e.message.contains("maximum number of turns"))
    );
    // An interrupt ends the turn with an error subtype but is not a failure to report.
    let interrupted = r#"{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":1,"terminal_reason":"aborted_tools"}"#;
    assert_eq!(events(t.line(interrupted)).len(), 1);
}

#[test]
fn control_requests_and_unknown_lines() {
    let mut t = Translator::new(false);
    let req = r#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Write","input":{}}}"#;
    assert!(
        matches!(&t.line(req)[..], [Output::ControlRequest { request_id, subtype, .. }] if request_id == "r1" && subtype == "can_use_tool")
    );
    assert!(
        t.line(r#"{"type":"system","subtype":"ui_invalidate"}"#)
            .is_empty()
    );
    assert!(t.line(r#"{"type":"brand_new_thing"}"#).is_empty());
    assert!(t.line("not json").is_empty());
}

#[test]
fn each_turn_says_where_a_fork_after_it_resumes() {
    let mut t = Translator::new(false);
    let assistant = |id: &str| {
        format!(
            r#"{{"type":"assistant","uuid":"{id}","message":{{"id":"m","content":[{{"type":"text","text":"hi"}}]}}}}"#
        )
    };
    let result = r#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"hi","uuid":"not-a-chain-entry"}"#;
    let resume_at = |out: Vec<Output>| {
        events(out).into_iter().find_map(|e| match e {
            SessionEvent::TurnResult(r) => Some(r.resume_at),
            _ => None,
        })
    };
    t.line(&assistant("a-1"));
    t.line(&assistant("a-2"));
    assert_eq!(resume_at(t.line(result)), Some(Some("a-2".to_owned())));
    // A turn with no message of its own (it failed at once) has no place to resume at; an
    // id that could pass for a flag is never taken.
    assert_eq!(resume_at(t.line(result)), Some(None));
    t.line(&assistant("--fork-session x"));
    assert_eq!(resume_at(t.line(result)), Some(None));
}
