//! `/projects/:project/settings`: model, git and MCP credentials (never shown again in plain
//! text once set) and the project's session defaults (inactivity, MCP servers).

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use model::api::{ProjectSettingsBody, RunnerSecrets};

use super::widgets::{ErrorBanner, FieldError, action_error};
use crate::error::AppError;
use crate::rpc::Json;

/// The project's credentials (masked) and defaults.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn load_settings(
    project: String,
) -> Result<(RunnerSecrets, ProjectSettingsBody), AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let secrets = services.runner_secrets(&caller, &project).await;
    let settings = services.project_settings(&caller, &project).await;
    Ok((
        secrets.map_err(crate::ssr::refusal)?,
        settings.map_err(crate::ssr::refusal)?,
    ))
}

/// Sets (`Some`) or removes (`None`) one credential.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn save_secret(
    project: String,
    key: String,
    value: Option<String>,
) -> Result<RunnerSecrets, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let data = std::collections::BTreeMap::from([(key, value)]);
    services
        .update_runner_secrets(&caller, &project, model::api::UpdateRunnerSecrets { data })
        .await
        .map_err(crate::ssr::refusal)
}

/// Replaces the session defaults.
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn save_settings(
    project: String,
    body: ProjectSettingsBody,
) -> Result<ProjectSettingsBody, AppError> {
    let (services, caller) = crate::ssr::context().await?;
    services
        .update_project_settings(&caller, &project, body)
        .await
        .map_err(crate::ssr::refusal)
}

/// What a credential is for.
fn describe(key: &str) -> &'static str {
    match key {
        "ANTHROPIC_API_KEY" => "Anthropic API key",
        "ANTHROPIC_BASE_URL" => "Anthropic-compatible endpoint (URL)",
        "ANTHROPIC_AUTH_TOKEN" => "Bearer token for that endpoint",
        "GITHUB_TOKEN" => "GitHub token (push, pull requests)",
        "GITLAB_TOKEN" => "GitLab token (push, merge requests)",
        "GITHUB_API_URL" => "GitHub API URL (GitHub Enterprise)",
        "GITLAB_API_URL" => "GitLab API URL (self-hosted)",
        _ => "",
    }
}

/// The settings page.
#[component]
pub fn SettingsPage() -> impl IntoView {
    let params = use_params_map();
    let project = Memo::new(move |_| params.read().get("project").unwrap_or_default());
    let data = Resource::new(move || project.get(), load_settings);
    let me = super::access::use_whoami_in(project);
    view! {
        <section class="page-head">
            <a class="muted" href=move || format!("/projects/{}", project.get())>{move || format!("← {}", project.get())}</a>
            <h1>"Project settings"</h1>
        </section>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <p class="error banner" role="alert">{e.message}</p> }.into_any(),
                    Ok((secrets, settings)) => {
                        // Changing the defaults needs admin: an editor sees them, disabled, and why.
                        let p = project.get_untracked();
                        let admin_why = me.await.ok().and_then(|w| w.refusal(&p, model::api::Role::Admin));
                        view! {
                            <Secrets project=p.clone() secrets/>
                            <Defaults project=p settings admin_why/>
                        }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

#[component]
fn Secrets(project: String, secrets: RunnerSecrets) -> impl IntoView {
    let current = RwSignal::new(secrets.items);
    let save = Action::new(move |(key, value): &(String, Option<String>)| {
        save_secret(project.clone(), key.clone(), value.clone())
    });
    Effect::new(move |_| {
        if let Some(Ok(s)) = save.value().get() {
            current.set(s.items);
        }
    });
    let error = action_error(save);
    let (new_name, new_value) = (RwSignal::new(String::new()), RwSignal::new(String::new()));
    let name_error = RwSignal::new(None::<String>);
    view! {
        <section class="panel">
            <h2>"Credentials"</h2>
            <p class="hint">"Given to this project's sessions only, through their environment. Once saved, a token is shown masked."</p>
            <ErrorBanner error/>
            <div class="secrets">
                {secrets.allowed_keys.into_iter().map(|key| {
                    let draft = RwSignal::new(String::new());
                    let k = key.clone();
                    let masked = Signal::derive(move || current.with(|c| c.iter().find(|s| s.key == k).map(|s| s.masked.clone())));
                    let is_url = key.ends_with("_URL");
                    let (k1, k2) = (key.clone(), key.clone());
                    let id = format!("secret-{}", key.to_lowercase());
                    view! {
                        <div class="secret-row" data-key=key.clone()>
                            <label for=id.clone()>{describe(&key)} <code class="muted">{key.clone()}</code></label>
                            <span class="masked">{move || masked.get().unwrap_or_else(|| "not set".into())}</span>
                            <input id=id type=if is_url { "url" } else { "password" } autocomplete="off"
                                placeholder=if is_url { "https://…" } else { "new value" }
                                prop:value=draft on:input=move |ev| draft.set(event_target_value(&ev))/>
                            <button type="button" class="btn" on:click=move |_| {
                                let v = draft.get_untracked();
                                if !v.trim().is_empty() {
                                    save.dispatch((k1.clone(), Some(v)));
                                    draft.set(String::new());
                                }
                            }>"Save"</button>
                            <Show when=move || masked.get().is_some()>
                                <button type="button" class="btn" on:click={
                                    let k2 = k2.clone();
                                    move |_| { save.dispatch((k2.clone(), None)); }
                                }>"Remove"</button>
                            </Show>
                        </div>
                    }
                }).collect_view()}
            </div>
            <h3>"MCP credentials"</h3>
            <p class="hint">"Referenced as "<code>"${MCP_NAME}"</code>" in a header of one of the project's HTTP MCP servers (below). The runner's proxy adds it; the agent never sees it."</p>
            <div class="secrets">
                <For each=move || current.get().into_iter().filter(|s| model::mcp::is_credential_key(&s.key)) key=|s| (s.key.clone(), s.masked.clone()) let:item>
                    {
                        let key = item.key.clone();
                        view! {
                            <div class="secret-row" data-key=item.key.clone()>
                                <label><code>{item.key.clone()}</code></label>
                                <span class="masked">{item.masked.clone()}</span>
                                <button type="button" class="btn" on:click=move |_| { save.dispatch((key.clone(), None)); }>"Remove"</button>
                            </div>
                        }
                    }
                </For>
                <div class="secret-row new-mcp-credential">
                    <input id="mcp-credential-name" type="text" autocomplete="off" placeholder="MCP_NAME"
                        aria-label="Credential name" prop:value=new_name on:input=move |ev| new_name.set(event_target_value(&ev))/>
                    <input id="mcp-credential-value" type="password" autocomplete="off" placeholder="value"
                        aria-label="Credential value" prop:value=new_value on:input=move |ev| new_value.set(event_target_value(&ev))/>
                    <button type="button" class="btn" on:click=move |_| {
                        let (k, v) = (new_name.get_untracked().trim().to_owned(), new_value.get_untracked());
                        if !model::mcp::is_credential_key(&k) {
                            name_error.set(Some("MCP_ then capitals, digits and _".to_owned()));
                        } else if !v.trim().is_empty() {
                            name_error.set(None);
                            save.dispatch((k, Some(v)));
                            new_name.set(String::new());
                            new_value.set(String::new());
                        }
                    }>"Add"</button>
                </div>
                <FieldError error=Signal::derive(move || name_error.get())/>
            </div>
        </section>
    }
}

#[component]
fn Defaults(
    project: String,
    settings: ProjectSettingsBody,
    /// Why the caller may not change them, when not an admin.
    admin_why: Option<String>,
) -> impl IntoView {
    let locked = admin_why.is_some();
    let hours = RwSignal::new(
        settings
            .inactivity_timeout_seconds
            .map(|s| format!("{}", s as f64 / 3600.0))
            .unwrap_or_default(),
    );
    // Shown in Claude Code's `.mcp.json` form, unless some inherited server is disabled.
    let mcp = RwSignal::new(match &settings.mcp_servers {
        None => String::new(),
        Some(m) if m.disabled.is_empty() => {
            serde_json::to_string_pretty(&serde_json::json!({ "mcpServers": m.custom }))
                .unwrap_or_default()
        }
        Some(m) => serde_json::to_string_pretty(m).unwrap_or_default(),
    });
    let mcp_parsed = Signal::derive(move || {
        let parsed = model::mcp::parse_config(&mcp.get())
            .map_err(|why| model::validate::Invalid::new("", why))?;
        if let Some(m) = &parsed {
            model::validate::mcp_servers("", m, true)?;
        }
        Ok::<_, model::validate::Invalid>(parsed)
    });
    let mcp_error = Signal::derive(move || {
        mcp_parsed
            .get()
            .err()
            .map(|e| match e.field.trim_start_matches('.') {
                "" => e.message,
                at => format!("{at}: {}", e.message),
            })
    });
    let save =
        Action::new(move |body: &ProjectSettingsBody| save_settings(project.clone(), body.clone()));
    let input_error = Signal::derive(move || {
        let h = hours.get();
        (!h.trim().is_empty()
            && h.trim()
                .parse::<f64>()
                .map_or(true, |v| v < 0.0 || !v.is_finite()))
        .then(|| "must be a number of hours, zero or more".to_owned())
    });
    let error = action_error(save);
    let saved = Signal::derive(move || matches!(save.value().get(), Some(Ok(_))));
    view! {
        <section class="panel">
            <h2>"Session defaults"</h2>
            {admin_why.map(super::access::role_note)}
            <form on:submit=move |ev| {
                ev.prevent_default();
                let Ok(mcp_servers) = mcp_parsed.get_untracked() else {
                    return;
                };
                if input_error.get_untracked().is_some() {
                    return;
                }
                let secs = hours.get_untracked().trim().parse::<f64>().ok().map(|h| (h * 3600.0).round() as i64);
                save.dispatch(ProjectSettingsBody { inactivity_timeout_seconds: secs, mcp_servers });
            }>
                <fieldset class="plain" disabled=locked>
                <div class="field">
                    <label for="inactivity-hours">"Stop sessions idle for (hours; empty: the platform's default, 0.5; 0: never)"</label>
                    <input id="inactivity-hours" type="text" inputmode="decimal" prop:value=hours
                        on:input=move |ev| hours.set(event_target_value(&ev))/>
                    <FieldError error=input_error/>
                </div>
                <div class="field">
                    <label for="project-mcp">"MCP servers of every session (JSON, as in Claude Code's .mcp.json)"</label>
                    <textarea id="project-mcp" rows="8" spellcheck="false" class="mono"
                        placeholder=r#"{"mcpServers": {"tracker": {"type": "http", "url": "https://…", "headers": {"Authorization": "Bearer ${MCP_TRACKER_TOKEN}"}}}}"#
                        aria-invalid=move || mcp_error.get().is_some().to_string()
                        prop:value=mcp on:input=move |ev| mcp.set(event_target_value(&ev))></textarea>
                    <p class="muted hint">"stdio servers run in the agent's sandbox; http servers are reached through the runner's proxy, which fills "<code>"${MCP_…}"</code>" from the credentials above. Changing where a server that uses a credential points clears that credential."</p>
                    <FieldError error=mcp_error/>
                </div>
                <div class="actions">
                    <button type="submit" class="btn primary">"Save defaults"</button>
                    <Show when=move || saved.get()><span class="ok" role="status">"Saved"</span></Show>
                </div>
                </fieldset>
                <ErrorBanner error/>
            </form>
        </section>
    }
}
