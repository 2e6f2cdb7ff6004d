//! What a `chat` run found: one row per phase (pacing, K, direct or hub), the hub set against
//! the direct streams at the same K, the targets, as text on stdout and as JSON in the
//! results directory (`chat-<unix>.json`, `chat-latest.json`).

use crate::report::f;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path as FsPath, PathBuf};

use serde::Serialize;

use crate::Res;
use crate::chat::Path;
use crate::load::Latency;
use crate::report::{Machine, Noise};

#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub mode: String,
    pub delay_ms: u64,
    pub path: Path,
    pub k: usize,
    /// Rounds of K concurrent streams, one after the other (small K runs several to have samples).
    pub rounds: u64,
    /// K x rounds: the streams this phase should have run.
    pub streams: u64,
    /// Streams sent (hub: those whose session could be created).
    pub started: u64,
    pub ok: u64,
    /// Streams that did not end with the exact text and one `done`, by reason (incl. sessions not created).
    pub lost: u64,
    pub failures: BTreeMap<String, u64>,
    pub failure_samples: Vec<String>,
    /// Request sent to first non-empty content, every stream that had content.
    pub ttfb: Option<Latency>,
    /// Between consecutive content events of a stream, all streams.
    pub gap: Option<Latency>,
    /// Request sent to response headers.
    pub headers: Option<Latency>,
    /// Last content to the end marker (`[DONE]` / `done`).
    pub tail: Option<Latency>,
    pub content_events_per_stream: Option<f64>,
    /// Most streams open at once (headers received, not yet ended).
    pub peak_open: u64,
    /// One-round phases: from the first send to the last response headers, and streams set up per second in it.
    pub setup_span_s: Option<f64>,
    pub setup_per_s: Option<f64>,
    /// Machine-wide listen-queue overflows during the phase (a dropped SYN costs its connection ~1 s).
    pub listen_overflows: Option<u64>,
    /// Hub only: creating the K sessions, before the clock starts.
    pub sessions_s: Option<f64>,
    pub wall_s: f64,
    pub hub_cpu_s: Option<f64>,
    /// Hub CPU seconds by thread name.
    pub hub_cpu_by_thread: BTreeMap<String, f64>,
    pub mock_cpu_s: Option<f64>,
    pub loadgen_cpu_s: Option<f64>,
    pub hub_rss_end_mib: Option<f64>,
    /// Sampled every 100 ms during the phase.
    pub hub_rss_max_mib: Option<f64>,
    /// VmHWM: the hub's peak since it started.
    pub hub_rss_hwm_mib: Option<f64>,
    pub hub_threads: Option<u64>,
    pub sys_busy_pct: Option<f64>,
    pub steal_pct: Option<f64>,
    /// Whole-machine busy share not used by the hub, the mock or this tool (other builds, benchmarks…).
    pub other_pct: Option<f64>,
}

impl PhaseResult {
    pub fn new(mode: &str, delay_ms: u64, path: Path, k: usize) -> Self {
        PhaseResult {
            mode: mode.to_string(),
            delay_ms,
            path,
            k,
            rounds: 1,
            streams: 0,
            started: 0,
            ok: 0,
            lost: 0,
            failures: BTreeMap::new(),
            failure_samples: Vec::new(),
            ttfb: None,
            gap: None,
            headers: None,
            tail: None,
            content_events_per_stream: None,
            peak_open: 0,
            setup_span_s: None,
            setup_per_s: None,
            listen_overflows: None,
            sessions_s: None,
            wall_s: 0.0,
            hub_cpu_s: None,
            hub_cpu_by_thread: BTreeMap::new(),
            mock_cpu_s: None,
            loadgen_cpu_s: None,
            hub_rss_end_mib: None,
            hub_rss_max_mib: None,
            hub_rss_hwm_mib: None,
            hub_threads: None,
            sys_busy_pct: None,
            steal_pct: None,
            other_pct: None,
        }
    }
}

/// The hub against the direct streams at the same pacing and K, in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Compare {
    pub mode: String,
    pub k: usize,
    pub direct_ttfb_p50_ms: Option<f64>,
    pub hub_ttfb_p50_ms: Option<f64>,
    pub added_ttfb_p50_ms: Option<f64>,
    pub direct_ttfb_p99_ms: Option<f64>,
    pub hub_ttfb_p99_ms: Option<f64>,
    pub added_ttfb_p99_ms: Option<f64>,
    pub direct_gap_p50_ms: Option<f64>,
    pub hub_gap_p50_ms: Option<f64>,
    pub added_gap_p50_ms: Option<f64>,
    pub direct_gap_p99_ms: Option<f64>,
    pub hub_gap_p99_ms: Option<f64>,
    pub added_gap_p99_ms: Option<f64>,
    pub direct_lost: Option<u64>,
    pub hub_lost: u64,
    pub hub_peak_open: u64,
    /// Hub CPU per stream of the hub phase, ms.
    pub hub_cpu_ms_per_stream: Option<f64>,
}

pub fn compare(direct: Option<&PhaseResult>, hub: &PhaseResult) -> Compare {
    fn ttfb(p: &PhaseResult) -> Option<&Latency> {
        p.ttfb.as_ref()
    }
    fn gap(p: &PhaseResult) -> Option<&Latency> {
        p.gap.as_ref()
    }
    let q = |p: Option<&PhaseResult>, pick: fn(&PhaseResult) -> Option<&Latency>, f: fn(&Latency) -> f64| p.and_then(pick).map(f);
    let p50 = |l: &Latency| l.p50_ms;
    let p99 = |l: &Latency| l.p99_ms;
    let sub = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
    let (dt50, ht50) = (q(direct, ttfb, p50), q(Some(hub), ttfb, p50));
    let (dt99, ht99) = (q(direct, ttfb, p99), q(Some(hub), ttfb, p99));
    let (dg50, hg50) = (q(direct, gap, p50), q(Some(hub), gap, p50));
    let (dg99, hg99) = (q(direct, gap, p99), q(Some(hub), gap, p99));
    Compare {
        mode: hub.mode.clone(),
        k: hub.k,
        direct_ttfb_p50_ms: dt50,
        hub_ttfb_p50_ms: ht50,
        added_ttfb_p50_ms: sub(ht50, dt50),
        direct_ttfb_p99_ms: dt99,
        hub_ttfb_p99_ms: ht99,
        added_ttfb_p99_ms: sub(ht99, dt99),
        direct_gap_p50_ms: dg50,
        hub_gap_p50_ms: hg50,
        added_gap_p50_ms: sub(hg50, dg50),
        direct_gap_p99_ms: dg99,
        hub_gap_p99_ms: hg99,
        added_gap_p99_ms: sub(hg99, dg99),
        direct_lost: direct.map(|d| d.lost),
        hub_lost: hub.lost,
        hub_peak_open: hub.peak_open,
        hub_cpu_ms_per_stream: hub.hub_cpu_s.filter(|_| hub.started > 0).map(|c| 1000.0 * c / hub.started as f64),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    /// None: not measured in this run.
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub started_at_unix: u64,
    pub finished_at_unix: u64,
    pub machine: Machine,
    pub config: serde_json::Value,
    pub idle_noise: Option<Noise>,
    /// The same probe after the hub and the mock stopped.
    pub end_noise: Option<Noise>,
    /// Characters of the mock's reference answer, by pacing.
    pub expected_chars: BTreeMap<String, usize>,
    pub warmup: Vec<PhaseResult>,
    pub phases: Vec<PhaseResult>,
    pub compare: Vec<Compare>,
    /// The largest paced K whose hub phase had every stream complete and exact.
    pub max_paced_k_no_loss: Option<usize>,
    /// The most paced streams open at once in a hub phase without any loss.
    pub max_paced_concurrent_no_loss: Option<u64>,
    pub targets: Vec<Target>,
    pub hub_exit: Option<String>,
    pub mock_exit: Option<String>,
    pub hub_log_tail: Vec<String>,
    pub mock_log_tail: Vec<String>,
    pub notes: Vec<String>,
}

/// The targets, against what this run measured.
pub fn with_targets(mut r: Report) -> Report {
    let mut t = Vec::new();
    for (k, limit) in [(1usize, 1.0), (500, 5.0)] {
        for c in r.compare.iter().filter(|c| c.k == k) {
            t.push(Target {
                target: format!("added TTFB p99 <= {limit} ms at K={k} ({})", c.mode),
                measured: format!("{} ms (hub {} - direct {})", ms(c.added_ttfb_p99_ms), ms(c.hub_ttfb_p99_ms), ms(c.direct_ttfb_p99_ms)),
                met: c.added_ttfb_p99_ms.map(|a| a <= limit),
            });
        }
        if !r.compare.iter().any(|c| c.k == k) {
            t.push(Target { target: format!("added TTFB p99 <= {limit} ms at K={k}"), measured: "not run".into(), met: None });
        }
    }
    for c in r.compare.iter().filter(|c| c.mode != "zero-delay") {
        t.push(Target {
            target: format!("added inter-chunk gap p99 <= 1 ms at K={} ({})", c.k, c.mode),
            measured: format!("{} ms (hub {} - direct {})", ms(c.added_gap_p99_ms), ms(c.hub_gap_p99_ms), ms(c.direct_gap_p99_ms)),
            met: c.added_gap_p99_ms.map(|a| a <= 1.0),
        });
    }
    match r.phases.iter().find(|p| p.mode == "paced" && p.path == Path::Hub && p.k == 2000) {
        // Met only if all 2000 were open at the same time: 2000 streams one after another prove less.
        Some(p) => t.push(Target {
            target: "2000 concurrent paced streams, no lost frame".into(),
            measured: format!(
                "{} ok, {} lost, at most {} open at once{}",
                p.ok,
                p.lost,
                p.peak_open,
                if p.peak_open < p.k as u64 { " (not all concurrent: the hub set them up more slowly than they ended)" } else { "" }
            ),
            met: Some(p.lost == 0 && p.ok == p.streams && p.peak_open >= p.k as u64),
        }),
        None => t.push(Target { target: "2000 concurrent paced streams, no lost frame".into(), measured: "not run".into(), met: None }),
    }
    r.targets = t;
    r
}

pub fn ms(v: Option<f64>) -> String {
    f(v, 2)
}

fn noise_line(s: &mut String, when: &str, n: &Noise) {
    let _ = writeln!(s, "{when}: {}", n.line());
}

fn table(s: &mut String, head: &[&str], widths: &[usize], rows: &[Vec<String>]) {
    let line = |s: &mut String, cells: &[String]| {
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(8);
            let _ = if i == 0 { write!(s, "{c:<w$}") } else { write!(s, "{c:>w$}") };
        }
        let _ = writeln!(s);
    };
    line(s, &head.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in rows {
        line(s, r);
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
    if let Some(n) = &r.idle_noise {
        noise_line(&mut s, "idle noise before the run", n);
    }
    if let Some(n) = &r.end_noise {
        noise_line(&mut s, "idle noise after the run ", n);
    }
    let _ = writeln!(s, "reference answer: {:?} chars by pacing", r.expected_chars);
    let _ = writeln!(s);

    let head = [
        "pacing", "K", "path", "rounds", "ok", "lost", "ttfb p50", "p90", "p99", "max", "gap p50", "p90", "p99", "max", "ev/str", "peak",
        "hubCPU s", "mockCPU", "lgCPU", "hubRSS", "sys%", "steal%", "other%",
    ];
    let widths = [11, 6, 7, 7, 6, 6, 10, 8, 8, 8, 9, 8, 8, 8, 8, 6, 9, 8, 7, 8, 6, 7, 7];
    let rows: Vec<Vec<String>> = r
        .phases
        .iter()
        .map(|p| {
            let t = p.ttfb.as_ref();
            let g = p.gap.as_ref();
            vec![
                p.mode.clone(),
                p.k.to_string(),
                p.path.name().to_string(),
                p.rounds.to_string(),
                p.ok.to_string(),
                p.lost.to_string(),
                ms(t.map(|l| l.p50_ms)),
                ms(t.map(|l| l.p90_ms)),
                ms(t.map(|l| l.p99_ms)),
                f(t.map(|l| l.max_ms), 1),
                ms(g.map(|l| l.p50_ms)),
                ms(g.map(|l| l.p90_ms)),
                ms(g.map(|l| l.p99_ms)),
                f(g.map(|l| l.max_ms), 1),
                f(p.content_events_per_stream, 1),
                p.peak_open.to_string(),
                f(p.hub_cpu_s, 2),
                f(p.mock_cpu_s, 2),
                f(p.loadgen_cpu_s, 2),
                f(p.hub_rss_max_mib, 0),
                // Whole-machine shares of phases under half a second are too coarse (10 ms ticks) to show.
                f(p.sys_busy_pct.filter(|_| p.wall_s >= 0.5), 0),
                f(p.steal_pct.filter(|_| p.wall_s >= 0.5), 0),
                f(p.other_pct.filter(|_| p.wall_s >= 0.5).map(|o| o.max(0.0)), 0),
            ]
        })
        .collect();
    table(&mut s, &head, &widths, &rows);
    let _ = writeln!(
        s,
        "(ms; ttfb = send to first content, gap = between content events; ev/str = content events per stream (the hub folds chunks \
         that arrive together); peak = streams open at once; hubRSS = max MiB sampled every 100 ms; sys%/steal%/other% of the \
         whole machine, other% = busy minus hub, mock and loadgen, blank for phases under 0.5 s; rounds: small K runs rounds \
         of K streams one after the other to have enough samples)"
    );

    let _ = writeln!(s);
    let _ = writeln!(s, "hub against direct, same pacing and K, same run (added = hub - direct):");
    let head = [
        "pacing",
        "K",
        "ttfb p50 d",
        "hub",
        "added",
        "ttfb p99 d",
        "hub",
        "added",
        "gap p99 d",
        "hub",
        "added",
        "lost d/h",
        "peak",
        "hubCPU ms/str",
    ];
    let widths = [11, 6, 11, 8, 8, 11, 8, 8, 10, 8, 8, 10, 6, 14];
    let rows: Vec<Vec<String>> = r
        .compare
        .iter()
        .map(|c| {
            vec![
                c.mode.clone(),
                c.k.to_string(),
                ms(c.direct_ttfb_p50_ms),
                ms(c.hub_ttfb_p50_ms),
                ms(c.added_ttfb_p50_ms),
                ms(c.direct_ttfb_p99_ms),
                ms(c.hub_ttfb_p99_ms),
                ms(c.added_ttfb_p99_ms),
                ms(c.direct_gap_p99_ms),
                ms(c.hub_gap_p99_ms),
                ms(c.added_gap_p99_ms),
                format!("{}/{}", c.direct_lost.map(|l| l.to_string()).unwrap_or_else(|| "-".into()), c.hub_lost),
                c.hub_peak_open.to_string(),
                f(c.hub_cpu_ms_per_stream, 3),
            ]
        })
        .collect();
    table(&mut s, &head, &widths, &rows);

    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "headers (send to response headers) and tail (last content to done/[DONE]), p50/p99 ms; sessions = creating K sessions:"
    );
    for p in &r.phases {
        let h = p.headers.as_ref();
        let t = p.tail.as_ref();
        let _ = writeln!(
            s,
            "  {:<11}{:>6} {:<7} headers {}/{}  tail {}/{}  wall {:.2} s{}{}{}",
            p.mode,
            p.k,
            p.path.name(),
            ms(h.map(|l| l.p50_ms)),
            ms(h.map(|l| l.p99_ms)),
            ms(t.map(|l| l.p50_ms)),
            ms(t.map(|l| l.p99_ms)),
            p.wall_s,
            match (p.setup_span_s, p.setup_per_s) {
                (Some(span), Some(rate)) => format!("  setup {span:.2} s ({rate:.0}/s)"),
                _ => String::new(),
            },
            p.sessions_s.map(|x| format!("  sessions {x:.2} s")).unwrap_or_default(),
            p.hub_rss_hwm_mib.map(|x| format!("  hub VmHWM {x:.0} MiB, {} threads", p.hub_threads.unwrap_or(0))).unwrap_or_default()
        );
        if p.listen_overflows.is_some_and(|n| n > 0) {
            let _ = writeln!(s, "      listen overflows (machine-wide): {}", p.listen_overflows.unwrap_or(0));
        }
        if p.path == Path::Hub && !p.hub_cpu_by_thread.is_empty() {
            let parts: Vec<String> = p.hub_cpu_by_thread.iter().map(|(k, v)| format!("{k} {v:.2}s")).collect();
            let _ = writeln!(s, "      hub CPU by thread: {}", parts.join(", "));
        }
    }
    let lossy: Vec<&PhaseResult> = r.phases.iter().chain(&r.warmup).filter(|p| p.lost > 0).collect();
    if !lossy.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "lost streams:");
        for p in lossy {
            let _ = writeln!(s, "  {} K={} {}: {:?}", p.mode, p.k, p.path.name(), p.failures);
            for e in &p.failure_samples {
                let _ = writeln!(s, "    sample: {e}");
            }
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "largest paced K with no lost stream: {}; most paced streams open at once in a phase with no loss: {}",
        r.max_paced_k_no_loss.map(|k| k.to_string()).unwrap_or_else(|| "none".into()),
        r.max_paced_concurrent_no_loss.map(|k| k.to_string()).unwrap_or_else(|| "none".into())
    );
    let _ = writeln!(s, "targets (issue 4, item 9):");
    for t in &r.targets {
        let verdict = match t.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "n/a",
        };
        let _ = writeln!(s, "  [{verdict:^7}] {}: {}", t.target, t.measured);
    }
    if !r.hub_log_tail.is_empty() {
        let _ = writeln!(s, "hub log (last lines):");
        for l in &r.hub_log_tail {
            let _ = writeln!(s, "  {l}");
        }
    }
    let _ = writeln!(s, "hub exit: {}; mock exit: {}", r.hub_exit.as_deref().unwrap_or("-"), r.mock_exit.as_deref().unwrap_or("-"));
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

/// Writes `<out>/chat-<unix>.json` and `<out>/chat-latest.json`; returns both paths.
pub fn write_json(out: &FsPath, r: &Report) -> Res<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out)?;
    let text = serde_json::to_string_pretty(r)?;
    let stamped = out.join(format!("{}-{}.json", r.scenario, r.started_at_unix));
    let latest = out.join(format!("{}-latest.json", r.scenario));
    std::fs::write(&stamped, &text)?;
    std::fs::write(&latest, &text)?;
    Ok((stamped, latest))
}
