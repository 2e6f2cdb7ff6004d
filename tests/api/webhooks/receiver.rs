//! A webhook receiver on loopback: records every request, answers with the statuses a test
//! queues, and checks signatures with its own implementation of the Standard Webhooks scheme.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(super) struct Got {
    pub headers: HeaderMap,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_string()
    }
}

#[derive(Clone, Default)]
struct Inbox {
    got: Arc<Mutex<Vec<Got>>>,
    /// Statuses to answer with, in order; 200 once they run out (or `then`).
    answers: Arc<Mutex<VecDeque<u16>>>,
    then: Arc<Mutex<u16>>,
}

/// A webhook receiver on loopback.
pub(super) struct Receiver {
    pub url: String,
    inbox: Inbox,
}

impl Receiver {
    pub async fn start(answers: &[u16], then: u16) -> Receiver {
        let inbox = Inbox::default();
        inbox.answers.lock().unwrap().extend(answers);
        *inbox.then.lock().unwrap() = then;
        let app = axum::Router::new().route("/hook", post(receive)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, inbox }
    }

    pub fn got(&self) -> Vec<Got> {
        self.inbox.got.lock().unwrap().clone()
    }

    pub fn answer_from_now(&self, status: u16) {
        *self.inbox.then.lock().unwrap() = status;
    }

    /// Waits until at least `n` requests arrived (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Got> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "got {} deliveries, expected {n}: {:?}",
                got.len(),
                got.iter().map(Got::kind).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: String) -> StatusCode {
    inbox.got.lock().unwrap().push(Got { headers, body });
    let status = inbox.answers.lock().unwrap().pop_front().unwrap_or(*inbox.then.lock().unwrap());
    StatusCode::from_u16(status).unwrap()
}

/// The receiver's side of the Standard Webhooks scheme, written from the spec, not from the hub.
pub(super) fn verify(secret: &str, got: &Got) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let (id, ts) = (got.header("webhook-id"), got.header("webhook-timestamp"));
    let Ok(ts_secs) = ts.parse::<i64>() else { return false };
    if (switchboard::clock::now_ms() / 1000 - ts_secs).abs() > 300 {
        return false;
    }
    let signed = format!("{id}.{ts}.{}", got.body);
    got.header("webhook-signature").split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|sig| {
        let Ok(bytes) = STANDARD.decode(sig) else { return false };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(signed.as_bytes());
        mac.verify_slice(&bytes).is_ok()
    })
}
