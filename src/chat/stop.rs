//! Stopping a run from anywhere: the instance that runs it may not be the one the stop request
//! reached, so the request travels as a `chat.stop_requested` event on the session topic, which
//! the run watches. (It also tells supervisors who stopped it.)

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::events::STOP_REQUESTED;
use crate::hub::{DynBroker, Published};

fn asks_to_stop(p: &Published, run_id: &str) -> bool {
    p.event.kind == STOP_REQUESTED && p.event.data.get("run_id").and_then(|v| v.as_str()) == Some(run_id)
}

/// Resolves never; cancels `cancel` when a stop request for `run_id` shows up on `topic`.
/// `rx` is subscribed before the run is announced, so no request can slip in before it.
pub(super) async fn watch(
    broker: DynBroker,
    topic: String,
    run_id: String,
    cancel: CancellationToken,
    mut rx: broadcast::Receiver<Arc<Published>>,
    history_limit: usize,
) {
    loop {
        match rx.recv().await {
            Ok(p) if asks_to_stop(&p, &run_id) => cancel.cancel(),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                // The run's own deltas can outrun the receiver: look for a request in history.
                if let Ok(recent) = broker.recent(&topic, history_limit).await
                    && recent.iter().any(|p| asks_to_stop(p, &run_id))
                {
                    cancel.cancel();
                }
            }
            Err(RecvError::Closed) => {
                // The broker's feed restarted (a Redis reconnect): listen again shortly.
                tokio::time::sleep(Duration::from_millis(100)).await;
                rx = broker.subscribe(&topic);
            }
        }
    }
}
