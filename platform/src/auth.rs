//! Who is calling. Local mode has one user, the owner of the installation, who proves it
//! with an access key or a browser session ([`crate::identity`]; the server's doors check
//! them and put the [`Caller`] in the request). Runner tokens authenticate runners on the
//! runner endpoint and nowhere else: presented anywhere else they are refused, so an agent
//! cannot steer other sessions with its own token.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::error::ApiError;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable user id.
    pub user_id: String,
    /// Name shown to others (in transcripts, as the sender of messages).
    pub display_name: String,
}

impl Caller {
    /// The platform itself, acting for no user (the driver applying the lifecycle).
    pub fn system() -> Caller {
        Caller {
            user_id: "system:ambient-code".into(),
            display_name: "Ambient Code".into(),
        }
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
