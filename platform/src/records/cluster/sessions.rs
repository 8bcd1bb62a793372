//! Sessions in the cluster: `AgenticSession` resources, read with the caller's own client
//! where it has one.

use super::*;

pub(super) async fn create_session(
    r: &KubeRecords,
    mut session: AgenticSession,
) -> Result<SessionRecord> {
    let key = SessionKey::of(&session);
    r.namespace(&key.project).await?;
    // Identity and version are the API server's to give.
    session.metadata.uid = None;
    session.metadata.resource_version = None;
    session.metadata.creation_timestamp = None;
    let created = r
        .sessions(&key.project)
        .create(&PostParams::default(), &session)
        .await
        .map_err(|e| session_error(e, &key))?;
    Ok(record(created))
}

pub(super) async fn get_session(
    r: &KubeRecords,
    caller: &Caller,
    key: &SessionKey,
) -> Result<SessionRecord> {
    let s = Api::<AgenticSession>::namespaced(r.reader(caller)?, &key.project)
        .get(&key.name)
        .await
        .map_err(|e| session_error(e, key))?;
    Ok(record(s))
}

pub(super) async fn list_sessions(
    r: &KubeRecords,
    caller: &Caller,
    project: &str,
    page: &Page,
) -> Result<SessionList> {
    r.namespace(project).await?;
    let list = Api::<AgenticSession>::namespaced(r.reader(caller)?, project)
        .list(&ListParams::default())
        .await
        .map_err(RecordsError::from)?;
    let term = search_term(page);
    let mut all: Vec<AgenticSession> = list
        .items
        .into_iter()
        .filter(|s| term.as_deref().is_none_or(|t| matches(s, t)))
        .collect();
    // Newest first; the name orders sessions made in the same second.
    all.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
            .then_with(|| b.name_any().cmp(&a.name_any()))
    });
    let (items, total, has_more) = page_of(all, page);
    Ok(SessionList {
        items,
        total_count: total,
        offset: page.offset,
        limit: page.limit,
        has_more,
    })
}

pub(super) async fn replace_session(
    r: &KubeRecords,
    session: AgenticSession,
) -> Result<SessionRecord> {
    let key = SessionKey::of(&session);
    let replaced = r
        .sessions(&key.project)
        .replace(&key.name, &PostParams::default(), &session)
        .await
        .map_err(|e| session_error(e, &key))?;
    Ok(record(replaced))
}

pub(super) async fn delete_session(r: &KubeRecords, key: &SessionKey) -> Result<Removed> {
    let api = r.sessions(&key.project);
    let s = api
        .get(&key.name)
        .await
        .map_err(|e| session_error(e, key))?;
    api.delete(&key.name, &DeleteParams::background())
        .await
        .map_err(|e| session_error(e, key))?;
    Ok(Removed {
        name: key.name.clone(),
        uid: s.uid().unwrap_or_default(),
    })
}

pub(super) async fn set_sdk_session_id(
    r: &KubeRecords,
    key: &SessionKey,
    sdk_session_id: &str,
) -> Result<()> {
    r.patch_status(key, json!({"status": {"sdkSessionId": sdk_session_id}}))
        .await
}

/// The current run, as the operator recorded it in the status.
fn run_of(session: &AgenticSession) -> Run {
    let st = session.status.as_ref();
    Run {
        generation: st
            .and_then(|s| s.run_generation)
            .and_then(|g| u64::try_from(g).ok())
            .unwrap_or(0),
        token_hash: st
            .and_then(|s| s.runner_token_hash.as_deref())
            .and_then(|h| hex::decode(h).ok()),
    }
}

fn record(session: AgenticSession) -> SessionRecord {
    SessionRecord {
        run: run_of(&session),
        session,
    }
}

/// Case-insensitive substring search over name, display name and prompt.
fn matches(session: &AgenticSession, term: &str) -> bool {
    let term = term.to_lowercase();
    let name = session.name_any();
    [
        Some(name.as_str()),
        session.spec.display_name.as_deref(),
        session.spec.initial_prompt.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|s| s.to_lowercase().contains(&term))
}
