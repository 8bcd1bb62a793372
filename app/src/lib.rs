//! The web UI of the Ambient Code Platform (Leptos, server-rendered then hydrated).
//!
//! Layout:
//! - [`pages`]: one module per page, with its server functions beside its components;
//! - [`transcript`]: the pure model of a session's transcript (events → rows);
//! - [`markdown`], [`highlight`], [`diff`], [`time`]: pure helpers of the transcript's views,
//!   and [`html`], which turns the rich ones into escaped markup;
//! - [`live`]: the browser's live connection to a session (its socket in the hydrate build);
//! - [`error`]: the error server functions return;
//! - `ssr` (server build only): what server functions share: the platform's services of the
//!   request, the caller, refusals with their status.

// Deeply nested view types (tables of rows of widgets) exceed the default query depth in release.
#![recursion_limit = "256"]

pub mod diff;
pub mod error;
pub mod highlight;
pub mod html;
pub mod live;
pub mod markdown;
pub mod pages;
pub mod rpc;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod time;
pub mod transcript;

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{Lazy, LazyRoute, lazy_route, path};

/// Name of the compiled assets (`/pkg/<name>.js`, `.wasm`, `.css`).
pub const OUTPUT_NAME: &str = "ambient";

/// The HTML document around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <title>"Ambient Code Platform"</title>
                <link rel="stylesheet" id="leptos" href=format!("/pkg/{OUTPUT_NAME}.css")/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The application: header and routes.
#[component]
pub fn App() -> impl IntoView {
    pages::widgets::provide_now();
    view! {
        <div id="app-state" hidden data-hydrated="false"></div>
        <Router>
            <a class="skip" href="#main">"Skip to content"</a>
            <header class="topbar">
                <a class="brand" href="/projects">"Ambient Code"</a>
                <nav>
                    <a href="/projects">"Projects"</a>
                    <form method="post" action="/logout" class="signout">
                        <button type="submit" class="link">"Sign out"</button>
                    </form>
                </nav>
            </header>
            <main id="main">
                <Routes fallback=|| view! { <p class="empty">"Page not found."</p> }>
                    <Route path=path!("/projects") view={Lazy::<ProjectsRoute>::new()}/>
                    <Route path=path!("/keys") view={Lazy::<KeysRoute>::new()}/>
                    <Route path=path!("/projects/:project") view={Lazy::<ProjectRoute>::new()}/>
                    <Route path=path!("/projects/:project/new") view={Lazy::<NewSessionRoute>::new()}/>
                    <Route path=path!("/projects/:project/settings") view={Lazy::<SettingsRoute>::new()}/>
                    <Route path=path!("/projects/:project/attempts/:group") view={Lazy::<AttemptsRoute>::new()}/>
                    <Route path=path!("/projects/:project/sharing") view={Lazy::<KeysRoute>::new()}/>
                    <Route path=path!("/projects/:project/sessions/:session") view=pages::session::SessionPage/>
                </Routes>
            </main>
        </Router>
    }
}

/// Declares a route whose page is loaded on demand: with `cargo leptos build --split` each
/// page's code is its own WASM module, fetched when the page is first shown (the session
/// page does not carry the forms of the others). Without `--split` it is plain code.
macro_rules! lazy_page {
    ($route:ident, $page:path) => {
        #[doc = concat!("The route of [`", stringify!($page), "`], loaded on demand.")]
        pub struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                $page().into_any()
            }
        }
    };
}

lazy_page!(ProjectsRoute, pages::projects::ProjectsPage);
lazy_page!(KeysRoute, pages::keys::KeysPage);
lazy_page!(ProjectRoute, pages::project::ProjectPage);
lazy_page!(NewSessionRoute, pages::new_session::NewSessionPage);
lazy_page!(SettingsRoute, pages::settings::SettingsPage);
lazy_page!(AttemptsRoute, pages::attempts::AttemptsPage);

/// Entry point of the browser build.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    // No panic hook: the bundle is built with `-Cpanic=immediate-abort` (see xtask), so a
    // panic traps at once, without a message or the formatting code one needs; the console
    // shows the trap with the WASM stack.
    // Async hydration: a lazy route loads its module before its part of the page hydrates.
    // Once the whole page (route included) is hydrated, `#app-state` says so: tests wait on it.
    wasm_bindgen_futures::spawn_local(async {
        let Some(body) = leptos::prelude::document().body() else {
            return;
        };
        leptos::mount::hydrate_from_async(body, App).await.forget();
        if let Some(state) = leptos::prelude::document().get_element_by_id("app-state") {
            let _ = state.set_attribute("data-hydrated", "true");
        }
    });
}
