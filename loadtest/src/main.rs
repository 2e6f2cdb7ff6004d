//! Load tests for switchboard. `ingest`: open-loop VAPI webhook traffic at a fixed rate against
//! a hub this tool starts (or one on loopback), with a `GET /healthz` baseline at the same
//! rate and a tool-call phase that measures the hub's overhead over the function's own time.
//! `fanout`: supervisor sockets (idle, and receiving live events while webhooks come in).
//! `chat`: concurrent chat streams through the hub, side by side with streams straight to the mock.
//! See loadtest/README.md.

mod chat;
mod chat_proc;
mod chat_report;
mod fanout;
mod fanout_report;
mod hub;
mod lean_ws;
mod load;
mod prom;
mod recording;
mod report;
mod supervisors;
mod traffic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde::Serialize;
use switchboard::simulate::Poster;

use crate::load::{CallMix, Healthz, PhaseSpec, Source, Target, ToolCalls};
use crate::report::{HubUse, PhaseReport, Report};

/// The hub's allocator (see its `src/main.rs`): this tool shares the machine with the hub, and
/// reading a supervisor frame or a chat chunk allocates and frees a few small values each time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Parser)]
#[command(name = "loadtest", about = "Load tests for the switchboard hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open-loop VAPI webhook ingest at a fixed rate, plus healthz baseline and tool-call phases
    Ingest(IngestArgs),
    /// Supervisor WebSocket fan-out: idle-socket memory, then delivery latency and consistency under webhook load
    Fanout(fanout::FanoutArgs),
    /// K concurrent chat streams through the hub against the mock model, set against direct-to-mock streams
    Chat(chat::ChatArgs),
    /// Hub memory while it downloads recordings of growing size (flat means streamed)
    Recording(recording::RecordingArgs),
}

#[derive(Debug, Clone, clap::Args, Serialize)]
struct IngestArgs {
    /// Target request rate of the ingest phase (and of the healthz baseline), per second
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Length of the ingest phase, seconds
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Simulated calls live at once; a call that ends is replaced by a new one
    #[arg(long, default_value_t = 500)]
    calls: usize,
    /// Webhook URL of a running hub on loopback (otherwise one is started from --hub-bin)
    #[arg(long)]
    url: Option<String>,
    /// With --url: the hub's pid, to sample its CPU time and RSS from /proc
    #[arg(long)]
    hub_pid: Option<u32>,
    /// The hub binary to start when no --url is given
    #[arg(long, default_value = "target/release/switchboard")]
    hub_bin: PathBuf,
    /// Directory for the JSON results
    #[arg(long, default_value = "loadtest/results")]
    out: PathBuf,
    /// Rate of the tool-call phase (lookupCustomer only), per second; 0 skips it
    #[arg(long, default_value_t = 200.0)]
    tool_rate: f64,
    /// Length of the tool-call phase, seconds
    #[arg(long, default_value_t = 10.0)]
    tool_duration: f64,
    /// Length of the healthz baseline phase (at --rate), seconds; 0 skips it [default: min(duration, 10)]
    #[arg(long)]
    baseline_duration: Option<f64>,
    /// Unmeasured warm-up at a fifth of --rate before the phases, seconds
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Requests in flight at most; a due request past this is counted as dropped [default: min(20000, open-files limit - 1000)]
    #[arg(long)]
    max_in_flight: Option<u64>,
    /// Hard cap on requests per phase
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Seconds to wait for outstanding responses after a phase's last send
    #[arg(long, default_value_t = 30.0)]
    drain: f64,
    /// Per-request timeout, seconds
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// Worker threads of the load generator's runtime
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// VAPI org id of the simulated calls
    #[arg(long, default_value = "loadtest-org")]
    org: String,
    /// Seed of the traffic generator
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shared secret: sent as x-vapi-secret (and given to a hub this tool starts)
    #[arg(long)]
    #[serde(skip_serializing)]
    secret: Option<String>,
    /// Keep the started hub's temp directory (database, hub.log)
    #[arg(long)]
    keep_temp: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Ingest(a) => a.client_threads,
        Command::Fanout(a) => a.client_threads,
        Command::Chat(a) => a.client_threads,
        Command::Recording(a) => a.client_threads,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        match cli.command {
            Command::Ingest(args) => ingest(args).await,
            Command::Fanout(args) => fanout::run(args).await,
            Command::Chat(args) => chat::run(args).await,
            Command::Recording(args) => recording::run(args).await,
        }
    };
    match rt.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// 1000 sleeps of 1 ms on an idle runtime: how late they wake, and the CPU steal meanwhile;
/// then the disk: how long a small durable write takes, which bounds every answer that waits for
/// a commit (the hub's temp database is in the same directory).
async fn noise() -> Res<report::Noise> {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let before = hub::system_cpu();
    for _ in 0..1000 {
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(1)).await;
        h.saturating_record((t.elapsed().saturating_sub(Duration::from_millis(1)).as_micros() as u64).max(1));
    }
    let steal_pct = match (before, hub::system_cpu()) {
        (Some(x), Some(y)) if y.total > x.total => Some(100.0 * y.steal.saturating_sub(x.steal) as f64 / (y.total - x.total) as f64),
        _ => None,
    };
    let probed = tokio::task::spawn_blocking(disk_sync).await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()));
    let disk_sync = probed.map_err(|e| eprintln!("loadtest: disk probe failed: {e}")).ok();
    let cpu_work_ms = tokio::task::spawn_blocking(cpu_work_ms).await.ok();
    Ok(report::Noise { timer_overshoot: load::Latency::of(&h), steal_pct, disk_sync, cpu_work_ms })
}

/// A fixed piece of single-threaded work (50 M xorshift steps), best of three: its time tells
/// a slower VM, or a slower day of the same one, from a slower hub.
fn cpu_work_ms() -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            let mut x = std::hint::black_box(0x9E37_79B9_7F4A_7C15u64);
            for _ in 0..50_000_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            std::hint::black_box(x);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .fold(f64::INFINITY, f64::min)
}

/// 500 writes of 4 KiB, each followed by `fdatasync` (what a SQLite commit waits for), at
/// rotating offsets of a file in the temp directory, 1 ms apart.
fn disk_sync() -> Res<load::Latency> {
    use std::os::unix::fs::FileExt;
    let path = std::env::temp_dir().join(format!("loadtest-disk-probe-{}.bin", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let page = [7u8; 4096];
    let mut run = || -> Res<()> {
        for i in 0..500u64 {
            file.write_all_at(&page, (i % 64) * 4096)?;
            let t = Instant::now();
            file.sync_data()?;
            h.saturating_record((t.elapsed().as_micros() as u64).max(1));
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    };
    let ran = run();
    let _ = std::fs::remove_file(&path);
    ran.map(|()| load::Latency::of(&h))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn validate(a: &IngestArgs) -> Res<()> {
    let ok_rate = |r: f64| r.is_finite() && r > 0.0 && r <= 100_000.0;
    let ok_secs = |d: f64| d.is_finite() && d > 0.0 && d <= 300.0;
    if !ok_rate(a.rate) {
        return Err("--rate must be in (0, 100000]".into());
    }
    if !ok_secs(a.duration) {
        return Err("--duration must be in (0, 300] seconds".into());
    }
    if a.tool_rate != 0.0 && (!ok_rate(a.tool_rate) || !ok_secs(a.tool_duration)) {
        return Err("--tool-rate must be 0 or in (0, 100000], --tool-duration in (0, 300]".into());
    }
    if a.baseline_duration.is_some_and(|d| d != 0.0 && !ok_secs(d)) {
        return Err("--baseline-duration must be 0 or in (0, 300]".into());
    }
    if !(0.0..=60.0).contains(&a.warmup) || !(0.0..=120.0).contains(&a.drain) || !ok_secs(a.request_timeout) {
        return Err("--warmup must be in [0, 60], --drain in [0, 120], --request-timeout in (0, 300]".into());
    }
    if let Some(url) = &a.url {
        loopback_base(url)?;
    }
    if a.calls == 0 || a.calls > 100_000 || a.max_requests == 0 || a.max_requests > 10_000_000 {
        return Err("--calls must be in [1, 100000], --max-requests in [1, 10000000]".into());
    }
    Ok(())
}

/// Only loopback targets: this tool is for this machine's hub.
fn loopback_base(url: &str) -> Res<String> {
    let u = reqwest::Url::parse(url)?;
    let host = u.host_str().unwrap_or_default();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || host == "[::1]";
    if !loopback {
        return Err(format!("--url must point at loopback (127.0.0.1, ::1 or localhost), not {host:?}").into());
    }
    let port = u.port_or_known_default().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("{}://{host}{port}", u.scheme()))
}

/// The hub binary: as given, or relative to the workspace root when run from elsewhere.
fn resolve_bin(p: &Path) -> PathBuf {
    if p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p);
    if root.exists() { root } else { p.to_path_buf() }
}

struct Probe<'a> {
    client: &'a reqwest::Client,
    metrics_url: String,
    hub_pid: Option<u32>,
    ticks: f64,
}

struct Before {
    at: Instant,
    hub_threads: std::collections::BTreeMap<u64, hub::ThreadSample>,
    hub: Option<hub::ProcSample>,
    me: Option<hub::ProcSample>,
    sys: Option<hub::SysCpu>,
    metrics: Option<prom::Snapshot>,
}

impl Probe<'_> {
    async fn metrics(&self) -> Option<prom::Snapshot> {
        let r = self.client.get(&self.metrics_url).timeout(Duration::from_secs(10)).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        Some(prom::parse(&r.text().await.ok()?))
    }

    async fn before(&self) -> Before {
        let metrics = self.metrics().await;
        Before {
            at: Instant::now(),
            hub_threads: self.hub_pid.map(|p| hub::threads(&p.to_string())).unwrap_or_default(),
            hub: self.hub_pid.and_then(|p| hub::sample(&p.to_string())),
            me: hub::sample("self"),
            sys: hub::system_cpu(),
            metrics,
        }
    }

    async fn after(&self, b: Before, client: load::ClientResult, db_bytes: Option<u64>) -> PhaseReport {
        let wall = b.at.elapsed().as_secs_f64().max(1e-3);
        let hub_now = self.hub_pid.and_then(|p| hub::sample(&p.to_string()));
        let threads_now = self.hub_pid.map(|p| hub::threads(&p.to_string())).unwrap_or_default();
        let cpu_by_thread = report::cpu_by_thread(&b.hub_threads, &threads_now, self.ticks, wall);
        let me_now = hub::sample("self");
        let sys_now = hub::system_cpu();
        let metrics = self.metrics().await;
        let answered = client.ok + client.non_2xx;
        let hub = match (b.hub, hub_now) {
            (Some(x), Some(y)) => {
                let cpu_s = y.cpu_ticks.saturating_sub(x.cpu_ticks) as f64 / self.ticks;
                Some(HubUse {
                    cpu_s,
                    req_per_cpu_s: (cpu_s > 0.0).then(|| answered as f64 / cpu_s),
                    rss_mib: y.rss_kib as f64 / 1024.0,
                    rss_peak_mib: y.hwm_kib as f64 / 1024.0,
                    threads: y.threads,
                    db_bytes,
                    cpu_by_thread,
                })
            }
            _ => None,
        };
        let loadgen_cpu_s = match (b.me, me_now) {
            (Some(x), Some(y)) => y.cpu_ticks.saturating_sub(x.cpu_ticks) as f64 / self.ticks,
            _ => 0.0,
        };
        let (system_cpu_busy_pct, system_cpu_steal_pct) = match (b.sys, sys_now) {
            (Some(x), Some(y)) if y.total > x.total => {
                let pct = |a: u64, b: u64| Some(100.0 * a.saturating_sub(b) as f64 / (y.total - x.total) as f64);
                (pct(y.busy, x.busy), pct(y.steal, x.steal))
            }
            _ => (None, None),
        };
        let hub_metrics = match (b.metrics, metrics) {
            (Some(x), Some(y)) => Some(prom::delta(&x, &y)),
            _ => None,
        };
        PhaseReport { client, hub, loadgen_cpu_s, system_cpu_busy_pct, system_cpu_steal_pct, hub_metrics }
    }
}

async fn ingest(args: IngestArgs) -> Res<()> {
    validate(&args)?;
    let started_at_unix = unix_now();
    let ticks = hub::clock_ticks();
    let machine = report::machine(ticks);
    let idle_noise = match noise().await {
        Ok(n) => Some(n),
        Err(e) => {
            eprintln!("loadtest: noise probe failed: {e}");
            None
        }
    };
    let max_in_flight =
        args.max_in_flight.unwrap_or_else(|| machine.open_files_limit.map(|n| n.saturating_sub(1000).clamp(100, 20_000)).unwrap_or(20_000));
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .pool_idle_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs_f64(args.request_timeout))
        .build()?;

    let (spawned, base, hub_pid) = match &args.url {
        Some(url) => (None, loopback_base(url)?, args.hub_pid),
        None => {
            let bin = resolve_bin(&args.hub_bin);
            eprintln!("loadtest: starting {} with a fresh SQLite database", bin.display());
            let h = hub::Hub::spawn(&bin, &client, args.secret.as_deref(), args.keep_temp, &[]).await?;
            eprintln!("loadtest: hub pid {} ready at {} (temp dir {})", h.pid, h.base_url, h.dir.display());
            let (base, pid) = (h.base_url.clone(), h.pid);
            (Some(h), base, Some(pid))
        }
    };
    let webhook_url = args.url.clone().unwrap_or_else(|| format!("{base}/vapi/webhook"));
    let mut poster = Poster::new(&webhook_url, args.secret.clone(), None);
    poster.http = client.clone();
    let target = Target { poster: Arc::new(poster), healthz_url: format!("{base}/healthz") };
    let probe = Probe { client: &client, metrics_url: format!("{base}/metrics"), hub_pid, ticks };
    let db_bytes = || spawned.as_ref().map(hub::Hub::db_bytes);
    let spec = |name: &str, rate: f64, secs: f64| PhaseSpec {
        name: name.to_string(),
        rate,
        duration: Duration::from_secs_f64(secs),
        max_requests: args.max_requests,
        max_in_flight,
        drain: Duration::from_secs_f64(args.drain),
    };
    let run_started = Instant::now();

    let warmup = if args.warmup > 0.0 {
        let mut src = CallMix::new(args.calls, &args.org, args.seed.wrapping_add(99));
        let w = load::run(&spec("warmup", (args.rate / 5.0).max(1.0), args.warmup), &target, &mut src, hub_pid).await?;
        eprintln!("loadtest: warm-up sent {} ({} ok)", w.sent, w.ok);
        Some(w)
    } else {
        None
    };

    let mut phases = Vec::new();
    let baseline = args.baseline_duration.unwrap_or(args.duration.min(10.0));
    let mut plan: Vec<(&str, f64, f64, Box<dyn Source>)> = Vec::new();
    if baseline > 0.0 {
        plan.push(("healthz", args.rate, baseline, Box::new(Healthz)));
    }
    plan.push(("ingest", args.rate, args.duration, Box::new(CallMix::new(args.calls, &args.org, args.seed))));
    if args.tool_rate > 0.0 {
        plan.push(("tool-calls", args.tool_rate, args.tool_duration, Box::new(ToolCalls::new(args.calls, &args.org, args.seed))));
    }
    for (name, rate, secs, mut src) in plan {
        tokio::time::sleep(Duration::from_secs(1)).await;
        eprintln!("loadtest: phase {name}: {rate}/s for {secs} s");
        let before = probe.before().await;
        let result = load::run(&spec(name, rate, secs), &target, src.as_mut(), hub_pid).await?;
        let p = probe.after(before, result, db_bytes()).await;
        eprintln!(
            "loadtest: phase {name}: sent {} ok {} non-2xx {} transport {} p99 {} ms",
            p.client.sent,
            p.client.ok,
            p.client.non_2xx,
            p.client.transport_errors,
            p.client.latency.as_ref().map(|l| format!("{:.2}", l.p99_ms)).unwrap_or_else(|| "-".into())
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

    let quantile = |name: &str, pick: fn(&load::Latency) -> f64| {
        phases.iter().find(|p| p.client.phase == name).and_then(|p| p.client.latency.as_ref()).map(pick)
    };
    let ratio = |pick: fn(&load::Latency) -> f64| match (quantile("ingest", pick), quantile("healthz", pick)) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let (ratio_p50, ratio_p99) = (ratio(|l| l.p50_ms), ratio(|l| l.p99_ms));
    let tool_overhead = phases.iter().find(|p| p.client.phase == "tool-calls").and_then(|p| report::tool_overhead("lookupCustomer", p));
    let mut notes = vec![
        format!("the load generator and the hub share this {}-core machine; see loadgen CPU and sysCPU%", machine.nproc),
        "hub CPU and RSS come from /proc/<pid>; quantiles of hub-side histograms are bucket estimates".into(),
    ];
    if args.url.is_none() {
        notes.push("hub started by this tool: SQLite (WAL, synchronous=FULL) in a fresh temp directory, SWITCHBOARD_LOG=warn".into());
    }
    notes.push(format!("run took {:.1} s; in-flight cap {max_in_flight}", run_started.elapsed().as_secs_f64()));
    let report = Report {
        scenario: "ingest",
        started_at_unix,
        finished_at_unix: unix_now(),
        machine,
        config: serde_json::to_value(&args)?,
        hub_spawned: args.url.is_none(),
        hub_exit,
        hub_log_warnings,
        idle_noise,
        warmup,
        phases,
        webhook_p50_over_healthz_p50: ratio_p50,
        webhook_p99_over_healthz_p99: ratio_p99,
        tool_overhead,
        notes,
    };
    print!("{}", report::render(&report));
    let (stamped, latest) = report::write_json(&args.out, &report)?;
    println!("wrote {} and {}", stamped.display(), latest.display());
    Ok(())
}
