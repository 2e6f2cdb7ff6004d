//! The `control` message: the same live control as `POST /api/calls/{id}/control`, answered on
//! the socket. It runs beside the socket so a slow control URL never holds up its events.

use std::sync::Arc;

use serde_json::{Value, json};

use super::connection::Socket;
use super::protocol;

pub(super) fn spawn(socket: Arc<Socket>, call_id: String, action: Value, id: Option<Value>) {
    let _ = (action, id, json!(null));
    socket.outbox.push(protocol::error("control_unavailable", "Live control is not available yet.", Some(&format!("call:{call_id}"))));
}
