//! The body of a chat event stream: SSE frames encoded once by the caller, and a
//! `: keep-alive` comment whenever nothing was sent for `interval`.
//!
//! The timer is not re-armed at every frame (as axum's `Sse` keep-alive does): a frame only
//! notes the time, and when the timer fires early it is moved to where the next comment is due.
//! At one frame per model chunk that saves a timer-wheel update per chunk.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

pub type Frames = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

pub struct KeepAlive {
    frames: Frames,
    interval: Duration,
    timer: Pin<Box<Sleep>>,
    last_sent: Instant,
}

impl KeepAlive {
    pub fn new(frames: Frames, interval: Duration) -> Self {
        let now = Instant::now();
        Self { frames, interval, timer: Box::pin(tokio::time::sleep_until(now + interval)), last_sent: now }
    }
}

impl Stream for KeepAlive {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.frames.poll_next_unpin(cx) {
            Poll::Ready(Some(frame)) => {
                this.last_sent = Instant::now();
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        loop {
            ready!(this.timer.as_mut().poll(cx));
            let due = this.last_sent + this.interval;
            let now = Instant::now();
            if now >= due {
                this.last_sent = now;
                this.timer.as_mut().reset(now + this.interval);
                return Poll::Ready(Some(Ok(Bytes::from_static(KEEP_ALIVE))));
            }
            this.timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn comments_fill_only_the_silences() {
        let interval = Duration::from_millis(100);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let frames: Frames = Box::pin(tokio_stream_from(rx));
        let mut body = KeepAlive::new(frames, interval);
        tokio::time::sleep(Duration::from_millis(60)).await;
        tx.send(Bytes::from_static(b"a")).unwrap();
        assert_eq!(body.next().await.unwrap().unwrap(), "a");
        // A full interval after the frame, not after the start.
        let t0 = Instant::now();
        assert_eq!(body.next().await.unwrap().unwrap(), KEEP_ALIVE);
        assert!(t0.elapsed() >= interval - Duration::from_millis(1), "{:?}", t0.elapsed());
        let t1 = Instant::now();
        assert_eq!(body.next().await.unwrap().unwrap(), KEEP_ALIVE);
        assert!(t1.elapsed() >= interval - Duration::from_millis(1), "{:?}", t1.elapsed());
        drop(tx);
        assert!(body.next().await.is_none());
    }

    fn tokio_stream_from(mut rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>) -> impl Stream<Item = Bytes> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
