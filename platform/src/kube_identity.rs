//! Kubernetes identities (Kubernetes mode), as the original platform has them: a person is
//! whoever their Kubernetes token says (a TokenReview), or the user a trusted OAuth proxy
//! names; what they may do in a project is what the cluster's RBAC grants them in its
//! namespace, asked with a SelfSubjectAccessReview made with their own token (a
//! SubjectAccessReview for a proxy's user without a token); reads are made with a client
//! built from their token. Writes are made by the server's ServiceAccount, after the check.
//!
//! Roles are checked by verb, each role needing every check of the roles below it:
//! view = list and get `agenticsessions`; edit = create, update and delete them; admin =
//! update `projectsettings` and create `rolebindings` (what `ambient-project-view/edit/admin`
//! grant, `deploy/base/project-roles.yaml`). Answers are kept for [`KubeIdentity::ttl`]
//! (a binding removed takes effect within it).
//!
//! Also here: the browser sessions of the token sign-in page (the token stays in this
//! process's memory, never on disk nor in the browser), and the admin binding a project's
//! creator gets.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, header};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use kube::api::{Api, PostParams};
use kube::{Client, Config};
use model::project_settings::ProjectRole;
use operator::cluster::project::{binding_name, project_role_binding};
use sha2::{Digest, Sha256};

use crate::auth::{ClusterUser, Role};
use crate::error::ApiError;
use crate::records::RecordsError;

/// Most entries of each cache (tokens, roles, clients, sign-ins); beyond it the expired go,
/// then the oldest.
const MAX_ENTRIES: usize = 10_000;
/// Most refused tokens remembered.
const MAX_REJECTED: usize = 1024;
/// Longest token sent to the cluster for review (a JWT is a few KiB at most).
const MAX_TOKEN: usize = 16 * 1024;
/// The key of a TokenReview's `extra` that marks an OpenShift token scoped to less than the
/// user's rights (the OAuth proxy's, by default): such a token cannot read as the user, so
/// the server asks for the user by name (SubjectAccessReview) and reads with its own client.
const SCOPES: &str = "scopes.authorization.openshift.io";
/// Most user clients kept (each holds a connection pool).
const MAX_CLIENTS: usize = 256;
/// How long a browser signed in with a Kubernetes token stays signed in (the token's own
/// expiry ends it sooner: it is reviewed again every [`KubeIdentity::ttl`]).
pub const SIGN_IN_TTL: Duration = Duration::from_secs(12 * 3600);
/// The prefix of the cookie value of a browser signed in with a Kubernetes token.
pub const SIGN_IN_PREFIX: &str = "ks_";
/// The label on what the platform makes for people (the creator's binding).
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "ambient-code");

/// A resource check: API group, resource, verb.
type Check = (&'static str, &'static str, &'static str);

const SESSIONS: &str = "agenticsessions";
const GROUP: &str = "vteam.ambient-code";

/// What making a project needs (cluster-wide).
const PROJECT_CREATION: Check = (GROUP, "projects", "create");

/// What each role needs (on top of the roles below it).
const CHECKS: [(Role, &[Check]); 3] = [
    (
        Role::View,
        &[(GROUP, SESSIONS, "list"), (GROUP, SESSIONS, "get")],
    ),
    (
        Role::Edit,
        &[
            (GROUP, SESSIONS, "create"),
            (GROUP, SESSIONS, "update"),
            (GROUP, SESSIONS, "delete"),
        ],
    ),
    (
        Role::Admin,
        &[
            (GROUP, "projectsettings", "update"),
            ("rbac.authorization.k8s.io", "rolebindings", "create"),
        ],
    ),
];

/// What a TokenReview said of a token.
#[derive(Clone)]
struct Reviewed {
    name: String,
    groups: Vec<String>,
    /// A scoped token (OpenShift): not used to read or to ask as the user.
    scoped: bool,
}

/// A small map whose entries expire.
struct Cache<K, V> {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    fn new(ttl: Duration, max: usize) -> Self {
        Cache {
            ttl,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, k: &K) -> Option<V> {
        let map = self.lock();
        map.get(k)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, k: K, v: V) {
        let mut map = self.lock();
        if map.len() >= self.max {
            map.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        if map.len() >= self.max
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(k, (Instant::now(), v));
    }

    /// Puts `v` unless the map is full of live entries (nothing is evicted).
    fn put_if_room(&self, k: K, v: V) -> bool {
        let mut map = self.lock();
        if map.len() >= self.max {
            map.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        if map.len() >= self.max {
            return false;
        }
        map.insert(k, (Instant::now(), v));
        true
    }

    fn remove_where(&self, f: impl Fn(&K, &V) -> bool) {
        self.lock().retain(|k, (_, v)| !f(k, v));
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Kubernetes identities: cheap to share (`Arc`).
pub struct KubeIdentity {
    /// The server's own client (its ServiceAccount).
    server: Client,
    /// The cluster's configuration, for clients of users' tokens.
    base: Config,
    /// How long answers are kept.
    ttl: Duration,
    /// Whether `X-Forwarded-User`/`-Groups` are believed (an OAuth proxy in front sets them).
    pub trust_proxy: bool,
    /// Token digest → the user it is (`None`: not a valid token).
    reviews: Cache<[u8; 32], Option<Reviewed>>,
    /// Digests of tokens the cluster refused (kept apart and smaller: anyone can send them).
    rejected: Cache<[u8; 32], ()>,
    /// (identity, project) → role.
    roles: Cache<(String, String), Option<Role>>,
    /// Token digest → a client reading as it.
    clients: Cache<[u8; 32], Client>,
    /// Sign-in cookie digest → the token it stands for.
    sign_ins: Cache<[u8; 32], String>,
}

impl KubeIdentity {
    /// Identities checked with the cluster `base` reaches (`server`, its client); answers
    /// kept for `ttl`.
    pub fn new(server: Client, base: Config, ttl: Duration, trust_proxy: bool) -> Self {
        KubeIdentity {
            server,
            base,
            ttl,
            trust_proxy,
            reviews: Cache::new(ttl, MAX_ENTRIES),
            rejected: Cache::new(ttl, MAX_REJECTED),
            roles: Cache::new(ttl, MAX_ENTRIES),
            clients: Cache::new(Duration::from_secs(300), MAX_CLIENTS),
            sign_ins: Cache::new(SIGN_IN_TTL, MAX_ENTRIES),
        }
    }

    /// How long answers are kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The user a Kubernetes token is (a TokenReview by the server); `None` when the cluster
    /// does not know it (invalid, expired, revoked).
    pub async fn authenticate(&self, token: &str) -> Result<Option<ClusterUser>, ApiError> {
        // Not worth asking the cluster about.
        if token.len() > MAX_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(None);
        }
        let key = digest(token);
        if self.rejected.get(&key).is_some() {
            return Ok(None);
        }
        let known = match self.reviews.get(&key) {
            Some(known) => known,
            None => {
                let known = self.review(token).await?;
                match &known {
                    Some(_) => self.reviews.put(key, known.clone()),
                    None => self.rejected.put(key, ()),
                }
                known
            }
        };
        Ok(known.map(|r| ClusterUser {
            name: r.name,
            groups: r.groups,
            token: (!r.scoped).then(|| token.to_owned()),
        }))
    }

    /// Asks the cluster who `token` is.
    async fn review(&self, token: &str) -> Result<Option<Reviewed>, ApiError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..Default::default()
        };
        let done = Api::<TokenReview>::all(self.server.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| unavailable("reviewing a token", e))?;
        let status = done.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Ok(None);
        };
        let name = user.username.unwrap_or_default();
        if name.is_empty() {
            return Ok(None);
        }
        // A project's access key: valid while its ServiceAccount exists (asked of the API
        // server itself, so a revoked key is refused at once, not when the authenticator's
        // cache catches up), and its use is recorded.
        if let Some((project, id)) = crate::kube_keys::key_of_user(&name) {
            if !crate::kube_keys::exists(&self.server, &project, id).await? {
                return Ok(None);
            }
            tokio::spawn(crate::kube_keys::touch(self.server.clone(), project, id));
        }
        Ok(Some(Reviewed {
            scoped: user.extra.as_ref().is_some_and(|e| e.contains_key(SCOPES)),
            name,
            groups: user.groups.unwrap_or_default(),
        }))
    }

    /// A user a trusted proxy names, with its groups (`X-Forwarded-Groups`, comma-separated).
    /// `None` for a `system:` user; `system:` groups (`system:masters`) are dropped: a
    /// client could have sent them through a proxy that passes such headers on.
    pub fn proxy_user(&self, name: &str, groups: &str, token: Option<&str>) -> Option<ClusterUser> {
        if name.starts_with("system:") {
            return None;
        }
        Some(ClusterUser {
            name: name.to_owned(),
            groups: groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty() && !g.starts_with("system:"))
                .map(str::to_owned)
                .collect(),
            token: token.map(str::to_owned),
        })
    }

    fn identity_key(user: &ClusterUser) -> String {
        match &user.token {
            Some(t) => format!("t:{}", hex::encode(digest(t))),
            None => format!("u:{}|{}", user.name, user.groups.join(",")),
        }
    }

    /// The user's role in `project`: the highest whose checks (and the lower roles') the
    /// cluster allows.
    pub async fn role_in(
        &self,
        user: &ClusterUser,
        project: &str,
    ) -> Result<Option<Role>, ApiError> {
        let key = (Self::identity_key(user), project.to_owned());
        if let Some(role) = self.roles.get(&key) {
            return Ok(role);
        }
        // View first (most projects a person is not in end here), then the rest at once.
        let mut role = None;
        let (view, higher) = CHECKS.split_at(1);
        'climb: for group in [view, higher] {
            let checks = group.iter().flat_map(|(_, checks)| {
                checks.iter().map(|c| self.allowed(user, Some(project), *c))
            });
            let mut answers = futures::future::try_join_all(checks).await?.into_iter();
            for (r, checks) in group {
                // A refusal ends the climb.
                if !answers.by_ref().take(checks.len()).all(|allowed| allowed) {
                    break 'climb;
                }
                role = Some(*r);
            }
        }
        self.roles.put(key, role);
        Ok(role)
    }

    /// Forgets every token of the user `name` (its key was revoked): the next use is
    /// reviewed again, and refused.
    pub fn forget_user(&self, name: &str) {
        self.reviews
            .remove_where(|_, known| known.as_ref().is_some_and(|r| r.name == name));
    }

    /// The client that manages access keys for `user`: its own (the cluster checks what it
    /// may do); a proxy's user without a token cannot.
    pub fn key_client(&self, user: &ClusterUser) -> Result<Client, ApiError> {
        match &user.token {
            Some(token) => self.client_of(token),
            None => Err(ApiError::Forbidden(
                "access keys are made with your own Kubernetes token; sign in with one".into(),
            )),
        }
    }

    /// The server's own client.
    pub fn server(&self) -> &Client {
        &self.server
    }

    /// Whether the cluster lets `user` make projects: `create` on the resource `projects` of
    /// the group `vteam.ambient-code` (a name only RBAC knows, granted by the ClusterRole
    /// `ambient-project-creator`; it gives no right to make namespaces with `kubectl`).
    pub(crate) async fn user_may_create_projects(
        &self,
        user: &ClusterUser,
    ) -> Result<bool, ApiError> {
        // "" is no project's name (names are DNS labels): the cluster-wide answer's place.
        let key = (Self::identity_key(user), String::new());
        if let Some(role) = self.roles.get(&key) {
            return Ok(role.is_some());
        }
        let allowed = self.allowed(user, None, PROJECT_CREATION).await?;
        self.roles.put(key, allowed.then_some(Role::Admin));
        Ok(allowed)
    }

    /// Forgets what is known of `user`'s roles in `project` (it just changed).
    pub fn forget_role(&self, user: &ClusterUser, project: &str) {
        let id = Self::identity_key(user);
        self.roles
            .remove_where(|(i, p), _| *i == id && p == project);
    }

    /// Whether the cluster allows `user` one check in `project` (none: cluster-wide).
    async fn allowed(
        &self,
        user: &ClusterUser,
        project: Option<&str>,
        check: Check,
    ) -> Result<bool, ApiError> {
        let (group, resource, verb) = check;
        let attributes = ResourceAttributes {
            namespace: project.map(str::to_owned),
            group: Some(group.to_owned()),
            resource: Some(resource.to_owned()),
            verb: Some(verb.to_owned()),
            ..Default::default()
        };
        let allowed = match &user.token {
            Some(token) => {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(attributes),
                        non_resource_attributes: None,
                    },
                    ..Default::default()
                };
                Api::<SelfSubjectAccessReview>::all(self.client_of(token)?)
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(|e| unavailable("asking the cluster what you may do", e))?
                    .status
                    .is_some_and(|s| s.allowed)
            }
            None => {
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(user.name.clone()),
                        groups: Some(user.groups.clone()),
                        resource_attributes: Some(attributes),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                Api::<SubjectAccessReview>::all(self.server.clone())
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(|e| unavailable("asking the cluster what you may do", e))?
                    .status
                    .is_some_and(|s| s.allowed)
            }
        };
        Ok(allowed)
    }

    /// A client that acts as the bearer of `token`.
    fn client_of(&self, token: &str) -> Result<Client, ApiError> {
        let key = digest(token);
        if let Some(client) = self.clients.get(&key) {
            return Ok(client);
        }
        let mut config = self.base.clone();
        config.auth_info = Default::default();
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ApiError::Unauthorized("this token is not valid".into()))?;
        bearer.set_sensitive(true);
        config.headers.push((header::AUTHORIZATION, bearer));
        let client = Client::try_from(config).map_err(|e| unavailable("making a client", e))?;
        self.clients.put(key, client.clone());
        Ok(client)
    }

    /// The client reads are made with for `user`: one of its token; without a token (a
    /// proxy's user), the server's, after the access check.
    pub fn reader(&self, user: &ClusterUser) -> Result<Client, ApiError> {
        match &user.token {
            Some(token) => self.client_of(token),
            None => Ok(self.server.clone()),
        }
    }

    /// Signs a browser in with a Kubernetes token: the cookie value, or `None` when the
    /// cluster does not know the token.
    pub(crate) async fn remember_sign_in(&self, token: &str) -> Result<Option<String>, ApiError> {
        if self.authenticate(token).await?.is_none() {
            return Ok(None);
        }
        let id = format!(
            "{SIGN_IN_PREFIX}{}",
            hex::encode(rand::random::<[u8; 32]>())
        );
        // Signed-in browsers are never pushed out by new sign-ins (anyone with a token could
        // sign in over and over).
        if !self.sign_ins.put_if_room(digest(&id), token.to_owned()) {
            return Err(ApiError::Conflict(
                "too many browsers are signed in to this server; try again later".into(),
            ));
        }
        Ok(Some(id))
    }

    /// The user a sign-in cookie stands for, while its token is valid.
    pub(crate) async fn signed_in_user(&self, id: &str) -> Result<Option<ClusterUser>, ApiError> {
        match self.sign_ins.get(&digest(id)) {
            Some(token) => self.authenticate(&token).await,
            None => Ok(None),
        }
    }

    /// Ends a sign-in.
    pub(crate) fn forget_sign_in(&self, id: &str) {
        let key = digest(id);
        self.sign_ins.remove_where(|k, _| *k == key);
    }

    /// Gives the creator of `project` its admin role there (a RoleBinding to
    /// `ambient-project-admin`, made by the server), and waits (a few seconds at most) until
    /// the cluster's authorizer counts it.
    pub async fn bind_creator(&self, user: &ClusterUser, project: &str) -> Result<(), kube::Error> {
        let mut binding = project_role_binding(
            &binding_name("ambient-admin", &user.name),
            ProjectRole::Admin,
            subject_of(&user.name),
        );
        binding.metadata.labels = Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into());
        Api::<RoleBinding>::namespaced(self.server.clone(), project)
            .create(&PostParams::default(), &binding)
            .await?;
        self.forget_role(user, project);
        for _ in 0..50 {
            if matches!(self.role_in(user, project).await, Ok(Some(Role::Admin))) {
                return Ok(());
            }
            self.forget_role(user, project);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!(user = %user.name, project, "the creator's admin binding is not in effect yet");
        Ok(())
    }
}

/// The RBAC subject of a user name: a ServiceAccount's (`system:serviceaccount:ns:name`) or
/// a user's.
pub fn subject_of(name: &str) -> Subject {
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((namespace, sa)) => Subject {
            kind: "ServiceAccount".into(),
            name: sa.to_owned(),
            namespace: Some(namespace.to_owned()),
            api_group: None,
        },
        None => Subject {
            kind: "User".into(),
            name: name.to_owned(),
            namespace: None,
            api_group: Some("rbac.authorization.k8s.io".into()),
        },
    }
}

/// A failure of the cluster as a client sees it: the caller's own token refused (401), or
/// an internal error (logged).
pub(crate) fn unavailable(what: &str, e: kube::Error) -> ApiError {
    match RecordsError::from(e) {
        // The caller's own token, no longer accepted (expired, or its account deleted).
        RecordsError::Unauthorized(why) => ApiError::Unauthorized(why),
        other => {
            tracing::error!(error = %other, "{what}");
            ApiError::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_name_users_safely_and_distinctly() {
        let a = binding_name("ambient-admin", "Alice@example.com");
        assert!(a.starts_with("ambient-admin-alice-example-com-"), "{a}");
        assert_ne!(binding_name("x", "a.b"), binding_name("x", "a-b"));
        assert!(binding_name("x", &"y".repeat(500)).len() < 63);
        let sa = subject_of("system:serviceaccount:team:ci");
        assert_eq!(
            (sa.kind.as_str(), sa.name.as_str()),
            ("ServiceAccount", "ci")
        );
        assert_eq!(sa.namespace.as_deref(), Some("team"));
        assert_eq!(subject_of("alice").kind, "User");
    }

    #[test]
    fn caches_expire_and_stay_bounded() {
        let c: Cache<u32, u32> = Cache::new(Duration::from_millis(20), 3);
        for i in 0..10 {
            c.put(i, i);
        }
        assert!(c.lock().len() <= 3);
        assert_eq!(c.get(&9), Some(9));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(c.get(&9), None);
    }
}
