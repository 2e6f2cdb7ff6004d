//! Two clocks per HTTP/1 connection, as Go's `ReadHeaderTimeout`/`IdleTimeout`, nginx's
//! `client_header_timeout`/`keepalive_timeout` and Envoy keep them: a short one for a request's
//! head, from its first byte (slowloris), and a long one for a kept-alive connection waiting
//! for its next request.
//!
//! hyper 1.x has only `header_read_timeout`, which also runs while a kept-alive connection is
//! idle (hyperium/hyper#3828), so at 10 s it closed every connection idle that long. A client
//! whose pool keeps connections longer (reqwest and Go: 90 s) then sometimes sends its next
//! request just as the hub closes: the request is reset, and a webhook sender that does not
//! retry a POST loses it. The load generator saw exactly that.
//!
//! The state is shared by the connection's IO (a byte read while idle starts a request's head;
//! a flush after the response's last frame makes it idle), the service (a parsed head makes the
//! connection busy; the request body notes its end) and the response body (its end). A
//! response that ends before its request's body did leaves hyper discarding the rest of that
//! body, so those bytes do not start a head. A head that was partly read while the previous
//! request was served (pipelining) is timed from the first byte after that response. The
//! connection task checks the state when its one timer fires, and moves the timer instead of
//! re-arming it per request. When the server's connection slots run low, idle connections get
//! only the header limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

/// Waiting for, or reading, a request's head.
const HEAD: u64 = 0;
/// A request is being served (its body read, its response written).
const BUSY: u64 = 1;
/// The response's last frame was handed to hyper; its bytes may not all be written yet.
const FLUSHING: u64 = 2;
/// The response is out; waiting for the next request.
const IDLE: u64 = 3;
/// The response ended before the request's body did: hyper reads and discards the rest, so
/// bytes read now are not a new head. Timed like an idle connection.
const DRAIN: u64 = 4;
const PHASE_BITS: u32 = 3;
const PHASE_MASK: u64 = (1 << PHASE_BITS) - 1;

/// The phase in the low bits, the milliseconds since `origin` when it began above them.
/// Written only from the connection's own task (its IO, its service and its response body
/// are all polled there), so relaxed ordering is enough.
pub struct ConnClock {
    origin: Instant,
    state: AtomicU64,
    /// The current request's body has not been read to its end.
    request_open: AtomicBool,
}

/// The limits a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header: Duration,
    pub keep_alive: Duration,
}

/// What the connection task should do when its timer fires.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Look again then.
    At(Instant),
    /// The head did not arrive in time.
    HeadTimedOut,
    /// Idle past the keep-alive timeout.
    IdleTimedOut,
}

impl ConnClock {
    /// A new connection waits for its first request's head, timed from the accept.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { origin: Instant::now(), state: AtomicU64::new(HEAD), request_open: AtomicBool::new(false) })
    }

    fn set(&self, phase: u64) {
        self.set_at(phase, Instant::now());
    }

    fn set_at(&self, phase: u64, now: Instant) {
        let ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        self.state.store(ms << PHASE_BITS | phase, Ordering::Relaxed);
    }

    fn get(&self) -> (u64, Instant) {
        let s = self.state.load(Ordering::Relaxed);
        (s & PHASE_MASK, self.origin + Duration::from_millis(s >> PHASE_BITS))
    }

    fn phase(&self) -> u64 {
        self.state.load(Ordering::Relaxed) & PHASE_MASK
    }

    /// Bytes arrived: if the connection was idle, a request's head has begun.
    fn bytes_read(&self) {
        self.bytes_read_at(Instant::now());
    }

    fn bytes_read_at(&self, now: Instant) {
        if self.phase() == IDLE {
            self.set_at(HEAD, now);
        }
    }

    /// A head was parsed and the request is being served.
    fn busy(&self, has_body: bool) {
        self.request_open.store(has_body, Ordering::Relaxed);
        self.set(BUSY);
    }

    fn request_body_ended(&self) {
        self.request_open.store(false, Ordering::Relaxed);
    }

    /// The response's last frame was taken.
    fn response_ended(&self) {
        self.set(if self.request_open.load(Ordering::Relaxed) { DRAIN } else { FLUSHING });
    }

    /// Everything written so far reached the socket.
    fn flushed(&self) {
        if self.phase() == FLUSHING {
            self.set(IDLE);
        }
    }

    /// When the phase that began at `since` runs out, if it has a limit.
    fn deadline(phase: u64, since: Instant, limits: Limits) -> Option<Instant> {
        match phase {
            HEAD => Some(since + limits.header),
            IDLE | DRAIN => Some(since + limits.keep_alive),
            _ => None,
        }
    }

    /// Whether the connection has outlived the limit of its phase. `crowded`: connection slots
    /// are running out, so an idle connection gets only the header limit (a flood of idle
    /// connections must not hold the slots for the whole keep-alive time). A busy one is
    /// looked at again after `header` (a request may take any time; its own limits apply).
    pub fn check(&self, limits: Limits, crowded: bool, now: Instant) -> Check {
        let (phase, since) = self.get();
        let limits = if crowded { Limits { keep_alive: limits.keep_alive.min(limits.header), ..limits } } else { limits };
        match Self::deadline(phase, since, limits) {
            Some(due) if now >= due => {
                if phase == HEAD {
                    Check::HeadTimedOut
                } else {
                    Check::IdleTimedOut
                }
            }
            // At least every `header`, so a crowd is noticed.
            Some(due) => Check::At(due.min(now + limits.header)),
            None => Check::At(now + limits.header),
        }
    }
}

/// Resolves when the connection outlived its phase's limit (`HeadTimedOut` or `IdleTimedOut`).
/// Polled with the connection at every wake-up, so a phase that begins with a nearer limit (a
/// head on an idle connection, an idle time shorter than the header time) brings the timer
/// forward at once; otherwise the timer only moves when it fires.
pub struct Watchdog {
    clock: Arc<ConnClock>,
    limits: Limits,
    /// The server's connection slots, and how few free ones count as crowded.
    slots: Arc<Semaphore>,
    low_water: usize,
    timer: Pin<Box<Sleep>>,
}

impl Watchdog {
    pub fn new(clock: Arc<ConnClock>, limits: Limits, slots: Arc<Semaphore>, low_water: usize) -> Self {
        let timer = Box::pin(tokio::time::sleep_until(clock.origin + limits.header));
        Self { clock, limits, slots, low_water, timer }
    }
}

impl Future for Watchdog {
    type Output = Check;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Check> {
        let this = self.get_mut();
        let (phase, since) = this.clock.get();
        if let Some(due) = ConnClock::deadline(phase, since, this.limits)
            && due < this.timer.deadline()
        {
            this.timer.as_mut().reset(due);
        }
        loop {
            ready!(this.timer.as_mut().poll(cx));
            let crowded = this.slots.available_permits() <= this.low_water;
            match this.clock.check(this.limits, crowded, Instant::now()) {
                Check::At(next) => this.timer.as_mut().reset(next),
                expired => return Poll::Ready(expired),
            }
        }
    }
}

/// The request's body, noting when it has been read to its end.
pub struct ClockedRequestBody {
    inner: Incoming,
    clock: Arc<ConnClock>,
}

impl ClockedRequestBody {
    /// The request, with its body wrapped, after marking the connection busy.
    pub fn wrap(req: hyper::Request<Incoming>, clock: &Arc<ConnClock>) -> hyper::Request<Body> {
        let (parts, inner) = req.into_parts();
        clock.busy(!inner.is_end_stream());
        hyper::Request::from_parts(parts, Body::new(Self { inner, clock: clock.clone() }))
    }
}

impl http_body::Body for ClockedRequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.clock.request_body_ended();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's IO, noting when bytes arrive.
pub struct ClockedIo<T> {
    inner: T,
    clock: Arc<ConnClock>,
}

impl<T> ClockedIo<T> {
    pub fn new(inner: T, clock: Arc<ConnClock>) -> Self {
        Self { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ClockedIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ClockedIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            this.clock.flushed();
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A response body that ends the request's phase once it is done with (hyper drops it when it
/// takes the last frame, or when the connection ends).
pub struct ClockedBody {
    inner: Body,
    clock: Arc<ConnClock>,
}

impl ClockedBody {
    pub fn wrap(inner: Body, clock: Arc<ConnClock>) -> Body {
        Body::new(Self { inner, clock })
    }
}

impl http_body::Body for ClockedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ClockedBody {
    fn drop(&mut self) {
        self.clock.response_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const KEEP_ALIVE: Duration = Duration::from_secs(120);

    const LIMITS: Limits = Limits { header: HEADER, keep_alive: KEEP_ALIVE };

    #[test]
    fn each_phase_has_its_own_limit_counted_from_when_it_began() {
        let c = ConnClock::new();
        let t0 = c.origin;
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(c.check(LIMITS, false, t0), Check::At(at(10)));
        assert_eq!(c.check(LIMITS, false, at(10)), Check::HeadTimedOut);

        c.set_at(BUSY, at(1));
        assert_eq!(c.check(LIMITS, false, at(300)), Check::At(at(310)), "a request in progress is never cut here");
        c.set_at(FLUSHING, at(300));
        assert_eq!(c.check(LIMITS, false, at(400)), Check::At(at(410)), "nor a response still being written");

        c.set_at(IDLE, at(300));
        assert_eq!(c.check(LIMITS, false, at(360)), Check::At(at(370)), "idle past the header limit is fine");
        assert_eq!(c.check(LIMITS, false, at(415)), Check::At(at(420)));
        assert_eq!(c.check(LIMITS, false, at(420)), Check::IdleTimedOut);
        assert_eq!(c.check(LIMITS, true, at(310)), Check::IdleTimedOut, "short when the slots run out");

        c.bytes_read_at(at(400));
        assert_eq!(c.check(LIMITS, false, at(400)), Check::At(at(410)), "the next head is timed from its first byte");
        c.bytes_read_at(at(405));
        assert_eq!(c.check(LIMITS, false, at(410)), Check::HeadTimedOut, "more bytes of the same head do not extend it");
    }

    #[test]
    fn a_response_ends_the_request_only_once_it_is_flushed_and_unread_body_bytes_are_no_head() {
        let c = ConnClock::new();
        c.busy(false);
        c.response_ended();
        assert_eq!(c.phase(), FLUSHING);
        c.bytes_read();
        assert_eq!(c.phase(), FLUSHING, "a pipelined head waits for the response to be out");
        c.flushed();
        assert_eq!(c.phase(), IDLE);

        // Answered (say 415) before its body was read: hyper discards the rest of the body.
        c.busy(true);
        c.response_ended();
        assert_eq!(c.phase(), DRAIN);
        c.bytes_read();
        c.flushed();
        assert_eq!(c.phase(), DRAIN, "the rest of the old body is not a new head");
        let (_, since) = c.get();
        assert_eq!(c.check(LIMITS, false, since + HEADER), Check::At(since + HEADER + HEADER), "kept like an idle connection");

        c.busy(true);
        c.request_body_ended();
        c.response_ended();
        assert_eq!(c.phase(), FLUSHING);
    }
}
