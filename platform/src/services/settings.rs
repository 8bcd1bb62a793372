//! A project's credentials (runner secrets) and session defaults.
//!
//! Credentials are stored in the database (a file only its owner can read), given to runners
//! through their environment only, never logged, and never shown again in plain text.

use model::api::{
    ProjectSettingsBody, RUNNER_SECRET_KEYS, RunnerSecrets, UpdateRunnerSecrets, mask_secret,
};
use model::runner_env::Credentials;
use model::validate::{self, Invalid};

use super::Services;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

/// Longest credential value accepted.
use model::mcp;
use model::validate::MAX_SECRET;

impl Services {
    /// The project's credentials, masked.
    pub async fn runner_secrets(
        &self,
        caller: &Caller,
        project: &str,
    ) -> Result<RunnerSecrets, ApiError> {
        self.require(caller, project, Role::Edit).await?;
        let mut items: Vec<_> = self
            .records
            .credentials(caller, project)
            .await?
            .pairs()
            .map(|(key, value)| model::api::MaskedSecret {
                masked: mask_secret(key, value),
                key: key.to_owned(),
            })
            .collect();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(RunnerSecrets {
            items,
            allowed_keys: RUNNER_SECRET_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        })
    }

    /// Sets or removes credentials of the project; returns them masked. A write that names any
    /// variable of a credential ([`Credentials::GROUPS`]: the model's key, token and endpoint;
    /// GitHub's token and API address; GitLab's) replaces that credential as a whole.
    pub async fn update_runner_secrets(
        &self,
        caller: &Caller,
        project: &str,
        req: UpdateRunnerSecrets,
    ) -> Result<RunnerSecrets, ApiError> {
        self.require(caller, project, Role::Edit).await?;
        let mut changes = Vec::with_capacity(req.data.len());
        for (key, value) in req.data {
            if !RUNNER_SECRET_KEYS.contains(&key.as_str()) && !mcp::is_credential_key(&key) {
                return Err(Invalid::new(
                    format!("data.{key}"),
                    format!(
                        "unknown key; allowed: {}, or MCP_ then capitals, digits and '_' (at most {} characters) for MCP servers",
                        RUNNER_SECRET_KEYS.join(", "),
                        mcp::MAX_CREDENTIAL_NAME
                    ),
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
        let adding = changes
            .iter()
            .filter(|(k, v)| mcp::is_credential_key(k) && v.is_some())
            .count();
        if adding > 0 {
            let stored = self.records.credentials(caller, project).await?;
            let after: std::collections::BTreeSet<&str> = stored
                .mcp
                .keys()
                .map(String::as_str)
                .chain(
                    changes
                        .iter()
                        .filter(|(k, v)| mcp::is_credential_key(k) && v.is_some())
                        .map(|(k, _)| k.as_str()),
                )
                .filter(|k| !changes.iter().any(|(c, v)| c == k && v.is_none()))
                .collect();
            if after.len() > mcp::MAX_CREDENTIALS {
                return Err(Invalid::new(
                    "data",
                    format!("at most {} MCP credentials", mcp::MAX_CREDENTIALS),
                )
                .into());
            }
        }
        // A token and the address it goes to are one credential: whatever this write names
        // of one replaces it whole (nobody redirects a token they did not set).
        let changes = Credentials::whole(&changes);
        self.records
            .update_credentials(caller, project, &changes)
            .await?;
        self.runner_secrets(caller, project).await
    }

    /// What a run of a session in `project` gets: the project's credentials over the
    /// server's.
    pub async fn run_credentials(
        &self,
        caller: &Caller,
        project: &str,
    ) -> Result<Credentials, ApiError> {
        self.require(caller, project, Role::Edit).await?;
        let own = self.records.credentials(caller, project).await?;
        Ok(own.over(&self.settings.default_credentials))
    }

    /// The project's session defaults.
    pub async fn project_settings(
        &self,
        caller: &Caller,
        project: &str,
    ) -> Result<ProjectSettingsBody, ApiError> {
        self.require(caller, project, Role::View).await?;
        let s = self.records.project_settings(caller, project).await?;
        Ok(ProjectSettingsBody {
            inactivity_timeout_seconds: s.inactivity_timeout_seconds,
            mcp_servers: s.mcp_servers,
        })
    }

    /// Replaces the project's session defaults.
    pub async fn update_project_settings(
        &self,
        caller: &Caller,
        project: &str,
        body: ProjectSettingsBody,
    ) -> Result<ProjectSettingsBody, ApiError> {
        self.require(caller, project, Role::Admin).await?;
        validate::seconds("inactivityTimeoutSeconds", body.inactivity_timeout_seconds)?;
        if let Some(mcp) = &body.mcp_servers {
            validate::mcp_servers("mcpServers", mcp, true)?;
        }
        let mut spec = self.records.project_settings(caller, project).await?;
        // An MCP credential goes where the servers that reference it are; who changes that
        // (an admin may not read the credential) clears it, so it is not sent to the new
        // address until someone who has it sets it again.
        let before = mcp::destinations(spec.mcp_servers.as_ref());
        let redirected: Vec<(String, Option<String>)> =
            mcp::destinations(body.mcp_servers.as_ref())
                .into_iter()
                .filter(|(key, urls)| before.get(key) != Some(urls))
                .map(|(key, _)| (key, None))
                .collect();
        if !redirected.is_empty() {
            self.records
                .update_credentials(caller, project, &redirected)
                .await?;
        }
        spec.inactivity_timeout_seconds = body.inactivity_timeout_seconds;
        spec.mcp_servers = body.mcp_servers;
        self.records
            .set_project_settings(caller, project, spec)
            .await?;
        self.project_settings(caller, project).await
    }
}
