//! Access keys for scripts, the CLI and other clients (`Authorization: Bearer <key>`): made
//! with a name, shown once, listed with their last use, revoked at once. `/keys`: the
//! owner's keys (every project). `/projects/:project/sharing`: the project's keys, each with
//! a role (view, edit, admin) and an optional expiry; its admins share the project so. In
//! Kubernetes mode the Sharing page also lists the cluster's people and groups with a role in
//! the project (its RoleBindings) and gives and takes roles.

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use model::api::{AccessKey, CreatedAccessKey, Permission, PermissionSource, Role, SubjectType};

use super::widgets::{ConfirmButton, ErrorBanner, action_error};
use crate::error::AppError;
use crate::rpc::Json;

/// The access keys of `project` (none: the owner's).
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn list_keys(project: Option<String>) -> Result<Vec<AccessKey>, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .access_keys(&caller, project.as_deref())
        .await
        .map_err(crate::ssr::refusal)
}

/// Makes an access key (of `project`, with `role`, expiring after `expiration_days` when
/// given); the answer holds it, this once.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn create_key(
    project: Option<String>,
    name: String,
    role: Option<Role>,
    expiration_days: Option<u64>,
) -> Result<CreatedAccessKey, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let req = model::api::CreateAccessKeyRequest {
        name,
        role,
        expiration_seconds: expiration_days
            .map(|d| i64::try_from(d.saturating_mul(86_400)).unwrap_or(i64::MAX)),
    };
    services
        .create_access_key(&caller, project.as_deref(), req)
        .await
        .map_err(crate::ssr::refusal)
}

/// Revokes an access key.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn revoke_key(project: Option<String>, id: i64) -> Result<(), AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .revoke_access_key(&caller, project.as_deref(), id)
        .await
        .map_err(crate::ssr::refusal)
}

/// Who `project` is shared with; `None` in local mode (no people but the owner).
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn list_people(project: String) -> Result<Option<Vec<Permission>>, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    if !services.people.has_people() {
        return Ok(None);
    }
    services
        .permissions(&caller, &project)
        .await
        .map(Some)
        .map_err(crate::ssr::refusal)
}

/// Gives a user or group a role in `project`.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn share(
    project: String,
    subject_type: SubjectType,
    subject_name: String,
    role: Role,
) -> Result<Permission, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let req = model::api::GrantRequest {
        subject_type,
        subject_name,
        role,
    };
    services
        .grant(&caller, &project, req)
        .await
        .map_err(crate::ssr::refusal)
}

/// Takes back the role given to a user or group in `project`.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn unshare(
    project: String,
    subject_type: SubjectType,
    subject_name: String,
) -> Result<(), AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .revoke_permission(&caller, &project, &subject_type.to_string(), &subject_name)
        .await
        .map_err(crate::ssr::refusal)
}

/// The access keys page: the owner's keys at `/keys`, a project's (its Sharing page) at
/// `/projects/:project/sharing`. One page for both, so that the browser loads its code once
/// (two lazy routes sharing the panel would move it into the main module).
#[component]
pub fn KeysPage() -> impl IntoView {
    let params = use_params_map();
    let project = params.read_untracked().get("project");
    let head = match &project {
        None => view! { <h1>"Access keys"</h1> }.into_any(),
        Some(p) => view! {
            <a class="muted" href=format!("/projects/{p}")>{format!("← {p}")}</a>
            <h1>"Sharing"</h1>
        }
        .into_any(),
    };
    view! {
        <section class="page-head">{head}</section>
        {project.clone().map(|project| view! { <PeoplePanel project/> })}
        <KeysPanel project/>
    }
}

/// The cluster's people and groups with a role in the project (Kubernetes mode only).
#[component]
fn PeoplePanel(project: String) -> impl IntoView {
    let changed = RwSignal::new(0u32);
    let people = {
        let project = project.clone();
        Resource::new(move || changed.get(), move |_| list_people(project.clone()))
    };
    let name = RwSignal::new(String::new());
    let kind = RwSignal::new(SubjectType::User);
    let role = RwSignal::new(Role::View);
    let give = {
        let project = project.clone();
        Action::new(move |(t, n, r): &(SubjectType, String, Role)| {
            share(project.clone(), *t, n.clone(), *r)
        })
    };
    let take = {
        let project = project.clone();
        Action::new(move |(t, n): &(SubjectType, String)| unshare(project.clone(), *t, n.clone()))
    };
    refresh_after(changed, move || give.version().get() + take.version().get());
    let give_error = action_error(give);
    let take_error = action_error(take);
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match people.await {
                    Ok(None) => ().into_any(),
                    Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                    Ok(Some(list)) => view! {
                        <section class="panel people" aria-label="People and groups">
                            <h2>"People and groups"</h2>
                            <p class="hint">"Users and groups of the cluster with a role here (RoleBindings to ambient-project-view, -edit, -admin). A change takes effect within the server's access cache time."</p>
                            <form class="toolbar" on:submit=move |ev| {
                                ev.prevent_default();
                                let n = name.get_untracked();
                                if !n.trim().is_empty() {
                                    give.dispatch((kind.get_untracked(), n, role.get_untracked()));
                                    name.set(String::new());
                                }
                            }>
                                <label for="subject-type" class="sr-only">"User or group"</label>
                                <select id="subject-type" on:change=move |ev| {
                                    kind.set(if event_target_value(&ev) == "group" { SubjectType::Group } else { SubjectType::User });
                                }>
                                    <option value="user">"user"</option>
                                    <option value="group">"group"</option>
                                </select>
                                <label for="subject-name" class="sr-only">"Name"</label>
                                <input id="subject-name" type="text" placeholder="Name in the cluster (e.g. alice)" maxlength="253"
                                    prop:value=name on:input=move |ev| name.set(event_target_value(&ev))/>
                                <label for="subject-role" class="sr-only">"Role"</label>
                                <RoleSelect id="subject-role" role/>
                                <button type="submit" class="btn primary">"Share"</button>
                            </form>
                            <ErrorBanner error=give_error/>
                            <ErrorBanner error=take_error/>
                            <table class="list people">
                                <thead><tr><th>"Name"</th><th>"Type"</th><th>"Role"</th><th>"Given by"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|p| {
                                        let from = match p.source {
                                            PermissionSource::Sharing => "this page".to_owned(),
                                            PermissionSource::GroupAccess => "the project's groupAccess".to_owned(),
                                            PermissionSource::Binding => format!("RoleBinding {}", p.binding),
                                        };
                                        let removable = p.source == PermissionSource::Sharing;
                                        let (t, n) = (p.subject_type, p.subject_name.clone());
                                        view! {
                                            <tr data-subject=p.subject_name.clone() data-role=p.role.as_str()>
                                                <td>{p.subject_name.clone()}</td>
                                                <td>{p.subject_type.to_string()}</td>
                                                <td>{p.role.as_str()}</td>
                                                <td class="muted">{from}</td>
                                                <td class="actions">
                                                    {removable.then(|| view! {
                                                        <ConfirmButton label="Remove" class="danger-outline"
                                                            question=format!("Take {}'s role away?", p.subject_name)
                                                            on_confirm=Callback::new(move |_| { take.dispatch((t, n.clone())); })/>
                                                    })}
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </section>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

/// Lifetimes offered for a project's key, in days (none: until revoked).
const LIFETIMES: [(&str, Option<u64>); 5] = [
    ("never expires", None),
    ("7 days", Some(7)),
    ("30 days", Some(30)),
    ("90 days", Some(90)),
    ("a year", Some(365)),
];

#[component]
fn KeysPanel(project: Option<String>) -> impl IntoView {
    let scoped = project.is_some();
    let changed = RwSignal::new(0u32);
    let keys = {
        let project = project.clone();
        Resource::new(move || changed.get(), move |_| list_keys(project.clone()))
    };
    let name = RwSignal::new(String::new());
    let role = RwSignal::new(Role::View);
    let lifetime = RwSignal::new(0usize);
    let create = {
        let project = project.clone();
        Action::new(
            move |(name, role, days): &(String, Option<Role>, Option<u64>)| {
                create_key(project.clone(), name.clone(), *role, *days)
            },
        )
    };
    let revoke = {
        let project = project.clone();
        Action::new(move |id: &i64| revoke_key(project.clone(), *id))
    };
    refresh_after(changed, move || {
        create.version().get() + revoke.version().get()
    });
    let created = Signal::derive(move || create.value().get().and_then(Result::ok));
    let create_error = action_error(create);
    let revoke_error = action_error(revoke);
    let hint = if scoped {
        "A project's key opens this project only, with its role: view reads and watches sessions; edit also starts, steers, stops and deletes them and sets credentials; admin also changes settings and shares the project. Send it as "
    } else {
        "An owner's key opens every project with every role (for a person or a script with less, make a project's key on the project's Sharing page). Send it as "
    };
    view! {
        <section class="panel">
            <p class="hint">{hint}<code>"Authorization: Bearer <key>"</code>
                ", or sign in with it. It is shown once, when it is made; revoking it refuses it, and signs out browsers signed in with it, at once."</p>
            <form class="toolbar" on:submit=move |ev| {
                ev.prevent_default();
                let n = name.get_untracked();
                if !n.trim().is_empty() {
                    let days = LIFETIMES.get(lifetime.get_untracked()).and_then(|(_, d)| *d);
                    create.dispatch((n, scoped.then(|| role.get_untracked()), if scoped { days } else { None }));
                    name.set(String::new());
                }
            }>
                <label for="key-name" class="sr-only">"Key name"</label>
                <input id="key-name" type="text" placeholder="What is it for? (e.g. ci)" maxlength="100"
                    prop:value=name on:input=move |ev| name.set(event_target_value(&ev))/>
                {scoped.then(|| view! {
                    <label for="key-role" class="sr-only">"Role"</label>
                    <RoleSelect id="key-role" role/>
                    <label for="key-lifetime" class="sr-only">"Expires"</label>
                    <select id="key-lifetime" on:change=move |ev| {
                        if let Ok(i) = event_target_value(&ev).parse() { lifetime.set(i); }
                    }>
                        {LIFETIMES.iter().enumerate().map(|(i, (label, _))| view! {
                            <option value=i.to_string()>{*label}</option>
                        }).collect_view()}
                    </select>
                })}
                <button type="submit" class="btn primary">"Make a key"</button>
            </form>
            <ErrorBanner error=create_error/>
            {move || created.get().map(|c| view! {
                <div class="banner new-key" role="status">
                    <p>"Copy the key “"{c.access_key.name.clone()}"” now: it will not be shown again."</p>
                    <code class="key-value">{c.key.clone()}</code>
                </div>
            })}
            <ErrorBanner error=revoke_error/>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match keys.await {
                        Err(e) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                        Ok(list) if list.is_empty() => view! { <p class="muted empty-list">"No access keys yet."</p> }.into_any(),
                        Ok(list) => view! { <KeyTable list scoped revoke/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn KeyTable(
    list: Vec<AccessKey>,
    scoped: bool,
    revoke: Action<i64, Result<(), AppError>>,
) -> impl IntoView {
    view! {
        <table class="list keys">
            <thead><tr>
                <th>"Name"</th><th>"Key"</th>
                {scoped.then(|| view! { <th>"Role"</th><th>"Expires"</th><th>"Made by"</th> })}
                <th>"Made"</th><th>"Last used"</th><th></th>
            </tr></thead>
            <tbody>
                {list.into_iter().map(|k| {
                    let id = k.id;
                    let role = k.role.map(Role::as_str).unwrap_or("every");
                    let expires = k.expires.clone().unwrap_or_else(|| "never".into());
                    let by = k.created_by.clone().unwrap_or_default();
                    view! {
                        <tr data-key-id=id data-role=role>
                            <td>{k.name.clone()}</td>
                            <td><code>{format!("{}…", k.prefix)}</code></td>
                            {scoped.then(|| view! { <td>{role}</td><td class="muted">{expires}</td><td class="muted">{by}</td> })}
                            <td class="muted">{k.created.clone()}</td>
                            <td class="muted">{k.last_used.clone().unwrap_or_else(|| "never".into())}</td>
                            <td class="actions">
                                <ConfirmButton label="Revoke" class="danger-outline"
                                    question=format!("Revoke “{}”? Whatever uses it is refused at once.", k.name)
                                    on_confirm=Callback::new(move |_| { revoke.dispatch(id); })/>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// Refreshes a list (bumps `changed`) each time the actions that change it have run:
/// `versions` sums their versions. Every version is read every time (an `||` would stop
/// following the second once the first has changed, and a revoke after a create would not
/// refresh the list).
fn refresh_after(changed: RwSignal<u32>, versions: impl Fn() -> usize + 'static) {
    Effect::new(move |_| {
        if versions() > 0 {
            changed.update(|c| *c += 1);
        }
    });
}

/// A role picker.
#[component]
fn RoleSelect(id: &'static str, role: RwSignal<Role>) -> impl IntoView {
    view! {
        <select id=id on:change=move |ev| {
            if let Ok(r) = event_target_value(&ev).parse() { role.set(r); }
        }>
            {Role::ALL.into_iter().map(|r| view! {
                <option value=r.as_str() selected=move || role.get() == r>{r.as_str()}</option>
            }).collect_view()}
        </select>
    }
}
