//! Reply selection: the model probe, then the scripted queue, then the keyword rules.
//!
//! The keyword rules make the mock usable with no script at all: a test types
//! `create hello.txt` or `run: ls` and gets a realistic tool loop back.

use std::collections::VecDeque;

use serde_json::{Value, json};

use crate::conversation;
use crate::reply::Reply;

/// The content the `create <file>` rule writes.
pub const CREATED_CONTENT: &str = "Hello from the mock Anthropic API!\n";
/// Deltas of a bare `slow` prompt.
pub const SLOW_CHUNKS: u32 = 40;
/// Pause between the deltas of a `slow` prompt, in milliseconds.
pub const SLOW_DELAY_MS: u64 = 250;
/// Deltas of the closing text when the instruction asked to work `slowly`.
pub const SLOWLY_CHUNKS: u32 = 12;
/// The answer to the CLI's `max_tokens: 1` model probe.
pub const PROBE_TEXT: &str = "Hi";

/// Chooses the reply to a `/v1/messages` body. Probes never consume `queue`.
pub fn select(body: &Value, queue: &mut VecDeque<Reply>) -> Reply {
    if conversation::is_probe(body) {
        return Reply::text(PROBE_TEXT);
    }
    queue.pop_front().unwrap_or_else(|| keyword_reply(body))
}

/// The reply the keyword rules give to a body (see the crate docs for the list).
pub fn keyword_reply(body: &Value) -> Reply {
    let last = conversation::last_user(body);
    let instruction = last.and_then(|message| {
        conversation::instruction_texts(message)
            .last()
            .map(|text| text.trim())
    });
    match (instruction, last) {
        // A message with tool results and no new prompt: the tool loop continues.
        (None, Some(message)) if conversation::has_tool_result(message) => tool_result_reply(body),
        (instruction, _) => instruction_reply(instruction.unwrap_or(""), body),
    }
}

/// The answer once a tool has run: a closing text (streamed slowly when the instruction
/// said `slowly`, so a viewer can watch a running session), unless the conversation is a
/// `loop`.
fn tool_result_reply(body: &Value) -> Reply {
    let original = conversation::instructions(body)
        .last()
        .map(|text| text.trim());
    if original == Some("loop") {
        return loop_reply();
    }
    if original.is_some_and(|text| text.split_whitespace().any(|w| w == "slowly")) {
        return Reply::Slow {
            chunks: SLOWLY_CHUNKS,
            delay_ms: SLOW_DELAY_MS,
        };
    }
    let tool = conversation::latest_tool_use(body).unwrap_or("the tool");
    if tool == "AskUserQuestion" {
        // What the person answered, as the CLI put it in the tool result.
        let result = conversation::latest_tool_result(body).unwrap_or_default();
        return Reply::text(format!("Got your answer. {result}"));
    }
    if tool.starts_with("mcp__") {
        // What the MCP server answered, so a test sees it went there and back.
        let result = conversation::latest_tool_result(body).unwrap_or_default();
        return Reply::text(format!("Done: {tool} said: {result}"));
    }
    Reply::text(format!("Done: {tool} finished."))
}

/// A Bash call that never ends the conversation, for `--max-turns` tests.
fn loop_reply() -> Reply {
    bash("echo loop", None)
}

fn bash(command: &str, text: Option<&str>) -> Reply {
    Reply::tool_use(
        "Bash",
        json!({"command": command, "description": "Run the requested command"}),
        text,
    )
}

/// The keyword rules, first match wins.
fn instruction_reply(instruction: &str, body: &Value) -> Reply {
    if let Some(file) =
        after(instruction, "create ").and_then(|rest| rest.split_whitespace().next())
    {
        let path = match conversation::working_directory(body) {
            Some(cwd) if !file.starts_with('/') => format!("{}/{file}", cwd.trim_end_matches('/')),
            _ => file.to_owned(),
        };
        return Reply::tool_use(
            "Write",
            json!({"file_path": path, "content": CREATED_CONTENT}),
            Some(&format!("I'll create {file}.")),
        );
    }
    if let Some(plan) = after(instruction, "propose:").map(str::trim) {
        // Plan mode: the plan, offered for approval.
        return Reply::tool_use(
            "ExitPlanMode",
            json!({"plan": plan}),
            Some("Here is my plan."),
        );
    }
    if let Some(rest) = after(instruction, "call:") {
        // `call: mcp__srv__tool {"a": 1}`: any tool, with this input (an MCP server's tool).
        let rest = rest.trim();
        let (tool, input) = rest.split_once(char::is_whitespace).unwrap_or((rest, "{}"));
        let input = serde_json::from_str(input.trim()).unwrap_or_else(|_| json!({}));
        return Reply::tool_use(tool, input, Some(&format!("Calling {tool}.")));
    }
    if let Some(rest) = after(instruction, "ask:") {
        // `ask: Which color? | Red | Blue`: one question, its options.
        let mut parts = rest.split('|').map(str::trim).filter(|p| !p.is_empty());
        let question = parts.next().unwrap_or("Which one?");
        let options: Vec<Value> = parts
            .map(|label| json!({"label": label, "description": format!("choose {label}")}))
            .collect();
        return Reply::tool_use(
            "AskUserQuestion",
            json!({"questions": [{"question": question, "header": "Question", "options": options, "multiSelect": false}]}),
            Some("I need to ask you something."),
        );
    }
    if let Some(command) = after(instruction, "run:")
        .and_then(|rest| rest.lines().next())
        .map(str::trim)
        .filter(|command| !command.is_empty())
    {
        return bash(command, Some("Running it."));
    }
    if let Some(rest) = instruction.strip_prefix("slow") {
        let chunks = first_number(rest).unwrap_or(SLOW_CHUNKS);
        return Reply::Slow {
            chunks,
            delay_ms: SLOW_DELAY_MS,
        };
    }
    if instruction.starts_with("think") {
        return Reply::Thinking {
            thinking: "Let me think about this.".to_owned(),
            text: "Thought it through.".to_owned(),
        };
    }
    if let Some(status) = instruction.strip_prefix("fail").and_then(first_number) {
        return Reply::error(status, format!("Mock failure with status {status}"));
    }
    if instruction == "loop" {
        return loop_reply();
    }
    if instruction.starts_with("recall") {
        let mut earlier: Vec<&str> = conversation::instructions(body)
            .into_iter()
            .map(str::trim)
            .collect();
        earlier.pop();
        return Reply::text(format!("I remember: {}", earlier.join(" | ")));
    }
    Reply::text(format!("You said: {instruction}"))
}

/// The text after the first occurrence of `keyword`.
fn after<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    text.find(keyword).map(|at| &text[at + keyword.len()..])
}

/// The number at the start of `text` (after spaces), e.g. `" 3 please"` → 3.
fn first_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(messages: Value) -> Reply {
        keyword_reply(&json!({"messages": messages}))
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn ask_becomes_a_question_with_its_options() {
        let Reply::ToolUse { name, input, .. } =
            ask(json!([user("ask: Which color? | Red | Blue")]))
        else {
            panic!("a tool call");
        };
        assert_eq!(name, "AskUserQuestion");
        let q = &input["questions"][0];
        assert_eq!(q["question"], "Which color?");
        assert_eq!(q["options"][1]["label"], "Blue");
    }

    #[test]
    fn plain_text_is_echoed() {
        assert_eq!(
            ask(json!([user("  hello there ")])),
            Reply::text("You said: hello there")
        );
    }

    #[test]
    fn create_writes_into_the_primary_working_directory() {
        let body = json!({
            "system": [{"type": "text", "text": "x\n - Primary working directory: /tmp/ws\n"}],
            "messages": [user("please create notes.md now")],
        });
        let expected = Reply::tool_use(
            "Write",
            json!({"file_path": "/tmp/ws/notes.md", "content": CREATED_CONTENT}),
            Some("I'll create notes.md."),
        );
        assert_eq!(keyword_reply(&body), expected);
        let Reply::ToolUse { input, .. } = ask(json!([user("create a.txt")])) else {
            panic!("expected a tool use");
        };
        assert_eq!(input["file_path"], "a.txt");
    }

    #[test]
    fn run_takes_the_rest_of_the_line() {
        let expected = bash("ls -la /tmp", Some("Running it."));
        assert_eq!(ask(json!([user("run: ls -la /tmp\nthanks")])), expected);
    }

    #[test]
    fn slow_think_fail_and_loop() {
        let slow = |chunks| Reply::Slow {
            chunks,
            delay_ms: SLOW_DELAY_MS,
        };
        assert_eq!(ask(json!([user("slow")])), slow(SLOW_CHUNKS));
        assert_eq!(ask(json!([user("slow 3")])), slow(3));
        assert!(matches!(
            ask(json!([user("think hard")])),
            Reply::Thinking { .. }
        ));
        assert!(matches!(
            ask(json!([user("fail 429")])),
            Reply::Error { status: 429, .. }
        ));
        assert!(matches!(
            ask(json!([user("fail500")])),
            Reply::Error { status: 500, .. }
        ));
        assert_eq!(ask(json!([user("loop")])), bash("echo loop", None));
    }

    #[test]
    fn tool_result_turn_names_the_latest_tool() {
        let messages = json!([
            user("run: ls"),
            {"role": "assistant", "content": [
                {"type": "text", "text": "Running it."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a b"},
                {"type": "text", "text": "<system-reminder>note</system-reminder>"},
            ]},
        ]);
        assert_eq!(ask(messages), Reply::text("Done: Bash finished."));
    }

    #[test]
    fn slowly_streams_the_closing_text_after_the_tool() {
        let messages = json!([
            user("create hello.txt slowly"),
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Write", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
        ]);
        assert_eq!(
            ask(messages),
            Reply::Slow {
                chunks: SLOWLY_CHUNKS,
                delay_ms: SLOW_DELAY_MS
            }
        );
    }

    #[test]
    fn loop_keeps_calling_tools_after_results() {
        let messages = json!([
            user("loop"),
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "loop"}]},
        ]);
        assert_eq!(ask(messages), bash("echo loop", None));
    }

    #[test]
    fn system_role_messages_are_not_the_user() {
        let messages = json!([
            user("what now"),
            {"role": "system", "content": "# Environment update\nPrimary working directory: /x"},
        ]);
        assert_eq!(ask(messages), Reply::text("You said: what now"));
    }

    #[test]
    fn interrupted_merge_uses_the_last_text() {
        let messages = json!([
            user("run: sleep 20"),
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t", "content": "rejected", "is_error": true},
                {"type": "text", "text": "[Request interrupted by user for tool use]"},
                {"type": "text", "text": "say hi"},
            ]},
        ]);
        assert_eq!(ask(messages), Reply::text("You said: say hi"));
    }

    #[test]
    fn recall_lists_earlier_instructions() {
        let messages = json!([
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                {"type": "text", "text": "first"},
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "You said: first"}]},
            user("second"),
            {"role": "assistant", "content": "You said: second"},
            user("recall please"),
        ]);
        assert_eq!(ask(messages), Reply::text("I remember: first | second"));
    }

    #[test]
    fn scripted_replies_come_first_but_probes_never_consume_them() {
        let mut queue = VecDeque::from([Reply::text("scripted")]);
        let probe = json!({"max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ]});
        assert_eq!(select(&probe, &mut queue), Reply::text(PROBE_TEXT));
        assert_eq!(queue.len(), 1);
        let body = json!({"max_tokens": 32000, "messages": [user("create x")]});
        assert_eq!(select(&body, &mut queue), Reply::text("scripted"));
        assert!(matches!(select(&body, &mut queue), Reply::ToolUse { .. }));
    }
}
