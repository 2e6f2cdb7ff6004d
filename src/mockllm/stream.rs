//! A response body played from a script of steps (wait, send, abort, stall), paced with
//! `tokio::time::sleep`. It is a body stream, so when the client goes away hyper drops it
//! mid-script, and the `OpenStream` guard it owns gives the count of open streams back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Wait(Duration),
    Send(Bytes),
    /// End the body with an error: hyper then closes the connection without finishing the
    /// chunked encoding, which is what a crashed upstream looks like to the client.
    Abort,
    /// Send nothing more and stay open until the client (or shutdown) ends it.
    Stall,
}

/// Counts one body in `open` for as long as it lives.
#[derive(Debug)]
pub struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    pub fn new(open: Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::SeqCst);
        Self(open)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Plays `steps`. On `stop` (server shutdown) a waiting or stalled body aborts, so shutdown
/// never waits on a stream that would otherwise run forever.
pub fn body(steps: Vec<Step>, open: OpenStream, stop: CancellationToken) -> Body {
    let start = Some((steps.into_iter(), open, stop));
    let stream = futures::stream::unfold(start, |state| async move {
        // Returning `None` as the next state drops the guard as soon as the body is done.
        let (mut steps, open, stop) = state?;
        loop {
            match steps.next()? {
                Step::Wait(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = stop.cancelled() => return Some((Err(aborted("the mock is shutting down")), None)),
                    }
                }
                Step::Send(bytes) => return Some((Ok(bytes), Some((steps, open, stop)))),
                Step::Abort => {
                    // Pending once, so hyper flushes the head and chunks written so far: the
                    // client sees a stream cut short, not a request that failed outright.
                    tokio::task::yield_now().await;
                    return Some((Err(aborted("the mock dropped the connection")), None));
                }
                Step::Stall => {
                    stop.cancelled().await;
                    return Some((Err(aborted("the mock is shutting down")), None));
                }
            }
        }
    });
    Body::from_stream(stream)
}

fn aborted(why: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, why)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn the_guard_is_released_when_the_script_ends_or_the_body_is_dropped() {
        let open = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let done = body(vec![Step::Send(Bytes::from_static(b"a"))], OpenStream::new(open.clone()), stop.clone());
        let stalled = body(vec![Step::Stall], OpenStream::new(open.clone()), stop.clone());
        assert_eq!(open.load(Ordering::SeqCst), 2);
        let mut done = done.into_data_stream();
        assert_eq!(done.next().await.unwrap().unwrap(), Bytes::from_static(b"a"));
        assert!(done.next().await.is_none());
        assert_eq!(open.load(Ordering::SeqCst), 1);
        drop(stalled);
        assert_eq!(open.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn shutdown_ends_a_stalled_body_with_an_error() {
        let open = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let mut stalled = body(vec![Step::Stall], OpenStream::new(open.clone()), stop.clone()).into_data_stream();
        stop.cancel();
        assert!(stalled.next().await.unwrap().is_err());
        assert_eq!(open.load(Ordering::SeqCst), 0);
    }
}
