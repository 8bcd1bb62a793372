//! What the caller may do, for pages to offer only that: actions a role does not allow are
//! not offered (a note says why), rather than offered and then refused.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use model::api::Whoami;

use crate::error::AppError;

/// Who the caller is.
#[server(prefix = "/rpc", input = Json)]
pub async fn caller_access() -> Result<Whoami, AppError> {
    let (_, caller) = crate::ssr::context().await?;
    Ok(ssr::whoami(&caller))
}

#[cfg(feature = "ssr")]
mod ssr {
    use model::api::Whoami;
    use platform::Caller;
    use platform::auth::Access;

    pub fn whoami(caller: &Caller) -> Whoami {
        let (project, role) = match &caller.access {
            Access::Owner => (None, None),
            Access::Project { project, role } => (Some(project.clone()), Some(*role)),
        };
        Whoami {
            name: caller.display_name.clone(),
            owner: caller.is_owner(),
            project,
            role,
        }
    }
}

/// The caller, loaded once per page.
pub fn use_whoami() -> Resource<Result<Whoami, AppError>> {
    Resource::new(|| (), |_| caller_access())
}

/// The note shown where actions a role does not allow are not offered.
pub fn role_note(why: String) -> impl IntoView {
    view! { <p class="muted role-note" role="note">{format!("View only: {why}.")}</p> }
}
