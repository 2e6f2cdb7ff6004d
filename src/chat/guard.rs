//! Who may use the chat routes from a browser. A page's `Origin` must be the hub's own, or one
//! that a configured widget (site key) allows; CORS answers exactly those origins and no others.
//! A request without `Origin` is not from a page (browsers always send it on these requests):
//! it is served, rate-limited like any other, since a non-browser can claim any origin anyway.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::config::{ChatSettings, Widget};
use crate::http::ApiError;

/// The request's origin as the handlers need it, set by [`cors`].
#[derive(Debug, Clone)]
pub struct PageOrigin {
    /// Normalised `scheme://host[:port]`, when the request came from a page.
    pub origin: Option<String>,
    /// The page is served by the hub itself.
    pub same_origin: bool,
}

impl PageOrigin {
    /// May this page use a session created with `site_key`?
    pub fn may_use(&self, settings: &ChatSettings, site_key: Option<&str>) -> bool {
        let Some(origin) = &self.origin else { return true };
        if self.same_origin {
            return true;
        }
        site_key.and_then(|k| widget(settings, k)).is_some_and(|w| w.allowed_origins.contains(origin))
    }
}

/// Who is asking, as the limits and origin checks need it.
#[derive(Debug, Clone)]
pub struct Visitor {
    /// Rate-limit key of the client address (IPv6 by /64).
    pub ip: Option<String>,
    pub page: PageOrigin,
}

impl FromRequestParts<Arc<AppState>> for Visitor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let ip = super::limits::client_ip(peer, &parts.headers, &app.chat.settings.trusted_proxies).map(super::limits::ip_key);
        let page = parts.extensions.get::<PageOrigin>().cloned().unwrap_or(PageOrigin { origin: None, same_origin: false });
        Ok(Visitor { ip, page })
    }
}

pub fn widget<'a>(settings: &'a ChatSettings, site_key: &str) -> Option<&'a Widget> {
    settings.widgets.iter().find(|w| w.site_key == site_key)
}

/// Checks the origin, answers preflights, and adds CORS headers for allowed cross-origin pages.
pub async fn cors(State(app): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(|o| crate::config::chat_origin(o).unwrap_or_else(|| o.to_string()));
    let Some(origin) = origin else {
        req.extensions_mut().insert(PageOrigin { origin: None, same_origin: false });
        return next.run(req).await;
    };
    let same = same_origin(&origin, req.headers(), app.settings.public_url.as_deref());
    let known = same || app.chat.settings.widgets.iter().any(|w| w.allowed_origins.contains(&origin));
    if !known {
        return ApiError::OriginNotAllowed.into_response();
    }
    if req.method() == Method::OPTIONS {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        allow(h, &origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type, last-event-id, x-switchboard-site-key"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return resp;
    }
    req.extensions_mut().insert(PageOrigin { origin: Some(origin.clone()), same_origin: same });
    let mut resp = next.run(req).await;
    if !same {
        allow(resp.headers_mut(), &origin);
    }
    resp
}

fn allow(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
}

/// The page comes from the hub itself. With `public_url` set that is the one origin it names
/// (scheme included); without it, a page whose host is the `Host` the request was sent to —
/// a DNS-rebinding page can claim that, so deployments reachable by name should set
/// `public_url`.
fn same_origin(origin: &str, headers: &HeaderMap, public_url: Option<&str>) -> bool {
    if let Some(public) = public_url {
        return crate::config::chat_origin(public).is_some_and(|p| p == origin);
    }
    let Some((_, page_host)) = origin.split_once("://") else { return false };
    headers.get(header::HOST).and_then(|v| v.to_str().ok()).is_some_and(|h| h.eq_ignore_ascii_case(page_host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    #[test]
    fn a_page_of_the_hub_itself_is_same_origin() {
        assert!(same_origin("https://hub.example", &headers("hub.example"), None));
        assert!(same_origin("http://127.0.0.1:8080", &headers("127.0.0.1:8080"), None));
        assert!(!same_origin("https://hub.example.evil.com", &headers("hub.example"), None));
        assert!(same_origin("https://hub.example", &headers("10.0.0.5:8080"), Some("https://hub.example/")));
        // With a public URL, a page claiming the Host it was sent to is not enough.
        assert!(!same_origin("http://rebound.example", &headers("rebound.example"), Some("https://hub.example")));
        assert!(!same_origin("http://hub.example", &headers("hub.example"), Some("https://hub.example")));
    }

    #[test]
    fn a_session_of_a_widget_is_usable_only_from_its_origins() {
        let mut s = ChatSettings::defaults();
        s.widgets.push(Widget {
            site_key: "k".into(),
            name: "k".into(),
            allowed_origins: vec!["https://a.example".into()],
            org: "o".into(),
        });
        let page = |o: &str| PageOrigin { origin: Some(o.into()), same_origin: false };
        assert!(page("https://a.example").may_use(&s, Some("k")));
        assert!(!page("https://b.example").may_use(&s, Some("k")));
        assert!(!page("https://a.example").may_use(&s, None), "a keyless session is for the hub's own pages");
        assert!(PageOrigin { origin: None, same_origin: false }.may_use(&s, None), "not a page");
    }
}
