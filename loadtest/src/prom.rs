//! Just enough of the OpenMetrics text format to diff the hub's `/metrics` before and after a
//! phase: histograms (buckets, sum, count) and counters. Quantiles from buckets are estimates:
//! linear interpolation inside the bucket that holds the rank, as Prometheus'
//! `histogram_quantile` does, so they are only as fine as the bucket bounds (factor 2 here).

use std::collections::BTreeMap;

use serde::Serialize;

/// Series key: metric base name plus its labels (without `le`), e.g. `x{type="tool-calls"}`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub histograms: BTreeMap<String, Hist>,
    pub counters: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Hist {
    /// (upper bound, cumulative count), ascending; the last bound is +Inf.
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let Some(stripped) = after.strip_prefix('"') else { break };
        let mut val = String::new();
        let mut chars = stripped.char_indices();
        let mut end = stripped.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        val.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => val.push(c),
            }
        }
        out.push((key, val));
        rest = &stripped[end.min(stripped.len())..];
    }
    out
}

fn key(base: &str, labels: &[(String, String)]) -> String {
    let l: Vec<String> = labels.iter().filter(|(k, _)| k != "le").map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if l.is_empty() { base.to_string() } else { format!("{base}{{{}}}", l.join(",")) }
}

pub fn parse(text: &str) -> Snapshot {
    let mut snap = Snapshot::default();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, labels, value) = match line.find('{') {
            Some(open) => {
                let Some(close) = line.rfind('}') else { continue };
                (&line[..open], parse_labels(&line[open + 1..close]), line[close + 1..].split_whitespace().next())
            }
            None => {
                let mut it = line.split_whitespace();
                (it.next().unwrap_or_default(), Vec::new(), it.next())
            }
        };
        let Some(value) = value.and_then(|v| v.parse::<f64>().ok()) else { continue };
        if let Some(base) = name.strip_suffix("_bucket") {
            let le = labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v.as_str()).unwrap_or("+Inf");
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
            snap.histograms.entry(key(base, &labels)).or_default().buckets.push((le, value));
        } else if let Some(base) = name.strip_suffix("_sum") {
            snap.histograms.entry(key(base, &labels)).or_default().sum = value;
        } else if let Some(base) = name.strip_suffix("_count") {
            snap.histograms.entry(key(base, &labels)).or_default().count = value;
        } else {
            snap.counters.insert(key(name, &labels), value);
        }
    }
    for h in snap.histograms.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    snap
}

impl Hist {
    /// `self - before`, bucket by bucket.
    pub fn minus(&self, before: Option<&Hist>) -> Hist {
        let Some(b) = before else { return self.clone() };
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| {
                let prev = b.buckets.iter().find(|(l, _)| l == le).map(|(_, c)| *c).unwrap_or(0.0);
                (*le, (c - prev).max(0.0))
            })
            .collect();
        Hist { buckets, sum: (self.sum - b.sum).max(0.0), count: (self.count - b.count).max(0.0) }
    }

    /// Bucket-interpolated quantile; `None` without observations. A rank in the +Inf bucket
    /// returns the last finite bound (a lower bound on the truth).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map(|(_, c)| *c).unwrap_or(self.count);
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (le, cum) in &self.buckets {
            if *cum >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = cum - below;
                let frac = if inside > 0.0 { (rank - below) / inside } else { 1.0 };
                return Some(lower + (le - lower) * frac);
            }
            lower = *le;
            below = *cum;
        }
        Some(lower)
    }

    /// Bucket-wise sum of several series with the same bounds (e.g. a function's ok + error).
    pub fn add(&mut self, other: &Hist) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
        } else {
            for (le, c) in &mut self.buckets {
                *c += other.buckets.iter().find(|(l, _)| l == le).map(|(_, c)| *c).unwrap_or(0.0);
            }
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// The bounds of the bucket holding quantile `q`: the estimate is only known to lie in it.
    pub fn bucket_of(&self, q: f64) -> Option<(f64, f64)> {
        let total = self.buckets.last().map(|(_, c)| *c).unwrap_or(self.count);
        if total <= 0.0 {
            return None;
        }
        let mut lower = 0.0;
        for (le, cum) in &self.buckets {
            if *cum >= q * total {
                return Some((lower, *le));
            }
            lower = *le;
        }
        Some((lower, f64::INFINITY))
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

/// One histogram series over a phase, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct HistSummary {
    pub series: String,
    pub count: u64,
    /// Exact: delta sum / delta count.
    pub mean_ms: Option<f64>,
    /// Estimated from buckets (see module docs).
    pub p50_ms_est: Option<f64>,
    pub p90_ms_est: Option<f64>,
    pub p99_ms_est: Option<f64>,
    /// [lower, upper] bounds of the buckets holding p50 and p99: all the histogram really knows.
    pub p50_bucket_ms: Option<[f64; 2]>,
    pub p99_bucket_ms: Option<[f64; 2]>,
}

pub fn summarize(series: &str, h: &Hist) -> HistSummary {
    let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
    HistSummary {
        series: series.to_string(),
        count: h.count as u64,
        mean_ms: ms(h.mean()),
        p50_ms_est: ms(h.quantile(0.5)),
        p90_ms_est: ms(h.quantile(0.9)),
        p99_ms_est: ms(h.quantile(0.99)),
        p50_bucket_ms: h.bucket_of(0.5).map(|(a, b)| [a * 1000.0, b * 1000.0]),
        p99_bucket_ms: h.bucket_of(0.99).map(|(a, b)| [a * 1000.0, b * 1000.0]),
    }
}

/// Every histogram and counter that moved between two snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    pub histograms: Vec<HistSummary>,
    pub counters: BTreeMap<String, f64>,
    #[serde(skip)]
    pub raw: BTreeMap<String, Hist>,
}

pub fn delta(before: &Snapshot, after: &Snapshot) -> Delta {
    let mut d = Delta::default();
    for (k, h) in &after.histograms {
        let diff = h.minus(before.histograms.get(k));
        if diff.count > 0.0 {
            d.histograms.push(summarize(k, &diff));
            d.raw.insert(k.clone(), diff);
        }
    }
    for (k, v) in &after.counters {
        let moved = v - before.counters.get(k).copied().unwrap_or(0.0);
        if moved != 0.0 {
            d.counters.insert(k.clone(), moved);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE switchboard_webhook_duration_seconds histogram
switchboard_webhook_duration_seconds_sum{type="tool-calls"} 0.3
switchboard_webhook_duration_seconds_count{type="tool-calls"} 100
switchboard_webhook_duration_seconds_bucket{le="0.001",type="tool-calls"} 50
switchboard_webhook_duration_seconds_bucket{le="0.002",type="tool-calls"} 90
switchboard_webhook_duration_seconds_bucket{le="0.004",type="tool-calls"} 100
switchboard_webhook_duration_seconds_bucket{le="+Inf",type="tool-calls"} 100
switchboard_webhooks_total{type="transcript",outcome="processed"} 7
# EOF
"#;

    #[test]
    fn histograms_and_counters_are_read_and_estimated() {
        let s = parse(TEXT);
        let h = &s.histograms[r#"switchboard_webhook_duration_seconds{type="tool-calls"}"#];
        assert_eq!(h.count, 100.0);
        assert!((h.quantile(0.5).unwrap_or(0.0) - 0.001).abs() < 1e-9);
        assert!((h.quantile(0.99).unwrap_or(0.0) - 0.0038).abs() < 1e-9);
        assert_eq!(s.counters[r#"switchboard_webhooks_total{type="transcript",outcome="processed"}"#], 7.0);
        let d = delta(&Snapshot::default(), &s);
        assert_eq!(d.histograms.len(), 1);
    }
}
