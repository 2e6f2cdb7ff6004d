//! A response body played from a script of steps (wait, send, abort, stall), paced with
//! `tokio::time::sleep`. It is a body stream, so when the client goes away hyper drops it
//! mid-script, and the `OpenStream` guard it owns gives the count of open streams back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::Stream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A stalled body's timer, re-armed for as long as it stalls: only shutdown or the client ends it.
const STALL: Duration = Duration::from_secs(86_400);

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
    Body::from_stream(Script {
        steps: steps.into_iter(),
        open: Some(open),
        timer: None,
        waiting: false,
        stalled: false,
        stop: Box::pin(stop.cancelled_owned()),
        abort_next: false,
    })
}

/// The body's state. One timer is re-armed for every wait and one shutdown waiter lives as
/// long as the body: thousands of paced streams each waiting dozens of times would otherwise
/// create a timer and join (then leave) the shared shutdown token's waiter list per chunk.
struct Script {
    steps: std::vec::IntoIter<Step>,
    /// Dropped with the body, or as soon as the script is over: `None` means the body ended.
    open: Option<OpenStream>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer is armed for a `Wait` (or a stall).
    waiting: bool,
    /// A `Stall` step was reached: nothing but shutdown or the client ends the body.
    stalled: bool,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    /// An `Abort` step was reached and the body has been pending once since.
    abort_next: bool,
}

impl Script {
    fn arm(&mut self, d: Duration) {
        let until = Instant::now() + d;
        match self.timer.as_mut() {
            Some(t) => t.as_mut().reset(until),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(until))),
        }
        self.waiting = true;
    }

    fn end(&mut self, why: &'static str) -> Poll<Option<std::io::Result<Bytes>>> {
        self.open = None;
        Poll::Ready(Some(Err(aborted(why))))
    }
}

impl Stream for Script {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.open.is_none() {
            return Poll::Ready(None);
        }
        if this.abort_next {
            return this.end("the mock dropped the connection");
        }
        loop {
            if this.waiting
                && let Some(timer) = this.timer.as_mut()
            {
                if this.stop.as_mut().poll(cx).is_ready() {
                    return this.end("the mock is shutting down");
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.waiting = false;
                if this.stalled {
                    this.arm(STALL);
                    continue;
                }
            }
            match this.steps.next() {
                None => {
                    this.open = None;
                    return Poll::Ready(None);
                }
                Some(Step::Wait(d)) => this.arm(d),
                Some(Step::Send(bytes)) => return Poll::Ready(Some(Ok(bytes))),
                Some(Step::Abort) => {
                    // Pending once, so hyper flushes the head and chunks written so far: the
                    // client sees a stream cut short, not a request that failed outright.
                    this.abort_next = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Some(Step::Stall) => {
                    this.stalled = true;
                    this.arm(STALL);
                }
            }
        }
    }
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
    async fn frames_come_after_their_waits_and_an_abort_after_the_frames_before_it() {
        let open = Arc::new(AtomicUsize::new(0));
        let wait = Duration::from_millis(30);
        let steps = vec![
            Step::Send(Bytes::from_static(b"a")),
            Step::Wait(wait),
            Step::Send(Bytes::from_static(b"b")),
            Step::Wait(wait),
            Step::Send(Bytes::from_static(b"c")),
            Step::Abort,
        ];
        let mut body = body(steps, OpenStream::new(open.clone()), CancellationToken::new()).into_data_stream();
        // Only lower bounds: a busy machine may delay any frame, never bring one forward.
        let t0 = std::time::Instant::now();
        assert_eq!(body.next().await.unwrap().unwrap(), "a");
        assert_eq!(body.next().await.unwrap().unwrap(), "b");
        assert!(t0.elapsed() >= wait, "{:?}", t0.elapsed());
        assert_eq!(body.next().await.unwrap().unwrap(), "c");
        assert!(t0.elapsed() >= wait * 2, "{:?}", t0.elapsed());
        assert!(body.next().await.unwrap().is_err());
        assert!(body.next().await.is_none());
        assert_eq!(open.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn shutdown_ends_a_waiting_body_with_an_error() {
        let open = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let steps = vec![Step::Send(Bytes::from_static(b"a")), Step::Wait(Duration::from_secs(60)), Step::Send(Bytes::from_static(b"b"))];
        let mut waiting = body(steps, OpenStream::new(open.clone()), stop.clone()).into_data_stream();
        assert_eq!(waiting.next().await.unwrap().unwrap(), "a");
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            stop.cancel();
        });
        let ended = tokio::time::timeout(Duration::from_secs(5), waiting.next()).await.expect("shutdown ends the wait");
        assert!(ended.unwrap().is_err());
        assert_eq!(open.load(Ordering::SeqCst), 0);
        stopper.await.unwrap();
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
