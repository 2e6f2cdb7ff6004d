//! Rate limits for the public chat routes: token buckets per client IP (IPv6 by /64, so one
//! host cannot rotate through its own addresses) and per session. In-process: with several
//! instances each enforces its own share, so the cluster-wide limit is the sum.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use dashmap::DashMap;

use crate::config::Rate;

/// Checks between sweeps of idle buckets (which keep memory bounded under address churn).
const SWEEP_EVERY: u64 = 4096;

pub struct Limiter {
    rate: Rate,
    buckets: DashMap<String, Bucket>,
    checks: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        Self { rate, buckets: DashMap::new(), checks: AtomicU64::new(0) }
    }

    fn per_sec(&self) -> f64 {
        f64::from(self.rate.per_minute) / 60.0
    }

    /// Takes one token for `key`; `Err(wait)` says when the next one will be there.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(now);
        }
        let burst = f64::from(self.rate.burst);
        let per_sec = self.per_sec();
        let mut b = self.buckets.entry(key.to_string()).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
        }
    }

    /// Drops buckets that have refilled completely: forgetting them changes nothing.
    fn sweep(&self, now: Instant) {
        let full_after = Duration::from_secs_f64(f64::from(self.rate.burst) / self.per_sec());
        self.buckets.retain(|_, b| now.saturating_duration_since(b.at) < full_after);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest address
/// in `X-Forwarded-For` that is not one of the trusted proxies.
pub fn client_ip(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpAddr]) -> Option<IpAddr> {
    // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: compare canonical forms.
    let peer = peer?.ip().to_canonical();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(|a| a.to_canonical())
        .collect();
    Some(forwarded.into_iter().rev().find(|a| !trusted.contains(a)).unwrap_or(peer))
}

/// The bucket key of an address: IPv4 as is, IPv6 by its /64 network.
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Seconds for a `Retry-After` header, rounded up and at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn a_burst_passes_then_the_bucket_refills_at_its_rate() {
        let l = Limiter::new(Rate { per_minute: 60, burst: 3 });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("a", t0).is_ok());
        }
        let wait = l.check_at("a", t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900), "{wait:?}");
        assert!(l.check_at("b", t0).is_ok(), "another key has its own bucket");
        assert!(l.check_at("a", t0 + Duration::from_millis(1_010)).is_ok());
        assert!(l.check_at("a", t0 + Duration::from_millis(1_020)).is_err());
    }

    #[test]
    fn idle_buckets_are_swept() {
        let l = Limiter::new(Rate { per_minute: 60, burst: 2 });
        let t0 = Instant::now();
        l.check_at("a", t0).unwrap();
        l.sweep(t0 + Duration::from_secs(1));
        assert_eq!(l.len(), 1, "not yet full");
        l.sweep(t0 + Duration::from_secs(3));
        assert!(l.is_empty());
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_key() {
        let a = ip_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ip_key("2001:db8:1:2:bbbb:cccc::9".parse().unwrap());
        let c = ip_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(ip_key("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 198.51.100.7"));
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let peer = Some(SocketAddr::new(proxy, 4000));
        assert_eq!(client_ip(peer, &h, &[]), Some(proxy), "spoofable header ignored");
        assert_eq!(client_ip(peer, &h, &[proxy]), Some("198.51.100.7".parse().unwrap()));
        let inner: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(peer, &h, &[proxy, inner]), Some("203.0.113.9".parse().unwrap()));
        let mapped = Some(SocketAddr::new("::ffff:10.0.0.2".parse().unwrap(), 4000));
        assert_eq!(client_ip(mapped, &h, &[proxy]), Some("198.51.100.7".parse().unwrap()), "an IPv4 proxy on a dual-stack listener");
    }
}
