//! Access keys: made, listed, revoked.

use model::api::{AccessKey, CreateAccessKeyRequest, CreatedAccessKey};
use model::validate::Invalid;

use super::Services;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::identity::KeyInfo;

/// Longest key name.
const MAX_NAME: usize = 100;

fn rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl From<KeyInfo> for AccessKey {
    fn from(k: KeyInfo) -> Self {
        AccessKey {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created: rfc3339(k.created_ms),
            last_used: k.last_used_ms.map(rfc3339),
        }
    }
}

impl Services {
    /// Every access key, newest first.
    pub async fn access_keys(&self, _caller: &Caller) -> Result<Vec<AccessKey>, ApiError> {
        Ok(self
            .identities
            .keys()
            .await?
            .into_iter()
            .map(AccessKey::from)
            .collect())
    }

    /// Makes an access key; its value is in the answer, and nowhere else ever.
    pub async fn create_access_key(
        &self,
        _caller: &Caller,
        req: CreateAccessKeyRequest,
    ) -> Result<CreatedAccessKey, ApiError> {
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(Invalid::new(
                "name",
                format!("must be 1 to {MAX_NAME} characters, no control characters"),
            )
            .into());
        }
        let (key, info) = self.identities.create_key(name).await?;
        Ok(CreatedAccessKey {
            key,
            access_key: info.into(),
        })
    }

    /// Revokes an access key: refused from now on.
    pub async fn revoke_access_key(&self, _caller: &Caller, id: i64) -> Result<(), ApiError> {
        Ok(self.identities.revoke_key(id).await?)
    }
}
