//! The accept loop. `axum::serve` sets no TCP_NODELAY (a 40 ms delayed-ACK stall in every
//! tail), has no header-read timeout (slowloris), and does not bound connections; this loop
//! does all three. On shutdown each connection finishes its in-flight request and closes;
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

#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
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
        // The peer address, for handlers that limit per client (`ConnectInfo`, as axum::serve gives).
        let service = TowerToHyperService::new(router.clone().map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req
        }));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout);
        let conn = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let stop = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    // Finish the request in flight, then close instead of keeping alive.
                    conn.as_mut().graceful_shutdown();
                    conn.await
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
}
