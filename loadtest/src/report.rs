//! What a run found: the per-phase table, the tool-call overhead, the machine, as text on
//! stdout and as JSON in the results directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Res;
use crate::load::{ClientResult, Latency};
use crate::prom::{self, Delta, Hist, HistSummary};

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: Option<String>,
    pub kernel: Option<String>,
    pub mem_total_mib: Option<u64>,
    pub open_files_limit: Option<u64>,
    pub git_commit: Option<String>,
    /// Uncommitted changes in the work tree when the run started.
    pub git_dirty: Option<bool>,
    pub clock_ticks_per_s: f64,
}

fn git(args: &[&str]) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("git").args(args).current_dir(root).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn machine(clock_ticks: f64) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu_model: cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()),
        kernel: std::fs::read_to_string("/proc/version").ok().map(|s| s.trim().to_string()),
        mem_total_mib: meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib / 1024),
        open_files_limit: limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok()),
        git_commit: git(&["rev-parse", "HEAD"]),
        git_dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        clock_ticks_per_s: clock_ticks,
    }
}

/// The hub's side of a phase, from `/proc/<pid>` and the files it writes.
#[derive(Debug, Clone, Serialize)]
pub struct HubUse {
    pub cpu_s: f64,
    /// Requests answered (any status) per second of hub CPU time.
    pub req_per_cpu_s: Option<f64>,
    pub rss_mib: f64,
    pub rss_peak_mib: f64,
    pub threads: u64,
    pub db_bytes: Option<u64>,
    /// Hub CPU by thread name (tokio workers, SQLite connection threads, …), busiest first.
    pub cpu_by_thread: Vec<ThreadCpu>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadCpu {
    pub name: String,
    pub threads: usize,
    pub cpu_s: f64,
    /// The busiest single thread of that name, as a share of the phase's wall time (100 % = one core).
    pub busiest_thread_pct: f64,
    /// Voluntary context switches (blocking waits) of all threads of that name in the phase.
    pub voluntary_switches: u64,
    /// … and of the busiest one alone.
    pub busiest_thread_switches: u64,
}

/// CPU by thread name between two samples of a process's threads, busiest name first.
pub fn cpu_by_thread(
    before: &BTreeMap<u64, crate::hub::ThreadSample>,
    now: &BTreeMap<u64, crate::hub::ThreadSample>,
    ticks: f64,
    wall: f64,
) -> Vec<ThreadCpu> {
    let mut by_name: BTreeMap<String, ThreadCpu> = BTreeMap::new();
    for (tid, t) in now {
        let was = before.get(tid).cloned().unwrap_or_default();
        let used = t.ticks.saturating_sub(was.ticks) as f64 / ticks;
        let switches = t.switches.saturating_sub(was.switches);
        let e = by_name.entry(t.name.clone()).or_insert_with(|| ThreadCpu {
            name: t.name.clone(),
            threads: 0,
            cpu_s: 0.0,
            busiest_thread_pct: 0.0,
            voluntary_switches: 0,
            busiest_thread_switches: 0,
        });
        e.threads += 1;
        e.cpu_s += used;
        e.voluntary_switches += switches;
        if 100.0 * used / wall >= e.busiest_thread_pct {
            e.busiest_thread_pct = 100.0 * used / wall;
            e.busiest_thread_switches = switches;
        }
    }
    let mut out: Vec<ThreadCpu> = by_name.into_values().collect();
    out.sort_by(|a, b| b.cpu_s.total_cmp(&a.cpu_s));
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    #[serde(flatten)]
    pub client: ClientResult,
    pub hub: Option<HubUse>,
    /// CPU seconds of this load generator itself: it shares the machine with the hub.
    pub loadgen_cpu_s: f64,
    /// Whole-machine CPU busy share during the phase (100 % = every core busy).
    pub system_cpu_busy_pct: Option<f64>,
    /// Whole-machine CPU steal share during the phase: the hypervisor's, not this VM's, work.
    pub system_cpu_steal_pct: Option<f64>,
    /// Every hub histogram and counter that moved during the phase (quantiles bucket-estimated).
    pub hub_metrics: Option<Delta>,
}

/// End-to-end latency of tool calls against what the hub says the function itself took.
#[derive(Debug, Clone, Serialize)]
pub struct ToolOverhead {
    pub function: String,
    pub note: String,
    /// Exact (HdrHistogram), from intended send time to the last byte of the answer.
    pub client_e2e: Option<Latency>,
    /// `switchboard_webhook_duration_seconds{type="tool-calls"}` over the phase.
    pub hub_webhook: Option<HistSummary>,
    /// `switchboard_tool_call_duration_seconds{function=…}` (all outcomes) over the phase.
    pub function_own: Option<HistSummary>,
    pub hub_overhead_ms: Overhead,
    pub e2e_overhead_ms: Overhead,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Overhead {
    /// Exact for means (sums / counts).
    pub mean: Option<f64>,
    /// Difference of two quantiles (not the quantile of the difference); hub ones bucket-estimated.
    pub p50_est: Option<f64>,
    pub p99_est: Option<f64>,
}

fn merged(delta: &Delta, prefix: &str) -> Option<Hist> {
    let mut out: Option<Hist> = None;
    for (_, h) in delta.raw.iter().filter(|(k, _)| k.starts_with(prefix)) {
        match &mut out {
            Some(m) => m.add(h),
            None => out = Some(h.clone()),
        }
    }
    out
}

pub fn tool_overhead(function: &str, phase: &PhaseReport) -> Option<ToolOverhead> {
    let delta = phase.hub_metrics.as_ref()?;
    let hub = merged(delta, "switchboard_webhook_duration_seconds{type=\"tool-calls\"")
        .map(|h| prom::summarize("switchboard_webhook_duration_seconds{type=\"tool-calls\"}", &h));
    let own = merged(delta, &format!("switchboard_tool_call_duration_seconds{{function=\"{function}\""))
        .map(|h| prom::summarize(&format!("switchboard_tool_call_duration_seconds{{function=\"{function}\"}}"), &h));
    let sub = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
    let client = phase.client.by_type.get("tool-calls").cloned();
    let o = own.as_ref();
    let hub_overhead = Overhead {
        mean: sub(hub.as_ref().and_then(|h| h.mean_ms), o.and_then(|h| h.mean_ms)),
        p50_est: sub(hub.as_ref().and_then(|h| h.p50_ms_est), o.and_then(|h| h.p50_ms_est)),
        p99_est: sub(hub.as_ref().and_then(|h| h.p99_ms_est), o.and_then(|h| h.p99_ms_est)),
    };
    let e2e_overhead = Overhead {
        mean: sub(client.as_ref().map(|c| c.mean_ms), o.and_then(|h| h.mean_ms)),
        p50_est: sub(client.as_ref().map(|c| c.p50_ms), o.and_then(|h| h.p50_ms_est)),
        p99_est: sub(client.as_ref().map(|c| c.p99_ms), o.and_then(|h| h.p99_ms_est)),
    };
    Some(ToolOverhead {
        function: function.to_string(),
        note: "client e2e quantiles are exact (HdrHistogram, from intended send time); hub quantiles are estimated from the hub's \
               Prometheus buckets (factor-2 bounds, linear interpolation) and are coarse; means are exact (sum/count). \
               Overhead quantiles are differences of quantiles, not quantiles of per-request differences; where a quantile \
               sits in the first bucket (0-0.5 ms for functions) only its bucket is known, so trust the means there."
            .into(),
        client_e2e: client,
        hub_webhook: hub,
        function_own: own,
        hub_overhead_ms: hub_overhead,
        e2e_overhead_ms: e2e_overhead,
    })
}

/// How noisy the machine is with nothing running: how late 1 ms timer sleeps wake up.
#[derive(Debug, Clone, Serialize)]
pub struct Noise {
    pub timer_overshoot: Latency,
    pub steal_pct: Option<f64>,
    /// 4 KiB write + fdatasync in the temp directory.
    pub disk_sync: Option<Latency>,
    /// A fixed piece of CPU work, best of three (see `cpu_work_ms`).
    pub cpu_work_ms: Option<f64>,
}

impl Noise {
    /// One line for the printed report, after `when: `.
    pub fn line(&self) -> String {
        let t = &self.timer_overshoot;
        let mut line = format!(
            "1 ms timer sleeps overshoot p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; CPU steal {}%",
            t.p50_ms,
            t.p99_ms,
            t.max_ms,
            f(self.steal_pct, 0)
        );
        if let Some(ms) = self.cpu_work_ms {
            line += &format!("; fixed CPU work {ms:.0} ms");
        }
        if let Some(d) = &self.disk_sync {
            line += &format!("; 4 KiB fdatasync p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms", d.p50_ms, d.p99_ms, d.max_ms);
        }
        line
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub started_at_unix: u64,
    pub finished_at_unix: u64,
    pub machine: Machine,
    pub config: serde_json::Value,
    pub hub_spawned: bool,
    pub hub_exit: Option<String>,
    pub hub_log_warnings: Vec<String>,
    pub idle_noise: Option<Noise>,
    pub warmup: Option<ClientResult>,
    pub phases: Vec<PhaseReport>,
    /// ingest p50 / healthz p50, both client-side and exact.
    pub webhook_p50_over_healthz_p50: Option<f64>,
    /// ingest p99 / healthz p99, both client-side and exact.
    pub webhook_p99_over_healthz_p99: Option<f64>,
    pub tool_overhead: Option<ToolOverhead>,
    pub notes: Vec<String>,
}

/// A number for a table cell, `-` when there is none.
pub fn f(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.prec$}"),
        _ => "-".into(),
    }
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "machine: {} x {} | {} | commit {}{}",
        m.nproc,
        m.cpu_model.as_deref().unwrap_or("?"),
        m.kernel.as_deref().and_then(|k| k.split_whitespace().nth(2)).unwrap_or("?"),
        m.git_commit.as_deref().map(|c| &c[..c.len().min(12)]).unwrap_or("?"),
        if m.git_dirty == Some(true) { " (dirty)" } else { "" }
    );
    let _ = writeln!(s);
    if let Some(n) = &r.idle_noise {
        let _ = writeln!(s, "idle machine noise before the run: {}", n.line());
        let _ = writeln!(s);
    }
    const HEAD: [&str; 18] = [
        "phase",
        "target/s",
        "achieved/s",
        "sent",
        "ok",
        "non2xx",
        "transp",
        "drop",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "hubCPU s",
        "req/hubCPU-s",
        "hubRSS MiB",
        "sysCPU%",
        "steal%",
    ];
    const W: [usize; 18] = [11, 9, 11, 8, 8, 7, 7, 6, 8, 8, 9, 9, 9, 9, 13, 11, 8, 7];
    let row = |s: &mut String, cells: &[String]| {
        for (i, c) in cells.iter().enumerate() {
            let w = W.get(i).copied().unwrap_or(8);
            let _ = if i == 0 { write!(s, "{c:<w$}") } else { write!(s, "{c:>w$}") };
        }
        let _ = writeln!(s);
    };
    row(&mut s, &HEAD.map(String::from));
    for p in &r.phases {
        let c = &p.client;
        let l = c.latency.as_ref();
        let dropped = c.overload_dropped + c.not_sent_time_cap + c.unfinished;
        row(
            &mut s,
            &[
                c.phase.clone(),
                format!("{:.0}", c.target_rate),
                format!("{:.1}", c.achieved_rate),
                c.sent.to_string(),
                c.ok.to_string(),
                c.non_2xx.to_string(),
                c.transport_errors.to_string(),
                dropped.to_string(),
                f(l.map(|l| l.p50_ms), 2),
                f(l.map(|l| l.p90_ms), 2),
                f(l.map(|l| l.p99_ms), 2),
                f(l.map(|l| l.p999_ms), 2),
                f(l.map(|l| l.max_ms), 1),
                f(p.hub.as_ref().map(|h| h.cpu_s), 2),
                f(p.hub.as_ref().and_then(|h| h.req_per_cpu_s), 0),
                f(p.hub.as_ref().map(|h| h.rss_mib), 1),
                f(p.system_cpu_busy_pct, 0),
                f(p.system_cpu_steal_pct, 0),
            ],
        );
    }
    let _ = writeln!(s, "(latency from intended send time to last response byte, every request that got a response; drop = not sent");
    let _ = writeln!(s, " because of the in-flight cap or the time cap, or unanswered at the drain deadline)");
    for p in &r.phases {
        let c = &p.client;
        let _ = writeln!(
            s,
            "{}: statuses {:?}; loadgen CPU {:.2}s; dispatch lag p99 {} ms max {} ms; max in flight {}{}",
            c.phase,
            c.statuses,
            p.loadgen_cpu_s,
            f(c.dispatch_lag.as_ref().map(|l| l.p99_ms), 2),
            f(c.dispatch_lag.as_ref().map(|l| l.max_ms), 1),
            c.max_in_flight_seen,
            p.hub.as_ref().map(|h| format!("; hub peak RSS {:.1} MiB, {} threads", h.rss_peak_mib, h.threads)).unwrap_or_default()
        );
        if let Some(h) = &p.hub {
            let parts: Vec<String> = h
                .cpu_by_thread
                .iter()
                .filter(|t| t.cpu_s > 0.0)
                .map(|t| {
                    format!(
                        "{} x{} {:.2}s (busiest {:.0}% of a core, {} blocking waits)",
                        t.name, t.threads, t.cpu_s, t.busiest_thread_pct, t.busiest_thread_switches
                    )
                })
                .collect();
            let _ = writeln!(s, "  hub CPU by thread: {}", parts.join(", "));
        }
        for e in &c.error_samples {
            let _ = writeln!(s, "  error sample: {e}");
        }
    }
    if let Some(ingest) = r.phases.iter().find(|p| p.client.phase == "ingest") {
        let _ = writeln!(s);
        let _ = writeln!(s, "ingest by message type (client side, exact):");
        let _ = writeln!(s, "{:<20}{:>8}{:>9}{:>9}{:>9}{:>9}{:>9}", "type", "count", "p50ms", "p90ms", "p99ms", "p99.9ms", "max ms");
        for (k, l) in &ingest.client.by_type {
            let _ = writeln!(
                s,
                "{:<20}{:>8}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.1}",
                k, l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        let tl = &ingest.client.timeline;
        if !tl.is_empty() {
            let join = |v: Vec<String>| v.join(" ");
            let _ = writeln!(s);
            let _ = writeln!(s, "ingest per second of intended send time (client side):");
            let _ = writeln!(s, "  p99 ms, all:    {}", join(tl.iter().map(|x| format!("{:.0}", x.p99_ms)).collect()));
            let _ = writeln!(s, "  p99 ms, stored: {}", join(tl.iter().map(|x| f(x.stored_p99_ms, 0)).collect()));
            let res = &ingest.client.resources;
            let _ = writeln!(s, "  in flight (1/s): {}", join(res.iter().map(|x| x.in_flight.to_string()).collect()));
            let _ = writeln!(s, "  hub RSS MiB (1/s): {}", join(res.iter().map(|x| f(x.hub_rss_mib, 0)).collect()));
        }
        if let Some(d) = &ingest.hub_metrics {
            hub_table(&mut s, "ingest: hub-side histograms (means exact; quantiles bucket-estimated)", d);
        }
    }
    if let Some(t) = &r.tool_overhead {
        let _ = writeln!(s);
        let _ = writeln!(s, "tool-call overhead ({}):", t.function);
        let _ = writeln!(
            s,
            "{:<42}{:>7}{:>10}{:>10}{:>10}{:>17}{:>17}",
            "", "count", "mean ms", "p50 ms", "p99 ms", "p50 bucket ms", "p99 bucket ms"
        );
        if let Some(c) = &t.client_e2e {
            let _ = writeln!(
                s,
                "{:<42}{:>7}{:>10.3}{:>10.3}{:>10.3}{:>17}{:>17}",
                "client end-to-end (exact)", c.count, c.mean_ms, c.p50_ms, c.p99_ms, "", ""
            );
        }
        for (label, h) in
            [("hub webhook total, tool-calls (p est.)", &t.hub_webhook), ("function's own run time (p est.)", &t.function_own)]
        {
            if let Some(h) = h {
                let _ = writeln!(
                    s,
                    "{:<42}{:>7}{:>10}{:>10}{:>10}{:>17}{:>17}",
                    label,
                    h.count,
                    f(h.mean_ms, 3),
                    f(h.p50_ms_est, 3),
                    f(h.p99_ms_est, 3),
                    bucket(h.p50_bucket_ms),
                    bucket(h.p99_bucket_ms)
                );
            }
        }
        for (label, o) in
            [("hub overhead = hub total - function", &t.hub_overhead_ms), ("e2e overhead = client - function", &t.e2e_overhead_ms)]
        {
            let _ = writeln!(s, "{:<42}{:>7}{:>10}{:>10}{:>10}", label, "", f(o.mean, 3), f(o.p50_est, 3), f(o.p99_est, 3));
        }
        let exact = r.phases.iter().find(|p| p.client.phase == "tool-calls").map(|p| (&p.client.hub_added, &p.client.e2e_added));
        if let Some((hub, e2e)) = exact {
            for (label, l) in [("hub added, per request (exact)", hub), ("client added, per request (exact)", e2e)] {
                if let Some(l) = l {
                    let _ = writeln!(
                        s,
                        "{:<42}{:>7}{:>10.3}{:>10.3}{:>10.3}   p99.9 {:.3} ms, max {:.3} ms",
                        label, l.count, l.mean_ms, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
                    );
                }
            }
            let _ = writeln!(
                s,
                "(per request: the hub's Server-Timing header gives the functions' own time and its whole handling; \
                 hub added = handling − functions, client added = client latency − functions)"
            );
        }
        let _ = writeln!(s, "({})", t.note);
        if let Some(d) = r.phases.iter().find(|p| p.client.phase == "tool-calls").and_then(|p| p.hub_metrics.as_ref()) {
            hub_table(&mut s, "tool-calls: hub-side histograms (means exact; quantiles bucket-estimated)", d);
        }
    }
    if let Some(ratio) = r.webhook_p99_over_healthz_p99 {
        let _ = writeln!(s);
        let _ = writeln!(s, "webhook / healthz at the same rate: p50 ratio {}, p99 ratio {ratio:.2}", f(r.webhook_p50_over_healthz_p50, 2));
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

fn bucket(b: Option<[f64; 2]>) -> String {
    match b {
        Some([lo, hi]) if hi.is_finite() => format!("{lo:.3}-{hi:.3}"),
        Some([lo, _]) => format!(">{lo:.1}"),
        None => "-".into(),
    }
}

fn hub_table(s: &mut String, title: &str, d: &Delta) {
    let _ = writeln!(s);
    let _ = writeln!(s, "{title}:");
    let _ = writeln!(s, "{:<76}{:>8}{:>10}{:>10}{:>10}{:>17}", "series", "count", "mean ms", "p50~ ms", "p99~ ms", "p99 bucket ms");
    for h in &d.histograms {
        let name = h.series.trim_start_matches("switchboard_");
        let _ = writeln!(
            s,
            "{:<76}{:>8}{:>10}{:>10}{:>10}{:>17}",
            name,
            h.count,
            f(h.mean_ms, 3),
            f(h.p50_ms_est, 3),
            f(h.p99_ms_est, 3),
            bucket(h.p99_bucket_ms)
        );
    }
    let moved: BTreeMap<&String, &f64> = d.counters.iter().filter(|(k, _)| !k.ends_with("_created")).collect();
    if !moved.is_empty() {
        let _ = writeln!(
            s,
            "counters moved: {}",
            moved.iter().map(|(k, v)| format!("{} +{v}", k.trim_start_matches("switchboard_"))).collect::<Vec<_>>().join(", ")
        );
    }
}

/// Writes `<out>/ingest-<unix>.json` and `<out>/ingest-latest.json`; returns both paths.
pub fn write_json(out: &Path, r: &Report) -> Res<(PathBuf, PathBuf)> {
    write_named(out, r.scenario, r.started_at_unix, r)
}

/// Writes `<out>/<scenario>-<unix>.json` and `<out>/<scenario>-latest.json`; returns both paths.
pub fn write_named<T: Serialize>(out: &Path, scenario: &str, started_at_unix: u64, r: &T) -> Res<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out)?;
    let text = serde_json::to_string_pretty(r)?;
    let stamped = out.join(format!("{scenario}-{started_at_unix}.json"));
    let latest = out.join(format!("{scenario}-latest.json"));
    std::fs::write(&stamped, &text)?;
    std::fs::write(&latest, &text)?;
    Ok((stamped, latest))
}
