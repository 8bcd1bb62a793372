//! Encoding a [`Plan`] as the Messages API does: a server-sent event stream, or one JSON
//! message object.
//!
//! Both encodings are pure; the server only adds the pauses each [`SseEvent`] asks for.

use std::time::Duration;

use serde_json::{Value, json};

use crate::reply::{Block, Plan};

/// Pieces a tool input is cut into for `input_json_delta` events.
const JSON_PIECES: usize = 3;

/// What a message needs besides its blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// `msg_mock_NNNN`.
    pub id: String,
    /// The model the request named, echoed back.
    pub model: String,
    /// Estimated input tokens (request body bytes / 4).
    pub input_tokens: u64,
}

/// One server-sent event, to be written after waiting `delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The event's `type`, also its SSE `event:` name.
    pub name: &'static str,
    /// The event's JSON payload.
    pub data: Value,
    /// Pause before this event is sent.
    pub delay: Duration,
}

impl SseEvent {
    fn new(name: &'static str, data: Value) -> Self {
        Self {
            name,
            data,
            delay: Duration::ZERO,
        }
    }

    /// The wire form: `event: <type>\ndata: <json>\n\n`.
    pub fn encode(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.name, self.data)
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

/// The JSON form of a finished block.
fn block_json(block: &Block) -> Value {
    match block {
        Block::Text(deltas) => json!({"type": "text", "text": deltas.concat()}),
        Block::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Block::Thinking {
            thinking,
            signature,
        } => json!({"type": "thinking", "thinking": thinking, "signature": signature}),
    }
}

/// The non-streaming response: a complete `message` object.
pub fn message_json(plan: &Plan, meta: &MessageMeta) -> Value {
    json!({
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": plan.blocks.iter().map(block_json).collect::<Vec<_>>(),
        "stop_reason": plan.stop_reason(),
        "stop_sequence": null,
        "usage": usage(meta.input_tokens, plan.output_tokens()),
    })
}

/// The streaming response, event by event, in the order the API sends them.
pub fn events(plan: &Plan, meta: &MessageMeta) -> Vec<SseEvent> {
    let mut events = vec![SseEvent::new(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": meta.id,
            "type": "message",
            "role": "assistant",
            "model": meta.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(meta.input_tokens, 1),
        }}),
    )];
    for (index, block) in plan.blocks.iter().enumerate() {
        let start = match block_json(block) {
            Value::Object(mut map) => {
                // A block starts empty; its content arrives in deltas.
                for (key, empty) in [
                    ("text", json!("")),
                    ("thinking", json!("")),
                    ("input", json!({})),
                ] {
                    if map.contains_key(key) {
                        map.insert(key.to_owned(), empty);
                    }
                }
                map.remove("signature");
                Value::Object(map)
            }
            other => other,
        };
        events.push(SseEvent::new(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for (delta, delay) in deltas(block, plan.delta_delay) {
            let mut event = SseEvent::new(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
            event.delay = delay;
            events.push(event);
        }
        events.push(SseEvent::new(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(SseEvent::new(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": plan.stop_reason(), "stop_sequence": null},
            "usage": {"output_tokens": plan.output_tokens()},
        }),
    ));
    events.push(SseEvent::new(
        "message_stop",
        json!({"type": "message_stop"}),
    ));
    events
}

/// The deltas of one block, each with the pause before it.
fn deltas(block: &Block, text_delay: Duration) -> Vec<(Value, Duration)> {
    match block {
        Block::Text(pieces) => pieces
            .iter()
            .enumerate()
            .map(|(n, text)| {
                let delay = if n == 0 { Duration::ZERO } else { text_delay };
                (json!({"type": "text_delta", "text": text}), delay)
            })
            .collect(),
        Block::ToolUse { input, .. } => split(&input.to_string(), JSON_PIECES)
            .into_iter()
            .map(|piece| {
                let delta = json!({"type": "input_json_delta", "partial_json": piece});
                (delta, Duration::ZERO)
            })
            .collect(),
        Block::Thinking {
            thinking,
            signature,
        } => vec![
            (
                json!({"type": "thinking_delta", "thinking": thinking}),
                Duration::ZERO,
            ),
            (
                json!({"type": "signature_delta", "signature": signature}),
                Duration::ZERO,
            ),
        ],
    }
}

/// Cuts `text` into at most `pieces` non-empty parts on character boundaries.
fn split(text: &str, pieces: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(pieces.max(1)).max(1);
    chars
        .chunks(size)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{Outcome, Reply};

    fn meta() -> MessageMeta {
        MessageMeta {
            id: "msg_mock_0001".to_owned(),
            model: "claude-test".to_owned(),
            input_tokens: 10,
        }
    }

    fn plan(reply: Reply) -> Plan {
        match Outcome::from(reply) {
            Outcome::Message(plan) => plan,
            Outcome::Error { .. } => panic!("expected a message"),
        }
    }

    fn names(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|event| event.name).collect()
    }

    #[test]
    fn tool_use_stream_has_the_api_event_order() {
        let input = json!({"file_path": "/w/é.txt", "content": "Hello\n"});
        let events = events(
            &plan(Reply::tool_use("Write", input.clone(), Some("ok"))),
            &meta(),
        );
        assert_eq!(
            names(&events),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(events[0].data["message"]["model"], "claude-test");
        assert_eq!(events[4].data["content_block"]["input"], json!({}));
        let partial: String = events[5..8]
            .iter()
            .map(|event| {
                event.data["delta"]["partial_json"]
                    .as_str()
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(serde_json::from_str::<Value>(&partial).ok(), Some(input));
        assert_eq!(events[9].data["delta"]["stop_reason"], "tool_use");
        for event in &events {
            assert_eq!(event.data["type"], event.name);
            let wire = event.encode();
            let data = wire
                .strip_prefix(&format!("event: {}\ndata: ", event.name))
                .and_then(|rest| rest.strip_suffix("\n\n"))
                .expect("event framing");
            assert!(serde_json::from_str::<Value>(data).is_ok());
        }
    }

    #[test]
    fn thinking_sends_thinking_then_signature() {
        let events = events(
            &plan(Reply::Thinking {
                thinking: "hm".into(),
                text: "ok".into(),
            }),
            &meta(),
        );
        let deltas: Vec<&Value> = events
            .iter()
            .filter(|event| event.name == "content_block_delta")
            .map(|event| &event.data["delta"])
            .collect();
        assert_eq!(deltas[0]["type"], "thinking_delta");
        assert_eq!(
            deltas[1],
            &json!({"type": "signature_delta", "signature": "sig_mock"})
        );
        assert_eq!(deltas[2], &json!({"type": "text_delta", "text": "ok"}));
        assert_eq!(events.last().map(|event| event.name), Some("message_stop"));
        assert_eq!(
            events[events.len() - 2].data["delta"]["stop_reason"],
            "end_turn"
        );
    }

    #[test]
    fn slow_text_waits_between_deltas() {
        let events = events(
            &plan(Reply::Slow {
                chunks: 3,
                delay_ms: 7,
            }),
            &meta(),
        );
        let delays: Vec<u128> = events
            .iter()
            .filter(|event| event.name == "content_block_delta")
            .map(|event| event.delay.as_millis())
            .collect();
        assert_eq!(delays, [0, 7, 7]);
    }

    #[test]
    fn json_message_has_blocks_and_stop_reason() {
        let message = message_json(&plan(Reply::text("hello world!")), &meta());
        assert_eq!(
            message["content"],
            json!([{"type": "text", "text": "hello world!"}])
        );
        assert_eq!(message["stop_reason"], "end_turn");
        assert_eq!(message["usage"]["output_tokens"], 3);
        assert_eq!(message["usage"]["input_tokens"], 10);
    }
}
