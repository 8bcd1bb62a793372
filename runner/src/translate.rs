//! Translation of the CLI's stream-json output into session events. Pure: a line in, what
//! it means out; the driver does the I/O.

use model::protocol::{
    AgentDelta, AgentMessage, AgentStarted, ErrorEvent, MAX_MCP_STATUS_SERVERS,
    MAX_MCP_STATUS_TOOLS, McpServerState, McpStatus, SessionEvent, Thinking, ToolResult, ToolUse,
    TurnResult, Usage, truncated,
};
use model::session::ForkSource;
use serde_json::Value;

/// Longest tool result kept in an event; the rest is cut with a note.
pub const MAX_TOOL_RESULT: usize = 64 * 1024;

/// What one line of the CLI's output means.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An event for the session's log.
    Event(SessionEvent),
    /// A turn ended (after its `TurnResult` event).
    TurnEnded {
        /// The turn failed.
        is_error: bool,
    },
    /// The CLI asks the host something and waits for the answer.
    ControlRequest {
        /// Id to answer with.
        request_id: String,
        /// The request's subtype (`can_use_tool`, `hook_callback` ...).
        subtype: String,
        /// The whole request.
        request: Value,
    },
    /// The CLI answered one of our control requests.
    ControlResponse {
        /// The id we sent.
        request_id: String,
        /// Why it failed, if it did.
        error: Option<String>,
    },
}

/// Run totals, summed over turns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Model calls.
    pub num_turns: u32,
    /// Tokens and cost.
    pub usage: Usage,
    /// Whether the last turn failed.
    pub last_error: bool,
    /// The last result text.
    pub last_text: Option<String>,
}

/// Stateful translator for one CLI process.
#[derive(Debug, Default)]
pub struct Translator {
    /// Claude's conversation id, once known.
    pub session_id: Option<String>,
    /// Totals over the process's turns.
    pub totals: Totals,
    resumed: bool,
    cost_seen: f64,
    /// The MCP servers' state last reported.
    mcp: Option<McpStatus>,
    /// The id of this turn's last assistant message: where a fork after it resumes.
    last_message: Option<String>,
}

impl Translator {
    /// A translator; `resumed` marks a continued conversation.
    pub fn new(resumed: bool) -> Self {
        Translator {
            resumed,
            ..Default::default()
        }
    }

    /// Translates one output line. Unknown types give nothing (and are logged).
    pub fn line(&mut self, line: &str) -> Vec<Output> {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                tracing::debug!(line, "claude printed a line that is not JSON");
                return Vec::new();
            }
        };
        let kind = v["type"].as_str().unwrap_or_default();
        match kind {
            "system" => self.system(&v),
            "assistant" => {
                if let Some(id) = v["uuid"].as_str().filter(|id| ForkSource::is_id(id)) {
                    self.last_message = Some(id.to_owned());
                }
                assistant(&v)
            }
            "user" => tool_results(&v),
            "stream_event" => stream_event(&v),
            "result" => self.result(&v),
            "control_request" => vec![Output::ControlRequest {
                request_id: str_of(&v["request_id"]),
                subtype: str_of(&v["request"]["subtype"]),
                request: v["request"].clone(),
            }],
            "control_response" => vec![Output::ControlResponse {
                request_id: str_of(&v["response"]["request_id"]),
                error: (v["response"]["subtype"].as_str() != Some("success")).then(|| {
                    Some(str_of(&v["response"]["error"]))
                        .filter(|e| !e.is_empty())
                        .unwrap_or_else(|| "refused".to_owned())
                }),
            }],
            other => {
                tracing::debug!(kind = other, "skipping an unknown stream-json type");
                Vec::new()
            }
        }
    }

    fn system(&mut self, v: &Value) -> Vec<Output> {
        match v["subtype"].as_str() {
            Some("init") => {
                let id = str_of(&v["session_id"]);
                let mut out = Vec::new();
                // Streaming mode repeats init at every turn: report the conversation once.
                if self.session_id.as_deref() != Some(id.as_str()) {
                    self.session_id = Some(id.clone());
                    out.push(Output::Event(SessionEvent::AgentStarted(AgentStarted {
                        model: str_of(&v["model"]),
                        claude_session_id: id,
                        cwd: str_of(&v["cwd"]),
                        resumed: self.resumed,
                    })));
                }
                // The MCP servers, each turn; an event when their state changed.
                let mcp = mcp_status(v);
                if self.mcp.as_ref() != Some(&mcp)
                    && (!mcp.servers.is_empty() || self.mcp.is_some())
                {
                    self.mcp = Some(mcp.clone());
                    out.push(Output::Event(SessionEvent::McpStatus(mcp)));
                }
                out
            }
            Some("api_retry") => vec![Output::Event(SessionEvent::Log(model::protocol::LogLine {
                level: model::protocol::LogLevel::Warn,
                message: format!(
                    "model API error {} ({}); retry {} of {}",
                    v["error_status"],
                    str_of(&v["error"]),
                    v["attempt"],
                    v["max_retries"]
                ),
            }))],
            _ => Vec::new(),
        }
    }

    fn result(&mut self, v: &Value) -> Vec<Output> {
        let is_error = v["is_error"].as_bool().unwrap_or(false);
        let subtype = str_of(&v["subtype"]);
        let total_cost = v["total_cost_usd"].as_f64().unwrap_or(self.cost_seen);
        // The CLI's cost is cumulative over the process; a turn's cost is the difference.
        let cost = (total_cost - self.cost_seen).max(0.0);
        self.cost_seen = total_cost.max(self.cost_seen);
        let u = &v["usage"];
        let usage = Usage {
            input_tokens: u["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: u["output_tokens"].as_u64().unwrap_or(0),
            cache_read_input_tokens: u["cache_read_input_tokens"].as_u64().unwrap_or(0),
            cache_creation_input_tokens: u["cache_creation_input_tokens"].as_u64().unwrap_or(0),
            cost_usd: cost,
        };
        let errors: Vec<String> = v["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let text = v["result"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| (!errors.is_empty()).then(|| errors.join("; ")));
        let num_turns = v["num_turns"].as_u64().unwrap_or(0) as u32;
        let t = &mut self.totals;
        t.num_turns += num_turns;
        t.usage.input_tokens += usage.input_tokens;
        t.usage.output_tokens += usage.output_tokens;
        t.usage.cache_read_input_tokens += usage.cache_read_input_tokens;
        t.usage.cache_creation_input_tokens += usage.cache_creation_input_tokens;
        t.usage.cost_usd += cost;
        let terminal = v["terminal_reason"].as_str().unwrap_or_default();
        // An interrupted turn ended as asked: not a failure of the run.
        let interrupted = subtype == "error_during_execution" && terminal.starts_with("aborted");
        t.last_error = is_error && !interrupted;
        t.last_text = text.clone();
        let mut out = vec![Output::Event(SessionEvent::TurnResult(TurnResult {
            is_error,
            subtype: subtype.clone(),
            num_turns,
            duration_ms: v["duration_ms"].as_u64().unwrap_or(0),
            usage,
            text: text.clone(),
            resume_at: self.last_message.take(),
        }))];
        if is_error && !interrupted {
            let (code, message) = match (subtype.as_str(), terminal) {
                ("error_max_turns", _) | (_, "max_turns") => (
                    "max_turns",
                    text.unwrap_or_else(|| "the maximum number of turns was reached".into()),
                ),
                (_, "api_error") => ("api_error", api_error_message(v, text)),
                _ => (
                    "agent_error",
                    text.unwrap_or_else(|| format!("the turn failed ({subtype})")),
                ),
            };
            out.push(Output::Event(SessionEvent::Error(ErrorEvent {
                message,
                code: Some(code.into()),
            })));
        }
        out.push(Output::TurnEnded { is_error });
        out
    }
}

/// The MCP servers of an `init` line: `mcp_servers` (name, status) with the tools of each
/// (`tools` named `mcp__<server>__<tool>`), bounded.
fn mcp_status(v: &Value) -> McpStatus {
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let cut = |s: &str| {
        let mut s = s.to_owned();
        truncated(&mut s, 200);
        s
    };
    let servers = v["mcp_servers"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .take(MAX_MCP_STATUS_SERVERS)
        .filter_map(|s| {
            let name = s["name"].as_str()?;
            let prefix = format!("mcp__{name}__");
            Some(McpServerState {
                name: cut(name),
                status: cut(s["status"].as_str().unwrap_or("unknown")),
                tools: tools
                    .iter()
                    .filter(|t| t.starts_with(&prefix))
                    .take(MAX_MCP_STATUS_TOOLS)
                    .map(|t| cut(t))
                    .collect(),
            })
        })
        .collect();
    McpStatus { servers }
}

/// A readable explanation of a model API failure.
fn api_error_message(v: &Value, text: Option<String>) -> String {
    let status = v["api_error_status"].as_u64();
    let hint = match status {
        Some(401) => " — the API key was refused; check the project's credentials",
        Some(403) => " — the API key may not use this model",
        Some(429) => " — rate limited; try again later",
        Some(500..=599) => " — the model service failed",
        _ => "",
    };
    let base = text.unwrap_or_else(|| "the model API failed".into());
    format!("{base}{hint}")
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn assistant(v: &Value) -> Vec<Output> {
    let message_id = v["message"]["id"].as_str().map(str::to_owned);
    let parent = v["parent_tool_use_id"].as_str().map(str::to_owned);
    let Some(blocks) = v["message"]["content"].as_array() else {
        return Vec::new();
    };
    blocks
        .iter()
        .filter_map(|b| match b["type"].as_str()? {
            "text" => Some(SessionEvent::AgentMessage(AgentMessage {
                message_id: message_id.clone(),
                text: str_of(&b["text"]),
                parent_tool_use_id: parent.clone(),
            })),
            "thinking" => Some(SessionEvent::Thinking(Thinking {
                message_id: message_id.clone(),
                text: str_of(&b["thinking"]),
            })),
            "tool_use" => Some(SessionEvent::ToolUse(ToolUse {
                id: str_of(&b["id"]),
                name: str_of(&b["name"]),
                input: b["input"].clone(),
                parent_tool_use_id: parent.clone(),
            })),
            _ => None,
        })
        .map(Output::Event)
        .collect()
}

fn tool_results(v: &Value) -> Vec<Output> {
    let Some(blocks) = v["message"]["content"].as_array() else {
        return Vec::new();
    };
    blocks
        .iter()
        .filter(|b| b["type"].as_str() == Some("tool_result"))
        .map(|b| {
            let content = match &b["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .map(|p| match p["type"].as_str() {
                        Some("text") => str_of(&p["text"]),
                        Some(other) => format!("[{other}]"),
                        None => String::new(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            Output::Event(SessionEvent::ToolResult(ToolResult {
                tool_use_id: str_of(&b["tool_use_id"]),
                content: truncate(content, MAX_TOOL_RESULT),
                is_error: b["is_error"].as_bool().unwrap_or(false),
            }))
        })
        .collect()
}

fn stream_event(v: &Value) -> Vec<Output> {
    let e = &v["event"];
    if e["type"].as_str() != Some("content_block_delta")
        || e["delta"]["type"].as_str() != Some("text_delta")
    {
        return Vec::new();
    }
    // Deltas inside sub-agents are not streamed: their complete blocks follow.
    if !v["parent_tool_use_id"].is_null() {
        return Vec::new();
    }
    vec![Output::Event(SessionEvent::AgentDelta(AgentDelta {
        message_id: v["api_message_id"].as_str().map(str::to_owned),
        text: str_of(&e["delta"]["text"]),
    }))]
}

/// Cuts `s` to at most `max` bytes on a character boundary, saying how much was left out.
pub fn truncate(mut s: String, max: usize) -> String {
    model::protocol::truncated(&mut s, max);
    s
}

#[cfg(test)]
mod tests;
