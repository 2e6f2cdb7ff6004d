//! Which control URLs may be called. The URL comes from webhook payloads, so whoever can get a
//! webhook accepted chooses it: only `https` (or `http` when allowed for tests), no credentials,
//! and a typed host on the allowlist — a name matched exactly or as a dot-suffix (never a
//! string prefix), an IP address only when it is itself listed and public.

use std::net::IpAddr;

use reqwest::Url;

use crate::config::ControlSettings;

/// The URL to call, or why it may not be called.
pub fn check(raw: &str, cfg: &ControlSettings) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("the control URL is not a valid URL ({e})"))?;
    match url.scheme() {
        "https" => {}
        "http" if cfg.allow_http => {}
        other => return Err(format!("the control URL's scheme {other:?} is not allowed")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the control URL carries credentials".into());
    }
    // The parser has already typed the host: every IPv4 spelling (`0177.0.0.1`, `2130706433`,
    // `127.1`) comes out dotted-decimal and IPv6 bracketed, so what parses as an address is one.
    let host = url.host_str().unwrap_or_default();
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let allowed = match bare.parse::<IpAddr>() {
        Ok(ip) => ip_allowed(ip, &cfg.allowed_hosts),
        Err(_) => !host.is_empty() && name_allowed(host, &cfg.allowed_hosts),
    };
    if !allowed {
        return Err(format!("the control URL's host {host:?} is not in control.allowed_hosts"));
    }
    // Even a listed address must be public; a name's addresses are checked when the client
    // connects (`crate::http::public_only_client`).
    if let Ok(ip) = bare.parse::<IpAddr>() {
        crate::http::address_allowed(ip, cfg.allow_loopback).map_err(|why| format!("the control URL's address is refused: {why}"))?;
    }
    Ok(url)
}

pub(crate) fn name_allowed(name: &str, allowed: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    allowed
        .iter()
        .filter(|e| e.parse::<IpAddr>().is_err())
        .any(|e| name == *e || name.strip_suffix(e.as_str()).is_some_and(|head| head.len() > 1 && head.ends_with('.')))
}

pub(crate) fn ip_allowed(ip: IpAddr, allowed: &[String]) -> bool {
    allowed.iter().filter_map(|e| e.parse::<IpAddr>().ok()).any(|e| e == ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(hosts: &[&str], allow_http: bool) -> ControlSettings {
        ControlSettings { allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(), allow_http, api_key: None, allow_loopback: true }
    }

    #[test]
    fn vapi_hosts_over_https_are_allowed() {
        let c = cfg(&["vapi.ai"], false);
        for ok in [
            "https://aws-us-west-2-production1-phone-call-websocket.vapi.ai/7b1c/control",
            "https://vapi.ai/x",
            "HTTPS://PHONE.VAPI.AI/x/control",
            "https://phone.vapi.ai:8443/x",
        ] {
            assert!(check(ok, &c).is_ok(), "{ok}");
        }
    }

    #[test]
    fn look_alike_and_hostile_spellings_are_refused() {
        let c = cfg(&["vapi.ai"], false);
        for bad in [
            "https://evilvapi.ai/x",
            "https://vapi.ai.evil.com/x",
            "https://storage.vapi.ai%2eevil.com/x",
            "https://vapi.ai@evil.example/x",
            "https://user:pw@phone.vapi.ai/x",
            "https://evil.example/x?h=vapi.ai",
            "https://evil.example/phone.vapi.ai",
            "http://phone.vapi.ai/x",
            "ftp://phone.vapi.ai/x",
            "file:///etc/passwd",
            "https://169.254.169.254/latest/meta-data",
            "https://0177.0.0.1/x",
            "https://2130706433/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://phone.vapi.ai./x",
            "not a url",
            "",
        ] {
            assert!(check(bad, &c).is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_addresses_are_allowed_only_when_listed_and_http_only_when_enabled() {
        let c = cfg(&["127.0.0.1"], true);
        assert!(check("http://127.0.0.1:4000/c/control", &c).is_ok());
        assert!(check("http://127.1:4000/c/control", &c).is_ok(), "the typed host is what counts");
        assert!(check("http://127.0.0.2/c", &c).is_err());
        assert!(check("http://localhost/c", &c).is_err(), "a name is not its address");
        assert!(check("http://127.0.0.1/c", &cfg(&["127.0.0.1"], false)).is_err());
        assert!(check("https://[::1]/c", &cfg(&["::1"], false)).is_ok());
        assert!(check("https://1.0.0.127.in-addr.arpa/c", &cfg(&["127.0.0.1"], false)).is_err());
    }

    #[test]
    fn an_empty_allowlist_allows_nothing() {
        assert!(check("https://phone.vapi.ai/x", &cfg(&[], false)).is_err());
    }
}
