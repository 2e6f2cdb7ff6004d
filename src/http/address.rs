//! Which addresses a URL that arrived in a payload (a recording, a control URL) may reach: only
//! public ones. Shared by the recording downloader and the control client's resolver.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `Err` names the range an address falls in when it may not be connected to.
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> Result<(), String> {
    match forbidden_range(ip) {
        None => Ok(()),
        Some("loopback") if allow_loopback => Ok(()),
        Some(range) => Err(format!("the address {ip} is {range}")),
    }
}

fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (127, _, _) => "loopback",
        (0, _, _) => "unspecified",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        // 169.254.169.254 (cloud metadata) is in here.
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared address space (CGNAT)",
        (192, 0, 0) => "reserved for protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    // IPv4 inside IPv6 (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, the deprecated
    // compatible `::a.b.c.d`) reaches the IPv4 address: judge that one.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_range(v4);
    }
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return v4_range(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    Some(match s {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        [0, 0, 0, 0, 0, 0, _, _] => "an IPv4-compatible address",
        [x, ..] if x & 0xfe00 == 0xfc00 => "private (unique local)",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0x0db8, ..] => "documentation",
        // 6to4 embeds an IPv4 address a relay would reach; VAPI's storage does not use it.
        [0x2002, ..] => "6to4",
        _ => return None,
    })
}
