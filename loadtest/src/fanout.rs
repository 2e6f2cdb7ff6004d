//! The `fanout` scenario: supervisors on the WebSocket while webhooks come in at a fixed rate.
//! An idle phase measures the hub's memory per open socket; delivery phases measure the time
//! from a webhook's send to each supervisor's frame (one clock: both ends are this process),
//! deliveries per second of hub CPU, and whether any socket lost, duplicated or reordered an
//! event. See loadtest/README.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use switchboard::simulate::Poster;

use crate::fanout_report::{Consistency, DeliveryReport, FanoutReport, IdleReport, SecondP99, WindowUse};
use crate::load::Latency;
use crate::supervisors::{self, CLASS_NAMES, Crowd, SocketOutcome, Tally};
use crate::traffic::{self, Calls, Msg, Sender};
use crate::{Res, hub, prom, report};

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct FanoutArgs {
    /// Supervisors of each delivery phase, comma-separated (one phase per number; 0 = no delivery phase)
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub supervisors: Vec<usize>,
    /// Add a delivery phase with 10,000 supervisors
    #[arg(long)]
    pub with_10k: bool,
    /// Idle sockets of the memory phase (each subscribed to `calls`); 0 skips the phase
    #[arg(long, default_value_t = 10_000)]
    pub idle: usize,
    /// What each idle socket subscribes to: `calls`, or `none` (connected only, to tell the socket's cost from the subscription's)
    #[arg(long, default_value = "calls")]
    pub idle_topic: String,
    /// Seconds the idle sockets are held open (RSS is sampled each second; pings come every 25 s)
    #[arg(long, default_value_t = 30.0)]
    pub hold: f64,
    /// Share of each delivery phase's supervisors on `calls`; the rest watch single calls
    #[arg(long, default_value_t = 0.5)]
    pub calls_share: f64,
    /// Calls per delivery phase; the single-call supervisors are spread evenly over them
    #[arg(long, default_value_t = 100)]
    pub calls: usize,
    /// Webhooks per second during a delivery phase
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Length of the traffic of a delivery phase, seconds
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Percent of webhooks that are final transcripts (stored, then sent to `calls` and `call:<id>`)
    #[arg(long, default_value_t = 20)]
    pub final_pct: u32,
    /// Percent that are speech-updates (`call:<id>` only); the rest are partial transcripts (`call:<id>` only)
    #[arg(long, default_value_t = 10)]
    pub speech_pct: u32,
    /// Sockets opened per second
    #[arg(long, default_value_t = 500.0)]
    pub open_rate: f64,
    /// Socket handshakes (connect, subscribe, snapshot) in progress at once, at most
    #[arg(long, default_value_t = 64)]
    pub open_concurrency: usize,
    /// Read buffer of each client socket, bytes (the client holds thousands)
    #[arg(long, default_value_t = 8192)]
    pub read_buffer: usize,
    /// Seconds to wait for webhook answers and then for the last frames after a phase's last send
    #[arg(long, default_value_t = 30.0)]
    pub drain: f64,
    /// Unmeasured warm-up (a small delivery phase: 50 sockets, rate/5) before everything, seconds; 0 skips it
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Webhooks in flight at most; a due webhook past this is not sent [default: min(5000, open-files limit - sockets - 500)]
    #[arg(long)]
    pub max_in_flight: Option<u64>,
    /// Base URL of a running hub on loopback (otherwise one is started from --hub-bin); needs --token
    #[arg(long)]
    pub url: Option<String>,
    /// With --url: a supervisor token for every org
    #[arg(long)]
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// With --url: the hub's pid, to sample its CPU time and RSS from /proc
    #[arg(long)]
    pub hub_pid: Option<u32>,
    /// The hub binary to start when no --url is given
    #[arg(long, default_value = "target/release/switchboard")]
    pub hub_bin: PathBuf,
    /// Extra environment for the started hub, KEY=VALUE (repeatable): SWITCHBOARD_* settings, e.g. SWITCHBOARD_WS_QUEUE_BYTES=262144, or TOKIO_WORKER_THREADS
    #[arg(long)]
    pub hub_env: Vec<String>,
    /// Directory for the JSON results
    #[arg(long, default_value = "loadtest/results")]
    pub out: PathBuf,
    /// Worker threads of the load generator's runtime
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// VAPI org id of the simulated calls
    #[arg(long, default_value = "loadtest-org")]
    pub org: String,
    /// Seed of the traffic generator
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Shared secret: sent as x-vapi-secret (and given to a hub this tool starts)
    #[arg(long)]
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    /// Keep the started hub's temp directory (database, hub.log)
    #[arg(long)]
    pub keep_temp: bool,
}

impl FanoutArgs {
    fn phases(&self) -> Vec<usize> {
        let mut p: Vec<usize> = self.supervisors.iter().copied().filter(|n| *n > 0).collect();
        if self.with_10k && !p.contains(&10_000) {
            p.push(10_000);
        }
        p
    }

    fn most_sockets(&self) -> usize {
        self.phases().into_iter().chain([self.idle, 50]).max().unwrap_or(0)
    }
}

fn validate(a: &FanoutArgs) -> Res<()> {
    let ok_rate = |r: f64| r.is_finite() && r > 0.0 && r <= 100_000.0;
    let ok_secs = |d: f64| d.is_finite() && d > 0.0 && d <= 300.0;
    if !ok_rate(a.rate) || !ok_rate(a.open_rate) {
        return Err("--rate and --open-rate must be in (0, 100000]".into());
    }
    if !ok_secs(a.duration) || !ok_secs(a.hold) {
        return Err("--duration and --hold must be in (0, 300] seconds".into());
    }
    if !(0.0..=120.0).contains(&a.drain) || !(0.0..=60.0).contains(&a.warmup) {
        return Err("--drain must be in [0, 120], --warmup in [0, 60]".into());
    }
    if a.phases().iter().chain([&a.idle]).any(|n| *n > 50_000) {
        return Err("--supervisors must be at most 50000 each, --idle at most 50000".into());
    }
    if a.idle_topic != "calls" && a.idle_topic != "none" {
        return Err("--idle-topic must be calls or none".into());
    }
    if !(0.0..=1.0).contains(&a.calls_share) {
        return Err("--calls-share must be in [0, 1]".into());
    }
    if a.calls == 0 || a.calls > 10_000 || a.final_pct + a.speech_pct > 100 {
        return Err("--calls must be in [1, 10000]; --final-pct + --speech-pct at most 100".into());
    }
    if a.open_concurrency == 0 || a.open_concurrency > 1000 || !(512..=1 << 20).contains(&a.read_buffer) {
        return Err("--open-concurrency must be in [1, 1000], --read-buffer in [512, 1048576]".into());
    }
    if (a.rate * a.duration) as u64 > 2_000_000 {
        return Err("--rate x --duration must be at most 2,000,000 webhooks per phase".into());
    }
    if a.url.is_some() && a.token.is_none() {
        return Err("--url needs --token (a supervisor token for every org)".into());
    }
    if let Some(url) = &a.url {
        crate::loopback_base(url)?;
    }
    for kv in &a.hub_env {
        // The hub's settings, and the worker threads of its runtime (tokio reads the variable).
        if !kv.split_once('=').is_some_and(|(k, _)| k.starts_with("SWITCHBOARD_") || k == "TOKIO_WORKER_THREADS") {
            return Err(format!("--hub-env {kv:?} must be SWITCHBOARD_…=value or TOKIO_WORKER_THREADS=n").into());
        }
    }
    Ok(())
}

/// The soft open-files limit of a process ("self" or a pid).
fn nofile(pid: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    limits.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok()
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Everything a phase needs.
struct Ctx<'a> {
    args: &'a FanoutArgs,
    ws_url: String,
    poster: Arc<Poster>,
    probe: crate::Probe<'a>,
    max_in_flight: u64,
}

/// Counters at the start of a measured window.
struct Mark {
    at: Instant,
    hub: Option<hub::ProcSample>,
    threads: BTreeMap<u64, hub::ThreadSample>,
    me: Option<hub::ProcSample>,
    sys: Option<hub::SysCpu>,
    metrics: Option<prom::Snapshot>,
}

impl Ctx<'_> {
    fn hub_pid(&self) -> Option<String> {
        self.probe.hub_pid.map(|p| p.to_string())
    }

    fn hub_rss_kib(&self) -> Option<u64> {
        self.hub_pid().and_then(|p| hub::sample(&p)).map(|s| s.rss_kib)
    }

    async fn mark(&self) -> Mark {
        let metrics = self.probe.metrics().await;
        let pid = self.hub_pid();
        Mark {
            at: Instant::now(),
            hub: pid.as_deref().and_then(hub::sample),
            threads: pid.as_deref().map(hub::threads).unwrap_or_default(),
            me: hub::sample("self"),
            sys: hub::system_cpu(),
            metrics,
        }
    }

    async fn window(&self, m: Mark) -> WindowUse {
        let wall = m.at.elapsed().as_secs_f64().max(1e-3);
        let pid = self.hub_pid();
        let (hub_now, threads_now) = (pid.as_deref().and_then(hub::sample), pid.as_deref().map(hub::threads).unwrap_or_default());
        let (me_now, sys_now) = (hub::sample("self"), hub::system_cpu());
        let metrics = self.probe.metrics().await;
        let ticks = self.probe.ticks;
        let used = |a: Option<hub::ProcSample>, b: Option<hub::ProcSample>| match (a, b) {
            (Some(x), Some(y)) => Some(y.cpu_ticks.saturating_sub(x.cpu_ticks)),
            _ => None,
        };
        let (hub_ticks, me_ticks) = (used(m.hub, hub_now), used(m.me, me_now));
        let (busy, steal, other) = match (m.sys, sys_now) {
            (Some(x), Some(y)) if y.total > x.total => {
                let total = (y.total - x.total) as f64;
                let busy = y.busy.saturating_sub(x.busy);
                let other = busy.saturating_sub(hub_ticks.unwrap_or(0) + me_ticks.unwrap_or(0));
                (
                    Some(100.0 * busy as f64 / total),
                    Some(100.0 * y.steal.saturating_sub(x.steal) as f64 / total),
                    Some(100.0 * other as f64 / total),
                )
            }
            _ => (None, None, None),
        };
        WindowUse {
            wall_s: wall,
            hub_cpu_s: hub_ticks.map(|t| t as f64 / ticks),
            hub_rss_mib: hub_now.map(|s| s.rss_kib as f64 / 1024.0),
            hub_rss_peak_mib: hub_now.map(|s| s.hwm_kib as f64 / 1024.0),
            hub_threads: hub_now.map(|s| s.threads),
            hub_cpu_by_thread: report::cpu_by_thread(&m.threads, &threads_now, ticks, wall),
            loadgen_cpu_s: me_ticks.map(|t| t as f64 / ticks),
            system_cpu_busy_pct: busy,
            system_cpu_steal_pct: steal,
            other_processes_cpu_pct: other,
            hub_metrics: match (m.metrics, metrics) {
                (Some(x), Some(y)) => Some(prom::delta(&x, &y)),
                _ => None,
            },
        }
    }
}

/// Hub RSS once a second for `secs`: every sample, in KiB.
async fn rss_samples(ctx: &Ctx<'_>, secs: f64) -> Vec<u64> {
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while Instant::now() < until {
        tick.tick().await;
        if let Some(r) = ctx.hub_rss_kib() {
            out.push(r);
        }
    }
    out
}

async fn idle(ctx: &Ctx<'_>, n: usize) -> Res<IdleReport> {
    let topic = if ctx.args.idle_topic == "none" { String::new() } else { ctx.args.idle_topic.clone() };
    eprintln!("loadtest: idle phase: {n} sockets on `{}`, held {} s", ctx.args.idle_topic, ctx.args.hold);
    // RSS(0): the warmed-up hub with no socket, a few seconds after the last one closed.
    let before = rss_samples(ctx, 5.0).await;
    let rss0 = before.last().copied();
    let fds0 = ctx.probe.hub_pid.and_then(open_fds);
    let me0 = hub::sample("self").map(|s| s.rss_kib);
    let tally = Arc::new(Tally::new(0, 0)?);
    let crowd =
        supervisors::open(&ctx.ws_url, vec![topic; n], ctx.args.open_rate, ctx.args.open_concurrency, ctx.args.read_buffer, tally, 0)
            .await?;
    eprintln!(
        "loadtest: idle phase: {} of {n} subscribed in {:.1} s ({} failed)",
        crowd.open.subscribed, crowd.open.wall_s, crowd.open.failed
    );
    let mark = ctx.mark().await;
    let held = rss_samples(ctx, ctx.args.hold).await;
    let window = ctx.window(mark).await;
    let rss_n = held.last().copied();
    let fds_n = ctx.probe.hub_pid.and_then(open_fds);
    let me_n = hub::sample("self").map(|s| s.rss_kib);
    let ended_during_hold = crowd.ended();
    let opened = crowd.open.subscribed;
    let open = crowd.open.clone();
    let (outcomes, tasks_lost) = crowd.close(Duration::from_secs(60)).await;
    let closed_by_hub = closes(&outcomes);
    let after = rss_samples(ctx, 5.0).await;
    let per = match (rss0, rss_n) {
        (Some(a), Some(b)) if opened > 0 => Some((b as f64 - a as f64) * 1024.0 / opened as f64),
        _ => None,
    };
    Ok(IdleReport {
        requested: n,
        topic: ctx.args.idle_topic.clone(),
        open,
        rss0_kib: rss0,
        rss_n_kib: rss_n,
        rss_n_max_kib: held.iter().copied().max(),
        rss_after_close_kib: after.last().copied(),
        rss_samples_kib: held,
        per_socket_bytes: per,
        per_socket_kib: per.map(|b| b / 1024.0),
        hub_fds_before: fds0,
        hub_fds_held: fds_n,
        hold_window: window,
        loadgen_rss_per_socket_kib: match (me0, me_n) {
            (Some(a), Some(b)) if opened > 0 => Some((b as f64 - a as f64) / opened as f64),
            _ => None,
        },
        ended_during_hold,
        closed_by_hub,
        tasks_lost,
    })
}

fn closes(outcomes: &[SocketOutcome]) -> BTreeMap<u16, u64> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        if let Some(c) = o.closed_by_hub {
            *m.entry(c).or_insert(0) += 1;
        }
    }
    m
}

/// The topics of a phase's sockets: the single-call ones first (so the presence events their
/// joins cause are not multiplied by every `calls` socket), then `calls`.
fn topics(n: usize, share: f64, calls: &Calls) -> (Vec<String>, Vec<Option<usize>>) {
    let on_calls = ((n as f64) * share).round() as usize;
    let single = n - on_calls.min(n);
    let mut topics = Vec::with_capacity(n);
    let mut call_of = Vec::with_capacity(n);
    for i in 0..single {
        let c = i % calls.ids.len().max(1);
        topics.push(format!("call:{}", calls.ids.get(c).map(String::as_str).unwrap_or_default()));
        call_of.push(Some(c));
    }
    for _ in single..n {
        topics.push("calls".to_string());
        call_of.push(None);
    }
    (topics, call_of)
}

async fn delivery(ctx: &Ctx<'_>, name: &str, n: usize, rate: f64, duration: f64, seed: u64) -> Res<DeliveryReport> {
    let a = ctx.args;
    let calls = Calls::new(a.calls, &a.org, seed);
    let (ok, errors) = traffic::post_all(&ctx.poster, calls.openers()).await;
    if ok < calls.ids.len() * 2 {
        return Err(format!(
            "phase {name}: creating {} calls failed ({ok} of {} posts ok): {errors:?}",
            calls.ids.len(),
            calls.ids.len() * 2
        )
        .into());
    }
    let plan = traffic::plan((rate * duration).round() as usize, calls.ids.len(), a.final_pct, a.speech_pct, seed);
    let tally = Arc::new(Tally::new(plan.len(), duration.ceil() as usize + 3)?);
    let (topics, call_of) = topics(n, a.calls_share, &calls);
    // The `calls` sockets only once every single-call one is subscribed: its join (presence) is published by then.
    let single = call_of.iter().filter(|c| c.is_some()).count();
    let crowd: Crowd =
        supervisors::open(&ctx.ws_url, topics, a.open_rate, a.open_concurrency, a.read_buffer, tally.clone(), single).await?;
    eprintln!(
        "loadtest: phase {name}: {} of {n} sockets subscribed in {:.1} s ({} failed); {rate}/s for {duration} s",
        crowd.open.subscribed, crowd.open.wall_s, crowd.open.failed
    );
    // Who should get what: per call, its subscribed sockets; `calls` sockets get every final.
    let mut subs_per_call = vec![0u32; calls.ids.len()];
    let mut on_calls = 0u32;
    for (i, c) in call_of.iter().enumerate() {
        if !crowd.subscribed.get(i).copied().unwrap_or(false) {
            continue;
        }
        match c {
            Some(c) => subs_per_call[*c] += 1,
            None => on_calls += 1,
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mark = ctx.mark().await;
    let sender = Sender {
        poster: ctx.poster.clone(),
        calls: &calls,
        plan: &plan,
        tally: tally.clone(),
        rate,
        duration: Duration::from_secs_f64(duration),
        max_in_flight: ctx.max_in_flight,
        drain: Duration::from_secs_f64(a.drain),
    };
    let traffic_started = Instant::now();
    let (send, outcomes) = sender.run().await?;
    let expected_of = |k: usize| -> u64 {
        let (msg, call) = plan[k];
        subs_per_call.get(call).copied().unwrap_or(0) as u64 + if msg == Msg::Final { on_calls as u64 } else { 0 }
    };
    let expected: u64 = (0..plan.len()).filter(|k| outcomes.ok(*k)).map(expected_of).sum();
    // The last frames: until all expected arrived, nothing moved for 3 s, or the drain ran out.
    let drain_started = Instant::now();
    let (mut last, mut last_change) = (tally.delivered_total(), Instant::now());
    while tally.delivered_total() < expected
        && drain_started.elapsed() < Duration::from_secs_f64(a.drain)
        && last_change.elapsed() < Duration::from_secs(3)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = tally.delivered_total();
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
    let drain_s = drain_started.elapsed().as_secs_f64();
    let delivered = tally.delivered_total();
    // Up to the last frame: the quiet 3 s that ended the wait are not traffic.
    let traffic_s = last_change.saturating_duration_since(traffic_started).as_secs_f64().max(1e-3);
    let window = ctx.window(mark).await;
    let open = crowd.open.clone();
    let (sockets, tasks_lost) = crowd.close(Duration::from_secs(60)).await;
    let (ok_end, _) = traffic::post_all(&ctx.poster, calls.closers(switchboard::clock::now_ms())).await;
    if ok_end < calls.ids.len() {
        eprintln!("loadtest: phase {name}: only {ok_end} of {} calls were ended", calls.ids.len());
    }

    let mut c = consistency(&sockets, tasks_lost);
    for k in 0..plan.len() {
        let got = tally.delivered(k) as u64;
        if outcomes.ok(k) {
            let want = expected_of(k);
            c.undelivered += want.saturating_sub(got);
            c.extra_deliveries += got.saturating_sub(want);
        } else {
            c.extra_deliveries += got;
        }
    }
    c.unmatched = tally.unmatched.load(std::sync::atomic::Ordering::Relaxed);
    let supervisors::Merged { all, by_class, per_sec } = tally.histograms()?;
    let events: u64 = sockets.iter().map(|s| s.events).sum();
    Ok(DeliveryReport {
        name: name.to_string(),
        supervisors: n,
        on_calls: call_of.iter().filter(|c| c.is_none()).count(),
        on_single_calls: call_of.iter().filter(|c| c.is_some()).count(),
        calls: calls.ids.len(),
        open,
        send,
        frames_expected: expected,
        frames_delivered: delivered,
        other_events: events.saturating_sub(sockets.iter().map(|s| s.marked).sum()),
        latency: (!all.is_empty()).then(|| Latency::of(&all)),
        by_class: CLASS_NAMES.iter().zip(&by_class).filter(|(_, h)| !h.is_empty()).map(|(n, h)| (n.to_string(), Latency::of(h))).collect(),
        timeline: per_sec
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(second, h)| SecondP99 {
                second,
                frames: h.len(),
                p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
                max_ms: h.max() as f64 / 1000.0,
            })
            .collect(),
        deliveries_per_s: delivered as f64 / traffic_s,
        deliveries_per_hub_cpu_s: window.hub_cpu_s.filter(|c| *c > 0.0).map(|c| delivered as f64 / c),
        drain_s,
        drained: delivered >= expected,
        window,
        consistency: c,
    })
}

fn consistency(sockets: &[SocketOutcome], tasks_lost: usize) -> Consistency {
    let mut c = Consistency { sockets: sockets.len() as u64, tasks_lost: tasks_lost as u64, ..Consistency::default() };
    let mut head: BTreeMap<&str, u64> = BTreeMap::new();
    for s in sockets.iter().filter(|s| s.subscribed) {
        c.subscribed += 1;
        c.lost += s.lost;
        c.duplicated += s.duplicated;
        c.reordered += s.reordered;
        c.epoch_changes += s.epoch_changes;
        c.resyncs += s.resyncs;
        c.error_frames += s.error_frames;
        c.bad_frames += s.bad_frames;
        c.foreign_events += s.foreign;
        if let Some(code) = s.closed_by_hub {
            *c.closed_by_hub.entry(code).or_insert(0) += 1;
            if let Some(r) = &s.close_reason
                && c.close_reasons.len() < 5
                && !c.close_reasons.contains(r)
            {
                c.close_reasons.push(r.clone());
            }
        }
        let h = head.entry(s.topic.as_str()).or_insert(0);
        *h = (*h).max(s.last_marked_seq);
    }
    // A socket that stopped short of its topic's last traffic event lost the tail (a gap check cannot see that).
    for s in sockets.iter().filter(|s| s.subscribed && s.closed_by_hub.is_none()) {
        let h = head.get(s.topic.as_str()).copied().unwrap_or(0);
        if s.last_marked_seq < h {
            c.behind_head_sockets += 1;
            c.behind_head_events += h - s.last_marked_seq.max(s.start_seq);
        }
    }
    c
}

pub async fn run(args: FanoutArgs) -> Res<()> {
    validate(&args)?;
    let started_at_unix = crate::unix_now();
    let ticks = hub::clock_ticks();
    let machine = report::machine(ticks);
    let load_before = std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_string());
    let most = args.most_sockets() as u64;
    let limit = nofile("self").unwrap_or(1024);
    let max_in_flight = args.max_in_flight.unwrap_or_else(|| limit.saturating_sub(most + 500).min(5000));
    if max_in_flight < 100 || most + max_in_flight + 200 > limit {
        return Err(format!(
            "{most} sockets and {max_in_flight} webhooks in flight need about {} open files in this process (and as many in the hub), \
             but RLIMIT_NOFILE is {limit}; lower --idle/--supervisors/--max-in-flight or raise `ulimit -n`",
            most + max_in_flight.max(100) + 200
        )
        .into());
    }
    let idle_noise = crate::noise().await.ok();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .pool_idle_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()?;
    // Room for every socket of the run on one token; the rest of the hub's settings are its defaults.
    let room = (most + 1000).to_string();
    let mut hub_env: Vec<(String, String)> =
        vec![("SWITCHBOARD_WS_MAX_CONNECTIONS_PER_TOKEN".into(), room.clone()), ("SWITCHBOARD_WS_MAX_CONNECTIONS".into(), room)];
    for kv in &args.hub_env {
        if let Some((k, v)) = kv.split_once('=') {
            hub_env.push((k.to_string(), v.to_string()));
        }
    }
    let (spawned, base, hub_pid, token) = match &args.url {
        Some(url) => (None, crate::loopback_base(url)?, args.hub_pid, args.token.clone().unwrap_or_default()),
        None => {
            let bin = crate::resolve_bin(&args.hub_bin);
            eprintln!("loadtest: starting {} with a fresh SQLite database", bin.display());
            let h = hub::Hub::spawn(&bin, &client, args.secret.as_deref(), args.keep_temp, &hub_env).await?;
            eprintln!("loadtest: hub pid {} ready at {} (temp dir {})", h.pid, h.base_url, h.dir.display());
            let token = h.supervisor_token()?;
            let (base, pid) = (h.base_url.clone(), h.pid);
            (Some(h), base, Some(pid), token)
        }
    };
    if let Some(pid) = hub_pid
        && let Some(hub_limit) = nofile(&pid.to_string())
        && most + 500 > hub_limit
    {
        return Err(format!("the hub's RLIMIT_NOFILE is {hub_limit}, too low for {most} sockets").into());
    }
    let mut poster = Poster::new(&format!("{base}/vapi/webhook"), args.secret.clone(), None);
    poster.http = client.clone();
    let ctx = Ctx {
        args: &args,
        ws_url: format!("{}/ws?token={token}", base.replacen("http://", "ws://", 1)),
        poster: Arc::new(poster),
        probe: crate::Probe { client: &client, metrics_url: format!("{base}/metrics"), hub_pid, ticks },
        max_in_flight,
    };
    let run_started = Instant::now();

    let warmup = if args.warmup > 0.0 {
        eprintln!("loadtest: warm-up");
        let w = delivery(&ctx, "warmup", 50, (args.rate / 5.0).max(1.0), args.warmup, args.seed.wrapping_add(99)).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some(w)
    } else {
        None
    };
    let idle_report = if args.idle > 0 { Some(idle(&ctx, args.idle).await?) } else { None };
    let mut phases = Vec::new();
    for (i, n) in args.phases().into_iter().enumerate() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let name = format!("fanout-{n}");
        let p = delivery(&ctx, &name, n, args.rate, args.duration, args.seed.wrapping_add(i as u64 + 1)).await?;
        eprintln!(
            "loadtest: phase {name}: {} webhooks ok, {} of {} frames, p99 {} ms, lost {} dup {} reordered {}",
            p.send.ok,
            p.frames_delivered,
            p.frames_expected,
            p.latency.as_ref().map(|l| format!("{:.2}", l.p99_ms)).unwrap_or_else(|| "-".into()),
            p.consistency.lost,
            p.consistency.duplicated,
            p.consistency.reordered
        );
        phases.push(p);
    }

    let (hub_exit, hub_log_warnings) = match spawned {
        Some(h) => {
            let (exit, warnings) = h.finish().await?;
            (Some(exit), warnings)
        }
        None => (None, Vec::new()),
    };
    let mut notes = vec![
        format!(
            "the load generator (webhooks and every supervisor socket) and the hub share this {}-core machine; see loadgen CPU, sysCPU% and other%",
            machine.nproc
        ),
        "latency: from right before the webhook's POST to the frame read off the socket, both on this process's monotonic clock; \
         it includes the hub's handling (finals: the SQLite commit), the fan-out, and the client's own scheduling"
            .into(),
        "hub CPU and RSS come from /proc/<pid>; deliveries per hub CPU-second count only frames that carried a generated message".into(),
    ];
    if args.url.is_none() {
        notes.push(format!(
            "hub started by this tool: SQLite (WAL, synchronous=FULL) in a fresh temp directory, SWITCHBOARD_LOG=warn, env {}",
            hub_env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
        ));
    }
    notes.push(format!("run took {:.1} s; webhook in-flight cap {max_in_flight}", run_started.elapsed().as_secs_f64()));
    let targets = crate::fanout_report::targets(&args, idle_report.as_ref(), &phases);
    let report = FanoutReport {
        scenario: "fanout",
        started_at_unix,
        finished_at_unix: crate::unix_now(),
        machine,
        load_average_before: load_before,
        config: serde_json::to_value(&args)?,
        hub_spawned: args.url.is_none(),
        hub_exit,
        hub_log_warnings,
        idle_noise,
        warmup,
        idle: idle_report,
        phases,
        targets,
        notes,
    };
    print!("{}", crate::fanout_report::render(&report));
    let (stamped, latest) = report::write_named(&args.out, "fanout", started_at_unix, &report)?;
    println!("wrote {} and {}", stamped.display(), latest.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_call_sockets_come_first_and_spread_evenly() {
        let calls = Calls::new(3, "org", 1);
        let (t, c) = topics(10, 0.4, &calls);
        assert_eq!(t.iter().filter(|t| *t == "calls").count(), 4);
        assert!(t[..6].iter().all(|t| t.starts_with("call:")));
        assert_eq!(c[..6], [Some(0), Some(1), Some(2), Some(0), Some(1), Some(2)]);
        assert_eq!(t[0], format!("call:{}", calls.ids[0]));
    }

    #[test]
    fn a_socket_short_of_its_topics_last_event_counts_as_behind() {
        let s = |topic: &str, last: u64| {
            let mut o = SocketOutcome::default();
            (o.topic, o.subscribed, o.last_marked_seq) = (topic.into(), true, last);
            o
        };
        let c = consistency(&[s("calls", 10), s("calls", 8), s("call:a", 3)], 0);
        assert_eq!((c.behind_head_sockets, c.behind_head_events), (1, 2));
    }
}
