//! The request log: every API request the mock received, in order.

use axum::http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conversation;

/// Headers whose values are secrets and never stored.
const REDACTED_HEADERS: [&str; 2] = ["x-api-key", "authorization"];

/// One request as the mock saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method (`POST`).
    pub method: String,
    /// Path with query (`/v1/messages?beta=true`).
    pub path: String,
    /// Headers in arrival order, names lowercased, credentials replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Null` when empty or not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// Records a request from its parts.
    pub fn new(method: &Method, path: String, headers: &HeaderMap, body: &[u8]) -> Self {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                let name = name.as_str().to_ascii_lowercase();
                let value = if REDACTED_HEADERS.contains(&name.as_str()) {
                    "<redacted>".to_owned()
                } else {
                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                };
                (name, value)
            })
            .collect();
        Self {
            method: method.as_str().to_owned(),
            path,
            headers,
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        }
    }

    /// The value of the first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Every text of the `role:"user"` messages in the body, oldest first: string contents
    /// and text blocks, without tool results and `<system-reminder>` texts.
    pub fn user_texts(&self) -> Vec<String> {
        conversation::user_messages(&self.body)
            .flat_map(conversation::texts)
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    #[test]
    fn credentials_are_redacted_and_texts_extracted() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Api-Key", HeaderValue::from_static("sk-secret"));
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        let body = json!({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                {"type": "text", "text": "one"},
            ]},
            {"role": "assistant", "content": "You said: one"},
            {"role": "system", "content": "env"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]},
            {"role": "user", "content": "two"},
        ]});
        let request = RecordedRequest::new(
            &Method::POST,
            "/v1/messages?beta=true".to_owned(),
            &headers,
            body.to_string().as_bytes(),
        );
        assert_eq!(request.header("x-api-key"), Some("<redacted>"));
        assert_eq!(request.header("Authorization"), Some("<redacted>"));
        assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(request.user_texts(), ["one", "two"]);
        let garbage = RecordedRequest::new(&Method::GET, "/".to_owned(), &headers, b"{nope");
        assert_eq!(garbage.body, Value::Null);
        assert!(garbage.user_texts().is_empty());
    }
}
