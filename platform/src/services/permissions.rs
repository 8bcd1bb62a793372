//! Sharing a project with the cluster's people and groups (Kubernetes mode): who has which
//! role (every RoleBinding to a project role), and the roles given on the Sharing page.
//! Admins only. Local mode shares with project keys ([`super::keys`]).

use model::api::{GrantRequest, MAX_SUBJECT_NAME, Permission, SubjectType};
use model::validate::{self, Invalid};

use super::Services;
use crate::auth::{Caller, Role};
use crate::error::ApiError;

fn subject_name(field: &str, kind: SubjectType, name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_SUBJECT_NAME
        || name.chars().any(char::is_control)
    {
        return Err(Invalid::new(
            field,
            format!("must be 1 to {MAX_SUBJECT_NAME} characters, no control characters"),
        ));
    }
    // The cluster's own users and groups (system:authenticated would open the project to
    // everyone, system:masters is everything already) are not shared with; a ServiceAccount
    // is, by its full name.
    if validate::is_system_subject(name) {
        let account = name
            .strip_prefix("system:serviceaccount:")
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(ns, sa)| {
                validate::dns1123_label("", ns).is_ok() && !sa.is_empty() && !sa.contains(':')
            });
        if kind == SubjectType::Group || !account {
            return Err(Invalid::new(
                field,
                "the cluster's system: users and groups cannot be given a role here (a ServiceAccount can, as system:serviceaccount:<namespace>:<name>)",
            ));
        }
    }
    Ok(name.to_owned())
}

impl Services {
    /// Who `project` is shared with, and how. Admin.
    pub async fn permissions(
        &self,
        caller: &Caller,
        project: &str,
    ) -> Result<Vec<Permission>, ApiError> {
        validate::dns1123_label("project", project)?;
        self.require(caller, project, Role::Admin).await?;
        Ok(self.records.permissions(caller, project).await?)
    }

    /// Gives a user or group a role in `project` (replacing the one given before). Admin.
    pub async fn grant(
        &self,
        caller: &Caller,
        project: &str,
        req: GrantRequest,
    ) -> Result<Permission, ApiError> {
        validate::dns1123_label("project", project)?;
        let req = GrantRequest {
            subject_name: subject_name("subjectName", req.subject_type, &req.subject_name)?,
            ..req
        };
        self.require(caller, project, Role::Admin).await?;
        Ok(self.records.grant(caller, project, &req).await?)
    }

    /// Takes back the role given to a user or group in `project` on the Sharing page. Admin.
    pub async fn revoke_permission(
        &self,
        caller: &Caller,
        project: &str,
        subject_type: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        validate::dns1123_label("project", project)?;
        let subject_type: SubjectType = subject_type
            .parse()
            .map_err(|why: String| ApiError::NotFound(why))?;
        let name = subject_name("subjectName", subject_type, name)?;
        self.require(caller, project, Role::Admin).await?;
        Ok(self
            .records
            .revoke(caller, project, subject_type, &name)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clusters_own_users_and_groups_are_not_shared_with() {
        for (kind, name) in [
            (SubjectType::Group, "system:authenticated"),
            (SubjectType::Group, "system:masters"),
            (SubjectType::User, "system:anonymous"),
            (SubjectType::User, "system:serviceaccount:a:b:c"),
            (SubjectType::User, "system:serviceaccount:Bad_NS:b"),
            (SubjectType::User, " "),
        ] {
            assert!(subject_name("s", kind, name).is_err(), "{name}");
        }
        assert_eq!(
            subject_name("s", SubjectType::User, " system:serviceaccount:ci:bot ").unwrap(),
            "system:serviceaccount:ci:bot"
        );
        assert!(subject_name("s", SubjectType::Group, "ambient-testers").is_ok());
    }
}
