//! What the caller may do, for pages to offer only that: actions a role does not allow are
//! not offered (a note says why), rather than offered and then refused.

use leptos::prelude::*;
use model::api::Whoami;

use crate::error::AppError;
use crate::rpc::Json;

/// Who the caller is, and (given a project) its role there.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn caller_access(project: Option<String>) -> Result<Whoami, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    ssr::whoami(&services, &caller, project)
        .await
        .map_err(crate::ssr::refusal)
}

#[cfg(feature = "ssr")]
mod ssr {
    use model::api::Whoami;
    use platform::auth::Access;
    use platform::{ApiError, Caller, Services};

    pub async fn whoami(
        services: &Services,
        caller: &Caller,
        project: Option<String>,
    ) -> Result<Whoami, ApiError> {
        let (project, role) = match (&caller.access, project) {
            (Access::Owner, _) => (None, None),
            (Access::Project { project, role }, _) => (Some(project.clone()), Some(*role)),
            // A Kubernetes identity's role is the cluster's, asked per project.
            (Access::Cluster(_), Some(p)) => {
                model::validate::dns1123_label("project", &p)?;
                let role = services.role_in(caller, &p).await?;
                (Some(p), role)
            }
            (Access::Cluster(_), None) => (None, None),
        };
        Ok(Whoami {
            name: caller.display_name.clone(),
            owner: caller.is_owner(),
            project,
            role,
            may_create_projects: services.may_create_projects(caller).await?,
        })
    }
}

/// The caller, loaded once per page.
pub fn use_whoami() -> Resource<Result<Whoami, AppError>> {
    Resource::new(|| (), |_| caller_access(None))
}

/// The caller and its role in the page's project, loaded once per project.
pub fn use_whoami_in(project: Memo<String>) -> Resource<Result<Whoami, AppError>> {
    Resource::new(move || project.get(), |p| caller_access(Some(p)))
}

/// The note shown where actions a role does not allow are not offered.
pub fn role_note(why: String) -> impl IntoView {
    view! { <p class="muted role-note" role="note">{format!("View only: {why}.")}</p> }
}
