//! Steering: `start` (continue), `stop`, `interrupt`, `messages`, and `export`.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use model::AgenticSession;
use model::api::{
    AnswerRequest, ApiError as ErrorBody, AskList, MessageAccepted, SendMessageRequest,
    SetModelRequest,
};

use super::extract::ApiJson;
use model::session::SessionKey;
use platform::{ApiError, Caller, Services};

/// Starts a finished session again; the agent continues its conversation.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/start", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 202, body = inline(Object), description = "The AgenticSession, start requested"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<AgenticSession>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.start(&caller, &SessionKey::new(project, name)).await?),
    ))
}

/// Stops a session: the runner is told, then terminated with everything it started.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/stop", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 202, body = inline(Object), description = "The AgenticSession, stop requested"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<AgenticSession>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.stop(&caller, &SessionKey::new(project, name)).await?),
    ))
}

/// Interrupts the agent's current turn; the session goes on.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/interrupt", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 202), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn interrupt(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.interrupt(&caller, &SessionKey::new(project, name))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Switches the session's model: its spec keeps it for later runs, and a running agent
/// switches at once (its next request uses it); the transcript says who chose what.
#[utoipa::path(put, path = "/api/projects/{project}/agentic-sessions/{session}/model", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)), request_body = SetModelRequest,
    responses((status = 200, body = inline(Object), description = "The session (an AgenticSession)"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_model(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetModelRequest>,
) -> Result<Json<AgenticSession>, ApiError> {
    Ok(Json(
        s.set_model(&caller, &SessionKey::new(project, name), req.model)
            .await?,
    ))
}

/// The questions the session's agent waits to have answered (`AskUserQuestion`), oldest
/// first; none once its run has ended.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/asks", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = AskList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn asks(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<AskList>, ApiError> {
    Ok(Json(AskList {
        items: s
            .open_asks(&caller, &SessionKey::new(project, name))
            .await?,
    }))
}

/// Answers a question of the session's agent (each question's text → its answer; none
/// declines): recorded in the transcript, then given to the agent, which goes on. 409 when
/// no such question waits.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/answers", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)), request_body = AnswerRequest,
    responses((status = 202, body = MessageAccepted), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn answer(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<AnswerRequest>,
) -> Result<(StatusCode, Json<MessageAccepted>), ApiError> {
    let seq = s
        .answer(&caller, &SessionKey::new(project, name), req)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(MessageAccepted { seq })))
}

/// Sends a follow-up message; a finished session is continued with it.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/messages", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)), request_body = SendMessageRequest,
    responses((status = 202, body = MessageAccepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn send_message(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> Result<(StatusCode, Json<MessageAccepted>), ApiError> {
    let seq = s
        .send_message(&caller, &SessionKey::new(project, name), req.text)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(MessageAccepted { seq })))
}

/// The session and its whole event log, streamed: a log of any length is sent page by page
/// (the server holds one page at a time), ending with the events there were when it began.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/export", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = inline(Object), description = "{sessionId, projectName, exportDate, session, events}"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    /// Events read from the log per page of the answer.
    const PAGE: usize = 1000;
    let key = SessionKey::new(&project, &name);
    let live = s.live_session(&c, &key).await?;
    let head = serde_json::json!({
        "sessionId": name,
        "projectName": project,
        "exportDate": k8s_openapi::jiff::Timestamp::now().to_string(),
        "session": live.record.session,
    })
    .to_string();
    // `{...,"session":{...}` then `,"events":[` rows `]}`.
    let opening = format!("{},\"events\":[", head.trim_end_matches('}'));
    let (log, end) = (live.log, live.counters.last_seq);
    let pages = futures::stream::unfold(Some(0u64), move |after| {
        let s = s.clone();
        async move {
            let after = after?;
            if after >= end {
                return None;
            }
            match s.log.events_after(log, after, PAGE).await {
                Ok(rows) => {
                    let rows: Vec<_> = rows.into_iter().filter(|r| r.seq <= end).collect();
                    let last = rows.last().map(|r| r.seq)?;
                    let mut chunk = String::new();
                    for (i, r) in rows.into_iter().enumerate() {
                        if after > 0 || i > 0 {
                            chunk.push(',');
                        }
                        chunk.push_str(&format!(
                            "{{\"seq\":{},\"ts\":{},\"event\":{}}}",
                            r.seq, r.ts, r.body
                        ));
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), Some(last)))
                }
                // The answer is cut short: its JSON does not parse, so no one takes it
                // for the whole log.
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let body = futures::stream::once(async move { Ok(Bytes::from(opening)) })
        .chain(pages)
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"]}"))
        }));
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}
