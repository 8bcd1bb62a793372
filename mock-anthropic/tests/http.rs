//! The mock through real HTTP: a server on port 0 and a plain client.

use mock_anthropic::{MockConfig, MockHandle, RecordedRequest, Reply, start};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

async fn mock(script: Vec<Reply>) -> MockHandle {
    start(MockConfig { script }).await.expect("mock starts")
}

/// A `/v1/messages` body with one user prompt.
fn prompt(text: &str, stream: bool) -> Value {
    json!({
        "model": "claude-test-1",
        "max_tokens": 32000,
        "stream": stream,
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>ignore me</system-reminder>"},
                {"type": "text", "text": text},
            ]},
            {"role": "system", "content": "# Environment\n - Primary working directory: /srv/ws\n"},
        ],
    })
}

async fn post(mock: &MockHandle, body: &Value) -> reqwest::Response {
    Client::new()
        .post(format!("{}/v1/messages?beta=true", mock.url()))
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// Splits an SSE body into (event name, data) pairs, checking the framing.
fn parse_events(text: &str) -> Vec<(String, Value)> {
    text.split_terminator("\n\n")
        .map(|frame| {
            let (event, data) = frame.split_once('\n').expect("two lines per event");
            let name = event.strip_prefix("event: ").expect("event line");
            let data = data.strip_prefix("data: ").expect("data line");
            let data: Value = serde_json::from_str(data).expect("data is JSON");
            assert_eq!(data["type"], name, "event name matches its type");
            (name.to_owned(), data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(name, _)| name.as_str()).collect()
}

/// Concatenates one kind of delta (`text`, `partial_json`) across the stream.
fn joined(events: &[(String, Value)], field: &str) -> String {
    events
        .iter()
        .filter_map(|(_, data)| data["delta"][field].as_str())
        .collect()
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["type"], "error");
    (status, retry_after, body["error"].clone())
}

#[tokio::test]
async fn streaming_text_reply_is_a_complete_event_stream() {
    let mock = mock(vec![]).await;
    let response = post(&mock, &prompt("hello there", true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(content_type, "text/event-stream");
    let events = parse_events(&response.text().await.expect("body"));
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let message = &events[0].1["message"];
    assert_eq!(message["model"], "claude-test-1");
    assert!(
        message["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_mock_"))
    );
    assert!(
        message["usage"]["input_tokens"]
            .as_u64()
            .is_some_and(|n| n > 10)
    );
    assert_eq!(joined(&events, "text"), "You said: hello there");
    assert_eq!(events[4].1["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn create_streams_a_write_into_the_working_directory() {
    let mock = mock(vec![]).await;
    let text = post(&mock, &prompt("create notes.txt", true))
        .await
        .text()
        .await
        .expect("body");
    let events = parse_events(&text);
    assert_eq!(joined(&events, "text"), "I'll create notes.txt.");
    let tool = events
        .iter()
        .find(|(name, data)| {
            name == "content_block_start" && data["content_block"]["type"] == "tool_use"
        })
        .map(|(_, data)| &data["content_block"])
        .expect("a tool_use block");
    assert_eq!(tool["name"], "Write");
    assert!(
        tool["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("toolu_mock_"))
    );
    let input: Value = serde_json::from_str(&joined(&events, "partial_json")).expect("input JSON");
    assert_eq!(
        input,
        json!({"file_path": "/srv/ws/notes.txt", "content": "Hello from the mock Anthropic API!\n"})
    );
    let stop = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .expect("message_delta");
    assert_eq!(stop.1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn slow_replies_arrive_progressively() {
    let mock = mock(vec![Reply::Slow {
        chunks: 3,
        delay_ms: 300,
    }])
    .await;
    let mut response = post(&mock, &prompt("anything", true)).await;
    let first = response
        .chunk()
        .await
        .expect("read")
        .expect("a first chunk");
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(
        !first.contains("message_stop"),
        "the stream is not sent in one piece"
    );
    let mut text = first;
    while let Some(chunk) = response.chunk().await.expect("read") {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = parse_events(&text);
    assert_eq!(joined(&events, "text"), "chunk 1 chunk 2 chunk 3 ");
    assert_eq!(names(&events).last(), Some(&"message_stop"));
}

#[tokio::test]
async fn non_streaming_requests_get_a_json_message() {
    let mock = mock(vec![Reply::Thinking {
        thinking: "hmm".to_owned(),
        text: "ok".to_owned(),
    }])
    .await;
    let response = post(&mock, &prompt("think", false)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let message: Value = response.json().await.expect("JSON message");
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["model"], "claude-test-1");
    assert_eq!(
        message["content"],
        json!([
            {"type": "thinking", "thinking": "hmm", "signature": "sig_mock"},
            {"type": "text", "text": "ok"},
        ])
    );
    assert_eq!(message["stop_reason"], "end_turn");
    assert!(
        message["usage"]["output_tokens"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
}

#[tokio::test]
async fn model_probe_does_not_consume_scripted_replies() {
    let mock = mock(vec![Reply::text("scripted")]).await;
    let probe = json!({"model": "claude-sonnet-4-5", "max_tokens": 1,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]});
    let message: Value = post(&mock, &probe).await.json().await.expect("JSON");
    assert_eq!(message["content"][0]["text"], "Hi");
    let message: Value = post(&mock, &prompt("x", false))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(message["content"][0]["text"], "scripted");
    let message: Value = post(&mock, &prompt("x", false))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(message["content"][0]["text"], "You said: x");
}

#[tokio::test]
async fn errors_carry_anthropic_bodies_and_retry_after() {
    let mock = mock(vec![Reply::error(429, "slow down")]).await;
    let (status, retry_after, error) = error_of(post(&mock, &prompt("x", true)).await).await;
    assert_eq!(
        (status, retry_after.as_deref()),
        (StatusCode::TOO_MANY_REQUESTS, Some("1"))
    );
    assert_eq!(
        error,
        json!({"type": "rate_limit_error", "message": "slow down"})
    );

    for (text, status, kind) in [
        ("fail 500", 500, "api_error"),
        ("fail 529", 529, "overloaded_error"),
        ("fail 400", 400, "invalid_request_error"),
    ] {
        let (got, retry_after, error) = error_of(post(&mock, &prompt(text, true)).await).await;
        assert_eq!(got.as_u16(), status);
        assert_eq!(retry_after, None);
        assert_eq!(error["type"], kind);
    }

    let response = Client::new()
        .post(format!("{}/v1/messages", mock.url()))
        .header("x-api-key", "k")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    let (status, _, error) = error_of(response).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request_error"))
    );
}

#[tokio::test]
async fn requests_without_credentials_are_refused_but_recorded() {
    let mock = mock(vec![]).await;
    let url = format!("{}/v1/messages", mock.url());
    let response = Client::new()
        .post(&url)
        .json(&prompt("x", false))
        .send()
        .await
        .expect("sent");
    let (status, _, error) = error_of(response).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("authentication_error"))
    );

    let response = Client::new()
        .post(&url)
        .bearer_auth("token")
        .json(&prompt("x", false))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("authorization"), None);
    assert_eq!(requests[1].header("authorization"), Some("<redacted>"));
    assert_eq!(requests[1].user_texts(), ["x"]);
}

#[tokio::test]
async fn health_checks_count_tokens_and_unknown_paths() {
    let mock = mock(vec![]).await;
    let client = Client::new();
    for (method, path) in [("HEAD", "/"), ("HEAD", "/api/hello"), ("GET", "/")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = client
            .request(method, format!("{}{path}", mock.url()))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.bytes().await.expect("body").is_empty());
    }
    let count: Value = client
        .post(format!("{}/v1/messages/count_tokens?beta=true", mock.url()))
        .header("x-api-key", "k")
        .json(&prompt("count me", false))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert!(count["input_tokens"].as_u64().is_some_and(|n| n > 0));
    for path in ["/v1/models", "/elsewhere"] {
        let url = format!("{}{path}", mock.url());
        let response = client
            .get(url)
            .header("x-api-key", "k")
            .send()
            .await
            .expect("sent");
        let (status, _, error) = error_of(response).await;
        assert_eq!(
            (status, error["type"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found_error"))
        );
    }
}

#[tokio::test]
async fn control_endpoints_list_clear_and_queue() {
    let mock = mock(vec![]).await;
    let client = Client::new();
    let control = format!("{}/_mock", mock.url());
    let queued: Value = client
        .post(format!("{control}/replies"))
        .json(
            &json!([{"type": "text", "text": "one"}, {"type": "slow", "chunks": 2, "delayMs": 1}]),
        )
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(queued, json!({"queued": 2}));
    mock.push_reply(Reply::text("three"));

    let mut texts = Vec::new();
    for _ in 0..4 {
        let message: Value = post(&mock, &prompt("four", false))
            .await
            .json()
            .await
            .expect("JSON");
        texts.push(
            message["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(
        texts,
        ["one", "chunk 1 chunk 2 ", "three", "You said: four"]
    );

    let listed: Vec<RecordedRequest> = client
        .get(format!("{control}/requests"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed, mock.requests());
    assert_eq!(listed.len(), 4, "control calls are not recorded");
    assert_eq!(listed[0].path, "/v1/messages?beta=true");
    assert_eq!(listed[0].header("x-api-key"), Some("<redacted>"));
    assert_eq!(listed[0].user_texts(), ["four"]);

    let cleared = client
        .delete(format!("{control}/requests"))
        .send()
        .await
        .expect("sent");
    assert!(cleared.status().is_success());
    assert!(mock.requests().is_empty());

    let bad = client
        .post(format!("{control}/replies"))
        .body("[{\"type\":\"nope\"}]")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let mock = mock(vec![]).await;
    let url = mock.url();
    assert!(Client::new().get(&url).send().await.is_ok());
    mock.shutdown().await;
    assert!(Client::new().get(&url).send().await.is_err());
}
