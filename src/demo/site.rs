//! The demo's two stand-ins: a customer's website on its own origin (the demo page, whose
//! script tag loads the widget from the hub — the cross-origin path a real site takes) and a
//! recording host serving the audio the simulated end-of-call reports point at.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::app::AppState;

pub struct RecordingHost {
    /// `http://127.0.0.1:PORT/recordings`: the simulated reports append `/<call>-mono.wav`.
    pub base: String,
    pub task: JoinHandle<()>,
}

/// Serves a short generated WAV for any `/recordings/<name>.wav`.
pub async fn recording_host() -> std::io::Result<RecordingHost> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}/recordings", listener.local_addr()?);
    let audio = bytes::Bytes::from(chime_wav());
    let app = Router::new().route(
        "/recordings/{name}",
        get(move |Path(name): Path<String>| {
            let audio = audio.clone();
            async move {
                if !name.ends_with(".wav") {
                    return StatusCode::NOT_FOUND.into_response();
                }
                ([(header::CONTENT_TYPE, "audio/wav")], audio).into_response()
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(RecordingHost { base, task })
}

/// The customer site: `/` is the demo page with its script tag pointed at the hub.
pub async fn serve_site(listener: TcpListener, app: Arc<AppState>, hub: String) {
    let router = Router::new().route("/", get(page)).route("/{file}", get(file)).with_state((app, Arc::new(hub)));
    let _ = axum::serve(listener, router).await;
}

type SiteState = (Arc<AppState>, Arc<String>);

async fn page(State((app, hub)): State<SiteState>) -> Response {
    let Some(asset) = app.assets.get("demo/index.html").await else { return StatusCode::NOT_FOUND.into_response() };
    let html = String::from_utf8_lossy(&asset.bytes).replace("src=\"/widget.js\"", &format!("src=\"{hub}/widget.js\""));
    let csp = format!(
        "default-src 'none'; script-src 'self' {hub}; style-src 'self'; img-src 'self' data:; connect-src {hub}; base-uri 'none'; form-action 'none'"
    );
    let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn file(State((app, _)): State<SiteState>, Path(name): Path<String>) -> Response {
    match app.assets.get(&format!("demo/{name}")).await {
        Some(a) => ([(header::CONTENT_TYPE, a.content_type)], a.bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Four seconds of a soft two-note chime, 8 kHz mono 16-bit PCM: something a player can play
/// and a person can hear, made here rather than shipped as a file.
fn chime_wav() -> Vec<u8> {
    const RATE: u32 = 8000;
    let n = RATE * 4;
    let mut out = Vec::with_capacity(44 + n as usize * 2);
    let mut put = |b: &[u8]| out.extend_from_slice(b);
    put(b"RIFF");
    put(&(36 + n * 2).to_le_bytes());
    put(b"WAVEfmt ");
    put(&16u32.to_le_bytes());
    put(&1u16.to_le_bytes());
    put(&1u16.to_le_bytes());
    put(&RATE.to_le_bytes());
    put(&(RATE * 2).to_le_bytes());
    put(&2u16.to_le_bytes());
    put(&16u16.to_le_bytes());
    put(b"data");
    put(&(n * 2).to_le_bytes());
    for i in 0..n {
        let t = f64::from(i) / f64::from(RATE);
        let (freq, start) = if t < 2.0 { (659.25, 0.0) } else { (523.25, 2.0) };
        let envelope = (-(t - start) * 2.5).exp();
        let sample = (2.0 * std::f64::consts::PI * freq * t).sin() * envelope * 6000.0;
        out.extend_from_slice(&(sample as i16).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_chime_is_a_wav_of_four_seconds() {
        let w = super::chime_wav();
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[8..12], b"WAVE");
        assert_eq!(w.len(), 44 + 8000 * 4 * 2);
    }
}
