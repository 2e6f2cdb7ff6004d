//! Cache and security headers per kind of asset.
//!
//! * The widget is loaded by other sites' pages: cacheable for a short while (its URL never
//!   changes, so a long max-age would pin old versions), revalidated by ETag, loadable
//!   cross-origin (`Cross-Origin-Resource-Policy`) by pages that isolate themselves.
//! * Dashboard and demo files are revalidated on every load (`no-cache` + ETag: a `304` costs
//!   one round trip), and pages carry a Content-Security-Policy that allows only the hub's own
//!   scripts, styles and connections — no inline script, so injected markup cannot run. The
//!   dashboard may not be framed (clickjacking on its control buttons).

use axum::http::{HeaderMap, HeaderValue, header};

use super::assets::Asset;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Widget,
    Dashboard,
    Demo,
}

/// `connect-src 'self'` covers the same-origin `ws:`/`wss:` socket in CSP Level 3 browsers.
/// Recordings play from `blob:` URLs (they are fetched with the supervisor's token).
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     media-src 'self' blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The demo page is a customer's site: the widget's script and its requests go to the hub.
const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'";

pub fn apply(h: &mut HeaderMap, kind: Kind, asset: &Asset) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if let Ok(v) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    match kind {
        Kind::Widget => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        Kind::Dashboard => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DASHBOARD_CSP));
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        }
        Kind::Demo => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DEMO_CSP));
            h.insert(header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin"));
        }
    }
}
