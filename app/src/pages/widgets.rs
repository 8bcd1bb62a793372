//! Small components and helpers shared by pages.

use leptos::prelude::*;
use model::Phase;

/// A session's phase as a coloured badge.
#[component]
pub fn PhaseBadge(#[prop(into)] phase: Signal<Phase>) -> impl IntoView {
    view! {
        <span
            class=move || format!("badge phase-{}", phase.get().as_str().to_ascii_lowercase())
            data-phase=move || phase.get().as_str()
        >
            {move || phase.get().as_str()}
        </span>
    }
}

/// The current time in ms, ticking every second once the page is interactive; `None` while
/// rendering on the server and before hydration (relative times then show nothing, so the
/// two renders agree).
#[derive(Clone, Copy)]
pub struct Now(pub RwSignal<Option<i64>>);

/// Provides [`Now`] to the whole app.
pub fn provide_now() {
    let now = RwSignal::new(None::<i64>);
    provide_context(Now(now));
    Effect::new(move |_| {
        now.set(Some(crate::time::now_ms()));
        #[cfg(feature = "hydrate")]
        {
            let handle = set_interval_with_handle(
                move || now.set(Some(crate::time::now_ms())),
                std::time::Duration::from_secs(1),
            );
            if let Ok(handle) = handle {
                on_cleanup(move || handle.clear());
            }
        }
    });
}

/// The ticking clock.
pub fn use_now() -> RwSignal<Option<i64>> {
    use_context::<Now>()
        .map(|n| n.0)
        .unwrap_or_else(|| RwSignal::new(None))
}

/// A button that asks again before acting.
#[component]
pub fn ConfirmButton(
    /// Label of the button.
    label: &'static str,
    /// The question asked.
    question: String,
    /// What to do when confirmed.
    on_confirm: Callback<()>,
    /// Extra CSS class.
    #[prop(optional)]
    class: &'static str,
) -> impl IntoView {
    let asking = RwSignal::new(false);
    view! {
        <Show
            when=move || asking.get()
            fallback=move || view! {
                <button type="button" class=format!("btn {class}") on:click=move |_| asking.set(true)>{label}</button>
            }
        >
            <span class="confirm" role="alertdialog" aria-label=question.clone()>
                <span class="confirm-question">{question.clone()}</span>
                <button type="button" class="btn danger" on:click=move |_| { asking.set(false); on_confirm.run(()); }>
                    {format!("Yes, {}", label.to_ascii_lowercase())}
                </button>
                <button type="button" class="btn" on:click=move |_| asking.set(false)>"Cancel"</button>
            </span>
        </Show>
    }
}

/// The message of an action's last failure, if its last run failed (for [`ErrorBanner`]).
pub fn action_error<I, O>(
    action: Action<I, Result<O, crate::error::AppError>>,
) -> Signal<Option<String>>
where
    I: Send + Sync + 'static,
    O: Send + Sync + Clone + 'static,
{
    Signal::derive(move || {
        action
            .value()
            .get()
            .and_then(Result::err)
            .map(|e| e.message)
    })
}

/// An error message under a form field (nothing when there is no error).
#[component]
pub fn FieldError(#[prop(into)] error: Signal<Option<String>>) -> impl IntoView {
    move || {
        error
            .get()
            .map(|e| view! { <p class="field-error" role="alert">{e}</p> })
    }
}

/// The message of a failed server call, shown to the user.
#[component]
pub fn ErrorBanner(#[prop(into)] error: Signal<Option<String>>) -> impl IntoView {
    move || {
        error
            .get()
            .map(|e| view! { <p class="error banner" role="alert">{e}</p> })
    }
}
