//! One live subscription once its start (snapshot or recovery) is done: the topic's broadcast
//! receiver and the position the client has. The socket's writer polls its feeds itself, so an
//! event costs one wake-up of one task per socket, not a task per subscription plus the writer.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::ReusableBoxFuture;

use crate::hub::{Position, Published};

type Received = (Result<Arc<Published>, RecvError>, Receiver<Arc<Published>>);

/// Takes the receiver and gives it back with what it got: a future that owns its receiver can
/// live in a reused box instead of borrowing from the feed.
async fn recv(mut rx: Receiver<Arc<Published>>) -> Received {
    let r = rx.recv().await;
    (r, rx)
}

pub(super) struct Feed {
    pub topic: String,
    /// Which `subscribe` of the topic this is; a newer one replaces it.
    pub generation: u64,
    /// The last event the client has (or was told of in `subscribed`).
    pub at: Position,
    next: ReusableBoxFuture<'static, Received>,
}

impl Feed {
    pub fn new(topic: String, generation: u64, at: Position, rx: Receiver<Arc<Published>>) -> Self {
        Feed { topic, generation, at, next: ReusableBoxFuture::new(recv(rx)) }
    }

    /// The next live event, in sequence order; `Lagged` or `Closed` when the feed has a gap.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Arc<Published>, RecvError>> {
        let (r, rx) = std::task::ready!(self.next.poll(cx));
        // Same future type, so the box is reused: no allocation per event.
        self.next.set(recv(rx));
        Poll::Ready(r)
    }

    /// Follows a new receiver (after the broker's feed broke and was subscribed again).
    pub fn resubscribe(&mut self, rx: Receiver<Arc<Published>>) {
        self.next.set(recv(rx));
    }
}
