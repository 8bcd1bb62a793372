//! The UI's server functions reach the platform through this implementation of
//! [`app::backend::Backend`]: each method authorises the caller, then calls the same service
//! the REST API calls.

use app::backend::Backend;
use app::error::AppError;
use app::pages::Models;
use app::pages::project::SessionAction;
use axum::http::HeaderMap;
use model::api::{
    CloneSessionRequest, CreateProjectRequest, CreateSessionRequest, CreateSessionResponse,
    Project, ProjectList, ProjectSettingsBody, RunnerSecrets, SessionSummaries, SessionSummary,
    UpdateRunnerSecrets,
};
use model::protocol::StoredEvent;

use crate::auth::{self, AuthError};
use crate::error::ApiError;
use crate::services::{Caller, Services};

/// The error for the page, with the REST API's status on the server function's response
/// (a refusal is a 4xx, as over REST, not a blanket 500).
fn app_error(e: ApiError) -> AppError {
    respond_with(e.status());
    e.body().into()
}

fn respond_with(status: axum::http::StatusCode) {
    if let Some(options) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
        options.set_status(status);
    }
}

async fn caller(s: &Services, headers: &HeaderMap) -> Result<Caller, AppError> {
    auth::caller(s, headers).await.map_err(|e| match e {
        AuthError::RunnerToken => {
            respond_with(axum::http::StatusCode::FORBIDDEN);
            AppError::new("forbidden", "runner tokens are not accepted here")
        }
        AuthError::Invalid(why) => {
            respond_with(axum::http::StatusCode::UNAUTHORIZED);
            AppError::new("unauthorized", why)
        }
    })
}

#[async_trait::async_trait]
impl Backend for Services {
    async fn list_projects(
        &self,
        h: &HeaderMap,
        search: Option<String>,
        offset: u64,
    ) -> Result<ProjectList, AppError> {
        caller(self, h).await?;
        Services::list_projects(self, search, Some(offset), Some(50))
            .await
            .map_err(app_error)
    }

    async fn create_project(
        &self,
        h: &HeaderMap,
        req: CreateProjectRequest,
    ) -> Result<Project, AppError> {
        caller(self, h).await?;
        Services::create_project(self, req).await.map_err(app_error)
    }

    async fn delete_project(&self, h: &HeaderMap, name: &str) -> Result<(), AppError> {
        caller(self, h).await?;
        Services::delete_project(self, name)
            .await
            .map_err(app_error)
    }

    async fn list_sessions(
        &self,
        h: &HeaderMap,
        project: &str,
        search: Option<String>,
        offset: u64,
        limit: u64,
    ) -> Result<SessionSummaries, AppError> {
        caller(self, h).await?;
        let list = Services::list_sessions(self, project, search, Some(offset), Some(limit))
            .await
            .map_err(app_error)?;
        Ok(SessionSummaries::from(&list))
    }

    async fn create_session(
        &self,
        h: &HeaderMap,
        project: &str,
        req: CreateSessionRequest,
    ) -> Result<CreateSessionResponse, AppError> {
        let who = caller(self, h).await?;
        Services::create_session(self, project, req, &who)
            .await
            .map_err(app_error)
    }

    async fn session(
        &self,
        h: &HeaderMap,
        project: &str,
        name: &str,
    ) -> Result<SessionSummary, AppError> {
        caller(self, h).await?;
        Ok(SessionSummary::of(
            &Services::get_session(self, project, name)
                .await
                .map_err(app_error)?,
        ))
    }

    async fn events(
        &self,
        h: &HeaderMap,
        project: &str,
        name: &str,
    ) -> Result<Vec<StoredEvent>, AppError> {
        caller(self, h).await?;
        Services::events(self, project, name)
            .await
            .map_err(app_error)
    }

    async fn act(
        &self,
        h: &HeaderMap,
        project: &str,
        name: &str,
        action: SessionAction,
    ) -> Result<Option<String>, AppError> {
        let who = caller(self, h).await?;
        let done = match action {
            SessionAction::Stop => self.stop(project, name, &who).await.map(|_| None),
            SessionAction::Continue => self.start(project, name, &who).await.map(|_| None),
            SessionAction::Delete => self.delete_session(project, name).await.map(|_| None),
            SessionAction::Clone => self
                .clone_session(project, name, CloneSessionRequest::default(), &who)
                .await
                .map(|c| Some(c.name)),
        };
        done.map_err(app_error)
    }

    async fn rename(
        &self,
        h: &HeaderMap,
        project: &str,
        name: &str,
        display_name: String,
    ) -> Result<(), AppError> {
        caller(self, h).await?;
        self.set_display_name(project, name, display_name)
            .await
            .map(|_| ())
            .map_err(app_error)
    }

    async fn models(&self, h: &HeaderMap) -> Result<Models, AppError> {
        caller(self, h).await?;
        Ok(Models {
            models: self.settings.models.clone(),
            default: self.settings.default_model.clone(),
        })
    }

    async fn settings(
        &self,
        h: &HeaderMap,
        project: &str,
    ) -> Result<(RunnerSecrets, ProjectSettingsBody), AppError> {
        caller(self, h).await?;
        let secrets = self.runner_secrets(project).await.map_err(app_error)?;
        let settings = self.project_settings(project).await.map_err(app_error)?;
        Ok((secrets, settings))
    }

    async fn save_secrets(
        &self,
        h: &HeaderMap,
        project: &str,
        req: UpdateRunnerSecrets,
    ) -> Result<RunnerSecrets, AppError> {
        caller(self, h).await?;
        self.update_runner_secrets(project, req)
            .await
            .map_err(app_error)
    }

    async fn save_settings(
        &self,
        h: &HeaderMap,
        project: &str,
        body: ProjectSettingsBody,
    ) -> Result<ProjectSettingsBody, AppError> {
        caller(self, h).await?;
        self.update_project_settings(project, body)
            .await
            .map_err(app_error)
    }
}
