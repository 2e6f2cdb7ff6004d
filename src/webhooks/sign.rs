//! Standard Webhooks signatures (spec 1.0.0): a secret is `whsec_` + base64 of its key bytes;
//! the signature is `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// The spec's range for a key: at least 24 bytes, at most 64.
const MIN_KEY: usize = 24;
const MAX_KEY: usize = 64;

/// A fresh secret: 32 random bytes.
pub fn new_secret() -> Result<String, String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(key)))
}

/// The key bytes of a `whsec_…` secret; `Err` says what is wrong with it.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix(PREFIX).ok_or("a secret must start with whsec_")?;
    let key = STANDARD.decode(b64).map_err(|_| "a secret must be whsec_ followed by base64")?;
    if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
        return Err(format!("a secret's key must be {MIN_KEY} to {MAX_KEY} bytes; this one is {}", key.len()));
    }
    Ok(key)
}

/// The `webhook-signature` header value for one attempt.
pub fn sign(key: &[u8], webhook_id: &str, timestamp: i64, body: &str) -> String {
    // Any key length is valid for HMAC, so this never fails; the fallback keeps it panic-free.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return "v1,".to_string() };
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification (and Svix's libraries).
    #[test]
    fn the_signature_matches_the_standard_webhooks_test_vector() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn any_change_to_id_timestamp_or_body_changes_the_signature() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let base = sign(&key, "msg_1", 10, "{}");
        assert_ne!(base, sign(&key, "msg_2", 10, "{}"));
        assert_ne!(base, sign(&key, "msg_1", 11, "{}"));
        assert_ne!(base, sign(&key, "msg_1", 10, "{ }"));
    }

    #[test]
    fn generated_secrets_are_32_random_bytes_and_bad_secrets_are_refused() {
        let a = new_secret().unwrap();
        assert_eq!(decode_secret(&a).unwrap().len(), 32);
        assert_ne!(a, new_secret().unwrap());
        for bad in
            ["", "whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ=", &format!("whsec_{}", "A".repeat(100))]
        {
            assert!(decode_secret(bad).is_err(), "{bad}");
        }
    }
}
