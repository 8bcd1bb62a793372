//! The UI's server functions reach the platform through this implementation of
//! [`app::backend::Backend`].

use app::backend::Backend;
use app::error::AppError;
use axum::http::HeaderMap;
use model::AgenticSession;
use model::api::{CreateSessionRequest, CreateSessionResponse, SessionList};
use model::protocol::StoredEvent;

use crate::auth::{self, AuthError};
use crate::error::ApiError;
use crate::services::{Caller, Services};

fn app_error(e: ApiError) -> AppError {
    e.body().into()
}

async fn caller(s: &Services, headers: &HeaderMap) -> Result<Caller, AppError> {
    auth::caller(s, headers).await.map_err(|e| match e {
        AuthError::RunnerToken => AppError::new("forbidden", "runner tokens are not accepted here"),
        AuthError::Invalid(why) => AppError::new("unauthorized", why),
    })
}

#[async_trait::async_trait]
impl Backend for Services {
    async fn list_sessions(
        &self,
        headers: &HeaderMap,
        project: &str,
        search: Option<String>,
        offset: u64,
        limit: u64,
    ) -> Result<SessionList, AppError> {
        caller(self, headers).await?;
        Services::list_sessions(self, project, search, Some(offset), Some(limit))
            .await
            .map_err(app_error)
    }

    async fn create_session(
        &self,
        headers: &HeaderMap,
        project: &str,
        req: CreateSessionRequest,
    ) -> Result<CreateSessionResponse, AppError> {
        let who = caller(self, headers).await?;
        Services::create_session(self, project, req, &who)
            .await
            .map_err(app_error)
    }

    async fn get_session(
        &self,
        headers: &HeaderMap,
        project: &str,
        name: &str,
    ) -> Result<AgenticSession, AppError> {
        caller(self, headers).await?;
        Services::get_session(self, project, name)
            .await
            .map_err(app_error)
    }

    async fn events(
        &self,
        headers: &HeaderMap,
        project: &str,
        name: &str,
    ) -> Result<Vec<StoredEvent>, AppError> {
        caller(self, headers).await?;
        Services::events(self, project, name)
            .await
            .map_err(app_error)
    }
}
