//! The `control` message: the same live control as `POST /api/calls/{id}/control` (same checks,
//! audit and `control.sent` event), answered on the socket with a `control_result` frame. It
//! runs beside the socket so a slow control URL never holds up the socket's events.

use std::sync::Arc;

use serde_json::{Value, json};

use super::connection::Socket;

pub(super) fn spawn(socket: Arc<Socket>, call_id: String, action: Value, id: Option<Value>) {
    let tasks = socket.app.tasks.clone();
    tasks.spawn(async move {
        let outcome = crate::control::execute(&socket.app, &socket.who, &call_id, action).await;
        let mut frame = match outcome {
            Ok(done) => json!({ "type": "control_result", "call_id": call_id, "ok": true, "result": done.to_json() }),
            Err(e) => {
                json!({ "type": "control_result", "call_id": call_id, "ok": false, "status": e.status().as_u16(), "error": e.body() })
            }
        };
        if let Some(id) = id {
            frame["id"] = id;
        }
        socket.outbox.push(frame.to_string().into());
    });
}
