//! `/keys`: access keys for scripts and other clients (`Authorization: Bearer <key>`): made
//! with a name, shown once, listed with their last use, revoked at once.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use model::api::{AccessKey, CreatedAccessKey};

use super::widgets::{ConfirmButton, ErrorBanner, action_error};
use crate::error::AppError;

/// The access keys.
#[server(prefix = "/rpc", input = Json)]
pub async fn list_keys() -> Result<Vec<AccessKey>, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .access_keys(&caller, None)
        .await
        .map_err(crate::ssr::refusal)
}

/// Makes an access key; the answer holds it, this once.
#[server(prefix = "/rpc", input = Json)]
pub async fn create_key(name: String) -> Result<CreatedAccessKey, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .create_access_key(
            &caller,
            None,
            model::api::CreateAccessKeyRequest {
                name,
                role: None,
                expiration_seconds: None,
            },
        )
        .await
        .map_err(crate::ssr::refusal)
}

/// Revokes an access key.
#[server(prefix = "/rpc", input = Json)]
pub async fn revoke_key(id: i64) -> Result<(), AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .revoke_access_key(&caller, None, id)
        .await
        .map_err(crate::ssr::refusal)
}

/// The access keys page.
#[component]
pub fn KeysPage() -> impl IntoView {
    let changed = RwSignal::new(0u32);
    let keys = Resource::new(move || changed.get(), |_| list_keys());
    let name = RwSignal::new(String::new());
    let create = Action::new(|name: &String| create_key(name.clone()));
    let revoke = Action::new(|id: &i64| revoke_key(*id));
    Effect::new(move |_| {
        if create.version().get() > 0 || revoke.version().get() > 0 {
            changed.update(|c| *c += 1);
        }
    });
    let created = Signal::derive(move || create.value().get().and_then(Result::ok));
    let create_error = action_error(create);
    let revoke_error = action_error(revoke);
    view! {
        <section class="page-head">
            <h1>"Access keys"</h1>
        </section>
        <section class="panel">
            <p class="hint">"A key signs in a script, the CLI or any HTTP client: send it as "
                <code>"Authorization: Bearer <key>"</code>". It is shown once, when it is made; revoking it refuses it at once."</p>
            <form class="toolbar" on:submit=move |ev| {
                ev.prevent_default();
                let n = name.get_untracked();
                if !n.trim().is_empty() {
                    create.dispatch(n);
                    name.set(String::new());
                }
            }>
                <label for="key-name" class="sr-only">"Key name"</label>
                <input id="key-name" type="text" placeholder="What is it for? (e.g. ci)" maxlength="100"
                    prop:value=name on:input=move |ev| name.set(event_target_value(&ev))/>
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
                        Ok(list) => view! {
                            <table class="list keys">
                                <thead><tr><th>"Name"</th><th>"Key"</th><th>"Made"</th><th>"Last used"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|k| {
                                        let id = k.id;
                                        view! {
                                            <tr data-key-id=id>
                                                <td>{k.name.clone()}</td>
                                                <td><code>{format!("{}…", k.prefix)}</code></td>
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
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}
