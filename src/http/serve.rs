//! The accept loop. `axum::serve` sets no TCP_NODELAY (a 40 ms delayed-ACK stall in every
//! tail), has no header-read timeout (slowloris), and does not bound connections; this loop
//! does all three, and keeps idle connections alive longer than a head may take to arrive
//! (`conn_clock`). On shutdown each connection finishes its in-flight request and closes;
//! whatever is still open at the deadline is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::conn_clock::{Check, ClockedBody, ClockedIo, ClockedRequestBody, ConnClock, Limits, Watchdog};

#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// A request's head must arrive within this, from its first byte (a new connection's
    /// first request: from the accept).
    pub header_read_timeout: Duration,
    /// A kept-alive connection waiting for its next request is closed after this.
    pub keep_alive_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub max_connections: usize,
}

/// Binds like `TcpListener::bind` (with `SO_REUSEADDR`, as tokio and std set it on Unix), but
/// with `backlog` queued connections instead of tokio's fixed 1,024: two thousand browsers or
/// supervisors arriving together overflowed that queue, and each dropped connection waited a
/// second for its SYN to be retried.
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken, opts: ServeOptions) {
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let limits = Limits { header: opts.header_read_timeout, keep_alive: opts.keep_alive_timeout };
    // Fewer free slots than this: idle connections get only the header limit.
    let low_water = opts.max_connections / 10;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let clock = ConnClock::new();
        let (on_request, on_response) = (clock.clone(), clock.clone());
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = ClockedRequestBody::wrap(req, &on_request);
                    // The peer address, for handlers that limit per client (`ConnectInfo`, as axum::serve gives).
                    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    req
                })
                .map_response(move |res: axum::response::Response| res.map(|body| ClockedBody::wrap(body, on_response.clone()))),
        );
        // hyper's own header timer would also close idle connections (see `conn_clock`).
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(None);
        let conn = http.serve_connection(TokioIo::new(ClockedIo::new(stream, clock.clone())), service).with_upgrades();
        let stop = shutdown.clone();
        let slots = slots.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            let watchdog = Watchdog::new(clock, limits, slots, low_water);
            tokio::pin!(watchdog);
            let result = tokio::select! {
                // The connection first, then the watchdog: bytes read on this wake-up start a
                // head, and the watchdog times it from them.
                biased;
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    // Finish the request in flight, then close instead of keeping alive.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
                expired = &mut watchdog => {
                    if expired == Check::HeadTimedOut {
                        tracing::debug!(%peer, "request head not received in time; closing the connection");
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(opts.shutdown_timeout, connections.wait()).await.is_err() {
        tracing::warn!("shutdown deadline reached; closing remaining connections");
    } else {
        tracing::info!("all connections drained");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpStream;

    use super::*;

    /// Connects within `within`, or `None` when the kernel kept the handshake waiting.
    async fn connect(addr: SocketAddr, within: Duration) -> Option<TcpStream> {
        tokio::time::timeout(within, TcpStream::connect(addr)).await.ok().and_then(Result::ok)
    }

    #[tokio::test]
    async fn the_listener_queues_as_many_connections_as_its_backlog_and_no_more() {
        // Nothing accepts: connections complete only while the kernel's queue has room.
        let small = listen("127.0.0.1:0".parse().unwrap(), 4).unwrap();
        let addr = small.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(connect(addr, Duration::from_secs(2)).await.expect("room in the backlog"));
        }
        let mut waited = 0;
        for _ in 0..4 {
            match connect(addr, Duration::from_millis(300)).await {
                Some(c) => held.push(c),
                None => waited += 1,
            }
        }
        assert!(waited > 0, "a backlog of 4 took {} connections", held.len());

        let large = listen("127.0.0.1:0".parse().unwrap(), 64).unwrap();
        let addr = large.local_addr().unwrap();
        for _ in 0..48 {
            held.push(connect(addr, Duration::from_secs(2)).await.expect("room in the backlog"));
        }
    }

    /// A server on port 0 with these limits, answering `/` with "ok", `/slow` with a body
    /// that takes 600 ms, and `POST /early` with a 415 that never reads the request's body.
    async fn server(header: Duration, keep_alive: Duration) -> (SocketAddr, CancellationToken) {
        use axum::routing::get;
        use futures::StreamExt;
        let slow = || async {
            let parts = futures::stream::iter(["a", "b", "c"]).then(|p| async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok::<_, std::convert::Infallible>(p)
            });
            axum::body::Body::from_stream(parts)
        };
        let early = || async { (axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, "ok") };
        let router = Router::new().route("/", get(|| async { "ok" })).route("/slow", get(slow)).route("/early", axum::routing::post(early));
        let listener = listen("127.0.0.1:0".parse().unwrap(), 64).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let opts = ServeOptions {
            header_read_timeout: header,
            keep_alive_timeout: keep_alive,
            shutdown_timeout: Duration::from_secs(1),
            max_connections: 16,
        };
        tokio::spawn(serve(listener, router, stop.clone(), opts));
        (addr, stop)
    }

    /// Sends `raw` and reads until the response's end (the body "ok", or a chunked body's
    /// `0\r\n\r\n`); `None` when the connection was closed first.
    async fn exchange(c: &mut TcpStream, raw: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        c.write_all(raw.as_bytes()).await.ok()?;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&got).to_string();
            if text.ends_with("\r\n\r\nok") || text.ends_with("0\r\n\r\n") {
                return Some(text);
            }
            match tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// Whether the server closed the connection within `within`.
    async fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(within, c.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
    }

    const GET: &str = "GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn a_kept_alive_connection_outlives_the_header_timeout_and_closes_after_the_keep_alive_one() {
        let (addr, _stop) = server(Duration::from_millis(200), Duration::from_millis(900)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(exchange(&mut c, GET).await.is_some());
        // Idle for twice the header limit: the next request still goes through on it.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(exchange(&mut c, GET).await.is_some(), "an idle connection was closed at the header timeout");
        // Then idle past the keep-alive limit: closed.
        assert!(!closed_within(&mut c, Duration::from_millis(500)).await, "closed before the keep-alive timeout");
        assert!(closed_within(&mut c, Duration::from_secs(2)).await, "not closed after the keep-alive timeout");
    }

    #[tokio::test]
    async fn a_head_that_trickles_in_is_cut_at_the_header_timeout_counted_from_its_first_byte() {
        use tokio::io::AsyncWriteExt;
        let (addr, _stop) = server(Duration::from_millis(300), Duration::from_secs(10)).await;
        // A connection that sends nothing is closed at the header timeout.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(2)).await);

        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(exchange(&mut c, GET).await.is_some());
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        c.write_all(b"host: x\r\n").await.unwrap();
        assert!(closed_within(&mut c, Duration::from_secs(2)).await, "a head still unfinished after the header timeout");
    }

    #[tokio::test]
    async fn a_body_answered_before_it_was_read_does_not_start_a_head_on_the_kept_alive_connection() {
        let (addr, _stop) = server(Duration::from_millis(200), Duration::from_secs(5)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        // Answered (415) without reading its body: hyper reads and discards the body after the
        // answer, which must not count as the next request's head.
        // Larger than hyper's first read, so part of it is read only after the answer.
        let body = "x".repeat(20_000);
        let req = format!("POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        let got = exchange(&mut c, &req).await.expect("the early answer");
        assert!(got.starts_with("HTTP/1.1 415"), "{got}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(exchange(&mut c, GET).await.is_some(), "the connection was closed as if a head had stalled");
    }

    #[tokio::test]
    async fn a_response_that_takes_longer_than_both_limits_is_not_cut() {
        let (addr, _stop) = server(Duration::from_millis(150), Duration::from_millis(150)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got = exchange(&mut c, "GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("the whole response");
        assert!(got.starts_with("HTTP/1.1 200") && got.contains("\r\nc\r\n"), "{got}");
    }
}
