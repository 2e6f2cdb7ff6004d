//! The supervisor WebSocket (`GET /ws`): live events of calls (and later chats) with snapshots,
//! resume from a position, presence, and live control. Each socket is two tasks: one reads the
//! client's messages, the other (the pump) writes, taking live events straight from the
//! topics it follows. A subscription's start (snapshot, recovery) runs in a task of its own.

mod connection;
mod control;
mod feed;
mod presence;
pub mod protocol;
mod pump;
mod snapshot;
mod sockets;
mod subscription;

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

pub use sockets::Sockets;

use crate::app::AppState;
use crate::config::WsSettings;
use crate::http::ApiError;
use protocol::close;

/// Kept small on purpose: thousands of idle supervisors must cost little memory. Client
/// messages are small, and the read buffer grows on demand for the rare large one.
const READ_BUFFER: usize = 512;
/// Frames collect up to this size before a write (a batch is flushed at its end anyway), so a
/// busy socket makes one syscall for many frames; an idle socket never grows this buffer.
const WRITE_BUFFER: usize = 16 * 1024;
const MAX_WRITE_BUFFER: usize = 64 * 1024 * 1024;

/// The subprotocol a browser names next to its token: `new WebSocket(url, ["switchboard", token])`.
const SUBPROTOCOL: &str = "switchboard";

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Debug, Default, Deserialize)]
struct WsQuery {
    token: Option<String>,
}

async fn upgrade(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::BadRequest { code: "websocket_required", message: format!("This route speaks WebSocket only: {e}.") }
                .into_response();
        }
    };
    let cfg = &app.settings.live.ws;
    if !origin_allowed(&headers, &cfg.allowed_origins) {
        // Cross-site WebSocket hijacking: a page elsewhere must not ride a supervisor's token.
        return ApiError::Forbidden.into_response();
    }
    let (token, chosen) = token_of(&query.map(|q| q.0).unwrap_or_default(), &ws);
    if let Some(p) = chosen {
        ws.set_selected_protocol(p);
    }
    let who = match token {
        Some(t) => match crate::auth::authenticate(&app.store, &t).await {
            Ok(p) => p,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => None,
    };
    let ws = configure(ws, cfg);
    // Browsers cannot read an HTTP status from a failed handshake, so refusals after the
    // handshake are told with a close code instead.
    let Some(who) = who else {
        return ws.on_upgrade(|socket| refuse(socket, close::UNAUTHORIZED, "unknown or revoked token"));
    };
    let place = match app.sockets.admit(&who.token_id, cfg.max_connections, cfg.max_connections_per_token) {
        Ok(place) => place,
        Err(sockets::Refused::TokenFull) => {
            return ws.on_upgrade(|socket| refuse(socket, close::FORBIDDEN, "too many open sockets for this token"));
        }
        Err(sockets::Refused::HubFull) => {
            return ws.on_upgrade(|socket| refuse(socket, close::SHUTTING_DOWN, "the hub has no room for more sockets; retry later"));
        }
    };
    let tasks = app.tasks.clone();
    ws.on_upgrade(move |socket| tasks.track_future(connection::run(app, who, socket, place)))
}

fn configure(ws: WebSocketUpgrade, cfg: &WsSettings) -> WebSocketUpgrade {
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        // The socket's own queue (bounded, in bytes) does the buffering. This cap only has to
        // let one batch plus one large snapshot frame through; tungstenite's default is unbounded.
        .max_write_buffer_size(MAX_WRITE_BUFFER.max(cfg.queue_bytes * 2))
        .max_message_size(cfg.max_message_bytes)
        .max_frame_size(cfg.max_message_bytes)
}

async fn refuse(mut socket: WebSocket, code: u16, reason: &'static str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

/// `?token=` or a `sb_…` entry among the requested subprotocols. When the token came as a
/// subprotocol the answer must select one of the offered ones, or browsers drop the socket.
fn token_of(q: &WsQuery, ws: &WebSocketUpgrade) -> (Option<String>, Option<HeaderValue>) {
    let offered: Vec<String> = ws
        .requested_protocols()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()).collect::<Vec<_>>())
        .collect();
    let from_protocol = offered.iter().find(|p| p.starts_with("sb_")).cloned();
    let chosen = if offered.iter().any(|p| p == SUBPROTOCOL) {
        Some(HeaderValue::from_static(SUBPROTOCOL))
    } else {
        from_protocol.as_deref().and_then(|p| HeaderValue::from_str(p).ok())
    };
    (q.token.clone().filter(|t| !t.is_empty()).or(from_protocol), chosen)
}

/// No `Origin` (a server-side client) is fine; a browser's must be the hub's own host or listed.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let origin = origin.to_ascii_lowercase();
    if allowed.contains(&origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
    let origin_host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_listed_origins_and_non_browsers_may_connect() {
        assert!(origin_allowed(&headers(None, "hub.example"), &[]));
        assert!(origin_allowed(&headers(Some("https://hub.example"), "hub.example"), &[]));
        assert!(origin_allowed(&headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"), &[]));
        assert!(origin_allowed(&headers(Some("https://board.example"), "hub.example"), &["https://board.example".into()]));
    }

    #[test]
    fn foreign_origins_are_refused_even_when_they_look_alike() {
        assert!(!origin_allowed(&headers(Some("https://evil.example"), "hub.example"), &[]));
        assert!(!origin_allowed(&headers(Some("https://hub.example.evil.com"), "hub.example"), &[]));
        assert!(!origin_allowed(&headers(Some("https://board.example.evil"), "hub.example"), &["https://board.example".into()]));
        assert!(!origin_allowed(&headers(Some("null"), "hub.example"), &[]));
    }
}
