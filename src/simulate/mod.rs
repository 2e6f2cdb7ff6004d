//! `switchboard simulate`: drives a hub with concurrent simulated calls, each at the pace of
//! a real conversation, signed like VAPI when a secret is given. Also the traffic source of
//! the load test (`script`).

pub mod script;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::HmacSettings;
use crate::vapi::auth::{RequestFacts, sign};

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The hub's webhook URL
    #[arg(long, default_value = "http://127.0.0.1:8080/vapi/webhook")]
    pub url: String,
    /// Concurrent calls
    #[arg(long, default_value_t = 5)]
    pub calls: u64,
    /// Calls each simulated line makes one after another
    #[arg(long, default_value_t = 1)]
    pub rounds: u64,
    /// Speed-up of the conversation pace (2 = twice as fast as real time)
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// VAPI org id of the simulated calls
    #[arg(long, default_value = "demo-org")]
    pub org: String,
    /// Sent as x-vapi-secret
    #[arg(long, env = "SWITCHBOARD_VAPI_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Sign like VAPI's default HMAC credential instead
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<String>,
    /// Where end-of-call reports point their recording URLs
    #[arg(long, default_value = "https://storage.vapi.ai")]
    pub recording_base: String,
    /// Seed of the generator
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Posts one webhook body, signed as configured.
pub struct Poster {
    pub http: reqwest::Client,
    pub url: String,
    /// `url` parsed once: parsing (with IDNA) at every post was a visible share of a load
    /// generator's CPU.
    parsed: Option<reqwest::Url>,
    pub secret: Option<String>,
    pub hmac: Option<HmacSettings>,
}

impl Poster {
    pub fn new(url: &str, secret: Option<String>, hmac_secret: Option<String>) -> Self {
        let http = reqwest::Client::builder().no_proxy().tcp_nodelay(true).pool_max_idle_per_host(256).build().unwrap_or_default();
        Self {
            http,
            url: url.to_string(),
            parsed: reqwest::Url::parse(url).ok(),
            secret,
            hmac: hmac_secret.map(|k| HmacSettings::with_key(k.into_bytes())),
        }
    }

    pub async fn post(&self, body: String) -> Result<reqwest::Response, reqwest::Error> {
        let mut req = match &self.parsed {
            Some(u) => self.http.post(u.clone()),
            None => self.http.post(&self.url),
        }
        .header("content-type", "application/json");
        if let Some(s) = &self.secret {
            req = req.header("x-vapi-secret", s);
        }
        if let Some(h) = &self.hmac {
            let ts = crate::clock::now_ms().to_string();
            let facts = RequestFacts { method: "POST", url: &self.url, now_ms: 0 };
            req = req.header(&h.signature_header, sign(h, body.as_bytes(), &ts, "", &facts)).header(&h.timestamp_header, ts);
        }
        req.body(body).send().await
    }
}

pub async fn run(args: SimulateArgs) -> ExitCode {
    let poster = Arc::new(Poster::new(&args.url, args.secret.clone(), args.hmac_secret.clone()));
    let tally = Arc::new(Tally::default());
    let mut lines = Vec::new();
    for line in 0..args.calls {
        let line_args = Line {
            line,
            rounds: Some(args.rounds),
            speed: args.speed,
            org: args.org.clone(),
            recording_base: args.recording_base.clone(),
            seed: args.seed,
        };
        lines.push(tokio::spawn(drive(poster.clone(), tally.clone(), line_args)));
    }
    for l in lines {
        let _ = l.await;
    }
    let (ok, bad) = (tally.sent.load(Ordering::Relaxed), tally.failed.load(Ordering::Relaxed));
    let _ = writeln!(std::io::stdout(), "simulated {} calls: {ok} webhooks accepted, {bad} failed", args.calls * args.rounds);
    if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Webhooks accepted and failed, across lines.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
}

/// One simulated phone line: calls one after another.
#[derive(Debug, Clone)]
pub struct Line {
    pub line: u64,
    /// Calls to make; `None` goes on until the task is dropped (the demo).
    pub rounds: Option<u64>,
    pub speed: f64,
    pub org: String,
    pub recording_base: String,
    pub seed: u64,
}

/// Plays one line's calls at the pace of real conversations.
pub async fn drive(poster: Arc<Poster>, tally: Arc<Tally>, a: Line) {
    let mut rng = script::Rng::new(a.seed.wrapping_add(a.line * 7919));
    let mut round = 0;
    while a.rounds.is_none_or(|n| round < n) {
        let s = script::call(a.line * 1000 + round, &a.org, crate::clock::now_ms(), &a.recording_base, &mut rng);
        for (gap, msg) in s.messages {
            tokio::time::sleep(Duration::from_secs_f64(gap as f64 / 1000.0 / a.speed.max(0.01))).await;
            match poster.post(msg.to_string()).await {
                Ok(r) if r.status().is_success() => tally.sent.fetch_add(1, Ordering::Relaxed),
                _ => tally.failed.fetch_add(1, Ordering::Relaxed),
            };
        }
        round += 1;
    }
}
