//! `chat`: K concurrent chat streams through the hub against the mock model, each set against
//! K streams straight to the mock with the same directive in the same run. Per stream: time
//! from sending the request to the first content (TTFB) and the gaps between content events;
//! the text must equal the mock's answer and the hub's stream must end with exactly one `done`.
//! See loadtest/README.md (§chat).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::Res;
use crate::chat_proc::Stack;
use crate::chat_report::{self, Compare, PhaseResult, Report};
use crate::hub;
use crate::load::Latency;

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct ChatArgs {
    /// Concurrent streams of the zero-delay rounds, comma-separated (0 skips the mode)
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,500")]
    pub zero_k: Vec<usize>,
    /// Concurrent streams of the paced rounds (--chunks x --delay-ms), comma-separated (0 skips the mode)
    #[arg(long, value_delimiter = ',', default_value = "1,100,500,1000,2000")]
    pub paced_k: Vec<usize>,
    /// Content chunks per answer (the mock's `[mock:chunks=N]`)
    #[arg(long, default_value_t = 64)]
    pub chunks: u32,
    /// Gap before each content chunk of the paced rounds, ms (`[mock:delay_ms=N]`)
    #[arg(long, default_value_t = 20)]
    pub delay_ms: u64,
    /// The switchboard binary: runs `mock-llm` and `serve`
    #[arg(long, default_value = "target/release/switchboard")]
    pub hub_bin: PathBuf,
    /// Directory for the JSON results
    #[arg(long, default_value = "loadtest/results")]
    pub out: PathBuf,
    /// Requests being set up at once (from send to response headers); the rest wait their turn
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// One stream's limit from send to its end, seconds; past it the stream counts as lost
    #[arg(long, default_value_t = 60.0)]
    pub stream_timeout: f64,
    /// One phase's limit (session creation and streams each), seconds; streams still open are aborted and lost
    #[arg(long, default_value_t = 180.0)]
    pub phase_timeout: f64,
    /// Pause between phases, seconds
    #[arg(long, default_value_t = 1.0)]
    pub pause: f64,
    /// Zero-delay: a phase with fewer streams than this runs rounds of K (one after the other) until it has this many
    #[arg(long, default_value_t = 200)]
    pub min_streams_zero: usize,
    /// Paced: the same (a round takes chunks x delay, ~1.3 s); 1 = one round whatever K
    #[arg(long, default_value_t = 20)]
    pub min_streams_paced: usize,
    /// Paced streams with steady arrivals: K kept open, their starts spread over one answer's
    /// length (chunks x delay), each lane sending again as its answer ends (0 skips the mode)
    #[arg(long, value_delimiter = ',', default_value = "500")]
    pub steady_k: Vec<usize>,
    /// Streams each steady lane runs back to back; the first lap is the ramp and is not timed
    #[arg(long, default_value_t = 3)]
    pub steady_laps: usize,
    /// Unreported zero-delay streams, direct and through the hub, before the first round (0 skips)
    #[arg(long, default_value_t = 20)]
    pub warmup_streams: usize,
    /// Worker threads of the load generator's runtime
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Keep the temp directory (database, hub.log, mock.log)
    #[arg(long)]
    pub keep_temp: bool,
}

const MAX_K: usize = 10_000;

fn validate(a: &ChatArgs) -> Res<()> {
    if a.zero_k.iter().chain(&a.paced_k).chain(&a.steady_k).any(|k| *k > MAX_K) {
        return Err(format!("every K must be at most {MAX_K}").into());
    }
    if !(1..=100).contains(&a.steady_laps) {
        return Err("--steady-laps must be in [1, 100]".into());
    }
    if a.steady_k.iter().any(|k| *k > 0) && a.delay_ms == 0 {
        return Err("--steady-k needs --delay-ms > 0: its starts are spread over one paced answer".into());
    }
    if a.zero_k.iter().chain(&a.paced_k).chain(&a.steady_k).all(|k| *k == 0) {
        return Err("nothing to run: every K is 0".into());
    }
    if !(1..=1000).contains(&a.chunks) || a.delay_ms > 1000 {
        return Err("--chunks must be in [1, 1000], --delay-ms in [0, 1000]".into());
    }
    let ok_secs = |d: f64| d.is_finite() && d > 0.0 && d <= 600.0;
    if !ok_secs(a.stream_timeout) || !ok_secs(a.phase_timeout) || !(0.0..=60.0).contains(&a.pause) {
        return Err("--stream-timeout and --phase-timeout must be in (0, 600] s, --pause in [0, 60]".into());
    }
    if a.connect_concurrency == 0 || a.connect_concurrency > MAX_K || a.warmup_streams > 1000 {
        return Err("--connect-concurrency must be in [1, 10000], --warmup-streams at most 1000".into());
    }
    if a.min_streams_zero > 5000 || a.min_streams_paced > 5000 {
        return Err("--min-streams-zero and --min-streams-paced must be at most 5000".into());
    }
    Ok(())
}

/// One pacing of the mock, e.g. zero-delay or 64 chunks x 20 ms.
#[derive(Debug, Clone)]
pub struct Mode {
    pub name: &'static str,
    pub delay_ms: u64,
    pub ks: Vec<usize>,
    /// A phase runs rounds of K streams until it has at least this many.
    pub min_streams: usize,
    /// The user message: the mock's directives, which the hub forwards as user text.
    pub content: String,
    pub arrival: Arrival,
}

/// How a phase's streams are sent.
#[derive(Debug, Clone, Copy)]
pub enum Arrival {
    /// All K at once (a thundering herd), in rounds until `min_streams`.
    Burst,
    /// K lanes started evenly over `spread`, each running `laps` streams back to back.
    Steady { laps: usize, spread: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    Direct,
    Hub,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Hub => "hub",
        }
    }
}

struct Ctx {
    client: reqwest::Client,
    mock_url: String,
    hub_base: String,
    setup: Semaphore,
    stream_timeout: Duration,
    phase_timeout: Duration,
    /// Streams whose headers arrived and that have not ended, and the most seen in a phase.
    open: AtomicU64,
    peak_open: AtomicU64,
}

/// Decrements `open` when a stream ends, however it ends.
struct OpenGuard<'a>(&'a AtomicU64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny SSE parser: lines, blank line ends an event, `:` comments, `data:` lines joined by \n.

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    cur: SseEvent,
    has_field: bool,
    pub comments: u64,
}

impl SseParser {
    /// Feeds bytes; complete events are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.buf[start..start + pos];
            start += pos + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                if self.has_field {
                    out.push(std::mem::take(&mut self.cur));
                }
                self.has_field = false;
                continue;
            }
            if line[0] == b':' {
                self.comments += 1;
                continue;
            }
            let line = String::from_utf8_lossy(line);
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            self.has_field = true;
            match field {
                "event" => self.cur.event = Some(value.to_string()),
                "id" => self.cur.id = Some(value.to_string()),
                "data" => {
                    if !self.cur.data.is_empty() {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                }
                _ => {}
            }
        }
        self.buf.drain(..start);
    }
}

// ---------------------------------------------------------------------------------------------
// One stream.

/// What one stream saw. Times in µs from sending the request.
#[derive(Debug, Default)]
struct StreamOut {
    failure: Option<String>,
    detail: Option<String>,
    headers_us: Option<u64>,
    ttfb_us: Option<u64>,
    gaps_us: Vec<u64>,
    /// From the last content to the end marker (`[DONE]`, or the hub's `done`).
    tail_us: Option<u64>,
    content_events: u64,
    text: String,
    sent_at: Option<Instant>,
    headers_at: Option<Instant>,
}

impl StreamOut {
    fn failed(code: impl Into<String>, detail: impl Into<String>) -> Self {
        StreamOut { failure: Some(code.into()), detail: Some(detail.into()), ..Default::default() }
    }
}

#[derive(Default)]
struct Acc {
    first: Option<Instant>,
    last: Option<Instant>,
    gaps: Vec<u64>,
    text: String,
    content_events: u64,
    ends: u32,
    end_at: Option<Instant>,
    failure: Option<(String, String)>,
    /// The hub's ids `<run>:<n>`: one run, n strictly increasing.
    run: Option<String>,
    last_n: Option<u64>,
}

impl Acc {
    fn content(&mut self, at: Instant, piece: &str) {
        if piece.is_empty() {
            return;
        }
        if let Some(prev) = self.last {
            self.gaps.push((at.saturating_duration_since(prev).as_micros() as u64).max(1));
        }
        self.first.get_or_insert(at);
        self.last = Some(at);
        self.text.push_str(piece);
        self.content_events += 1;
    }

    fn fail(&mut self, code: &str, detail: String) {
        if self.failure.is_none() {
            self.failure = Some((code.to_string(), detail));
        }
    }

    fn end(&mut self, at: Instant) {
        self.ends += 1;
        if self.ends == 1 {
            self.end_at = Some(at);
        }
    }

    fn direct_event(&mut self, at: Instant, ev: &SseEvent) {
        if self.ends > 0 {
            return self.fail("event_after_end", format!("after [DONE]: {:.80}", ev.data));
        }
        if ev.data == "[DONE]" {
            return self.end(at);
        }
        let v: Value = match serde_json::from_str(&ev.data) {
            Ok(v) => v,
            Err(e) => return self.fail("bad_json", format!("{e}: {:.80}", ev.data)),
        };
        if v.get("error").is_some() {
            return self.fail("upstream_error", format!("{:.120}", ev.data));
        }
        let choice = &v["choices"][0];
        if let Some(c) = choice["delta"]["content"].as_str() {
            self.content(at, c);
        }
        if let Some(f) = choice["finish_reason"].as_str()
            && f != "stop"
        {
            self.fail("finish_reason", f.to_string());
        }
    }

    fn hub_event(&mut self, at: Instant, ev: &SseEvent) {
        if self.ends > 0 {
            return self.fail("event_after_done", format!("{:?} after done", ev.event));
        }
        if let Some(id) = &ev.id {
            match id.rsplit_once(':').map(|(run, n)| (run, n.parse::<u64>())) {
                Some((run, Ok(n))) => {
                    if self.run.get_or_insert_with(|| run.to_string()) != run {
                        self.fail("id_order", format!("run changed to {run}"));
                    }
                    if self.last_n.is_some_and(|last| n <= last) {
                        self.fail("id_order", format!("id {n} after {:?}", self.last_n));
                    }
                    self.last_n = Some(n);
                }
                _ => self.fail("id_order", format!("bad id {id:?}")),
            }
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
        match ev.event.as_deref() {
            Some("delta") => match v["content"].as_str() {
                Some(c) => self.content(at, c),
                None => self.fail("bad_delta", format!("{:.80}", ev.data)),
            },
            Some("done") => {
                self.end(at);
                if v["finish_reason"].as_str() != Some("stop") {
                    self.fail("finish_reason", format!("{:.120}", ev.data));
                }
            }
            Some("error") => {
                let code = v["error"]["code"].as_str().unwrap_or("?").to_string();
                self.fail(&format!("error_event:{code}"), format!("{:.160}", ev.data));
            }
            other => self.fail("unexpected_event", format!("{other:?}: {:.80}", ev.data)),
        }
    }
}

/// Sends one request and reads its stream to the end. `gated`: wait for a setup permit first
/// and hold it until the headers arrive (`--connect-concurrency`). `expected`: the text the
/// stream must carry (None: just report it).
async fn one_stream(ctx: &Ctx, path: Path, req: reqwest::RequestBuilder, gated: bool, expected: Option<&str>) -> StreamOut {
    let permit = if gated { ctx.setup.acquire().await.ok() } else { None };
    let t0 = Instant::now();
    let us = |at: Instant| at.saturating_duration_since(t0).as_micros() as u64;
    let work = async {
        let resp = req.send().await;
        drop(permit);
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => return StreamOut::failed("transport", error_chain(&e)),
        };
        let headers_at = Instant::now();
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            return StreamOut::failed(format!("http_{status}"), format!("{body:.160}"));
        }
        let now_open = ctx.open.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.peak_open.fetch_max(now_open, Ordering::Relaxed);
        let _open = OpenGuard(&ctx.open);
        let mut parser = SseParser::default();
        let mut acc = Acc::default();
        let mut events = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    let at = Instant::now();
                    parser.push(&bytes, &mut events);
                    for ev in events.drain(..) {
                        match path {
                            Path::Direct => acc.direct_event(at, &ev),
                            Path::Hub => acc.hub_event(at, &ev),
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    acc.fail("transport", format!("mid-stream: {}", error_chain(&e)));
                    break;
                }
            }
        }
        let mut out = StreamOut {
            sent_at: Some(t0),
            headers_at: Some(headers_at),
            headers_us: Some(us(headers_at)),
            ttfb_us: acc.first.map(us),
            gaps_us: std::mem::take(&mut acc.gaps),
            tail_us: match (acc.last, acc.end_at) {
                (Some(l), Some(e)) => Some(e.saturating_duration_since(l).as_micros() as u64),
                _ => None,
            },
            content_events: acc.content_events,
            ..Default::default()
        };
        if let Some((code, detail)) = acc.failure.take() {
            out.failure = Some(code);
            out.detail = Some(detail);
        } else if acc.ends == 0 {
            out.failure = Some(if path == Path::Hub { "no_done" } else { "no_[DONE]" }.into());
            out.detail = Some(format!("stream ended after {} chars", acc.text.len()));
        } else if acc.ends > 1 {
            out.failure = Some("multiple_done".into());
            out.detail = Some(format!("{} end events", acc.ends));
        } else if let Some(exp) = expected
            && acc.text != exp
        {
            out.failure = Some("text_mismatch".into());
            let common = acc.text.bytes().zip(exp.bytes()).take_while(|(a, b)| a == b).count();
            out.detail = Some(format!("got {} chars, expected {}; first difference at byte {common}", acc.text.len(), exp.len()));
        }
        out.text = acc.text;
        out
    };
    match tokio::time::timeout(ctx.stream_timeout, work).await {
        Ok(out) => out,
        Err(_) => StreamOut::failed("timeout", format!("stream not finished within {:?}", ctx.stream_timeout)),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn direct_request(ctx: &Ctx, content: &str) -> reqwest::RequestBuilder {
    // What the hub sends, minus its system prompt: the mock's answer depends only on the directives.
    let body = json!({
        "model": "mock-model",
        "messages": [{"role": "user", "content": content}],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    ctx.client.post(&ctx.mock_url).json(&body)
}

fn hub_request(ctx: &Ctx, session: &str, content: &str) -> reqwest::RequestBuilder {
    ctx.client
        .post(format!("{}/api/chat/sessions/{session}/messages", ctx.hub_base))
        .header("accept", "text/event-stream")
        .json(&json!({ "content": content }))
}

async fn create_session(ctx: &Ctx) -> Result<String, String> {
    let _permit = ctx.setup.acquire().await;
    let r = ctx
        .client
        .post(format!("{}/api/chat/sessions", ctx.hub_base))
        .json(&json!({}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    let status = r.status();
    let body = r.text().await.map_err(|e| error_chain(&e))?;
    if !status.is_success() {
        return Err(format!("{status}: {body:.160}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    v["session_id"].as_str().map(str::to_string).ok_or_else(|| format!("no session_id in {body:.160}"))
}

// ---------------------------------------------------------------------------------------------
// One phase: K streams on one path.

fn new_hist() -> Res<Histogram<u64>> {
    // 1 µs .. 10 min, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

struct Probe {
    hub_pid: Option<u32>,
    mock_pid: Option<u32>,
    ticks: f64,
    nproc: usize,
}

struct ProbeBefore {
    at: Instant,
    hub: Option<hub::ProcSample>,
    hub_threads: BTreeMap<u64, hub::ThreadSample>,
    mock: Option<hub::ProcSample>,
    me: Option<hub::ProcSample>,
    sys: Option<hub::SysCpu>,
}

fn pid_sample(pid: Option<u32>) -> Option<hub::ProcSample> {
    pid.and_then(|p| hub::sample(&p.to_string()))
}

impl Probe {
    fn before(&self) -> ProbeBefore {
        ProbeBefore {
            at: Instant::now(),
            hub: pid_sample(self.hub_pid),
            hub_threads: self.hub_pid.map(|p| hub::threads(&p.to_string())).unwrap_or_default(),
            mock: pid_sample(self.mock_pid),
            me: hub::sample("self"),
            sys: hub::system_cpu(),
        }
    }

    /// Fills the resource fields of `r` for the time since `b`.
    fn after(&self, b: ProbeBefore, r: &mut PhaseResult) {
        let wall = b.at.elapsed().as_secs_f64().max(1e-3);
        let cpu = |x: Option<hub::ProcSample>, y: Option<hub::ProcSample>| match (x, y) {
            (Some(x), Some(y)) => Some(y.cpu_ticks.saturating_sub(x.cpu_ticks) as f64 / self.ticks),
            _ => None,
        };
        let hub_now = pid_sample(self.hub_pid);
        // Hub CPU by thread name (tokio-rt-worker: requests and runs; sqlx-sqlite-wor…: the store).
        for (tid, t) in self.hub_pid.map(|p| hub::threads(&p.to_string())).unwrap_or_default() {
            let was = b.hub_threads.get(&tid).map(|w| w.ticks).unwrap_or(0);
            *r.hub_cpu_by_thread.entry(t.name).or_insert(0.0) += t.ticks.saturating_sub(was) as f64 / self.ticks;
        }
        r.hub_cpu_by_thread.retain(|_, v| *v > 0.0);
        r.wall_s = wall;
        r.hub_cpu_s = cpu(b.hub, hub_now);
        r.mock_cpu_s = cpu(b.mock, pid_sample(self.mock_pid));
        r.loadgen_cpu_s = cpu(b.me, hub::sample("self"));
        r.hub_rss_end_mib = hub_now.map(|s| s.rss_kib as f64 / 1024.0);
        r.hub_rss_hwm_mib = hub_now.map(|s| s.hwm_kib as f64 / 1024.0);
        r.hub_threads = hub_now.map(|s| s.threads);
        if let (Some(x), Some(y)) = (b.sys, hub::system_cpu())
            && y.total > x.total
        {
            let total = (y.total - x.total) as f64;
            let busy = 100.0 * y.busy.saturating_sub(x.busy) as f64 / total;
            r.sys_busy_pct = Some(busy);
            r.steal_pct = Some(100.0 * y.steal.saturating_sub(x.steal) as f64 / total);
            // What the rest of the machine used: busy minus hub, mock and this tool.
            let ours = r.hub_cpu_s.unwrap_or(0.0) + r.mock_cpu_s.unwrap_or(0.0) + r.loadgen_cpu_s.unwrap_or(0.0);
            r.other_pct = Some(busy - 100.0 * ours / (wall * self.nproc as f64));
        }
    }
}

/// The hub's RSS every 100 ms until stopped; returns the largest, MiB.
async fn rss_sampler(pid: Option<u32>, stop: Arc<AtomicBool>, cap: Duration) -> Option<f64> {
    let pid = pid?;
    let started = Instant::now();
    let mut max_kib = 0u64;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < cap {
        if let Some(s) = hub::sample(&pid.to_string()) {
            max_kib = max_kib.max(s.rss_kib);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(max_kib as f64 / 1024.0)
}

/// What a phase's streams add up to while they end.
struct Tally {
    ttfb: Histogram<u64>,
    gap: Histogram<u64>,
    headers: Histogram<u64>,
    tail: Histogram<u64>,
    content_events: u64,
    first_sent: Option<Instant>,
    last_headers: Option<Instant>,
    ok: u64,
    failures: BTreeMap<String, u64>,
    samples: Vec<String>,
}

impl Tally {
    fn new() -> Res<Self> {
        Ok(Self {
            ttfb: new_hist()?,
            gap: new_hist()?,
            headers: new_hist()?,
            tail: new_hist()?,
            content_events: 0,
            first_sent: None,
            last_headers: None,
            ok: 0,
            failures: BTreeMap::new(),
            samples: Vec::new(),
        })
    }

    fn fail(&mut self, code: &str, detail: &str) {
        *self.failures.entry(code.to_string()).or_insert(0) += 1;
        if self.samples.len() < 5 && !self.samples.iter().any(|s| s.starts_with(code)) {
            self.samples.push(format!("{code}: {detail}"));
        }
    }

    /// Every stream counts for `ok`/`lost`; only `timed` ones for the latencies (a steady
    /// phase leaves out its ramp).
    fn add(&mut self, out: StreamOut, timed: bool) {
        if timed {
            if let Some(v) = out.headers_us {
                self.headers.saturating_record(v.max(1));
            }
            // Timing of every stream that produced content, lost or not (lost ones are counted anyway).
            if let Some(v) = out.ttfb_us {
                self.ttfb.saturating_record(v.max(1));
            }
            for g in &out.gaps_us {
                self.gap.saturating_record(*g);
            }
            if let Some(v) = out.tail_us {
                self.tail.saturating_record(v.max(1));
            }
        }
        self.content_events += out.content_events;
        if let Some(t) = out.sent_at {
            self.first_sent = Some(self.first_sent.map_or(t, |f| f.min(t)));
        }
        if let Some(t) = out.headers_at {
            self.last_headers = Some(self.last_headers.map_or(t, |l| l.max(t)));
        }
        match &out.failure {
            None => self.ok += 1,
            Some(code) => self.fail(code, out.detail.as_deref().unwrap_or("")),
        }
    }
}

fn stream_request(ctx: &Ctx, path: Path, session: Option<&str>, content: &str) -> Option<reqwest::RequestBuilder> {
    match (path, session) {
        (Path::Direct, _) => Some(direct_request(ctx, content)),
        (Path::Hub, Some(session)) => Some(hub_request(ctx, session, content)),
        // Not created: already counted as lost.
        (Path::Hub, None) => None,
    }
}

async fn phase(ctx: &Arc<Ctx>, probe: &Probe, mode: &Mode, path: Path, k: usize, expected: &Arc<String>) -> Res<PhaseResult> {
    let mut r = PhaseResult::new(mode.name, mode.delay_ms, path, k);
    let rounds = match mode.arrival {
        Arrival::Burst => mode.min_streams.div_ceil(k).max(1),
        Arrival::Steady { laps, .. } => laps,
    };
    r.rounds = rounds as u64;
    let mut tally = Tally::new()?;

    // Sessions first, outside the measured time.
    let mut sessions = Vec::new();
    if path == Path::Hub {
        let t = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..k * rounds {
            let c = ctx.clone();
            set.spawn(async move { create_session(&c).await });
        }
        let deadline = tokio::time::Instant::now() + ctx.phase_timeout;
        while let Ok(Some(res)) = tokio::time::timeout_at(deadline, set.join_next()).await {
            match res {
                Ok(Ok(id)) => sessions.push(id),
                Ok(Err(e)) => tally.fail("session_create", &e),
                Err(e) => tally.fail("session_create", &e.to_string()),
            }
        }
        let unfinished = set.len();
        set.abort_all();
        for _ in 0..unfinished {
            tally.fail("session_create", "not created within the phase timeout");
        }
        r.sessions_s = Some(t.elapsed().as_secs_f64());
    }

    ctx.open.store(0, Ordering::Relaxed);
    ctx.peak_open.store(0, Ordering::Relaxed);
    let before = probe.before();
    let stop_rss = Arc::new(AtomicBool::new(false));
    let rss = tokio::spawn(rss_sampler(probe.hub_pid, stop_rss.clone(), ctx.phase_timeout + Duration::from_secs(10)));
    let overflows_before = listen_overflows();
    let deadline = tokio::time::Instant::now() + ctx.phase_timeout;
    let sends = Sends { ctx, path, mode, k, expected, deadline };
    r.started = match mode.arrival {
        Arrival::Burst => bursts(&sends, rounds, sessions, &mut tally).await,
        Arrival::Steady { laps, spread } => steady(&sends, laps, spread, sessions, &mut tally).await,
    };
    stop_rss.store(true, Ordering::Relaxed);
    r.hub_rss_max_mib = rss.await.ok().flatten();
    probe.after(before, &mut r);
    r.peak_open = ctx.peak_open.load(Ordering::Relaxed);
    r.ok = tally.ok;
    r.lost = tally.failures.values().sum();
    r.failures = tally.failures;
    r.failure_samples = tally.samples;
    let lat = |h: &Histogram<u64>| (!h.is_empty()).then(|| Latency::of(h));
    r.ttfb = lat(&tally.ttfb);
    r.gap = lat(&tally.gap);
    r.headers = lat(&tally.headers);
    r.tail = lat(&tally.tail);
    r.content_events_per_stream = (r.started > 0).then(|| tally.content_events as f64 / r.started as f64);
    r.streams = (k * rounds) as u64;
    r.listen_overflows = match (overflows_before, listen_overflows()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    if rounds == 1
        && let (Some(f), Some(l)) = (tally.first_sent, tally.last_headers)
    {
        let span = l.saturating_duration_since(f).as_secs_f64();
        r.setup_span_s = Some(span);
        r.setup_per_s = (span > 0.0).then(|| r.started as f64 / span);
    }
    Ok(r)
}

/// What every stream of a phase is sent with.
#[derive(Clone, Copy)]
struct Sends<'a> {
    ctx: &'a Arc<Ctx>,
    path: Path,
    mode: &'a Mode,
    k: usize,
    expected: &'a Arc<String>,
    deadline: tokio::time::Instant,
}

/// Rounds of K streams sent together (at most `--connect-concurrency` being set up at a time),
/// each round once the previous one has ended. Returns how many were sent.
async fn bursts(s: &Sends<'_>, rounds: usize, sessions: Vec<String>, tally: &mut Tally) -> u64 {
    let Sends { ctx, path, mode, k, expected, deadline } = *s;
    let mut started = 0;
    let mut sessions = sessions.into_iter();
    for _ in 0..rounds {
        let mut set = JoinSet::new();
        for _ in 0..k {
            let (c, content, exp) = (ctx.clone(), mode.content.clone(), expected.clone());
            let session = if path == Path::Hub { sessions.next() } else { None };
            let Some(req) = stream_request(&c, path, session.as_deref(), &content) else { continue };
            started += 1;
            set.spawn(async move { one_stream(&c, path, req, true, Some(exp.as_str())).await });
        }
        while let Ok(Some(res)) = tokio::time::timeout_at(deadline, set.join_next()).await {
            tally.add(res.unwrap_or_else(|e| StreamOut::failed("task", e.to_string())), true);
        }
        let unfinished = set.len();
        set.abort_all();
        for _ in 0..unfinished {
            tally.fail("phase_timeout", "stream still open at the phase timeout");
        }
        if unfinished > 0 {
            break;
        }
    }
    started
}

/// K lanes, each sending its next stream as soon as its previous one ended (a user who reads
/// the answer and types at once), the lanes' first sends spread evenly over `spread`: K streams
/// stay open with arrivals spread in time, as K users in a steady state, instead of K arriving
/// in the same instant. The first lap is the ramp and is not timed (its streams still count
/// for `ok`/`lost`). Returns how many were sent.
async fn steady(s: &Sends<'_>, laps: usize, spread: Duration, sessions: Vec<String>, tally: &mut Tally) -> u64 {
    let Sends { ctx, path, mode, k, expected, deadline } = *s;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, StreamOut)>();
    let mut lanes = JoinSet::new();
    let mut sessions = sessions.into_iter();
    let t0 = tokio::time::Instant::now();
    let started = Arc::new(AtomicU64::new(0));
    let mut planned = 0u64;
    for lane in 0..k {
        let mine: Vec<Option<String>> = (0..laps).map(|_| if path == Path::Hub { sessions.next() } else { None }).collect();
        planned += mine.iter().filter(|s| path == Path::Direct || s.is_some()).count() as u64;
        let (c, content, exp, tx, started) = (ctx.clone(), mode.content.clone(), expected.clone(), tx.clone(), started.clone());
        let at = t0 + spread.mul_f64(lane as f64 / k as f64);
        lanes.spawn(async move {
            tokio::time::sleep_until(at).await;
            for (lap, session) in mine.into_iter().enumerate() {
                let Some(req) = stream_request(&c, path, session.as_deref(), &content) else { continue };
                started.fetch_add(1, Ordering::Relaxed);
                // Not gated: arrivals are spread already, and a wait here would be left out of TTFB.
                let out = one_stream(&c, path, req, false, Some(exp.as_str())).await;
                if tx.send((lap, out)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut received = 0u64;
    while let Ok(Some((lap, out))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        received += 1;
        tally.add(out, lap > 0 || laps == 1);
    }
    lanes.abort_all();
    // Streams that ended just as the deadline passed are counted as what they were.
    while let Ok((lap, out)) = rx.try_recv() {
        received += 1;
        tally.add(out, lap > 0 || laps == 1);
    }
    // Open at the deadline, or never sent because their lane was still busy.
    for _ in received..planned {
        tally.fail("phase_timeout", "stream not finished within the phase timeout");
    }
    started.load(Ordering::Relaxed)
}

/// Machine-wide TcpExt ListenOverflows (accept queues that were full: the SYN is dropped and
/// retried a second later), from /proc/net/netstat.
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut tcp_ext = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (tcp_ext.next()?, tcp_ext.next()?);
    let i = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// One direct request: the mock's answer for `content`, which every stream must then carry.
async fn expected_text(ctx: &Ctx, content: &str) -> Res<String> {
    let out = one_stream(ctx, Path::Direct, direct_request(ctx, content), true, None).await;
    if let Some(f) = out.failure {
        return Err(format!("the reference request to the mock failed: {f}: {}", out.detail.unwrap_or_default()).into());
    }
    if out.text.is_empty() {
        return Err("the mock's reference answer is empty".into());
    }
    Ok(out.text)
}

pub async fn run(args: ChatArgs) -> Res<()> {
    validate(&args)?;
    let started_at_unix = crate::unix_now();
    let ticks = hub::clock_ticks();
    let machine = crate::report::machine(ticks);
    let idle_noise = crate::noise().await.map_err(|e| eprintln!("loadtest: noise probe failed: {e}")).ok();
    let max_k = args.zero_k.iter().chain(&args.paced_k).chain(&args.steady_k).copied().max().unwrap_or(1);
    if let Some(limit) = machine.open_files_limit
        && limit < (max_k as u64) * 3 + 1000
    {
        eprintln!("loadtest: warning: open-files limit {limit} is low for K={max_k} (raise it: ulimit -n 65536)");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(2 * MAX_K)
        .pool_idle_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let bin = crate::resolve_bin(&args.hub_bin);
    eprintln!("loadtest: starting {} mock-llm and serve (fresh SQLite)", bin.display());
    let mut stack = Stack::start(&bin, &client, args.chunks, args.keep_temp).await?;
    let (hub_base, mock_base) = match (&stack.hub, &stack.mock) {
        (Some(h), Some(m)) => (h.base_url.clone(), m.base_url.clone()),
        _ => return Err("the mock or the hub did not start".into()),
    };
    eprintln!(
        "loadtest: mock pid {:?} at {mock_base}, hub pid {:?} at {hub_base} (temp dir {})",
        stack.mock_pid(),
        stack.hub_pid(),
        stack.dir.display()
    );
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        mock_url: format!("{mock_base}/v1/chat/completions"),
        hub_base,
        setup: Semaphore::new(args.connect_concurrency),
        stream_timeout: Duration::from_secs_f64(args.stream_timeout),
        phase_timeout: Duration::from_secs_f64(args.phase_timeout),
        open: AtomicU64::new(0),
        peak_open: AtomicU64::new(0),
    });
    let probe = Probe { hub_pid: stack.hub_pid(), mock_pid: stack.mock_pid(), ticks, nproc: machine.nproc };
    let content = |d: u64| format!("loadtest chat stream [mock:chunks={}] [mock:delay_ms={d}]", args.chunks);
    let steady = Arrival::Steady { laps: args.steady_laps, spread: Duration::from_millis(args.delay_ms * u64::from(args.chunks)) };
    let modes: Vec<Mode> = [
        ("zero-delay", 0, &args.zero_k, args.min_streams_zero, Arrival::Burst),
        ("paced", args.delay_ms, &args.paced_k, args.min_streams_paced, Arrival::Burst),
        ("steady", args.delay_ms, &args.steady_k, 0, steady),
    ]
    .into_iter()
    .map(|(name, delay_ms, ks, min_streams, arrival)| Mode {
        name,
        delay_ms,
        ks: ks.iter().copied().filter(|k| *k > 0).collect(),
        min_streams,
        content: content(delay_ms),
        arrival,
    })
    .filter(|m| !m.ks.is_empty())
    .collect();
    let run_started = Instant::now();
    let result = drive(&ctx, &probe, &modes, &args).await;
    let hub_log_warnings = log_lines(stack.hub.as_ref().map(|h| h.log_tail(400)));
    let mock_log_warnings = log_lines(stack.mock.as_ref().map(|m| m.log_tail(400)));
    let (hub_exit, mock_exit) = stack.stop().await;
    let (phases, expected, warmup) = result?;
    let end_noise = crate::noise().await.ok();

    let compare: Vec<Compare> = phases
        .iter()
        .filter(|p| p.path == Path::Hub)
        .map(|h| chat_report::compare(phases.iter().find(|d| d.path == Path::Direct && d.mode == h.mode && d.k == h.k), h))
        .collect();
    let max_paced_k_no_loss =
        phases.iter().filter(|p| p.mode == "paced" && p.path == Path::Hub && p.lost == 0 && p.ok == p.streams).map(|p| p.k).max();
    let max_paced_concurrent_no_loss =
        phases.iter().filter(|p| p.mode == "paced" && p.path == Path::Hub && p.lost == 0 && p.ok == p.streams).map(|p| p.peak_open).max();
    let mut notes = vec![
        format!(
            "mock, hub and this load generator share this {}-core machine; other% is whole-machine busy minus their CPU",
            machine.nproc
        ),
        "TTFB: from sending the request to the first non-empty content (direct: an OpenAI chunk with delta.content; hub: a delta \
         event), exact (HdrHistogram); gap: between consecutive content events of one stream (events read in one socket read \
         count as gap ~0); added = hub quantile minus direct quantile at the same K and pacing, measured in the same run"
            .into(),
        "lost: any stream that did not carry exactly the mock's reference text and end with exactly one done (hub) / [DONE] \
         (direct), or got an HTTP error, a transport error, an error event or a timeout; a session that could not be created counts too"
            .into(),
        format!("run took {:.1} s", run_started.elapsed().as_secs_f64()),
    ];
    if let Some(m) = &machine.open_files_limit {
        notes.push(format!("open-files limit {m}"));
    }
    let report = Report {
        scenario: "chat",
        started_at_unix,
        finished_at_unix: crate::unix_now(),
        machine,
        config: serde_json::to_value(&args)?,
        idle_noise,
        end_noise,
        expected_chars: expected.iter().map(|(m, t)| (m.clone(), t.chars().count())).collect(),
        warmup,
        phases,
        compare,
        max_paced_k_no_loss,
        max_paced_concurrent_no_loss,
        targets: Vec::new(),
        hub_exit,
        mock_exit,
        hub_log_tail: hub_log_warnings,
        mock_log_tail: mock_log_warnings,
        notes,
    };
    let report = chat_report::with_targets(report);
    print!("{}", chat_report::render(&report));
    let (stamped, latest) = chat_report::write_json(&args.out, &report)?;
    println!("wrote {} and {}", stamped.display(), latest.display());
    Ok(())
}

/// The last 10 lines of a log, without colour codes and without the two warnings every
/// loadtest hub prints at start-up (no VAPI secret, no widgets).
fn log_lines(tail: Option<String>) -> Vec<String> {
    let strip = |l: &str| {
        let mut out = String::with_capacity(l.len());
        let mut esc = false;
        for ch in l.chars() {
            match (esc, ch) {
                (false, '\u{1b}') => esc = true,
                (true, c) if c.is_ascii_alphabetic() => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    let lines: Vec<String> = tail
        .unwrap_or_default()
        .lines()
        .map(strip)
        .filter(|l| !l.contains("NO VAPI SECRET") && !l.contains("no [[widgets]] are configured"))
        .collect();
    lines[lines.len().saturating_sub(10)..].to_vec()
}

type Driven = (Vec<PhaseResult>, BTreeMap<String, String>, Vec<PhaseResult>);

async fn drive(ctx: &Arc<Ctx>, probe: &Probe, modes: &[Mode], args: &ChatArgs) -> Res<Driven> {
    let pause = Duration::from_secs_f64(args.pause);
    let mut expected = BTreeMap::new();
    let mut phases = Vec::new();
    let mut warmup = Vec::new();
    for mode in modes {
        let text = Arc::new(expected_text(ctx, &mode.content).await?);
        expected.insert(mode.name.to_string(), text.as_str().to_string());
        if warmup.is_empty() && args.warmup_streams > 0 {
            // Connections, the hub's upstream pool, SQLite pages: not part of any reported phase.
            let zero = Mode {
                content: format!("loadtest warm-up [mock:chunks={}] [mock:delay_ms=0]", args.chunks),
                min_streams: 1,
                arrival: Arrival::Burst,
                ..mode.clone()
            };
            let wtext = Arc::new(expected_text(ctx, &zero.content).await?);
            for path in [Path::Direct, Path::Hub] {
                let w = phase(ctx, probe, &zero, path, args.warmup_streams, &wtext).await?;
                eprintln!("loadtest: warm-up {}: {} ok, {} lost", path.name(), w.ok, w.lost);
                warmup.push(w);
            }
        }
        for &k in &mode.ks {
            for path in [Path::Direct, Path::Hub] {
                tokio::time::sleep(pause).await;
                eprintln!("loadtest: {} K={k} {} …", mode.name, path.name());
                let p = phase(ctx, probe, mode, path, k, &text).await?;
                eprintln!(
                    "loadtest: {} K={k} {}: ok {} lost {} ttfb p50 {} p99 {} ms, gap p99 {} ms, peak open {}, {:.1} s",
                    mode.name,
                    path.name(),
                    p.ok,
                    p.lost,
                    chat_report::ms(p.ttfb.as_ref().map(|l| l.p50_ms)),
                    chat_report::ms(p.ttfb.as_ref().map(|l| l.p99_ms)),
                    chat_report::ms(p.gap.as_ref().map(|l| l.p99_ms)),
                    p.peak_open,
                    p.wall_s
                );
                phases.push(p);
            }
        }
    }
    Ok((phases, expected, warmup))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> (Vec<SseEvent>, u64) {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c.as_bytes(), &mut out);
        }
        (out, p.comments)
    }

    #[test]
    fn events_split_anywhere_are_put_back_together() {
        let (evs, comments) = parse(&[
            "id: r:2\nevent: del",
            "ta\ndata: {\"content\":\"Hel\"}\n",
            "\n: keep-alive\n\nid: r:3\r\nevent: done\r\ndata: {}\r\n\r\n",
        ]);
        assert_eq!(comments, 1);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0], SseEvent { event: Some("delta".into()), id: Some("r:2".into()), data: "{\"content\":\"Hel\"}".into() });
        assert_eq!(evs[1].event.as_deref(), Some("done"));
        assert_eq!(evs[1].data, "{}");
    }

    #[test]
    fn an_unfinished_event_is_not_emitted() {
        let (evs, _) = parse(&["data: [DONE]\n"]);
        assert!(evs.is_empty());
        let (evs, _) = parse(&["data: a\ndata: b\n\n"]);
        assert_eq!(evs[0].data, "a\nb");
    }

    #[test]
    fn hub_streams_are_checked() {
        let t = Instant::now();
        let ev = |id: &str, e: &str, data: &str| SseEvent { event: Some(e.into()), id: Some(id.into()), data: data.into() };
        let mut a = Acc::default();
        a.hub_event(t, &ev("r:2", "delta", r#"{"content":"a "}"#));
        a.hub_event(t, &ev("r:3", "delta", r#"{"content":"b"}"#));
        a.hub_event(t, &ev("r:4", "done", r#"{"finish_reason":"stop"}"#));
        assert!(a.failure.is_none());
        assert_eq!((a.text.as_str(), a.ends, a.content_events, a.gaps.len()), ("a b", 1, 2, 1));
        a.hub_event(t, &ev("r:5", "delta", r#"{"content":"c"}"#));
        assert_eq!(a.failure.as_ref().map(|f| f.0.as_str()), Some("event_after_done"));

        let mut b = Acc::default();
        b.hub_event(t, &ev("r:3", "delta", r#"{"content":"a"}"#));
        b.hub_event(t, &ev("r:3", "delta", r#"{"content":"a"}"#));
        assert_eq!(b.failure.as_ref().map(|f| f.0.as_str()), Some("id_order"));

        let mut c = Acc::default();
        c.hub_event(t, &ev("r:2", "error", r#"{"error":{"code":"upstream_timeout","message":"x"}}"#));
        assert_eq!(c.failure.as_ref().map(|f| f.0.as_str()), Some("error_event:upstream_timeout"));
    }

    #[test]
    fn direct_streams_are_checked() {
        let t = Instant::now();
        let data = |d: &str| SseEvent { event: None, id: None, data: d.into() };
        let mut a = Acc::default();
        a.direct_event(t, &data(r#"{"choices":[{"delta":{"role":"assistant"},"finish_reason":null}]}"#));
        a.direct_event(t, &data(r#"{"choices":[{"delta":{"content":"This "},"finish_reason":null}]}"#));
        a.direct_event(t, &data(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#));
        a.direct_event(t, &data(r#"{"choices":[],"usage":{"total_tokens":3}}"#));
        a.direct_event(t, &data("[DONE]"));
        assert!(a.failure.is_none());
        assert_eq!((a.text.as_str(), a.ends, a.content_events), ("This ", 1, 1));
    }

    #[test]
    fn a_ramp_stream_counts_for_loss_but_not_for_latency() {
        let mut t = Tally::new().unwrap();
        let timed = StreamOut { ttfb_us: Some(1_000), gaps_us: vec![500], ..Default::default() };
        let ramp = StreamOut { ttfb_us: Some(90_000), gaps_us: vec![70_000], ..Default::default() };
        t.add(timed, true);
        t.add(ramp, false);
        t.add(StreamOut::failed("timeout", "x"), false);
        assert_eq!((t.ok, t.failures.get("timeout").copied()), (2, Some(1)));
        assert_eq!((t.ttfb.len(), t.ttfb.max(), t.gap.max()), (1, 1_000, 500));
    }

    #[test]
    fn steady_arrivals_need_a_pacing_to_spread_over() {
        let mut a = ChatArgs {
            zero_k: vec![0],
            paced_k: vec![0],
            chunks: 64,
            delay_ms: 0,
            hub_bin: PathBuf::new(),
            out: PathBuf::new(),
            connect_concurrency: 64,
            stream_timeout: 60.0,
            phase_timeout: 180.0,
            pause: 1.0,
            min_streams_zero: 200,
            min_streams_paced: 20,
            steady_k: vec![500],
            steady_laps: 3,
            warmup_streams: 20,
            client_threads: 2,
            keep_temp: false,
        };
        assert!(validate(&a).is_err());
        a.delay_ms = 20;
        assert!(validate(&a).is_ok());
        a.steady_laps = 0;
        assert!(validate(&a).is_err());
    }
}
