//! Who is calling, and what they may do. Local mode has one owner of the installation, who
//! proves it with the install secret, an owner's access key or a browser session; project
//! access keys open one project with a [`Role`] ([`crate::identity`]; the server's doors
//! check them and put the [`Caller`] in the request). Every service checks the caller's
//! role before it acts ([`Caller::require`]). Runner tokens authenticate runners on the
//! runner endpoint and nowhere else: presented anywhere else they are refused, so an agent
//! cannot steer other sessions with its own token.
//!
//! In Kubernetes mode a caller may also be a Kubernetes identity ([`Access::Cluster`]: the
//! bearer of a Kubernetes token, or a user an OAuth proxy vouches for): what it may do in a
//! project is the cluster's RBAC, asked with access reviews ([`crate::kube_identity`]);
//! services ask through [`crate::Services::require`], which knows both kinds.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

pub use model::api::Role;

use crate::error::ApiError;

/// What a caller may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Everything: the installation's owner (and the platform itself).
    Owner,
    /// One project, with a role (a project access key, or a browser signed in with one).
    Project {
        /// The project.
        project: String,
        /// The role in it.
        role: Role,
    },
    /// A Kubernetes identity (Kubernetes mode): its role in a project is what the cluster's
    /// RBAC grants it there, found with access reviews.
    Cluster(Arc<ClusterUser>),
}

/// A Kubernetes user, as a TokenReview (or a trusted OAuth proxy) said.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUser {
    /// User name (`alice`, `system:serviceaccount:ns:name`).
    pub name: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// The token it presented: the server reads with it and asks the cluster what it may do
    /// with it (SelfSubjectAccessReview). `None` when a trusted proxy named the user without
    /// a token (the server then asks with a SubjectAccessReview).
    pub token: Option<String>,
}

impl std::fmt::Debug for ClusterUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: callers end up in logs.
        f.debug_struct("ClusterUser")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The access key of this server a caller proved itself with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerKey {
    /// The key's id.
    pub id: i64,
    /// When it stops working (ms since the epoch), if ever.
    pub expires_ms: Option<i64>,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable user id.
    pub user_id: String,
    /// Name shown to others (in transcripts, as the sender of messages).
    pub display_name: String,
    /// What they may reach.
    pub access: Access,
    /// The access key the caller proved itself with (as a bearer token, or through a browser
    /// signed in with it); `None` for the install secret, a login link's browser and a
    /// Kubernetes identity. Keys it makes end no later than it does, and connections it
    /// keeps open end with it ([`crate::Services::require_again`]).
    pub key: Option<CallerKey>,
}

impl Caller {
    /// The platform itself, acting for no user (the driver applying the lifecycle).
    pub fn system() -> Caller {
        Caller {
            user_id: "system:ambient-code".into(),
            display_name: "Ambient Code".into(),
            access: Access::Owner,
            key: None,
        }
    }

    /// Whether the caller owns the installation.
    pub fn is_owner(&self) -> bool {
        self.access == Access::Owner
    }

    /// The Kubernetes identity of the caller, if it is one.
    pub fn cluster_user(&self) -> Option<&ClusterUser> {
        match &self.access {
            Access::Cluster(user) => Some(user),
            _ => None,
        }
    }

    /// The caller's role in `project` as far as the caller itself says: the owner's and a
    /// project key's. A Kubernetes identity's role is the cluster's to say: `None` here, and
    /// [`crate::Services::role_in`] asks the cluster.
    pub fn role_in(&self, project: &str) -> Option<Role> {
        match &self.access {
            Access::Owner => Some(Role::Admin),
            Access::Project { project: p, role } if p == project => Some(*role),
            Access::Project { .. } | Access::Cluster(_) => None,
        }
    }

    /// The one project a project key reaches.
    pub fn only_project(&self) -> Option<&str> {
        match &self.access {
            Access::Owner | Access::Cluster(_) => None,
            Access::Project { project, .. } => Some(project),
        }
    }

    /// Refuses (403, saying what is missing) unless the caller has at least `need` in
    /// `project`, by its own role ([`Caller::role_in`]); services use
    /// [`crate::Services::require`], which also asks the cluster for a Kubernetes identity.
    pub fn require(&self, project: &str, need: Role) -> Result<(), ApiError> {
        check(self.role_in(project), project, need)
    }

    /// Refuses (403) unless the caller owns the installation; `what` says what they tried.
    pub fn require_owner(&self, what: &str) -> Result<(), ApiError> {
        if self.is_owner() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "only the installation's owner can {what}"
            )))
        }
    }
}

/// `Ok` when `role` includes `need` in `project`; else the 403 that says what is missing.
pub fn check(role: Option<Role>, project: &str, need: Role) -> Result<(), ApiError> {
    match role {
        Some(role) if role >= need => Ok(()),
        _ => Err(ApiError::Forbidden(model::api::refusal(
            role, project, need,
        ))),
    }
}

/// Why a caller was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// A runner token was presented on a user endpoint.
    RunnerToken,
    /// Malformed credentials.
    Invalid(String),
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Invalid("the Authorization header is not text".into()))?;
    match value.strip_prefix("Bearer ").map(str::trim) {
        Some(token) if !token.is_empty() => Ok(Some(token)),
        _ => Err(AuthError::Invalid(
            "the Authorization header must be 'Bearer <token>'".into(),
        )),
    }
}

impl AuthError {
    /// The error answered to the client.
    pub fn into_api(self) -> ApiError {
        match self {
            AuthError::RunnerToken => {
                ApiError::Forbidden("runner tokens are not accepted on this endpoint".into())
            }
            AuthError::Invalid(why) => ApiError::Unauthorized(why),
        }
    }
}

/// The caller, as the server's doors identified it (they put it in the request).
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("sign in first".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(project: &str, role: Role) -> Caller {
        Caller {
            user_id: "u".into(),
            display_name: "u".into(),
            access: Access::Project {
                project: project.into(),
                role,
            },
            key: None,
        }
    }

    #[test]
    fn roles_include_the_weaker_ones_and_stay_in_their_project() {
        let view = key("p", Role::View);
        assert!(view.require("p", Role::View).is_ok());
        let refused = view.require("p", Role::Edit).unwrap_err().to_string();
        assert!(
            refused.contains("you need edit on project p (you have view)"),
            "{refused}"
        );
        let other = view.require("q", Role::View).unwrap_err().to_string();
        assert!(other.contains("no access to project q"), "{other}");
        let admin = key("p", Role::Admin);
        assert!(admin.require("p", Role::Edit).is_ok() && admin.require("p", Role::View).is_ok());
        assert!(admin.require_owner("create projects").is_err());
        assert!(Caller::system().require("q", Role::Admin).is_ok());
        assert_eq!(admin.only_project(), Some("p"));
    }
}
