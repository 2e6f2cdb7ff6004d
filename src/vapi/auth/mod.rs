//! Verifies that a webhook comes from VAPI, on the raw body bytes, before anything is parsed
//! (spec §5): a shared secret (`x-vapi-secret` or `Authorization`), or an HMAC signature with
//! configurable algorithm, headers, prefix, encoding, payload template and replay window.

use axum::http::HeaderMap;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::config::{Encoding, HmacAlgorithm, HmacSettings, VapiSettings};

/// How the request proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// No secret is configured: accepted, and the hub warned at start-up.
    Unsigned,
    SharedSecret,
    Hmac,
}

/// Why a request was refused. Only logs and metrics see the reason; the client gets a generic 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    MissingCredentials,
    DuplicateHeader,
    WrongSecret,
    BadSignature,
    MissingTimestamp,
    BadTimestamp,
    StaleTimestamp,
    MissingMessageId,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::MissingCredentials => "missing_credentials",
            Refused::DuplicateHeader => "duplicate_header",
            Refused::WrongSecret => "wrong_secret",
            Refused::BadSignature => "bad_signature",
            Refused::MissingTimestamp => "missing_timestamp",
            Refused::BadTimestamp => "bad_timestamp",
            Refused::StaleTimestamp => "stale_timestamp",
            Refused::MissingMessageId => "missing_message_id",
        }
    }
}

/// What the signature may cover besides the body.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The URL VAPI posted to, for `{url}` templates.
    pub url: &'a str,
    pub now_ms: i64,
}

pub fn verify(cfg: &VapiSettings, headers: &HeaderMap, body: &[u8], facts: &RequestFacts<'_>) -> Result<Verified, Refused> {
    if !cfg.auth_configured() {
        return Ok(Verified::Unsigned);
    }
    // With HMAC configured it is required: falling back to a static secret would let anyone
    // who saw one request drop the signature and send another body.
    if let Some(h) = &cfg.hmac {
        return verify_hmac(h, headers, body, facts).map(|_| Verified::Hmac);
    }
    if !cfg.secrets.is_empty() {
        let presented = match (single(headers, "x-vapi-secret")?, single(headers, "authorization")?) {
            (Some(s), _) => s,
            (None, Some(a)) => a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")).unwrap_or(a),
            (None, None) => return Err(Refused::MissingCredentials),
        };
        let given = Sha256::digest(presented.trim().as_bytes());
        // Compare digests: constant time, and the secret's length is not revealed either.
        let ok = cfg.secrets.iter().fold(0u8, |acc, s| acc | Sha256::digest(s.expose().as_bytes()).ct_eq(&given).unwrap_u8());
        return if ok == 1 { Ok(Verified::SharedSecret) } else { Err(Refused::WrongSecret) };
    }
    Err(Refused::MissingCredentials)
}

/// A header that must appear at most once (two signatures or secrets is an attack or a bug).
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, Refused> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Refused::DuplicateHeader);
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

fn verify_hmac(h: &HmacSettings, headers: &HeaderMap, body: &[u8], facts: &RequestFacts<'_>) -> Result<(), Refused> {
    let signature = single(headers, &h.signature_header)?.ok_or(Refused::MissingCredentials)?;
    let timestamp = single(headers, &h.timestamp_header)?;
    if h.signs_timestamp() {
        let ts = timestamp.ok_or(Refused::MissingTimestamp)?;
        check_window(ts, h.tolerance.as_millis() as i64, facts.now_ms)?;
    }
    let message_id = match &h.message_id_header {
        Some(name) => single(headers, name)?,
        None => None,
    };
    if h.payload_format.contains("{svix-id}") && message_id.is_none() {
        return Err(Refused::MissingMessageId);
    }
    let payload = render_payload(&h.payload_format, body, timestamp.unwrap_or_default(), message_id.unwrap_or_default(), facts);
    // Several space-separated signatures are allowed (rotation); any valid one passes.
    for candidate in signature.split_whitespace() {
        let Some(encoded) = candidate.strip_prefix(h.prefix.as_str()) else { continue };
        let Some(sig) = decode(h.encoding, encoded) else { continue };
        if h.keys.iter().any(|k| mac_verifies(h.algorithm, k, &payload, &sig)) {
            return Ok(());
        }
    }
    Err(Refused::BadSignature)
}

/// `verify_slice` checks the length and compares in constant time: an empty or truncated
/// signature never verifies (the svix-webhooks#1190 bypass).
fn mac_verifies(alg: HmacAlgorithm, key: &[u8], payload: &[u8], sig: &[u8]) -> bool {
    fn check<M: Mac + hmac::digest::KeyInit>(key: &[u8], payload: &[u8], sig: &[u8]) -> bool {
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(payload);
                m.verify_slice(sig).is_ok()
            }
            Err(_) => false,
        }
    }
    match alg {
        HmacAlgorithm::Sha256 => check::<Hmac<Sha256>>(key, payload, sig),
        HmacAlgorithm::Sha512 => check::<Hmac<Sha512>>(key, payload, sig),
        HmacAlgorithm::Sha1 => check::<Hmac<sha1::Sha1>>(key, payload, sig),
    }
}

/// Computes a signature the way VAPI would; used by the simulator and tests.
pub fn sign(h: &HmacSettings, body: &[u8], timestamp: &str, message_id: &str, facts: &RequestFacts<'_>) -> String {
    let payload = render_payload(&h.payload_format, body, timestamp, message_id, facts);
    let key = h.keys.first().map(Vec::as_slice).unwrap_or_default();
    let digest = match h.algorithm {
        HmacAlgorithm::Sha256 => mac_bytes::<Hmac<Sha256>>(key, &payload),
        HmacAlgorithm::Sha512 => mac_bytes::<Hmac<Sha512>>(key, &payload),
        HmacAlgorithm::Sha1 => mac_bytes::<Hmac<sha1::Sha1>>(key, &payload),
    };
    let encoded = match h.encoding {
        Encoding::Hex => hex::encode(digest),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
    };
    format!("{}{}", h.prefix, encoded)
}

fn mac_bytes<M: Mac + hmac::digest::KeyInit>(key: &[u8], payload: &[u8]) -> Vec<u8> {
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(payload);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn decode(enc: Encoding, s: &str) -> Option<Vec<u8>> {
    match enc {
        Encoding::Hex => hex::decode(s).ok(),
        Encoding::Base64 => {
            base64::engine::general_purpose::STANDARD.decode(s).or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s)).ok()
        }
    }
}

/// Fills the template from the raw bytes. Placeholders are substituted in the template only,
/// so a body that happens to contain `{timestamp}` is signed as it is.
fn render_payload(template: &str, body: &[u8], timestamp: &str, message_id: &str, facts: &RequestFacts<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let tail = &rest[start..];
        let (value, used): (&[u8], usize) = if tail.starts_with("{body}") {
            (body, 6)
        } else if tail.starts_with("{timestamp}") {
            (timestamp.as_bytes(), 11)
        } else if tail.starts_with("{svix-id}") {
            (message_id.as_bytes(), 9)
        } else if tail.starts_with("{method}") {
            (facts.method.as_bytes(), 8)
        } else if tail.starts_with("{url}") {
            (facts.url.as_bytes(), 5)
        } else {
            (b"{", 1)
        };
        out.extend_from_slice(value);
        rest = &tail[used..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// The timestamp unit is undocumented: digits above 1e12 are milliseconds, else seconds;
/// RFC 3339 is accepted too. Anything else (signs, exponents, other digits) is refused.
fn check_window(ts: &str, tolerance_ms: i64, now_ms: i64) -> Result<(), Refused> {
    let ms = if !ts.is_empty() && ts.len() <= 16 && ts.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = ts.parse().map_err(|_| Refused::BadTimestamp)?;
        if n > 1_000_000_000_000 { n } else { n * 1000 }
    } else {
        crate::clock::parse_iso(ts).ok_or(Refused::BadTimestamp)?
    };
    if (now_ms - ms).abs() > tolerance_ms { Err(Refused::StaleTimestamp) } else { Ok(()) }
}

#[cfg(test)]
mod tests;
