//! The local driver's view of the store ([`operator::SessionStore`] over SQLite and the hub).

use std::sync::Arc;

use operator::lifecycle::Plan;
use operator::store::{
    Loaded, RunTicket, RunnerProcess, SessionKey, SessionStore, StoreError as DriverError,
};

use crate::hub::Runners;
use crate::services::Settings;
use crate::store::{Store, StoreError};

/// The driver's store: sessions from SQLite, connection state from the hub.
#[derive(Clone)]
pub struct DriverStore {
    /// The store.
    pub store: Store,
    /// Connected runners.
    pub runners: Runners,
    /// Settings (default credentials).
    pub settings: Arc<Settings>,
}

fn convert(e: StoreError) -> DriverError {
    match e {
        StoreError::Conflict(_) => DriverError::Conflict,
        other => DriverError::Other(other.to_string()),
    }
}

impl SessionStore for DriverStore {
    async fn unfinished(&self) -> Result<Vec<SessionKey>, DriverError> {
        let rows = self.store.unfinished_sessions().await.map_err(convert)?;
        Ok(rows
            .into_iter()
            .map(|(p, n)| SessionKey::new(p, n))
            .collect())
    }

    async fn load(&self, key: &SessionKey) -> Result<Option<Loaded>, DriverError> {
        let row = match self.store.session_row(&key.project, &key.name).await {
            Ok(row) => row,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(convert(e)),
        };
        let settings = self
            .store
            .project_settings(&key.project)
            .await
            .map_err(convert)?;
        Ok(Some(Loaded {
            connected: self.runners.is_connected(row.id, row.run_generation),
            resource_version: row.resource_version,
            generation: row.run_generation,
            runner: row.runner,
            summary: row.summary,
            project_inactivity_timeout: settings.inactivity_timeout_seconds,
            workspace: self.store.workspace(&key.project, &key.name),
            session: row.session,
        }))
    }

    async fn save(
        &self,
        key: &SessionKey,
        resource_version: u64,
        plan: &Plan,
    ) -> Result<(), DriverError> {
        self.store
            .save_plan(&key.project, &key.name, resource_version, plan.clone())
            .await
            .map_err(convert)
    }

    async fn begin_run(&self, key: &SessionKey, resume: bool) -> Result<RunTicket, DriverError> {
        let (generation, token, handled_through, resume) = self
            .store
            .begin_run(&key.project, &key.name, resume)
            .await
            .map_err(convert)?;
        let settings = self
            .store
            .project_settings(&key.project)
            .await
            .map_err(convert)?;
        let secrets = self.store.secrets(&key.project).await.map_err(convert)?;
        Ok(RunTicket {
            generation,
            token,
            handled_through,
            resume,
            credentials: merge_credentials(&self.settings.default_credentials, &secrets),
            project_mcp_servers: settings.mcp_servers,
        })
    }

    async fn record_runner(
        &self,
        key: &SessionKey,
        generation: u64,
        process: RunnerProcess,
    ) -> Result<(), DriverError> {
        self.store
            .record_runner(&key.project, &key.name, generation, process)
            .await
            .map_err(convert)
    }
}

/// The server's default credentials with the project's own on top. A project that sets a
/// base URL or a key of its own does not inherit the other half from the server.
pub fn merge_credentials(
    defaults: &[(String, String)],
    project: &[(String, String)],
) -> Vec<(String, String)> {
    use model::runner_env::{ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, ANTHROPIC_BASE_URL};
    let model_keys = [ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, ANTHROPIC_BASE_URL];
    let project_sets_model = project
        .iter()
        .any(|(k, _)| model_keys.contains(&k.as_str()));
    let mut out: Vec<(String, String)> = defaults
        .iter()
        .filter(|(k, _)| !(project_sets_model && model_keys.contains(&k.as_str())))
        .filter(|(k, _)| !project.iter().any(|(pk, _)| pk == k))
        .cloned()
        .collect();
    out.extend(project.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn project_credentials_replace_the_servers_model_credentials_as_a_whole() {
        let defaults = kv(&[
            ("ANTHROPIC_BASE_URL", "http://mock"),
            ("ANTHROPIC_API_KEY", "srv"),
            ("GITHUB_TOKEN", "gh"),
        ]);
        let merged = merge_credentials(&defaults, &kv(&[("ANTHROPIC_API_KEY", "proj")]));
        assert_eq!(
            merged,
            kv(&[("GITHUB_TOKEN", "gh"), ("ANTHROPIC_API_KEY", "proj")])
        );
        assert_eq!(merge_credentials(&defaults, &[]), defaults);
    }
}
