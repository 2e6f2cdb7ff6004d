//! Which recording URLs may be fetched, and where the connection may go. The URL comes from an
//! end-of-call report, so whoever gets a webhook accepted chooses it: only `https` (or `http`
//! when allowed for tests), no credentials, a host on the allowlist (a name matched exactly or
//! as a dot-suffix, an IP address only when listed), and then every address the host resolves
//! to must be public. The check is on the resolved address because an allowed name can still
//! point inward (DNS rebinding, a stale record); the download connects to the checked address
//! only, so a second lookup cannot change the answer.

use std::net::{IpAddr, SocketAddr};

use reqwest::Url;

use super::Failure;
use crate::config::RecordingsSettings;
use crate::control::target::{ip_allowed, name_allowed};
pub use crate::http::address_allowed;

/// The URL to fetch, or why it may not be fetched (before any lookup).
pub fn check_url(raw: &str, cfg: &RecordingsSettings) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if cfg.allow_http => {}
        other => return Err(format!("the scheme {other:?} is not allowed")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL carries credentials".into());
    }
    // The parser has typed the host: `0177.0.0.1`, `2130706433` and `0x7f.1` come out as
    // 127.0.0.1, so an address spelled oddly is still compared as the address it is.
    let allowed = match host_ip(&url) {
        Some(ip) => ip_allowed(ip, &cfg.allowed_hosts),
        None => url.host_str().is_some_and(|name| !name.is_empty() && name_allowed(name, &cfg.allowed_hosts)),
    };
    if !allowed {
        return Err(format!("the host {:?} is not in recordings.allowed_hosts", url.host_str().unwrap_or_default()));
    }
    Ok(url)
}

/// Resolves the URL's host and returns the address to connect to, refused when ANY of its
/// addresses is not public (a name with one public and one internal address could be
/// connected to either).
pub async fn resolve(url: &Url, cfg: &RecordingsSettings) -> Result<SocketAddr, Failure> {
    let port = url.port_or_known_default().ok_or_else(|| Failure::Refused("the URL has no port".into()))?;
    let addrs: Vec<SocketAddr> = match (host_ip(url), url.host_str()) {
        (Some(ip), _) => vec![SocketAddr::new(ip, port)],
        (None, Some(name)) => {
            tokio::net::lookup_host((name, port)).await.map_err(|e| Failure::failed(format!("cannot resolve {name:?} ({e})")))?.collect()
        }
        (None, None) => Vec::new(),
    };
    let first = *addrs.first().ok_or_else(|| Failure::failed("the host resolves to no address"))?;
    for a in &addrs {
        address_allowed(a.ip(), cfg.allow_loopback).map_err(Failure::Refused)?;
    }
    Ok(first)
}

/// The host when the parser typed it as an address (IPv6 comes bracketed).
pub(super) fn host_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(hosts: &[&str]) -> RecordingsSettings {
        RecordingsSettings { allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(), ..RecordingsSettings::defaults() }
    }

    fn refused(ip: &str) -> bool {
        address_allowed(ip.parse().unwrap(), false).is_err()
    }

    #[test]
    fn vapi_storage_urls_over_https_pass_the_url_check() {
        let c = RecordingsSettings::defaults();
        for ok in [
            "https://storage.vapi.ai/7b1c-mono.wav",
            "https://auth.vapi.ai/storage/v1/object/public/recordings/x.wav",
            "HTTPS://STORAGE.VAPI.AI/x.wav",
        ] {
            assert!(check_url(ok, &c).is_ok(), "{ok}");
        }
    }

    #[test]
    fn other_schemes_credentials_and_unlisted_hosts_are_refused() {
        let c = RecordingsSettings::defaults();
        for bad in [
            "http://storage.vapi.ai/x.wav",
            "ftp://storage.vapi.ai/x.wav",
            "file:///etc/passwd",
            "https://user:pw@storage.vapi.ai/x.wav",
            "https://storage.vapi.ai@evil.example/x.wav",
            "https://evilstorage.vapi.ai.evil.com/x.wav",
            "https://vapi.ai/x.wav",
            "https://127.0.0.1/x.wav",
            "https://169.254.169.254/latest/meta-data",
            "https://localhost/x.wav",
            "not a url",
        ] {
            assert!(check_url(bad, &c).is_err(), "{bad}");
        }
    }

    #[test]
    fn odd_spellings_of_an_address_are_the_address_they_spell() {
        // Listed as 127.0.0.1, so the URL check passes, and the parser has normalised each
        // spelling to 127.0.0.1, which the address check then refuses.
        let c = RecordingsSettings { allow_http: true, ..cfg(&["127.0.0.1", "10.0.0.1"]) };
        for spelled in ["http://0177.0.0.1/x", "http://2130706433/x", "http://0x7f.0.0.1/x", "http://127.1/x", "http://012.0.0.1/x"] {
            let url = check_url(spelled, &c).unwrap_or_else(|e| panic!("{spelled}: {e}"));
            let ip: IpAddr = url.host_str().unwrap().parse().unwrap();
            assert!(address_allowed(ip, false).is_err(), "{spelled} is {ip}");
        }
    }

    #[test]
    fn loopback_private_link_local_and_metadata_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2002:7f00:1::1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in
            ["104.18.0.1", "8.8.8.8", "172.15.255.255", "172.32.0.1", "100.63.255.255", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]
        {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn allowing_loopback_for_tests_allows_loopback_only() {
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true).is_ok());
        assert!(address_allowed("::1".parse().unwrap(), true).is_ok());
        for ip in ["10.0.0.1", "169.254.169.254", "192.168.0.1", "::ffff:10.0.0.1"] {
            assert!(address_allowed(ip.parse().unwrap(), true).is_err(), "{ip}");
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_after_resolution() {
        let c = RecordingsSettings { allow_http: true, ..cfg(&["localhost"]) };
        let url = check_url("http://localhost:9/x.wav", &c).unwrap();
        match resolve(&url, &c).await.unwrap_err() {
            Failure::Refused(e) => assert!(e.contains("loopback"), "{e}"),
            other => panic!("localhost should resolve here: {other:?}"),
        }
    }
}
