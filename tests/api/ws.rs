//! A supervisor socket client for the tests: connect with a token, send protocol messages,
//! read JSON frames, and see how the server closed the socket.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;

pub struct Supervisor {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What came off the socket.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    Closed(Option<u16>),
}

pub fn ws_url(app: &TestApp, query: &str) -> String {
    format!("{}/ws{query}", app.base.replacen("http://", "ws://", 1))
}

impl Supervisor {
    pub async fn connect(app: &TestApp, token: &str) -> Supervisor {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(app, &format!("?token={token}"))).await.expect("the socket opens");
        Supervisor { ws }
    }

    /// Connects over a socket with a tiny receive buffer, so a client that stops reading
    /// pushes back on the server quickly.
    pub async fn connect_small(app: &TestApp, token: &str) -> Supervisor {
        let addr = app.base.trim_start_matches("http://").to_string();
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let stream = sock.connect(addr.parse().unwrap()).await.unwrap();
        let req = ws_url(app, &format!("?token={token}")).into_client_request().unwrap();
        let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await.expect("the socket opens");
        Supervisor { ws }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn subscribe(&mut self, topic: &str) -> Value {
        self.send(json!({ "type": "subscribe", "topic": topic })).await;
        self.expect("subscribed").await
    }

    pub async fn subscribe_since(&mut self, topic: &str, epoch: &str, seq: u64) -> Value {
        self.send(json!({ "type": "subscribe", "topic": topic, "since": { "epoch": epoch, "seq": seq } })).await;
        self.expect("subscribed").await
    }

    /// The next JSON frame or the close, skipping pings; `None` when nothing came in `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
            match msg {
                Some(Ok(Message::Text(t))) => return Some(Frame::Json(serde_json::from_str(&t).unwrap())),
                Some(Ok(Message::Close(c))) => return Some(Frame::Closed(c.map(|c| u16::from(c.code)))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(Frame::Closed(None)),
            }
        }
    }

    pub async fn next(&mut self) -> Value {
        match self.next_within(Duration::from_secs(5)).await {
            Some(Frame::Json(v)) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame of this type (earlier frames of other types are skipped).
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == kind {
                return v;
            }
            assert_ne!(v["type"], "error", "unexpected error while waiting for {kind}: {v}");
        }
    }

    /// The next `event` frame whose kind is `kind`.
    pub async fn expect_event(&mut self, kind: &str) -> Value {
        loop {
            let v = self.expect("event").await;
            if v["event"]["kind"] == kind {
                return v;
            }
        }
    }

    /// Every event frame that arrives within `wait` of the previous one.
    pub async fn events(&mut self, wait: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(Frame::Json(v)) = self.next_within(wait).await {
            if v["type"] == "event" {
                out.push(v);
            }
        }
        out
    }

    /// Reads until the server closes the socket; returns the close code.
    pub async fn close_code(&mut self, wait: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(Frame::Closed(code)) => return code,
                Some(Frame::Json(_)) => continue,
                None => panic!("the socket was not closed within {wait:?}"),
            }
        }
    }
}
