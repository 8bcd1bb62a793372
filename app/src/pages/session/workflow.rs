//! The session page's workflow panel: switch the session's workflow (one of the
//! catalogue's, or any repository) or leave it. A running session restarts in the new
//! workflow, its conversation kept. The panel is its own lazily loaded WASM chunk, fetched
//! when a person first opens it.

use leptos::prelude::*;
use model::session::ActiveWorkflow;

use crate::error::AppError;
use crate::pages::new_session::{WorkflowFields, workflow_of};
use crate::pages::widgets::{ErrorBanner, action_error};
use crate::rpc::Json;

/// Switches the session's workflow (none: leaves it).
#[server(prefix = "/rpc", input = Json, output = Json)]
pub async fn switch_workflow(
    project: String,
    session: String,
    workflow: Option<ActiveWorkflow>,
) -> Result<(), AppError> {
    let (services, caller) = crate::ssr::context().await?;
    let key = model::session::SessionKey::new(project, session);
    services
        .set_workflow(&caller, &key, workflow)
        .await
        .map(|_| ())
        .map_err(crate::ssr::refusal)
}

/// The panel, loaded on demand (see the module's documentation).
#[lazy]
pub fn workflow_panel(project: String, name: String, current: Option<ActiveWorkflow>) -> AnyView {
    view! { <WorkflowPanel project name current/> }.into_any()
}

#[component]
fn WorkflowPanel(project: String, name: String, current: Option<ActiveWorkflow>) -> impl IntoView {
    let current = current.unwrap_or_default();
    let url = RwSignal::new(current.git_url);
    let branch = RwSignal::new(current.branch.unwrap_or_default());
    let path = RwSignal::new(current.path.unwrap_or_default());
    let switch = Action::new(move |wf: &Option<ActiveWorkflow>| {
        switch_workflow(project.clone(), name.clone(), wf.clone())
    });
    let error = action_error(switch);
    let chosen = move || workflow_of(&url.get(), &branch.get(), &path.get());
    let done = move || matches!(switch.value().get(), Some(Ok(())));
    view! {
        <section class="panel workflow-panel" aria-label="Workflow">
            <WorkflowFields url branch path/>
            <div class="actions">
                <button type="button" class="btn primary"
                    disabled=move || switch.pending().get() || chosen().is_none_or(|wf| model::validate::active_workflow("workflow", &wf).is_err())
                    on:click=move |_| { switch.dispatch(chosen()); }>"Switch workflow"</button>
                <button type="button" class="btn" disabled=move || switch.pending().get()
                    on:click=move |_| { switch.dispatch(None); }>"Leave the workflow"</button>
            </div>
            <p class="muted hint" role="status">{move || if done() {
                "Done: a running session restarts in it, its conversation kept."
            } else {
                "A running session restarts in the new workflow, its conversation kept."
            }}</p>
            <ErrorBanner error/>
        </section>
    }
}
