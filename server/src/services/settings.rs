//! A project's credentials (runner secrets) and session defaults.
//!
//! Credentials are stored in the database (a file only its owner can read), given to runners
//! through their environment only, never logged, and never shown again in plain text.

use model::api::{
    ProjectSettingsBody, RUNNER_SECRET_KEYS, RunnerSecrets, UpdateRunnerSecrets, mask_secret,
};
use model::project_settings::ProjectSettingsSpec;
use model::validate::Invalid;

use super::Services;
use crate::error::ApiError;

/// Longest credential value accepted.
const MAX_SECRET: usize = 8 * 1024;

impl Services {
    /// The project's credentials, masked.
    pub async fn runner_secrets(&self, project: &str) -> Result<RunnerSecrets, ApiError> {
        self.store.get_project(project).await?;
        let items = self
            .store
            .secrets(project)
            .await?
            .into_iter()
            .map(|(key, value)| model::api::MaskedSecret {
                masked: mask_secret(&key, &value),
                key,
            })
            .collect();
        Ok(RunnerSecrets {
            items,
            allowed_keys: RUNNER_SECRET_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        })
    }

    /// Sets or removes credentials of the project; returns them masked.
    pub async fn update_runner_secrets(
        &self,
        project: &str,
        req: UpdateRunnerSecrets,
    ) -> Result<RunnerSecrets, ApiError> {
        let mut changes = Vec::with_capacity(req.data.len());
        for (key, value) in req.data {
            if !RUNNER_SECRET_KEYS.contains(&key.as_str()) {
                return Err(Invalid::new(
                    format!("data.{key}"),
                    format!("unknown key; allowed: {}", RUNNER_SECRET_KEYS.join(", ")),
                )
                .into());
            }
            let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            if let Some(v) = &value {
                if v.len() > MAX_SECRET || v.chars().any(char::is_control) {
                    return Err(Invalid::new(
                        format!("data.{key}"),
                        "must be one line of at most 8 KiB",
                    )
                    .into());
                }
                if key.ends_with("_URL") && !(v.starts_with("http://") || v.starts_with("https://"))
                {
                    return Err(Invalid::new(
                        format!("data.{key}"),
                        "must be an http or https URL",
                    )
                    .into());
                }
            }
            changes.push((key, value));
        }
        self.store.update_secrets(project, changes).await?;
        self.runner_secrets(project).await
    }

    /// The project's session defaults.
    pub async fn project_settings(&self, project: &str) -> Result<ProjectSettingsBody, ApiError> {
        let s = self.store.project_settings(project).await?;
        Ok(ProjectSettingsBody {
            inactivity_timeout_seconds: s.inactivity_timeout_seconds,
            mcp_servers: s.mcp_servers,
        })
    }

    /// Replaces the project's session defaults.
    pub async fn update_project_settings(
        &self,
        project: &str,
        body: ProjectSettingsBody,
    ) -> Result<ProjectSettingsBody, ApiError> {
        if body.inactivity_timeout_seconds.is_some_and(|t| t < 0) {
            return Err(
                Invalid::new("inactivityTimeoutSeconds", "must be zero or more seconds").into(),
            );
        }
        let mut spec: ProjectSettingsSpec = self.store.project_settings(project).await?;
        spec.inactivity_timeout_seconds = body.inactivity_timeout_seconds;
        spec.mcp_servers = body.mcp_servers;
        self.store.set_project_settings(project, spec).await?;
        self.project_settings(project).await
    }
}
