//! What a `fanout` run found: the idle-memory phase, one row per delivery phase, the targets
//! of the issue, as text on stdout and as JSON in the results directory.

use crate::report::f;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::fanout::FanoutArgs;
use crate::load::Latency;
use crate::prom::Delta;
use crate::report::{Machine, Noise, ThreadCpu};
use crate::supervisors::OpenStats;
use crate::traffic::SendStats;

/// The hub and the machine over one measured window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowUse {
    pub wall_s: f64,
    pub hub_cpu_s: Option<f64>,
    pub hub_rss_mib: Option<f64>,
    pub hub_rss_peak_mib: Option<f64>,
    pub hub_threads: Option<u64>,
    pub hub_cpu_by_thread: Vec<ThreadCpu>,
    /// CPU seconds of this tool: webhooks, and every supervisor socket's reading and parsing.
    pub loadgen_cpu_s: Option<f64>,
    /// Whole machine, 100 % = every core busy.
    pub system_cpu_busy_pct: Option<f64>,
    pub system_cpu_steal_pct: Option<f64>,
    /// Busy time of everything that is neither the hub nor this tool (other builds, …).
    pub other_processes_cpu_pct: Option<f64>,
    pub hub_metrics: Option<Delta>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Consistency {
    pub sockets: u64,
    pub subscribed: u64,
    /// Sequence numbers skipped on a socket's topic (and never seen later).
    pub lost: u64,
    pub duplicated: u64,
    /// Arrived after a higher sequence number of the same topic.
    pub reordered: u64,
    pub epoch_changes: u64,
    pub resyncs: u64,
    pub error_frames: u64,
    pub bad_frames: u64,
    pub foreign_events: u64,
    /// Sockets the hub closed before the end, by close code (0 = dropped without a close frame).
    pub closed_by_hub: BTreeMap<u16, u64>,
    pub close_reasons: Vec<String>,
    /// Sockets whose last traffic event has a lower sequence number than other sockets of the topic saw.
    pub behind_head_sockets: u64,
    pub behind_head_events: u64,
    /// Frames a subscribed socket should have had for an accepted webhook (2xx) and did not get.
    pub undelivered: u64,
    /// Frames beyond that (a duplicate, or an event of a webhook that was not answered 2xx).
    pub extra_deliveries: u64,
    /// Frames naming a message that was never sent.
    pub unmatched: u64,
    /// Socket tasks that did not report at the end.
    pub tasks_lost: u64,
}

impl Consistency {
    pub fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.epoch_changes == 0
            && self.resyncs == 0
            && self.closed_by_hub.is_empty()
            && self.behind_head_sockets == 0
            && self.undelivered == 0
            && self.extra_deliveries == 0
            && self.unmatched == 0
            && self.tasks_lost == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondP99 {
    /// Second of send time since the traffic started.
    pub second: usize,
    pub frames: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    pub name: String,
    pub supervisors: usize,
    pub on_calls: usize,
    pub on_single_calls: usize,
    pub calls: usize,
    pub open: OpenStats,
    pub send: SendStats,
    pub frames_expected: u64,
    /// Frames that carried a generated message, over all sockets.
    pub frames_delivered: u64,
    /// Other events on the sockets (presence at subscribe time, …).
    pub other_events: u64,
    /// Webhook send → frame received, every delivered frame (exact, HdrHistogram).
    pub latency: Option<Latency>,
    pub by_class: BTreeMap<String, Latency>,
    /// By second of send time (2 significant digits).
    pub timeline: Vec<SecondP99>,
    /// Frames delivered / time from the first webhook to the last frame (or the end of the drain).
    pub deliveries_per_s: f64,
    pub deliveries_per_hub_cpu_s: Option<f64>,
    /// Waiting for the last frames, after every webhook was answered.
    pub drain_s: f64,
    pub drained: bool,
    /// From the first webhook to the end of the drain.
    pub window: WindowUse,
    pub consistency: Consistency,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub requested: usize,
    /// `calls`, or `none` (connected, not subscribed).
    pub topic: String,
    pub open: OpenStats,
    /// Hub RSS with no socket (after the warm-up), KiB.
    pub rss0_kib: Option<u64>,
    /// Hub RSS at the end of the hold with every socket open, KiB.
    pub rss_n_kib: Option<u64>,
    pub rss_n_max_kib: Option<u64>,
    pub rss_after_close_kib: Option<u64>,
    /// Once a second during the hold.
    pub rss_samples_kib: Vec<u64>,
    /// (RSS(N) − RSS(0)) / N.
    pub per_socket_bytes: Option<f64>,
    pub per_socket_kib: Option<f64>,
    pub hub_fds_before: Option<u64>,
    pub hub_fds_held: Option<u64>,
    /// The hold: the hub's CPU with every socket idle (pings every 25 s).
    pub hold_window: WindowUse,
    /// This tool's own RSS growth per socket (its WebSocket client and read buffer), KiB.
    pub loadgen_rss_per_socket_kib: Option<f64>,
    pub ended_during_hold: usize,
    pub closed_by_hub: BTreeMap<u16, u64>,
    pub tasks_lost: usize,
}

/// One target of the issue, against what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub what: String,
    pub limit: String,
    pub measured: String,
    /// None when the run did not measure it.
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub scenario: &'static str,
    pub started_at_unix: u64,
    pub finished_at_unix: u64,
    pub machine: Machine,
    /// `/proc/loadavg` when the run started: how busy the machine was before.
    pub load_average_before: Option<String>,
    pub config: serde_json::Value,
    pub hub_spawned: bool,
    pub hub_exit: Option<String>,
    pub hub_log_warnings: Vec<String>,
    pub idle_noise: Option<Noise>,
    pub warmup: Option<DeliveryReport>,
    pub idle: Option<IdleReport>,
    pub phases: Vec<DeliveryReport>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
}

pub fn targets(args: &FanoutArgs, idle: Option<&IdleReport>, phases: &[DeliveryReport]) -> Vec<Target> {
    let mut t = Vec::new();
    let thousand = phases.iter().find(|p| p.supervisors == 1000);
    t.push(Target {
        what: "p99 delivery with 1,000 supervisors at 2,000 events/s in (2 cores)".into(),
        limit: "<= 10 ms".into(),
        measured: match thousand {
            Some(p) => format!(
                "{} ms at {:.0}/s in ({} on calls, {} on single calls)",
                f(p.latency.as_ref().map(|l| l.p99_ms), 2),
                p.send.achieved_rate,
                p.on_calls,
                p.on_single_calls
            ),
            None => "not run".into(),
        },
        met: thousand.filter(|_| args.rate >= 2000.0).and_then(|p| p.latency.as_ref().map(|l| l.p99_ms <= 10.0)),
    });
    t.push(Target {
        what: format!(
            "hub RSS per idle supervisor socket ({} sockets, subscribed to {})",
            idle.map(|i| i.open.subscribed).unwrap_or(0),
            idle.map(|i| i.topic.as_str()).unwrap_or("-")
        ),
        limit: "<= 10 KiB".into(),
        measured: idle.and_then(|i| i.per_socket_kib).map(|k| format!("{k:.2} KiB")).unwrap_or_else(|| "not run".into()),
        met: idle.filter(|i| i.open.subscribed >= 10_000 && i.topic == "calls").and_then(|i| i.per_socket_kib.map(|k| k <= 10.0)),
    });
    let (lost, dup, reord, other): (u64, u64, u64, u64) = phases.iter().fold((0, 0, 0, 0), |acc, p| {
        let c = &p.consistency;
        (
            acc.0 + c.lost + c.undelivered + c.behind_head_events,
            acc.1 + c.duplicated + c.extra_deliveries,
            acc.2 + c.reordered,
            acc.3 + c.resyncs + c.epoch_changes + c.closed_by_hub.values().sum::<u64>() + c.unmatched + c.tasks_lost,
        )
    });
    t.push(Target {
        what: "no event lost, duplicated or reordered (every socket, every phase)".into(),
        limit: "0".into(),
        measured: format!("lost {lost}, duplicated {dup}, reordered {reord}, resyncs/closes/other anomalies {other}"),
        met: (!phases.is_empty()).then(|| phases.iter().all(|p| p.consistency.clean())),
    });
    t
}

fn lat_row(s: &mut String, label: &str, l: &Latency) {
    let _ =
        writeln!(s, "  {label:<34}{:>9}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.1}", l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms);
}

fn window_line(s: &mut String, w: &WindowUse) {
    let parts: Vec<String> = w
        .hub_cpu_by_thread
        .iter()
        .filter(|t| t.cpu_s > 0.0)
        .map(|t| format!("{} x{} {:.2}s (busiest {:.0}% of a core)", t.name, t.threads, t.cpu_s, t.busiest_thread_pct))
        .collect();
    let _ = writeln!(
        s,
        "  machine: sysCPU {}%, steal {}%, other processes {}%; loadgen CPU {} s; hub CPU {} s, peak RSS {} MiB, {} threads",
        f(w.system_cpu_busy_pct, 0),
        f(w.system_cpu_steal_pct, 0),
        f(w.other_processes_cpu_pct, 0),
        f(w.loadgen_cpu_s, 2),
        f(w.hub_cpu_s, 2),
        f(w.hub_rss_peak_mib, 1),
        w.hub_threads.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
    );
    if !parts.is_empty() {
        let _ = writeln!(s, "  hub CPU by thread: {}", parts.join(", "));
    }
    if let Some(d) = &w.hub_metrics {
        let interesting: Vec<String> = d
            .counters
            .iter()
            .filter(|(k, _)| k.contains("ws_") || k.contains("webhooks_total"))
            .map(|(k, v)| format!("{} {v:+}", k.trim_start_matches("switchboard_")))
            .collect();
        if !interesting.is_empty() {
            let _ = writeln!(s, "  hub counters moved: {}", interesting.join(", "));
        }
    }
}

pub fn render(r: &FanoutReport) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "machine: {} x {} | {} | commit {}{} | load average before: {}",
        m.nproc,
        m.cpu_model.as_deref().unwrap_or("?"),
        m.kernel.as_deref().and_then(|k| k.split_whitespace().nth(2)).unwrap_or("?"),
        m.git_commit.as_deref().map(|c| &c[..c.len().min(12)]).unwrap_or("?"),
        if m.git_dirty == Some(true) { " (dirty)" } else { "" },
        r.load_average_before.as_deref().unwrap_or("?")
    );
    if let Some(n) = &r.idle_noise {
        let _ = writeln!(s, "idle machine noise before the run: {}", n.line());
    }
    if let Some(i) = &r.idle {
        let _ = writeln!(s);
        let _ = writeln!(s, "idle sockets (subscribed to: {}, held {:.0} s):", i.topic, i.hold_window.wall_s);
        let _ = writeln!(
            s,
            "  opened {} of {} in {:.1} s ({:.0}/s; {} failed{}); connect+subscribe p50 {} ms p99 {} ms max {} ms",
            i.open.subscribed,
            i.requested,
            i.open.wall_s,
            i.open.rate,
            i.open.failed,
            if i.open.error_samples.is_empty() { String::new() } else { format!(": {:?}", i.open.error_samples) },
            f(i.open.latency.as_ref().map(|l| l.p50_ms), 2),
            f(i.open.latency.as_ref().map(|l| l.p99_ms), 2),
            f(i.open.latency.as_ref().map(|l| l.max_ms), 1),
        );
        let mib = |k: Option<u64>| f(k.map(|k| k as f64 / 1024.0), 1);
        let _ = writeln!(
            s,
            "  hub RSS: RSS(0) {} MiB, RSS(N) {} MiB (max during hold {} MiB), after closing {} MiB; fds {} -> {}",
            mib(i.rss0_kib),
            mib(i.rss_n_kib),
            mib(i.rss_n_max_kib),
            mib(i.rss_after_close_kib),
            i.hub_fds_before.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            i.hub_fds_held.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
        );
        let _ = writeln!(
            s,
            "  (RSS(N) - RSS(0)) / N = {} bytes = {} KiB per idle socket; load generator's own RSS {} KiB per socket",
            f(i.per_socket_bytes, 0),
            f(i.per_socket_kib, 2),
            f(i.loadgen_rss_per_socket_kib, 2)
        );
        let _ = writeln!(
            s,
            "  hub CPU while idle: {} s over {:.0} s; sockets the hub closed: {:?}; tasks lost {}",
            f(i.hold_window.hub_cpu_s, 2),
            i.hold_window.wall_s,
            i.closed_by_hub,
            i.tasks_lost
        );
        window_line(&mut s, &i.hold_window);
    }
    if !r.phases.is_empty() {
        let _ = writeln!(s);
        const HEAD: [&str; 22] = [
            "phase",
            "sup",
            "calls/1",
            "in/s",
            "ok",
            "err",
            "expected",
            "delivered",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "deliv/s",
            "deliv/hubCPUs",
            "hubCPU s",
            "hubRSS MiB",
            "sysCPU%",
            "other%",
            "lost",
            "dup",
            "reord",
            "resync/close",
        ];
        const W: [usize; 22] = [13, 6, 10, 8, 7, 5, 10, 10, 10, 10, 10, 10, 9, 14, 9, 11, 8, 7, 6, 5, 6, 13];
        let row = |s: &mut String, cells: &[String]| {
            for (i, c) in cells.iter().enumerate() {
                let w = W.get(i).copied().unwrap_or(8);
                let _ = if i == 0 { write!(s, "{c:<w$}") } else { write!(s, "{c:>w$}") };
            }
            let _ = writeln!(s);
        };
        row(&mut s, &HEAD.map(String::from));
        for p in &r.phases {
            let l = p.latency.as_ref();
            let c = &p.consistency;
            row(
                &mut s,
                &[
                    p.name.clone(),
                    p.open.subscribed.to_string(),
                    format!("{}/{}", p.on_calls, p.on_single_calls),
                    format!("{:.0}", p.send.achieved_rate),
                    p.send.ok.to_string(),
                    (p.send.non_2xx + p.send.transport_errors + p.send.not_sent + p.send.unanswered).to_string(),
                    p.frames_expected.to_string(),
                    p.frames_delivered.to_string(),
                    f(l.map(|l| l.p50_ms), 2),
                    f(l.map(|l| l.p99_ms), 2),
                    f(l.map(|l| l.p999_ms), 2),
                    f(l.map(|l| l.max_ms), 1),
                    format!("{:.0}", p.deliveries_per_s),
                    f(p.deliveries_per_hub_cpu_s, 0),
                    f(p.window.hub_cpu_s, 2),
                    f(p.window.hub_rss_mib, 1),
                    f(p.window.system_cpu_busy_pct, 0),
                    f(p.window.other_processes_cpu_pct, 0),
                    (c.lost + c.undelivered + c.behind_head_events).to_string(),
                    (c.duplicated + c.extra_deliveries).to_string(),
                    c.reordered.to_string(),
                    format!("{}/{}", c.resyncs + c.epoch_changes, c.closed_by_hub.values().sum::<u64>()),
                ],
            );
        }
        let _ = writeln!(s, "(latency: webhook send -> frame received, every delivered frame, one clock; calls/1 = sockets on `calls` /");
        let _ = writeln!(s, " on single calls; err = webhooks non-2xx, failed, not sent or unanswered; lost = sequence gaps + frames");
        let _ = writeln!(s, " never delivered + tail missing; dup = duplicates + deliveries beyond the subscribers)");
        for p in &r.phases {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "{}: {} sockets ({} failed), opened in {:.1} s, connect+subscribe p99 {} ms; {} calls; webhooks {} sent ({} partial, {} final, {} speech), statuses {:?}",
                p.name,
                p.open.subscribed,
                p.open.failed,
                p.open.wall_s,
                f(p.open.latency.as_ref().map(|l| l.p99_ms), 1),
                p.calls,
                p.send.sent,
                p.send.partials,
                p.send.finals,
                p.send.speech,
                p.send.statuses
            );
            let _ = writeln!(
                s,
                "  {:<34}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
                "latency by kind", "count", "p50ms", "p90ms", "p99ms", "p99.9ms", "max ms"
            );
            for (k, l) in &p.by_class {
                lat_row(&mut s, k, l);
            }
            if let Some(l) = &p.send.webhook_latency {
                lat_row(&mut s, "webhook HTTP round trip", l);
            }
            for (k, l) in &p.send.webhook_latency_by_kind {
                lat_row(&mut s, &format!("  of which {k}"), l);
            }
            if let Some(l) = &p.send.dispatch_lag {
                lat_row(&mut s, "webhook dispatch lag", l);
            }
            let tl: Vec<String> = p.timeline.iter().map(|x| format!("{:.0}", x.p99_ms)).collect();
            let _ = writeln!(s, "  p99 ms per second of send time: {}", tl.join(" "));
            let c = &p.consistency;
            let _ = writeln!(
                s,
                "  consistency: {} sockets; gaps {}, undelivered {}, behind head {} sockets/{} events, duplicated {}, extra {}, reordered {}, \
                 epoch changes {}, resyncs {}, closed by hub {:?}{}, error frames {}, bad frames {}, unmatched {}; answers drained in {:.1} s, frames drained {} in {:.1} s more: {}",
                c.subscribed,
                c.lost,
                c.undelivered,
                c.behind_head_sockets,
                c.behind_head_events,
                c.duplicated,
                c.extra_deliveries,
                c.reordered,
                c.epoch_changes,
                c.resyncs,
                c.closed_by_hub,
                if c.close_reasons.is_empty() { String::new() } else { format!(" {:?}", c.close_reasons) },
                c.error_frames,
                c.bad_frames,
                c.unmatched,
                p.send.answers_drain_s,
                p.drained,
                p.drain_s,
                if c.clean() { "clean" } else { "NOT CLEAN" }
            );
            for e in &p.send.error_samples {
                let _ = writeln!(s, "  webhook error sample: {e}");
            }
            window_line(&mut s, &p.window);
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "targets:");
    for t in &r.targets {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        let _ = writeln!(s, "  {:<72} {:<10} measured {:<60} {verdict}", t.what, t.limit, t.measured);
    }
    if !r.hub_log_warnings.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "hub log (last warnings):");
        for l in &r.hub_log_warnings {
            let _ = writeln!(s, "  {l}");
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}
