//! The one way the hub calls other servers it was configured or told about (function
//! endpoints, VAPI's control URLs): no redirects, since a 3xx could point anywhere past a
//! check made on the first URL, and no ambient proxy, since reqwest would otherwise read
//! HTTPS_PROXY and send the hub's requests somewhere else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
}

pub fn direct_client() -> reqwest::Client {
    builder().build().unwrap_or_default()
}

/// A direct client for URLs that arrive in webhook payloads: besides the host allowlist checked
/// before the request, every name it connects to must resolve to public addresses only, checked
/// at connect time (so a record that changes after the check cannot point it inward).
/// `allow_loopback` is for tests against a local fake.
pub fn public_only_client(allow_loopback: bool) -> reqwest::Client {
    builder().dns_resolver(Arc::new(PublicOnly { allow_loopback })).build().unwrap_or_default()
}

struct PublicOnly {
    allow_loopback: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                crate::http::address_allowed(a.ip(), allow_loopback).map_err(|why| format!("{host}: {why}"))?;
            }
            let it: Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}
