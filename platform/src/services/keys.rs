//! Access keys: made, listed, revoked. The owner's keys (every project) are the owner's to
//! manage; a project's keys (one role in that project) its admins'. In Kubernetes mode a key
//! an admin with a Kubernetes identity makes is a ServiceAccount token ([`crate::kube_keys`]),
//! made with that identity; the server's own keys (hashed in its database) are listed and
//! revoked beside them.

use model::api::{AccessKey, CreateAccessKeyRequest, CreatedAccessKey, MAX_KEY_LIFETIME_SECS};
use model::validate::Invalid;

use super::Services;
use crate::auth::{Caller, Role};
use crate::db::now_ms;
use crate::error::ApiError;
use crate::identity::{KeyInfo, NewKey};

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
            role: k.scope.as_ref().map(|(_, r)| *r),
            project: k.scope.map(|(p, _)| p),
            expires: k.expires_ms.map(rfc3339),
            created_by: k.created_by,
        }
    }
}

impl Services {
    /// Refuses unless the caller may manage the keys of `project` (none: the owner's), and
    /// the project exists.
    async fn may_manage_keys(
        &self,
        caller: &Caller,
        project: Option<&str>,
    ) -> Result<(), ApiError> {
        match project {
            None => caller.require_owner("manage the owner's access keys"),
            Some(p) => {
                self.require(caller, p, Role::Admin).await?;
                self.records.get_project(caller, p).await.map(|_| ())?;
                Ok(())
            }
        }
    }

    /// The access keys of `project` (none: the owner's), newest first.
    pub async fn access_keys(
        &self,
        caller: &Caller,
        project: Option<&str>,
    ) -> Result<Vec<AccessKey>, ApiError> {
        self.may_manage_keys(caller, project).await?;
        let mut keys = self.identities.keys(project).await?;
        if let Some(p) = project {
            keys.extend(self.people.project_keys(caller, p).await?);
            keys.sort_by_key(|k| std::cmp::Reverse(k.created_ms));
        }
        Ok(keys.into_iter().map(AccessKey::from).collect())
    }

    /// Makes an access key for `project` (none: an owner's key); its value is in the
    /// answer, and nowhere else ever. A caller signed in with a key that expires makes only
    /// keys that expire no later (400 otherwise).
    pub async fn create_access_key(
        &self,
        caller: &Caller,
        project: Option<&str>,
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
        let expires_ms = match req.expiration_seconds {
            None => None,
            Some(s) if (1..=MAX_KEY_LIFETIME_SECS).contains(&s) => Some(now_ms() + s * 1000),
            Some(_) => {
                return Err(Invalid::new(
                    "expirationSeconds",
                    format!("must be 1 to {MAX_KEY_LIFETIME_SECS} (a year)"),
                )
                .into());
            }
        };
        let scope = match (project, req.role) {
            (Some(p), role) => Some((p.to_owned(), role.unwrap_or(Role::Edit))),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(Invalid::new(
                    "role",
                    "the owner's keys open every project with every role; make a project's key for one role",
                )
                .into());
            }
        };
        self.may_manage_keys(caller, project).await?;
        // A key that ends makes none that outlives it (nor one that never ends): whoever
        // holds a short-lived admin key cannot keep the access past its end.
        if let Some(limit) = caller.key.and_then(|k| k.expires_ms)
            && expires_ms.is_none_or(|t| t > limit)
        {
            let left = (limit - now_ms()).max(0) / 1000;
            return Err(Invalid::new(
                "expirationSeconds",
                format!(
                    "a key may not outlive the key that creates it: at most {left} seconds (until {})",
                    rfc3339(limit)
                ),
            )
            .into());
        }
        if let Some((p, role)) = &scope {
            let lifetime = req.expiration_seconds.unwrap_or(MAX_KEY_LIFETIME_SECS);
            if let Some((key, info)) = self
                .people
                .make_project_key(caller, p, name, *role, lifetime)
                .await?
            {
                return Ok(CreatedAccessKey {
                    key,
                    access_key: info.into(),
                });
            }
        }
        let (key, info) = self
            .identities
            .create_key(NewKey {
                name: name.to_owned(),
                scope,
                expires_ms,
                created_by: caller.display_name.clone(),
            })
            .await?;
        Ok(CreatedAccessKey {
            key,
            access_key: info.into(),
        })
    }

    /// Revokes an access key of `project` (none: an owner's key): refused from now on.
    pub async fn revoke_access_key(
        &self,
        caller: &Caller,
        project: Option<&str>,
        id: i64,
    ) -> Result<(), ApiError> {
        self.may_manage_keys(caller, project).await?;
        if let Some(p) = project
            && self.people.revoke_project_key(caller, p, id).await?
        {
            return Ok(());
        }
        Ok(self.identities.revoke_key(project, id).await?)
    }
}
