//! Which endpoint URLs deliveries may go to. Admins choose them, but the hub sits inside a
//! network an admin token should not open up: https only (http with `webhooks.allow_http`), no
//! credentials, and only public addresses — an IP-literal host is judged here (reqwest skips
//! the resolver for literals), a name's addresses when the client connects
//! (`crate::http::public_only_client`) and, as a courtesy, once more when the endpoint is created.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

use crate::config::WebhooksSettings;

const MAX_URL: usize = 2048;
/// A name that does not resolve within this at create time is accepted (DNS may be down); the
/// connect-time check still applies to every delivery.
const CREATE_LOOKUP: Duration = Duration::from_secs(2);

/// The URL to deliver to, or why deliveries may not go there (before any lookup).
pub fn check(raw: &str, cfg: &WebhooksSettings) -> Result<Url, String> {
    if raw.len() > MAX_URL {
        return Err(format!("url must be at most {MAX_URL} characters"));
    }
    let url = Url::parse(raw).map_err(|e| format!("url is not a valid absolute URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if cfg.allow_http => {}
        "http" => return Err("url must use https (http is allowed only with webhooks.allow_http)".into()),
        other => return Err(format!("url's scheme {:?} is not allowed; use https", shown(other))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry credentials; use the signature to authenticate deliveries".into());
    }
    match host_ip(&url) {
        Some(ip) => crate::http::address_allowed(ip, cfg.allow_loopback).map_err(|why| format!("url is refused: {why}"))?,
        None if url.host_str().is_none_or(str::is_empty) => return Err("url has no host".into()),
        None => {}
    }
    Ok(url)
}

/// At create time: a name any of whose current addresses is not public is refused.
pub async fn check_resolved(url: &Url, cfg: &WebhooksSettings) -> Result<(), String> {
    let (None, Some(name), Some(port)) = (host_ip(url), url.host_str(), url.port_or_known_default()) else { return Ok(()) };
    let Ok(Ok(addrs)) = tokio::time::timeout(CREATE_LOOKUP, tokio::net::lookup_host((name, port))).await else { return Ok(()) };
    for a in addrs {
        crate::http::address_allowed(a.ip(), cfg.allow_loopback).map_err(|why| format!("url is refused: {name} resolves to {why}"))?;
    }
    Ok(())
}

/// The host when the parser typed it as an address: every IPv4 spelling (`0177.0.0.1`,
/// `2130706433`, `127.1`) comes out dotted-decimal and IPv6 bracketed.
fn host_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).parse().ok()
}

fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(allow_http: bool, allow_loopback: bool) -> WebhooksSettings {
        WebhooksSettings { allow_http, allow_loopback, ..WebhooksSettings::defaults() }
    }

    #[test]
    fn public_https_urls_are_accepted() {
        for ok in
            ["https://hooks.example.com/in", "https://8.8.8.8/x", "https://[2606:4700::1111]/x", "HTTPS://Hooks.Example.com:8443/a?b=c"]
        {
            assert!(check(ok, &cfg(false, false)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn internal_addresses_in_any_spelling_are_refused() {
        for bad in [
            "https://127.0.0.1/x",
            "https://0177.0.0.1/x",
            "https://2130706433/x",
            "https://127.1/x",
            "https://0x7f.0.0.1/x",
            "https://10.0.0.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[::]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
        ] {
            assert!(check(bad, &cfg(true, false)).is_err(), "{bad}");
        }
    }

    #[test]
    fn schemes_credentials_and_junk_are_refused() {
        for bad in [
            "http://hooks.example.com/x",
            "ftp://hooks.example.com/x",
            "file:///etc/passwd",
            "https://u:p@hooks.example.com/",
            "hooks.example.com/x",
            "",
            "https://",
        ] {
            assert!(check(bad, &cfg(false, false)).is_err(), "{bad}");
        }
        assert!(check(&format!("https://h.example/{}", "a".repeat(MAX_URL)), &cfg(false, false)).is_err());
    }

    #[test]
    fn loopback_and_http_only_when_allowed() {
        assert!(check("http://127.0.0.1:9/x", &cfg(true, true)).is_ok());
        assert!(check("http://127.0.0.1:9/x", &cfg(false, true)).is_err());
        assert!(check("http://10.0.0.1/x", &cfg(true, true)).is_err(), "only loopback is opened");
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_at_create() {
        let url = check("https://localhost/x", &cfg(false, false)).unwrap();
        assert!(check_resolved(&url, &cfg(false, false)).await.is_err());
        assert!(check_resolved(&url, &cfg(false, true)).await.is_ok());
    }
}
