//! The security headers of every response (pages, API, assets, refusals): never framed
//! (`X-Frame-Options`, and the policy's `frame-ancestors`), never sniffed into another type,
//! no address sent to other sites, and a Content Security Policy.
//!
//! The pages Leptos renders carry inline scripts (the hydration bootstrap of
//! `HydrationScripts`, the resources and out-of-order fragments it streams), each with the
//! nonce Leptos makes for that response (`leptos_axum` provides one while rendering; it is
//! [`leptos::nonce::use_nonce`]). Their policy ([`page_policy`]) allows scripts from this
//! server, inline ones with that nonce only, and the compiling of the UI's WebAssembly; every
//! other response runs no script at all. Styles, images and fonts are left as they are (the
//! UI loads its own only); connections (server functions, the viewer WebSocket: `'self'`
//! covers `ws:`/`wss:` of the same host) go to this server only.

use axum::http::{HeaderValue, header};
use axum::response::Response;

/// What every response's policy says.
const BASE: &str = "frame-ancestors 'none'; base-uri 'self'; object-src 'none'; \
                    form-action 'self'; connect-src 'self'";

/// The policy of every response but the pages Leptos renders: [`BASE`], and no script.
const NO_SCRIPT: &str = "frame-ancestors 'none'; base-uri 'self'; object-src 'none'; \
                         form-action 'self'; connect-src 'self'; script-src 'none'";

/// The policy of a page whose inline scripts carry `nonce`.
pub fn policy_with_nonce(nonce: &str) -> String {
    format!("{BASE}; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'")
}

/// Gives the page being rendered the policy that lets its own inline scripts run (those with
/// this response's nonce). Runs in the context of every page Leptos renders; does nothing
/// where there is no nonce (server functions, static files).
pub fn page_policy() {
    let Some(nonce) = leptos::nonce::use_nonce() else {
        return;
    };
    let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&policy_with_nonce(&nonce)) {
        response.insert_header(header::CONTENT_SECURITY_POLICY, value);
    }
}

/// Adds the security headers to a response; a page keeps the policy [`page_policy`] gave it.
pub async fn add<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(NO_SCRIPT),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_forbids_framing_and_foreign_bases_forms_and_connections() {
        let page = policy_with_nonce("abc");
        for policy in [NO_SCRIPT, page.as_str()] {
            assert!(policy.starts_with(BASE), "{policy}");
            for directive in [
                "frame-ancestors 'none'",
                "base-uri 'self'",
                "object-src 'none'",
                "form-action 'self'",
                "connect-src 'self'",
            ] {
                assert!(policy.contains(directive), "{policy} lacks {directive}");
            }
            assert!(HeaderValue::from_str(policy).is_ok(), "{policy}");
        }
        assert!(NO_SCRIPT.ends_with("; script-src 'none'"));
        assert!(page.ends_with("; script-src 'self' 'nonce-abc' 'wasm-unsafe-eval'"));
    }
}
