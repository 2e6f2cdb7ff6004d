//! `loadtest recording`: does a recording download keep the hub's memory flat? A local server
//! serves generated audio of each size (default 5 MB and 50 MB); the hub downloads each one
//! after an end-of-call report names it, while its RSS is sampled every 20 ms from `/proc`. The
//! peak growth over the RSS just before the report is the number; flat means the 50 MB file
//! costs about what the 5 MB one does. Prints a table and writes JSON.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use futures::stream;
use serde::Serialize;

use crate::Res;
use crate::hub::{self, Hub};
use crate::report::{Machine, machine, write_named};

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct RecordingArgs {
    /// File sizes to download, in MB (comma-separated)
    #[arg(long, default_value = "5,50", value_delimiter = ',')]
    pub sizes_mb: Vec<u64>,
    /// The hub binary
    #[arg(long, default_value = "target/release/switchboard")]
    pub hub_bin: PathBuf,
    /// Where the JSON goes
    #[arg(long, default_value = "loadtest/results")]
    pub out: PathBuf,
    /// Longest one download may take before the run gives up, seconds
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Download {
    pub size_bytes: u64,
    pub seconds: f64,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_growth_kib: u64,
    pub state: String,
    /// What the hub stored, per its API (must equal `size_bytes`).
    pub stored_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub started_at_unix: u64,
    pub machine: Machine,
    pub downloads: Vec<Download>,
    pub notes: Vec<String>,
}

/// Deterministic bytes, streamed in 64 KiB chunks so the server side stays small too.
fn body(size: u64) -> axum::body::Body {
    let chunk = Bytes::from((0..65_536u32).map(|i| (i.wrapping_mul(31) % 251) as u8).collect::<Vec<_>>());
    let chunks = size.div_ceil(65_536);
    let s = stream::iter((0..chunks).map(move |i| {
        let left = size - i * 65_536;
        Ok::<_, std::io::Error>(chunk.slice(..left.min(65_536) as usize))
    }));
    axum::body::Body::from_stream(s)
}

async fn audio_server() -> Res<String> {
    let app = axum::Router::new().route(
        "/{mb}",
        get(|axum::extract::Path(name): axum::extract::Path<String>| async move {
            let size = name.trim_end_matches(".wav").parse::<u64>().unwrap_or(1) * 1_000_000;
            ([(header::CONTENT_TYPE, "audio/wav".to_string()), (header::CONTENT_LENGTH, size.to_string())], body(size)).into_response()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(base)
}

pub async fn run(args: RecordingArgs) -> Res<()> {
    let started_at_unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let files = audio_server().await?;
    let config = std::env::temp_dir().join(format!("switchboard-loadtest-recording-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[recordings]\nallow_http = true\nallowed_hosts = [\"127.0.0.1\"]\nallow_loopback = true\nmax_bytes = 1000000000\n",
    )?;
    let env = vec![("SWITCHBOARD_CONFIG".to_string(), config.display().to_string())];
    let hub = Hub::spawn(&args.hub_bin, &client, None, false, &env).await?;
    let token = hub.supervisor_token()?;
    let pid = hub.pid.to_string();
    let mut downloads = Vec::new();
    for (i, mb) in args.sizes_mb.iter().enumerate() {
        let call = format!("5e1d0000-0000-4000-8000-{:012}", i);
        // Settle first: the numbers are growth over what the hub holds at rest.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = hub::sample(&pid).map(|s| s.rss_kib).unwrap_or(0);
        let report = serde_json::json!({ "message": {
            "type": "end-of-call-report", "timestamp": switchboard::clock::now_ms(), "endedReason": "customer-ended-call",
            "call": { "id": call, "orgId": "loadtest" },
            "artifact": { "recording": { "mono": { "combinedUrl": format!("{files}/{mb}.wav") } } },
        }});
        let t0 = Instant::now();
        let r = client.post(format!("{}/vapi/webhook", hub.base_url)).json(&report).send().await?;
        if !r.status().is_success() {
            return Err(format!("the report was answered {}", r.status()).into());
        }
        let (mut peak, mut state, mut stored_bytes) = (before, String::from("pending"), None);
        let mut polled = Instant::now();
        while t0.elapsed() < Duration::from_secs(args.timeout_s) {
            if let Some(s) = hub::sample(&pid) {
                peak = peak.max(s.rss_kib);
            }
            if polled.elapsed() > Duration::from_millis(200) {
                polled = Instant::now();
                let v: serde_json::Value =
                    client.get(format!("{}/api/calls/{call}", hub.base_url)).bearer_auth(&token).send().await?.json().await?;
                state = v["recordings"][0]["state"].as_str().unwrap_or("pending").to_string();
                stored_bytes = v["recordings"][0]["size_bytes"].as_u64();
                if state != "pending" {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        downloads.push(Download {
            size_bytes: mb * 1_000_000,
            seconds: t0.elapsed().as_secs_f64(),
            rss_before_kib: before,
            rss_peak_kib: peak,
            rss_growth_kib: peak.saturating_sub(before),
            state,
            stored_bytes,
        });
    }
    let (exit, _) = hub.finish().await?;
    let _ = std::fs::remove_file(&config);
    let report = Report {
        scenario: "recording",
        started_at_unix,
        machine: machine(hub::clock_ticks()),
        downloads,
        notes: vec![
            format!("hub exit: {exit}"),
            "RSS sampled every 20 ms from /proc/<pid>/status (VmRSS); growth = peak during the download - RSS just before the report"
                .into(),
            "the audio server streams generated bytes in 64 KiB chunks from the same process as the sampler (loopback)".into(),
        ],
    };
    println!("\nrecording download memory (hub RSS, KiB)");
    println!("{:>10} {:>9} {:>10} {:>10} {:>10} {:>8} {:>12}", "size MB", "seconds", "before", "peak", "growth", "state", "stored B");
    for d in &report.downloads {
        println!(
            "{:>10} {:>9.2} {:>10} {:>10} {:>10} {:>8} {:>12}",
            d.size_bytes / 1_000_000,
            d.seconds,
            d.rss_before_kib,
            d.rss_peak_kib,
            d.rss_growth_kib,
            d.state,
            d.stored_bytes.map_or("-".into(), |b| b.to_string())
        );
    }
    let (stamped, _) = write_named(&args.out, report.scenario, started_at_unix, &report)?;
    println!("\nwrote {}", stamped.display());
    Ok(())
}
