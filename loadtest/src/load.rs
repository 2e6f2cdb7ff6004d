//! The open-loop generator. Request i is due at `start + i / rate`; it is sent then whether or
//! not earlier ones have been answered, each in its own task, and its latency is measured from
//! that *intended* time to the end of the response body, so a stalled server cannot hide its
//! stall by slowing the sender (no coordinated omission). In-flight requests are capped: past
//! the cap a due request is not sent and counts as `overload`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use switchboard::simulate::Poster;
use switchboard::simulate::script::{self, Rng};

/// What a request is, for per-type latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Healthz,
    Partial,
    Final,
    Status,
    ToolCalls,
    EndOfCall,
    Other,
}

impl Kind {
    pub const ALL: [Kind; 7] = [Kind::Healthz, Kind::Partial, Kind::Final, Kind::Status, Kind::ToolCalls, Kind::EndOfCall, Kind::Other];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Healthz => "healthz",
            Kind::Partial => "transcript-partial",
            Kind::Final => "transcript-final",
            Kind::Status => "status-update",
            Kind::ToolCalls => "tool-calls",
            Kind::EndOfCall => "end-of-call-report",
            Kind::Other => "other",
        }
    }

    fn of(msg: &Value) -> Kind {
        let m = &msg["message"];
        match m["type"].as_str().unwrap_or_default() {
            "transcript" if m["transcriptType"].as_str() == Some("final") => Kind::Final,
            "transcript" => Kind::Partial,
            "status-update" => Kind::Status,
            "tool-calls" => Kind::ToolCalls,
            "end-of-call-report" => Kind::EndOfCall,
            _ => Kind::Other,
        }
    }
}

/// One request to send.
pub enum Req {
    Get(Kind),
    Post(Kind, String),
}

/// Where requests come from; called from the generator only, so it may keep state.
pub trait Source: Send {
    fn next(&mut self, i: u64) -> Req;
}

/// `GET /healthz`: the null workload (HTTP, client and runtime, no hub work).
pub struct Healthz;

impl Source for Healthz {
    fn next(&mut self, _i: u64) -> Req {
        Req::Get(Kind::Healthz)
    }
}

/// Many simulated calls live at once; each request advances a random one by one message, in
/// its script's order; a finished call is replaced by a new one.
pub struct CallMix {
    org: String,
    rng: Rng,
    seq: u64,
    live: Vec<VecDeque<Value>>,
    pub calls_started: u64,
}

impl CallMix {
    pub fn new(calls: usize, org: &str, seed: u64) -> Self {
        let mut mix =
            CallMix { org: org.to_string(), rng: Rng::new(seed), seq: seed.wrapping_mul(1_000_000), live: Vec::new(), calls_started: 0 };
        // Join the first calls at a random point of their script, so the mix is at its steady
        // state from the first request (as when a hub starts while calls are in progress).
        for _ in 0..calls.max(1) {
            let mut c = mix.new_call();
            let skip = mix.rng.below(c.len() as u64) as usize;
            c.drain(..skip);
            mix.live.push(c);
        }
        mix
    }

    fn new_call(&mut self) -> VecDeque<Value> {
        self.seq += 1;
        self.calls_started += 1;
        let s = script::call(self.seq, &self.org, switchboard::clock::now_ms(), "https://storage.vapi.ai", &mut self.rng);
        s.messages.into_iter().map(|(_, m)| m).collect()
    }

    fn next_message(&mut self) -> Value {
        let slot = self.rng.below(self.live.len() as u64) as usize;
        loop {
            if let Some(m) = self.live.get_mut(slot).and_then(VecDeque::pop_front) {
                return m;
            }
            let c = self.new_call();
            if let Some(s) = self.live.get_mut(slot) {
                *s = c;
            }
        }
    }
}

impl Source for CallMix {
    fn next(&mut self, _i: u64) -> Req {
        let m = self.next_message();
        Req::Post(Kind::of(&m), m.to_string())
    }
}

/// Only `tool-calls` messages naming the built-in `lookupCustomer`, each with a fresh tool-call
/// id (so the function really runs, no replay) and a distinct timestamp (so no dedup), in the
/// envelopes of a pool of simulated calls.
pub struct ToolCalls {
    envelopes: Vec<(Value, String)>,
    run: u64,
}

impl ToolCalls {
    pub fn new(calls: usize, org: &str, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x7001);
        let envelopes = (0..calls.max(1) as u64)
            .filter_map(|k| {
                let s = script::call(k, org, switchboard::clock::now_ms(), "https://storage.vapi.ai", &mut rng);
                let customer = s.customer.clone();
                s.messages.into_iter().map(|(_, m)| m).find(|m| m["message"]["type"] == "tool-calls").map(|m| (m, customer))
            })
            .collect();
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        ToolCalls { envelopes, run }
    }
}

impl Source for ToolCalls {
    fn next(&mut self, i: u64) -> Req {
        let Some((env, customer)) = self.envelopes.get(i as usize % self.envelopes.len().max(1)) else {
            return Req::Get(Kind::Healthz);
        };
        let mut m = env.clone();
        let item = json!({ "id": format!("lt_{}_{i}", self.run), "type": "function",
                           "function": { "name": "lookupCustomer", "arguments": { "phone": customer } } });
        let msg = &mut m["message"];
        let ts = msg["timestamp"].as_i64().unwrap_or(0);
        msg["timestamp"] = json!(ts + i as i64);
        msg["toolCallList"] = json!([item.clone()]);
        msg["toolCalls"] = json!([item]);
        Req::Post(Kind::ToolCalls, m.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct PhaseSpec {
    pub name: String,
    pub rate: f64,
    pub duration: Duration,
    pub max_requests: u64,
    pub max_in_flight: u64,
    /// How long to wait for stragglers after the last send.
    pub drain: Duration,
}

pub struct Target {
    pub poster: Arc<Poster>,
    pub healthz_url: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn new_hist() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    // 1 µs .. 10 min, 3 significant digits; larger values saturate at the top.
    Histogram::new_with_bounds(1, 600_000_000, 3)
}

struct Shared {
    in_flight: AtomicU64,
    ok: AtomicU64,
    non_2xx: AtomicU64,
    transport: AtomicU64,
    last_done_ns: AtomicU64,
    all: Mutex<Histogram<u64>>,
    by_kind: Mutex<BTreeMap<Kind, Histogram<u64>>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
    error_samples: Mutex<Vec<String>>,
    /// By second of intended send time: every request, and the stored message types only.
    per_sec: Mutex<Vec<(Histogram<u64>, Histogram<u64>)>>,
    /// Per request that ran functions (the hub's `Server-Timing`): the hub's handling minus the
    /// functions' own time, and the client's latency minus it. Exact, not bucket estimates.
    hub_added: Mutex<Histogram<u64>>,
    e2e_added: Mutex<Histogram<u64>>,
    stop_sampler: AtomicBool,
}

impl Shared {
    fn new(seconds: usize) -> Result<Self, hdrhistogram::CreationError> {
        let mut per_sec = Vec::with_capacity(seconds);
        for _ in 0..seconds {
            per_sec.push((new_hist()?, new_hist()?));
        }
        let mut by_kind = BTreeMap::new();
        for k in Kind::ALL {
            by_kind.insert(k, new_hist()?);
        }
        Ok(Shared {
            in_flight: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            non_2xx: AtomicU64::new(0),
            transport: AtomicU64::new(0),
            last_done_ns: AtomicU64::new(0),
            all: Mutex::new(new_hist()?),
            by_kind: Mutex::new(by_kind),
            statuses: Mutex::new(BTreeMap::new()),
            error_samples: Mutex::new(Vec::new()),
            per_sec: Mutex::new(per_sec),
            hub_added: Mutex::new(new_hist()?),
            e2e_added: Mutex::new(new_hist()?),
            stop_sampler: AtomicBool::new(false),
        })
    }

    fn record(&self, kind: Kind, micros: u64, second: usize) {
        let v = micros.max(1);
        lock(&self.all).saturating_record(v);
        if let Some(h) = lock(&self.by_kind).get_mut(&kind) {
            h.saturating_record(v);
        }
        if let Some((all, stored)) = lock(&self.per_sec).get_mut(second) {
            all.saturating_record(v);
            if matches!(kind, Kind::Final | Kind::Status | Kind::ToolCalls | Kind::EndOfCall) {
                stored.saturating_record(v);
            }
        }
    }

    fn sample_error(&self, e: String) {
        let mut s = lock(&self.error_samples);
        if s.len() < 5 && !s.contains(&e) {
            s.push(e);
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |v: u64| v as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// What the client saw in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct ClientResult {
    pub phase: String,
    pub target_rate: f64,
    pub duration_s: f64,
    pub scheduled: u64,
    pub sent: u64,
    /// sent / time from the first due send to the last actual send.
    pub achieved_rate: f64,
    /// 2xx responses / time from start to the last response.
    pub ok_throughput: f64,
    pub ok: u64,
    pub non_2xx: u64,
    pub transport_errors: u64,
    /// Due but not sent: the in-flight cap was reached.
    pub overload_dropped: u64,
    /// Due but not sent: the phase's wall-clock cap passed while the generator was behind.
    pub not_sent_time_cap: u64,
    /// Still unanswered when the drain deadline passed.
    pub unfinished: u64,
    pub max_in_flight_seen: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub error_samples: Vec<String>,
    /// Every request that got an HTTP response (any status), from intended send time.
    pub latency: Option<Latency>,
    pub by_type: BTreeMap<String, Latency>,
    /// How late the generator dispatched requests against their schedule (the timer has 1 ms
    /// granularity, so up to ~1 ms is expected); already included in `latency`.
    pub dispatch_lag: Option<Latency>,
    /// Per second of intended send time.
    pub timeline: Vec<Second>,
    /// Sampled once a second during the phase.
    pub resources: Vec<Resources>,
    /// Requests that ran functions: what the hub added to the functions' own time, per
    /// request, from its `Server-Timing` (hub handling − functions; client latency − functions).
    pub hub_added: Option<Latency>,
    pub e2e_added: Option<Latency>,
}

/// Runs one open-loop phase to completion (bounded by count, wall clock and the drain).
pub async fn run(
    spec: &PhaseSpec,
    target: &Target,
    source: &mut dyn Source,
    hub_pid: Option<u32>,
) -> Result<ClientResult, hdrhistogram::CreationError> {
    let shared = Arc::new(Shared::new(spec.duration.as_secs_f64().ceil() as usize + 3)?);
    let sampler = tokio::spawn(sample_resources(shared.clone(), hub_pid, spec.duration + spec.drain + Duration::from_secs(10)));
    let mut lag = new_hist()?;
    let scheduled = ((spec.rate * spec.duration.as_secs_f64()).round() as u64).min(spec.max_requests);
    let interval_ns = 1e9 / spec.rate;
    let start = Instant::now() + Duration::from_millis(5);
    // A generator that fell behind may catch up for a moment, not forever.
    let hard_stop = start + spec.duration + Duration::from_secs(2);
    let (mut sent, mut dropped, mut max_seen) = (0u64, 0u64, 0u64);
    let mut i = 0u64;
    let mut last_send = start;
    'schedule: while i < scheduled {
        let now = Instant::now();
        if now >= hard_stop {
            break;
        }
        while i < scheduled {
            let intended = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
            if intended > now {
                tokio::time::sleep_until(intended.into()).await;
                continue 'schedule;
            }
            let req = source.next(i);
            i += 1;
            let flying = shared.in_flight.load(Ordering::Relaxed);
            max_seen = max_seen.max(flying);
            if flying >= spec.max_in_flight {
                dropped += 1;
                continue;
            }
            lag.saturating_record((Instant::now().saturating_duration_since(intended).as_micros() as u64).max(1));
            shared.in_flight.fetch_add(1, Ordering::Relaxed);
            sent += 1;
            last_send = Instant::now();
            let second = (i.saturating_sub(1) as f64 / spec.rate) as usize;
            let (sh, poster, healthz) = (shared.clone(), target.poster.clone(), target.healthz_url.clone());
            tokio::spawn(async move {
                let (kind, resp) = match req {
                    Req::Get(k) => (k, poster.http.get(&healthz).send().await),
                    Req::Post(k, body) => (k, poster.post(body).await),
                };
                match resp {
                    Ok(r) => {
                        let status = r.status();
                        let timing = r.headers().get("server-timing").and_then(|v| v.to_str().ok()).and_then(server_timing);
                        let body = r.bytes().await;
                        let micros = intended.elapsed().as_micros() as u64;
                        match body {
                            Ok(_) => {
                                sh.record(kind, micros, second);
                                if let Some((function_us, hub_us)) = timing {
                                    lock(&sh.hub_added).saturating_record(hub_us.saturating_sub(function_us).max(1));
                                    lock(&sh.e2e_added).saturating_record(micros.saturating_sub(function_us).max(1));
                                }
                                *lock(&sh.statuses).entry(status.as_u16()).or_insert(0) += 1;
                                if status.is_success() {
                                    sh.ok.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    sh.non_2xx.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) => {
                                sh.transport.fetch_add(1, Ordering::Relaxed);
                                sh.sample_error(format!("reading the body: {e}"));
                            }
                        }
                    }
                    Err(e) => {
                        sh.transport.fetch_add(1, Ordering::Relaxed);
                        let mut msg = e.to_string();
                        let mut src = std::error::Error::source(&e);
                        while let Some(s) = src {
                            msg.push_str(&format!(": {s}"));
                            src = s.source();
                        }
                        sh.sample_error(msg);
                    }
                }
                sh.last_done_ns.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                sh.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // A burst of catch-up sends must not starve the runtime.
        tokio::task::yield_now().await;
    }
    let gen_secs = last_send.saturating_duration_since(start).as_secs_f64().max(1.0 / spec.rate);
    let not_sent = scheduled - i;
    let drain_until = Instant::now() + spec.drain;
    while shared.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unfinished = shared.in_flight.load(Ordering::Relaxed);
    shared.stop_sampler.store(true, Ordering::Relaxed);
    let resources = sampler.await.unwrap_or_default();
    let timeline = lock(&shared.per_sec)
        .iter()
        .enumerate()
        .filter(|(_, (all, _))| !all.is_empty())
        .map(|(second, (all, stored))| Second {
            second,
            answered: all.len(),
            p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
            max_ms: all.max() as f64 / 1000.0,
            stored_p99_ms: (!stored.is_empty()).then(|| stored.value_at_quantile(0.99) as f64 / 1000.0),
        })
        .collect();
    let ok = shared.ok.load(Ordering::Relaxed);
    let last_done = Duration::from_nanos(shared.last_done_ns.load(Ordering::Relaxed)).as_secs_f64();
    let all = lock(&shared.all).clone();
    let by_type =
        lock(&shared.by_kind).iter().filter(|(_, h)| !h.is_empty()).map(|(k, h)| (k.name().to_string(), Latency::of(h))).collect();
    Ok(ClientResult {
        phase: spec.name.clone(),
        target_rate: spec.rate,
        duration_s: spec.duration.as_secs_f64(),
        scheduled,
        sent,
        achieved_rate: if sent > 1 { (sent - 1) as f64 / gen_secs } else { sent as f64 / gen_secs },
        ok_throughput: if last_done > 0.0 { ok as f64 / last_done } else { 0.0 },
        ok,
        non_2xx: shared.non_2xx.load(Ordering::Relaxed),
        transport_errors: shared.transport.load(Ordering::Relaxed),
        overload_dropped: dropped,
        not_sent_time_cap: not_sent,
        unfinished,
        max_in_flight_seen: max_seen,
        statuses: lock(&shared.statuses).clone(),
        error_samples: lock(&shared.error_samples).clone(),
        latency: (!all.is_empty()).then(|| Latency::of(&all)),
        by_type,
        dispatch_lag: (!lag.is_empty()).then(|| Latency::of(&lag)),
        timeline,
        resources,
        hub_added: Some(lock(&shared.hub_added).clone()).filter(|h| !h.is_empty()).map(|h| Latency::of(&h)),
        e2e_added: Some(lock(&shared.e2e_added).clone()).filter(|h| !h.is_empty()).map(|h| Latency::of(&h)),
    })
}

/// The hub's `Server-Timing` on a message that ran functions: `fn;dur=…, hub;dur=…` (ms), as
/// (functions' own time, hub's whole handling) in microseconds.
fn server_timing(header: &str) -> Option<(u64, u64)> {
    let dur = |name: &str| -> Option<u64> {
        let metric = header.split(',').map(str::trim).find(|m| m.split(';').next() == Some(name))?;
        let ms: f64 = metric.split(';').find_map(|p| p.trim().strip_prefix("dur="))?.parse().ok()?;
        Some((ms * 1000.0).round() as u64)
    };
    Some((dur("fn")?, dur("hub")?))
}

/// Once a second until the phase ends: requests in flight and the hub's RSS.
async fn sample_resources(shared: Arc<Shared>, hub_pid: Option<u32>, cap: Duration) -> Vec<Resources> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !shared.stop_sampler.load(Ordering::Relaxed) && started.elapsed() < cap {
        tick.tick().await;
        out.push(Resources {
            t_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            in_flight: shared.in_flight.load(Ordering::Relaxed),
            hub_rss_mib: hub_pid.and_then(|p| crate::hub::sample(&p.to_string())).map(|s| (s.rss_kib as f64 / 1024.0).round()),
        });
    }
    out
}

/// Latency of the requests due in one second of the phase.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub second: usize,
    pub answered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// p99 of the message types the hub stores (finals, status, tool-calls, end-of-call).
    pub stored_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub t_s: f64,
    pub in_flight: u64,
    pub hub_rss_mib: Option<f64>,
}
