//! Stopping a run from anywhere: the instance that runs it may not be the one the stop request
//! reached, so the request travels as a `chat.stop_requested` event on the session topic, which
//! the run watches. (It also tells supervisors who stopped it.)

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::events::STOP_REQUESTED;
use crate::hub::DynBroker;

/// Resolves never; cancels `cancel` when a stop request for `run_id` shows up on `topic`.
pub(super) async fn watch(broker: DynBroker, topic: String, run_id: String, cancel: CancellationToken) {
    let mut rx = broker.subscribe(&topic);
    loop {
        match rx.recv().await {
            Ok(p) if p.event.kind == STOP_REQUESTED && p.event.data.get("run_id").and_then(|v| v.as_str()) == Some(run_id.as_str()) => {
                cancel.cancel();
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => {
                // The broker's feed restarted (a Redis reconnect): listen again shortly.
                tokio::time::sleep(Duration::from_millis(100)).await;
                rx = broker.subscribe(&topic);
            }
        }
    }
}
