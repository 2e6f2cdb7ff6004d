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
//! The state is shared by the connection's IO (a byte read while idle starts a request's head),
//! the service (a parsed head makes the connection busy) and the response body (its end makes
//! the connection idle). The connection task checks it when its one timer fires, and moves the
//! timer instead of re-arming it per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Waiting for, or reading, a request's head.
const HEAD: u64 = 0;
/// A request is being served (its body read, its response written).
const BUSY: u64 = 1;
/// The response ended; waiting for the next request.
const IDLE: u64 = 2;

/// The phase in the low 2 bits, the milliseconds since `origin` when it began above them.
pub struct ConnClock {
    origin: Instant,
    state: AtomicU64,
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
        Arc::new(Self { origin: Instant::now(), state: AtomicU64::new(HEAD) })
    }

    fn set(&self, phase: u64) {
        self.set_at(phase, Instant::now());
    }

    fn set_at(&self, phase: u64, now: Instant) {
        let ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        self.state.store(ms << 2 | phase, Ordering::Relaxed);
    }

    fn get(&self) -> (u64, Instant) {
        let s = self.state.load(Ordering::Relaxed);
        (s & 3, self.origin + Duration::from_millis(s >> 2))
    }

    /// Bytes arrived: if the connection was idle, a request's head has begun.
    fn bytes_read(&self) {
        self.bytes_read_at(Instant::now());
    }

    fn bytes_read_at(&self, now: Instant) {
        if self.state.load(Ordering::Relaxed) & 3 == IDLE {
            self.set_at(HEAD, now);
        }
    }

    /// A head was parsed and the request is being served.
    pub fn busy(&self) {
        self.set(BUSY);
    }

    /// The response ended.
    fn idle(&self) {
        self.set(IDLE);
    }

    /// Whether the connection has outlived the limit of its phase; a busy one is looked at
    /// again after `header` (a request may take any time; its own limits apply to it).
    pub fn check(&self, header: Duration, keep_alive: Duration, now: Instant) -> Check {
        let (phase, since) = self.get();
        match phase {
            HEAD if now >= since + header => Check::HeadTimedOut,
            HEAD => Check::At(since + header),
            IDLE if now >= since + keep_alive => Check::IdleTimedOut,
            IDLE => Check::At(since + keep_alive),
            _ => Check::At(now + header),
        }
    }
}

/// Resolves when the connection outlived its phase's limit (`HeadTimedOut` or `IdleTimedOut`).
/// Polled with the connection at every wake-up, so a head that begins on an idle connection
/// brings the timer forward at once; otherwise the timer only moves when it fires.
pub struct Watchdog {
    clock: Arc<ConnClock>,
    header: Duration,
    keep_alive: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Watchdog {
    pub fn new(clock: Arc<ConnClock>, header: Duration, keep_alive: Duration) -> Self {
        let timer = Box::pin(tokio::time::sleep_until(clock.origin + header));
        Self { clock, header, keep_alive, timer }
    }
}

impl Future for Watchdog {
    type Output = Check;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Check> {
        let this = self.get_mut();
        let (phase, since) = this.clock.get();
        if phase == HEAD && since + this.header < this.timer.deadline() {
            this.timer.as_mut().reset(since + this.header);
        }
        loop {
            ready!(this.timer.as_mut().poll(cx));
            match this.clock.check(this.header, this.keep_alive, Instant::now()) {
                Check::At(next) => this.timer.as_mut().reset(next),
                expired => return Poll::Ready(expired),
            }
        }
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
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A response body that makes the connection idle once it is done with (hyper drops it after
/// its last frame, or when the connection ends).
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
        self.clock.idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const KEEP_ALIVE: Duration = Duration::from_secs(120);

    #[test]
    fn each_phase_has_its_own_limit_counted_from_when_it_began() {
        let c = ConnClock::new();
        let t0 = c.origin;
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(c.check(HEADER, KEEP_ALIVE, t0), Check::At(at(10)));
        assert_eq!(c.check(HEADER, KEEP_ALIVE, at(10)), Check::HeadTimedOut);

        c.set_at(BUSY, at(1));
        assert_eq!(c.check(HEADER, KEEP_ALIVE, at(300)), Check::At(at(310)), "a request in progress is never cut here");

        c.set_at(IDLE, at(300));
        assert_eq!(c.check(HEADER, KEEP_ALIVE, at(360)), Check::At(at(420)), "idle past the header limit is fine");
        assert_eq!(c.check(HEADER, KEEP_ALIVE, at(420)), Check::IdleTimedOut);

        c.bytes_read_at(at(400));
        assert_eq!(c.check(HEADER, KEEP_ALIVE, at(400)), Check::At(at(410)), "the next head is timed from its first byte");
        c.bytes_read_at(at(405));
        assert_eq!(c.check(HEADER, KEEP_ALIVE, at(410)), Check::HeadTimedOut, "more bytes of the same head do not extend it");
    }
}
