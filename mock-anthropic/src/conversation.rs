//! Reading a conversation out of a Messages API request body.
//!
//! The `claude` CLI does not send a tidy list of prompts: user messages mix strings, text
//! blocks, `tool_result` blocks and `<system-reminder>` texts, `role:"system"` entries sit
//! between them, and after an interrupt the marker text and the next prompt are merged into
//! one message. These helpers hide that so the reply rules can talk about "instructions".
//! Nothing here panics on malformed input: missing or mistyped fields read as empty.

use serde_json::Value;

/// Texts the CLI injects for the model's benefit, never typed by the user.
const REMINDER_PREFIX: &str = "<system-reminder>";
/// Texts the CLI adds on its own: interrupt markers (`[Request interrupted by user]`,
/// `... for tool use]`) and the transcript of local slash commands such as `/model`.
const GENERATED_PREFIXES: [&str; 3] = ["[Request interrupted", "<local-command-", "<command-"];
/// The line of the system prompt (or an environment update) that names the session's cwd.
const CWD_PREFIX: &str = "Primary working directory:";

/// The `messages` array of a request body; empty when absent or not an array.
pub fn messages(body: &Value) -> &[Value] {
    body.get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The value of a message's `role`, or `""`.
fn role(message: &Value) -> &str {
    message.get("role").and_then(Value::as_str).unwrap_or("")
}

/// The content blocks of a message; empty when the content is a plain string.
fn blocks(message: &Value) -> &[Value] {
    message
        .get("content")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The `type` of a content block, or `""`.
fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Every text of a message (string content or text blocks) except system reminders.
/// Tool results and other block kinds are skipped.
pub fn texts(message: &Value) -> Vec<&str> {
    let all: Vec<&str> = match message.get("content") {
        Some(Value::String(text)) => vec![text.as_str()],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|block| block_type(block) == "text")
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .collect(),
        _ => Vec::new(),
    };
    all.into_iter()
        .filter(|text| !text.trim_start().starts_with(REMINDER_PREFIX))
        .collect()
}

/// The texts of a message that the user actually typed: [`texts`] without the interrupt
/// markers and slash-command transcripts the CLI generates.
pub fn instruction_texts(message: &Value) -> Vec<&str> {
    texts(message)
        .into_iter()
        .filter(|text| {
            let text = text.trim_start();
            !GENERATED_PREFIXES
                .iter()
                .any(|prefix| text.starts_with(prefix))
        })
        .collect()
}

/// The user messages of a conversation, in order (`role:"system"` entries are not users).
pub fn user_messages(body: &Value) -> impl Iterator<Item = &Value> {
    messages(body)
        .iter()
        .filter(|message| role(message) == "user")
}

/// The last message with `role:"user"`; not necessarily the last message.
pub fn last_user(body: &Value) -> Option<&Value> {
    messages(body)
        .iter()
        .rev()
        .find(|message| role(message) == "user")
}

/// Whether a message carries at least one `tool_result` block.
pub fn has_tool_result(message: &Value) -> bool {
    blocks(message)
        .iter()
        .any(|block| block_type(block) == "tool_result")
}

/// All instruction texts of all user messages, oldest first.
pub fn instructions(body: &Value) -> Vec<&str> {
    user_messages(body).flat_map(instruction_texts).collect()
}

/// The name of the most recent `tool_use` block the assistant sent.
pub fn latest_tool_use(body: &Value) -> Option<&str> {
    messages(body)
        .iter()
        .rev()
        .filter(|message| role(message) == "assistant")
        .flat_map(|message| blocks(message).iter().rev())
        .find(|block| block_type(block) == "tool_use")
        .and_then(|block| block.get("name").and_then(Value::as_str))
}

/// The text of the latest tool result (a string content, or its text blocks joined).
pub fn latest_tool_result(body: &Value) -> Option<String> {
    let block = messages(body)
        .iter()
        .rev()
        .filter(|message| role(message) == "user")
        .flat_map(|message| blocks(message).iter().rev())
        .find(|block| block_type(block) == "tool_result")?;
    match block.get("content") {
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Array(parts)) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// The session's working directory, from the "Primary working directory:" line. The most
/// recent mention in the messages wins (the CLI adds one after resuming in another cwd),
/// then the system prompt.
pub fn working_directory(body: &Value) -> Option<String> {
    let in_messages = messages(body).iter().rev().find_map(find_cwd);
    in_messages.or_else(|| body.get("system").and_then(find_cwd))
}

/// Searches every string inside `value` for the working-directory line; the last one wins.
fn find_cwd(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => text.lines().rev().find_map(|line| {
            let (_, rest) = line.split_once(CWD_PREFIX)?;
            let path = rest.trim().trim_matches('`');
            (!path.is_empty()).then(|| path.to_owned())
        }),
        Value::Array(items) => items.iter().rev().find_map(find_cwd),
        Value::Object(map) => map.values().find_map(find_cwd),
        _ => None,
    }
}

/// Whether this is the CLI's model probe: `max_tokens: 1` and the single prompt "Hi".
pub fn is_probe(body: &Value) -> bool {
    let max_tokens_one = body.get("max_tokens").and_then(Value::as_u64) == Some(1);
    max_tokens_one
        && last_user(body)
            .and_then(|message| instruction_texts(message).last().copied())
            .is_some_and(|text| text.trim() == "Hi")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn texts_skip_reminders_and_tool_results() {
        let message = json!({"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>be nice</system-reminder>"},
            {"type": "tool_result", "tool_use_id": "t", "content": "ok"},
            {"type": "text", "text": "[Request interrupted by user for tool use]"},
            {"type": "text", "text": "<local-command-stdout>Set model</local-command-stdout>"},
            {"type": "text", "text": "hello"},
        ]});
        assert_eq!(texts(&message).len(), 3);
        assert_eq!(instruction_texts(&message), ["hello"]);
        assert!(has_tool_result(&message));
    }

    #[test]
    fn working_directory_prefers_latest_mention() {
        let body = json!({
            "system": [{"type": "text", "text": "env:\n - Primary working directory: /old\n"}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": "# Environment update\nPrimary working directory: /new"},
            ],
        });
        assert_eq!(working_directory(&body).as_deref(), Some("/new"));
        let body = json!({"system": "Primary working directory: /ws dir"});
        assert_eq!(working_directory(&body).as_deref(), Some("/ws dir"));
        assert_eq!(working_directory(&json!({"messages": 3})), None);
    }

    #[test]
    fn malformed_bodies_read_as_empty() {
        for body in [
            json!(null),
            json!([]),
            json!({"messages": {"role": "user"}}),
        ] {
            assert!(messages(&body).is_empty());
            assert!(last_user(&body).is_none());
            assert!(!is_probe(&body));
        }
    }
}
