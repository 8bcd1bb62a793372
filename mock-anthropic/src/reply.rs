//! What the mock answers: the scriptable [`Reply`] and the [`Plan`] of content blocks it
//! turns into.
//!
//! A `Reply` is what tests write (in Rust, in a JSON script file, or through
//! `POST /_mock/replies`); a `Plan` is the concrete assistant message with ids assigned,
//! which [`crate::sse`] encodes either as an event stream or as one JSON message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The signature attached to every thinking block (the CLI stores it but never checks it).
pub const THINKING_SIGNATURE: &str = "sig_mock";

/// One scripted answer to a `POST /v1/messages` request.
///
/// JSON form: `{"type": "tool_use", "name": "Bash", "input": {...}, "text": "..."}`,
/// `{"type": "slow", "chunks": 3, "delayMs": 100}`, and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Reply {
    /// A single text block.
    Text {
        /// The assistant's text.
        text: String,
    },
    /// An optional text block, then one `tool_use` block; the stop reason is `tool_use`.
    ToolUse {
        /// Tool name as the CLI knows it (`Write`, `Bash`, ...).
        name: String,
        /// The tool's input object.
        input: Value,
        /// Text sent before the tool call, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A thinking block (with a signature), then a text block.
    Thinking {
        /// The thinking text.
        thinking: String,
        /// The visible answer that follows.
        text: String,
    },
    /// A text streamed as `chunks` deltas `"chunk N "`, `delay_ms` apart.
    Slow {
        /// Number of text deltas.
        chunks: u32,
        /// Pause between two deltas, in milliseconds.
        delay_ms: u64,
    },
    /// An HTTP error with an Anthropic error body.
    Error {
        /// HTTP status code (4xx or 5xx; anything else is sent as 500).
        status: u16,
        /// The error message.
        message: String,
    },
}

impl Reply {
    /// A plain text reply.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    /// A tool call with a leading text block.
    pub fn tool_use(name: impl Into<String>, input: Value, text: Option<&str>) -> Self {
        Self::ToolUse {
            name: name.into(),
            input,
            text: text.map(str::to_owned),
        }
    }

    /// An HTTP error reply.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::Error {
            status,
            message: message.into(),
        }
    }
}

/// One content block of a planned assistant message.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Text, sent as one `text_delta` per element.
    Text(Vec<String>),
    /// A tool call.
    ToolUse {
        /// `toolu_mock_NNNN`.
        id: String,
        /// Tool name.
        name: String,
        /// Tool input object.
        input: Value,
    },
    /// Extended thinking with its signature.
    Thinking {
        /// The thinking text.
        thinking: String,
        /// The block's signature.
        signature: String,
    },
}

impl Block {
    /// The characters this block contributes to the output, for the token estimate.
    pub fn output_chars(&self) -> usize {
        match self {
            Self::Text(deltas) => deltas.iter().map(|d| d.chars().count()).sum(),
            Self::ToolUse { input, .. } => input.to_string().chars().count(),
            Self::Thinking { thinking, .. } => thinking.chars().count(),
        }
    }
}

/// A concrete assistant message: its blocks and the pause between streamed text deltas.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Content blocks in order.
    pub blocks: Vec<Block>,
    /// Pause before every text delta but the first of a block.
    pub delta_delay: Duration,
}

/// The outcome of a reply: a message to send, or an HTTP error.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Send this message.
    Message(Plan),
    /// Answer with this status and message.
    Error {
        /// HTTP status.
        status: u16,
        /// Error message.
        message: String,
    },
}

impl Plan {
    /// `tool_use` when the message calls a tool, else `end_turn`.
    pub fn stop_reason(&self) -> &'static str {
        let calls_tool = self
            .blocks
            .iter()
            .any(|block| matches!(block, Block::ToolUse { .. }));
        if calls_tool { "tool_use" } else { "end_turn" }
    }

    /// Estimated output tokens: output characters / 4, at least 1.
    pub fn output_tokens(&self) -> u64 {
        let chars: usize = self.blocks.iter().map(Block::output_chars).sum();
        u64::try_from(chars / 4).unwrap_or(u64::MAX).max(1)
    }

    /// The full text of every text block, concatenated.
    pub fn text(&self) -> String {
        self.blocks
            .iter()
            .filter_map(|block| match block {
                Block::Text(deltas) => Some(deltas.concat()),
                _ => None,
            })
            .collect()
    }
}

/// Process-wide counters, so ids never repeat even across several mock servers.
static NEXT_TOOL_USE: AtomicU64 = AtomicU64::new(1);
static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

/// A fresh `toolu_mock_NNNN` id.
pub fn next_tool_use_id() -> String {
    format!(
        "toolu_mock_{:04}",
        NEXT_TOOL_USE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh `msg_mock_NNNN` id.
pub fn next_message_id() -> String {
    format!(
        "msg_mock_{:04}",
        NEXT_MESSAGE.fetch_add(1, Ordering::Relaxed)
    )
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Self {
        let message = |blocks| {
            Outcome::Message(Plan {
                blocks,
                delta_delay: Duration::ZERO,
            })
        };
        match reply {
            Reply::Text { text } => message(vec![Block::Text(vec![text])]),
            Reply::ToolUse { name, input, text } => {
                let mut blocks: Vec<Block> =
                    text.map(|t| Block::Text(vec![t])).into_iter().collect();
                blocks.push(Block::ToolUse {
                    id: next_tool_use_id(),
                    name,
                    input,
                });
                message(blocks)
            }
            Reply::Thinking { thinking, text } => message(vec![
                Block::Thinking {
                    thinking,
                    signature: THINKING_SIGNATURE.to_owned(),
                },
                Block::Text(vec![text]),
            ]),
            Reply::Slow { chunks, delay_ms } => Outcome::Message(Plan {
                blocks: vec![Block::Text(
                    (1..=chunks.max(1)).map(|n| format!("chunk {n} ")).collect(),
                )],
                delta_delay: Duration::from_millis(delay_ms),
            }),
            Reply::Error { status, message } => Outcome::Error { status, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reply_json_form_is_tagged_snake_case_with_camel_case_fields() {
        let replies: Vec<Reply> = serde_json::from_value(json!([
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "name": "Bash", "input": {"command": "ls"}},
            {"type": "thinking", "thinking": "hmm", "text": "ok"},
            {"type": "slow", "chunks": 3, "delayMs": 20},
            {"type": "error", "status": 529, "message": "busy"},
        ]))
        .expect("valid replies");
        assert_eq!(
            replies[3],
            Reply::Slow {
                chunks: 3,
                delay_ms: 20
            }
        );
        assert_eq!(
            replies[1],
            Reply::tool_use("Bash", json!({"command": "ls"}), None)
        );
        assert_eq!(
            serde_json::to_value(&replies[3]).expect("serialize"),
            json!({"type": "slow", "chunks": 3, "delayMs": 20})
        );
    }

    #[test]
    fn tool_use_plan_has_text_first_and_stops_for_the_tool() {
        let Outcome::Message(plan) = Reply::tool_use("Write", json!({}), Some("doing it")).into()
        else {
            panic!("expected a message");
        };
        assert!(matches!(&plan.blocks[0], Block::Text(t) if t == &["doing it"]));
        assert!(
            matches!(&plan.blocks[1], Block::ToolUse { id, .. } if id.starts_with("toolu_mock_"))
        );
        assert_eq!(plan.stop_reason(), "tool_use");
    }

    #[test]
    fn slow_plan_has_numbered_chunks() {
        let Outcome::Message(plan) = Outcome::from(Reply::Slow {
            chunks: 3,
            delay_ms: 5,
        }) else {
            panic!("expected a message");
        };
        assert_eq!(plan.text(), "chunk 1 chunk 2 chunk 3 ");
        assert_eq!(plan.delta_delay, Duration::from_millis(5));
        assert_eq!(plan.stop_reason(), "end_turn");
    }
}
