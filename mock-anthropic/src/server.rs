//! The HTTP side: shared state, the axum router and its handlers.
//!
//! Every request outside `/_mock/` goes through [`record_and_authenticate`], which logs it
//! and refuses `/v1/` calls that carry no credentials, before the route runs.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, body};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::record::RecordedRequest;
use crate::reply::{Outcome, Plan, Reply, next_message_id};
use crate::script;
use crate::sse::{self, MessageMeta};

/// Largest request body accepted (the CLI resends the whole conversation every turn).
const BODY_LIMIT: usize = 64 * 1024 * 1024;
/// Model named in replies when the request names none.
const DEFAULT_MODEL: &str = "claude-mock";

/// The mock's shared state: the request log and the scripted reply queue.
#[derive(Debug, Clone, Default)]
pub struct MockState {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Mutex<Vec<RecordedRequest>>,
    queue: Mutex<VecDeque<Reply>>,
}

/// A poisoned lock only means a handler panicked mid-update; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MockState {
    /// State with these replies queued ahead of the keyword rules.
    pub fn new(script: Vec<Reply>) -> Self {
        let state = Self::default();
        lock(&state.inner.queue).extend(script);
        state
    }

    /// Every recorded request, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.inner.requests).clear();
    }

    /// Appends replies to the scripted queue; returns the queue's new length.
    pub fn push_replies(&self, replies: impl IntoIterator<Item = Reply>) -> usize {
        let mut queue = lock(&self.inner.queue);
        queue.extend(replies);
        queue.len()
    }

    fn record(&self, request: RecordedRequest) {
        lock(&self.inner.requests).push(request);
    }

    fn next_reply(&self, body: &Value) -> Reply {
        script::select(body, &mut lock(&self.inner.queue))
    }
}

/// The mock's routes: the Messages API, connectivity checks and the `/_mock` controls.
pub fn router(state: MockState) -> Router {
    Router::new()
        .route("/", get(empty_ok))
        .route("/api/hello", get(empty_ok))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/_mock/requests", get(list_requests).delete(clear_requests))
        .route("/_mock/replies", post(queue_replies))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_and_authenticate,
        ))
        // The middleware enforces BODY_LIMIT itself before the handlers read the body.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Logs the request, then checks that `/v1/` calls carry a key.
async fn record_and_authenticate(
    State(state): State<MockState>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with("/_mock/") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = body::to_bytes(body, BODY_LIMIT).await else {
        return ApiError::new(413, "request body too large or unreadable").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    tracing::info!(method = %parts.method, %path, bytes = bytes.len(), "request");
    state.record(RecordedRequest::new(
        &parts.method,
        path,
        &parts.headers,
        &bytes,
    ));
    if parts.uri.path().starts_with("/v1/") && !has_credentials(&parts.headers) {
        return ApiError::new(401, "x-api-key header is required").into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key("x-api-key") || headers.contains_key(header::AUTHORIZATION)
}

async fn empty_ok() -> StatusCode {
    StatusCode::OK
}

async fn not_found() -> ApiError {
    ApiError::new(404, "Not found")
}

/// Parses a request body that must be a JSON object.
fn json_object(bytes: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(ApiError::new(400, "request body must be a JSON object")),
        Err(err) => Err(ApiError::new(400, format!("invalid JSON body: {err}"))),
    }
}

fn estimate_tokens(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len() / 4).unwrap_or(u64::MAX).max(1)
}

/// `POST /v1/messages`: chooses a reply and sends it as SSE or as one JSON message.
async fn messages(State(state): State<MockState>, bytes: Bytes) -> Response {
    let body = match json_object(&bytes) {
        Ok(body) => body,
        Err(err) => return err.into_response(),
    };
    let reply = state.next_reply(&body);
    let plan = match Outcome::from(reply) {
        Outcome::Message(plan) => plan,
        Outcome::Error { status, message } => {
            tracing::info!(status, "scripted error");
            return ApiError::new(status, message).into_response();
        }
    };
    let meta = MessageMeta {
        id: next_message_id(),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_MODEL)
            .to_owned(),
        input_tokens: estimate_tokens(&bytes),
    };
    tracing::info!(id = %meta.id, stop_reason = plan.stop_reason(), "reply");
    let response = if body.get("stream").and_then(Value::as_bool) == Some(true) {
        stream_response(&plan, &meta)
    } else {
        // Take as long as streaming would, so slow replies are slow either way.
        let events = sse::events(&plan, &meta);
        tokio::time::sleep(events.iter().map(|event| event.delay).sum()).await;
        Json(sse::message_json(&plan, &meta)).into_response()
    };
    with_request_id(response, &meta.id)
}

/// The event stream, each event written after its delay.
fn stream_response(plan: &Plan, meta: &MessageMeta) -> Response {
    let events = futures::stream::iter(sse::events(plan, meta)).then(|event| async move {
        if !event.delay.is_zero() {
            tokio::time::sleep(event.delay).await;
        }
        Ok::<_, Infallible>(Bytes::from(event.encode()))
    });
    let mut response = Body::from_stream(events).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Adds the `request-id` header the CLI copies into its output lines.
fn with_request_id(mut response: Response, message_id: &str) -> Response {
    let request_id = message_id.replace("msg_", "req_");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

/// `POST /v1/messages/count_tokens`.
async fn count_tokens(bytes: Bytes) -> Response {
    match json_object(&bytes) {
        Ok(_) => Json(json!({"input_tokens": estimate_tokens(&bytes)})).into_response(),
        Err(err) => err.into_response(),
    }
}

/// `GET /_mock/requests`.
async fn list_requests(State(state): State<MockState>) -> Json<Vec<RecordedRequest>> {
    Json(state.requests())
}

/// `DELETE /_mock/requests`.
async fn clear_requests(State(state): State<MockState>) -> StatusCode {
    state.clear_requests();
    StatusCode::NO_CONTENT
}

/// `POST /_mock/replies` with a JSON array of replies; answers `{"queued": <queue length>}`.
async fn queue_replies(State(state): State<MockState>, bytes: Bytes) -> Response {
    match serde_json::from_slice::<Vec<Reply>>(&bytes) {
        Ok(replies) => Json(json!({"queued": state.push_replies(replies)})).into_response(),
        Err(err) => {
            ApiError::new(400, format!("expected a JSON array of replies: {err}")).into_response()
        }
    }
}
