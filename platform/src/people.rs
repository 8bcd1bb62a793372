//! Who may come in besides the installation's owner and the keys the server made: the
//! identity seam between the modes, chosen once at start ([`Services::people`]).
//!
//! - [`OwnerOnly`] (local mode): nobody else. The owner and the owner's keys
//!   ([`crate::identity::Identities`]) are all there is; a project is shared by giving a key.
//! - [`KubeIdentity`] (Kubernetes mode): the cluster's users and groups, proven by their tokens
//!   (or by an OAuth proxy in front), their roles what the cluster's RBAC grants them, their
//!   keys ServiceAccount tokens.
//!
//! The server's own keys, login links and browser sessions are the same in both modes and
//! stay with [`crate::identity::Identities`]; what differs is asked of this seam only.
//!
//! [`Services::people`]: crate::services::Services::people

use std::sync::Arc;

use async_trait::async_trait;

use crate::auth::{Access, AuthError, Caller, ClusterUser, Role};
use crate::error::ApiError;
use crate::identity::{KEY_PREFIX, KeyInfo};
use crate::kube_identity::KubeIdentity;
use crate::kube_keys;
use model::runner_env::RUNNER_TOKEN_PREFIX;

/// What an OAuth proxy in front forwarded (headers, trimmed, empty ones left out).
#[derive(Debug, Default, Clone, Copy)]
pub struct Forwarded<'a> {
    /// `X-Forwarded-Access-Token`: the user's token, checked like any other.
    pub access_token: Option<&'a str>,
    /// `X-Forwarded-User`: believed only from a proxy the server is told to trust.
    pub user: Option<&'a str>,
    /// `X-Forwarded-Groups`, comma-separated.
    pub groups: Option<&'a str>,
}

/// A browser's sign-in with a token.
#[derive(Debug, PartialEq, Eq)]
pub enum SignIn {
    /// Not a token of these people (an access key of the server's, say): ask the server.
    NotOurs,
    /// A token of these people that does not prove anyone.
    Refused,
    /// Signed in: the cookie's value.
    SignedIn(String),
}

/// The people of an installation (see the module's documentation).
#[async_trait]
pub trait People: Send + Sync + 'static {
    /// Whether anyone besides the owner signs in (Kubernetes mode, with a token of the
    /// cluster): the sign-in page and the refusals say how, and projects are shared with
    /// people.
    fn has_people(&self) -> bool;

    /// The caller an OAuth proxy in front vouches for, if it vouches for one.
    async fn proxied(&self, forwarded: Forwarded<'_>) -> Result<Option<Caller>, ApiError>;

    /// The caller a bearer token proves; `None` when it is not one of these people's tokens
    /// (then it can only be an access key of the server's), an error when it is one that
    /// proves nobody.
    async fn bearer(&self, token: &str) -> Result<Option<Caller>, ApiError>;

    /// Signs a browser in with a token of these people.
    async fn sign_in(&self, token: &str) -> Result<SignIn, ApiError>;

    /// The caller a browser signed in by [`People::sign_in`] is (its cookie's value);
    /// `None` when it is not such a sign-in or no longer valid.
    async fn signed_in(&self, cookie: &str) -> Result<Option<Caller>, ApiError>;

    /// Ends a sign-in made by [`People::sign_in`]; `false` when `cookie` is not one.
    fn sign_out(&self, cookie: &str) -> bool;

    /// The caller's role in `project`.
    async fn role_of(&self, caller: &Caller, project: &str) -> Result<Option<Role>, ApiError>;

    /// Whether the caller may make projects.
    async fn may_make_projects(&self, caller: &Caller) -> Result<bool, ApiError>;

    /// The keys of `project` these people made, besides the server's own.
    async fn project_keys(&self, caller: &Caller, project: &str) -> Result<Vec<KeyInfo>, ApiError>;

    /// Makes a key of `project` for `role` the way these people's keys are made; `None`
    /// when the caller's keys are the server's to make.
    async fn make_project_key(
        &self,
        caller: &Caller,
        project: &str,
        name: &str,
        role: Role,
        lifetime_secs: i64,
    ) -> Result<Option<(String, KeyInfo)>, ApiError>;

    /// Revokes key `id` of `project` if it is one of these people's (refused from the very
    /// next request on); `false` when it is the server's.
    async fn revoke_project_key(
        &self,
        caller: &Caller,
        project: &str,
        id: i64,
    ) -> Result<bool, ApiError>;
}

/// Local mode's people: the owner alone.
pub struct OwnerOnly;

#[async_trait]
impl People for OwnerOnly {
    fn has_people(&self) -> bool {
        false
    }

    async fn proxied(&self, _: Forwarded<'_>) -> Result<Option<Caller>, ApiError> {
        Ok(None)
    }

    async fn bearer(&self, _: &str) -> Result<Option<Caller>, ApiError> {
        Ok(None)
    }

    async fn sign_in(&self, _: &str) -> Result<SignIn, ApiError> {
        Ok(SignIn::NotOurs)
    }

    async fn signed_in(&self, _: &str) -> Result<Option<Caller>, ApiError> {
        Ok(None)
    }

    fn sign_out(&self, _: &str) -> bool {
        false
    }

    async fn role_of(&self, caller: &Caller, project: &str) -> Result<Option<Role>, ApiError> {
        Ok(caller.role_in(project))
    }

    async fn may_make_projects(&self, caller: &Caller) -> Result<bool, ApiError> {
        Ok(caller.is_owner())
    }

    async fn project_keys(&self, _: &Caller, _: &str) -> Result<Vec<KeyInfo>, ApiError> {
        Ok(Vec::new())
    }

    async fn make_project_key(
        &self,
        _: &Caller,
        _: &str,
        _: &str,
        _: Role,
        _: i64,
    ) -> Result<Option<(String, KeyInfo)>, ApiError> {
        Ok(None)
    }

    async fn revoke_project_key(&self, _: &Caller, _: &str, _: i64) -> Result<bool, ApiError> {
        Ok(false)
    }
}

/// The caller a Kubernetes identity makes.
pub fn cluster_caller(user: ClusterUser) -> Caller {
    Caller {
        user_id: user.name.clone(),
        display_name: user.name.clone(),
        access: Access::Cluster(Arc::new(user)),
        key: None,
    }
}

/// The client that reads and changes a project's ServiceAccount keys for `caller`: a
/// Kubernetes identity's own, the server's for its own callers (the owner, a server key).
fn key_client(cluster: &KubeIdentity, caller: &Caller) -> Result<kube::Client, ApiError> {
    Ok(match caller.cluster_user() {
        Some(user) => cluster.key_client(user)?,
        None => cluster.server().clone(),
    })
}

#[async_trait]
impl People for KubeIdentity {
    fn has_people(&self) -> bool {
        true
    }

    async fn proxied(&self, forwarded: Forwarded<'_>) -> Result<Option<Caller>, ApiError> {
        if let Some(token) = forwarded.access_token {
            if token.starts_with(RUNNER_TOKEN_PREFIX) {
                return Err(AuthError::RunnerToken.into_api());
            }
            return match self.authenticate(token).await? {
                Some(user) => Ok(Some(cluster_caller(user))),
                None => Err(ApiError::Unauthorized(
                    "the token the proxy forwarded is not valid in this cluster".into(),
                )),
            };
        }
        if self.trust_proxy
            && let Some(user) = forwarded.user
        {
            return match self.proxy_user(user, forwarded.groups.unwrap_or_default(), None) {
                Some(user) => Ok(Some(cluster_caller(user))),
                None => Err(ApiError::Unauthorized(format!(
                    "the proxy named the system user '{user}', who cannot sign in through it"
                ))),
            };
        }
        Ok(None)
    }

    async fn bearer(&self, token: &str) -> Result<Option<Caller>, ApiError> {
        if token.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        match self.authenticate(token).await? {
            Some(user) => Ok(Some(cluster_caller(user))),
            None => Err(ApiError::Unauthorized(
                "this token is not valid: not an access key of this server, nor a Kubernetes token the cluster accepts (expired, revoked or unknown)".into(),
            )),
        }
    }

    async fn sign_in(&self, token: &str) -> Result<SignIn, ApiError> {
        if token.starts_with(KEY_PREFIX) {
            return Ok(SignIn::NotOurs);
        }
        // The browser session stands for the token, in this process only.
        Ok(match self.remember_sign_in(token).await? {
            Some(cookie) => SignIn::SignedIn(cookie),
            None => SignIn::Refused,
        })
    }

    async fn signed_in(&self, cookie: &str) -> Result<Option<Caller>, ApiError> {
        if !cookie.starts_with(crate::kube_identity::SIGN_IN_PREFIX) {
            return Ok(None);
        }
        Ok(self.signed_in_user(cookie).await?.map(cluster_caller))
    }

    fn sign_out(&self, cookie: &str) -> bool {
        if !cookie.starts_with(crate::kube_identity::SIGN_IN_PREFIX) {
            return false;
        }
        self.forget_sign_in(cookie);
        true
    }

    async fn role_of(&self, caller: &Caller, project: &str) -> Result<Option<Role>, ApiError> {
        match caller.cluster_user() {
            Some(user) => self.role_in(user, project).await,
            None => Ok(caller.role_in(project)),
        }
    }

    async fn may_make_projects(&self, caller: &Caller) -> Result<bool, ApiError> {
        match caller.cluster_user() {
            // It is given the admin role in what it makes.
            Some(user) => self.user_may_create_projects(user).await,
            None => Ok(caller.is_owner()),
        }
    }

    async fn project_keys(&self, caller: &Caller, project: &str) -> Result<Vec<KeyInfo>, ApiError> {
        kube_keys::list(&key_client(self, caller)?, project).await
    }

    async fn make_project_key(
        &self,
        caller: &Caller,
        project: &str,
        name: &str,
        role: Role,
        lifetime_secs: i64,
    ) -> Result<Option<(String, KeyInfo)>, ApiError> {
        // A Kubernetes identity's key is a token of the cluster, made with that identity; the
        // server's own callers make the server's keys.
        let Some(user) = caller.cluster_user() else {
            return Ok(None);
        };
        let client = self.key_client(user)?;
        let made = kube_keys::create(
            &client,
            project,
            name,
            role,
            lifetime_secs,
            &caller.display_name,
        )
        .await?;
        Ok(Some(made))
    }

    async fn revoke_project_key(
        &self,
        caller: &Caller,
        project: &str,
        id: i64,
    ) -> Result<bool, ApiError> {
        if !kube_keys::is_cluster_key(id) {
            return Ok(false);
        }
        kube_keys::revoke(&key_client(self, caller)?, project, id).await?;
        // Refused at once, not after the cache time.
        self.forget_user(&kube_keys::user_of(project, id));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::CallerKey;

    fn caller(access: Access) -> Caller {
        Caller {
            user_id: "u".into(),
            display_name: "u".into(),
            access,
            key: None::<CallerKey>,
        }
    }

    /// Local mode knows nobody but the owner: no token, proxy header or sign-in cookie of
    /// another kind proves anyone, and a cluster identity (which cannot arise here) would
    /// get no role.
    #[tokio::test]
    async fn local_mode_knows_nobody_but_the_owner() {
        let people = OwnerOnly;
        assert!(!people.has_people());
        let forwarded = Forwarded {
            access_token: Some("a-kubernetes-token"),
            user: Some("alice"),
            groups: Some("admins"),
        };
        assert!(people.proxied(forwarded).await.unwrap().is_none());
        assert!(people.bearer("a-kubernetes-token").await.unwrap().is_none());
        assert_eq!(
            people.sign_in("a-kubernetes-token").await.unwrap(),
            SignIn::NotOurs
        );
        assert!(people.signed_in("ks_0123").await.unwrap().is_none());
        assert!(!people.sign_out("ks_0123"));
        let stranger = cluster_caller(ClusterUser {
            name: "alice".into(),
            groups: vec!["system:masters".into()],
            token: None,
        });
        assert_eq!(people.role_of(&stranger, "p").await.unwrap(), None);
        assert!(!people.may_make_projects(&stranger).await.unwrap());
        let owner = caller(Access::Owner);
        assert_eq!(
            people.role_of(&owner, "p").await.unwrap(),
            Some(Role::Admin)
        );
        assert!(people.may_make_projects(&owner).await.unwrap());
        let key = caller(Access::Project {
            project: "p".into(),
            role: Role::Edit,
        });
        assert_eq!(people.role_of(&key, "p").await.unwrap(), Some(Role::Edit));
        assert_eq!(people.role_of(&key, "q").await.unwrap(), None);
        assert!(!people.may_make_projects(&key).await.unwrap());
        // Keys are the server's to make, list and revoke.
        assert!(people.project_keys(&owner, "p").await.unwrap().is_empty());
        assert!(
            people
                .make_project_key(&owner, "p", "ci", Role::View, 60)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!people.revoke_project_key(&owner, "p", 1).await.unwrap());
    }
}
