//! Small components shared by pages.

use leptos::prelude::*;
use model::Phase;

/// A session's phase as a coloured badge.
#[component]
pub fn PhaseBadge(#[prop(into)] phase: Signal<Phase>) -> impl IntoView {
    view! {
        <span class=move || format!("badge phase-{}", phase.get().as_str().to_lowercase()) data-phase=move || phase.get().as_str()>
            {move || phase.get().as_str()}
        </span>
    }
}
