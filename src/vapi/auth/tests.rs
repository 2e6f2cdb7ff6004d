//! Known-answer vectors from the spec's fixtures, and the signature attacks of reliability.md.

use super::*;
use crate::config::{Secret, VapiSettings};
use axum::http::HeaderValue;

const BODY: &[u8] = include_bytes!("../../../tests/fixtures/vapi/status-update.ended.json");
const KEY: &str = "whsec_test_9f3b2c1d7e6a5b4c";
const TS: &str = "1773500994035";
const NOW: i64 = 1_773_500_994_035;

fn facts(now_ms: i64) -> RequestFacts<'static> {
    RequestFacts { method: "POST", url: "https://hub.example.com/vapi/webhook", now_ms }
}

fn with_hmac(h: HmacSettings) -> VapiSettings {
    VapiSettings { hmac: Some(h), ..VapiSettings::defaults() }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    m
}

#[test]
fn vapi_default_hmac_vector_verifies() {
    let cfg = with_hmac(HmacSettings::with_key(KEY));
    let h = headers(&[("x-timestamp", TS), ("x-signature", "925182b8046e3fa987842729aa65f1dd4d2c0fa087b40a058646c45a6484318f")]);
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW)), Ok(Verified::Hmac));
}

#[test]
fn base64_encoding_with_prefix_vector_verifies() {
    let mut s = HmacSettings::with_key(KEY);
    s.encoding = Encoding::Base64;
    s.prefix = "sha256=".into();
    let cfg = with_hmac(s);
    let h = headers(&[("x-timestamp", TS), ("x-signature", "sha256=klGCuARuP6mHhCcpqmXx3U0sD6CHtAoFhkbEWmSEMY8=")]);
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW)), Ok(Verified::Hmac));
}

#[test]
fn body_only_payload_with_custom_header_vector_verifies_without_timestamp() {
    let mut s = HmacSettings::with_key(KEY);
    s.payload_format = "{body}".into();
    s.signature_header = "x-vapi-signature".into();
    let cfg = with_hmac(s);
    let h = headers(&[("x-vapi-signature", "b060180e02d6a1ca034cbe3cad482e3b5237c2ea267b31cad60edb50d7d9d857")]);
    // No timestamp is signed, so no replay window applies: any clock passes.
    assert_eq!(verify(&cfg, &h, BODY, &facts(0)), Ok(Verified::Hmac));
}

#[test]
fn sha512_and_sha1_signatures_round_trip_and_reject_other_algorithms() {
    for alg in [HmacAlgorithm::Sha512, HmacAlgorithm::Sha1] {
        let mut s = HmacSettings::with_key(KEY);
        s.algorithm = alg;
        let sig = sign(&s, BODY, TS, "", &facts(NOW));
        let cfg = with_hmac(s);
        let h = headers(&[("x-timestamp", TS), ("x-signature", &sig)]);
        assert_eq!(verify(&cfg, &h, BODY, &facts(NOW)), Ok(Verified::Hmac), "{alg:?}");
        let sha256 = with_hmac(HmacSettings::with_key(KEY));
        assert_eq!(verify(&sha256, &h, BODY, &facts(NOW)), Err(Refused::BadSignature), "{alg:?} against sha256");
    }
}

#[test]
fn base64_secret_is_decoded_before_use() {
    let raw = b"\x00\x01binary-key\xff";
    let mut s = HmacSettings::with_key(raw.to_vec());
    let sig = sign(&s, BODY, TS, "", &facts(NOW));
    s.keys = vec![raw.to_vec()];
    let cfg = with_hmac(s);
    let h = headers(&[("x-timestamp", TS), ("x-signature", &sig)]);
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW)), Ok(Verified::Hmac));
}

#[test]
fn svix_style_template_with_message_id_method_and_url_verifies() {
    let mut s = HmacSettings::with_key(KEY);
    s.payload_format = "{svix-id}.{timestamp}.{method}.{url}.{body}".into();
    s.message_id_header = Some("webhook-id".into());
    s.signature_header = "webhook-signature".into();
    s.timestamp_header = "webhook-timestamp".into();
    s.prefix = "v1,".into();
    s.encoding = Encoding::Base64;
    let sig = sign(&s, BODY, "1773500994", "msg_2abc", &facts(NOW));
    let cfg = with_hmac(s);
    let good = headers(&[("webhook-id", "msg_2abc"), ("webhook-timestamp", "1773500994"), ("webhook-signature", &sig)]);
    assert_eq!(verify(&cfg, &good, BODY, &facts(NOW)), Ok(Verified::Hmac));
    let other_id = headers(&[("webhook-id", "msg_other"), ("webhook-timestamp", "1773500994"), ("webhook-signature", &sig)]);
    assert_eq!(verify(&cfg, &other_id, BODY, &facts(NOW)), Err(Refused::BadSignature));
    let no_id = headers(&[("webhook-timestamp", "1773500994"), ("webhook-signature", &sig)]);
    assert_eq!(verify(&cfg, &no_id, BODY, &facts(NOW)), Err(Refused::MissingMessageId));
}

#[test]
fn empty_truncated_extended_and_foreign_signatures_never_verify() {
    let cfg = with_hmac(HmacSettings::with_key(KEY));
    let good = "925182b8046e3fa987842729aa65f1dd4d2c0fa087b40a058646c45a6484318f";
    for bad in ["", " ", &good[..4], &good[..63], &format!("{good}0"), &format!("{good}00"), "v1,", "zz", &good.replace('9', "8")] {
        let h = headers(&[("x-timestamp", TS), ("x-signature", bad)]);
        assert!(verify(&cfg, &h, BODY, &facts(NOW)).is_err(), "{bad:?} must not verify");
    }
}

#[test]
fn any_one_of_several_signatures_or_keys_verifies_for_rotation() {
    let mut s = HmacSettings::with_key("old-key");
    s.keys.push(KEY.as_bytes().to_vec());
    let cfg = with_hmac(s);
    let good = "925182b8046e3fa987842729aa65f1dd4d2c0fa087b40a058646c45a6484318f";
    let h = headers(&[("x-timestamp", TS), ("x-signature", &format!("deadbeef {good}"))]);
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW)), Ok(Verified::Hmac));
}

#[test]
fn a_reserialised_body_does_not_verify() {
    let cfg = with_hmac(HmacSettings::with_key(KEY));
    let h = headers(&[("x-timestamp", TS), ("x-signature", "925182b8046e3fa987842729aa65f1dd4d2c0fa087b40a058646c45a6484318f")]);
    let mut spaced = BODY.to_vec();
    spaced.insert(1, b' ');
    assert_eq!(verify(&cfg, &h, &spaced, &facts(NOW)), Err(Refused::BadSignature));
}

#[test]
fn timestamps_outside_the_window_either_way_are_stale() {
    let cfg = with_hmac(HmacSettings::with_key(KEY));
    let h = headers(&[("x-timestamp", TS), ("x-signature", "925182b8046e3fa987842729aa65f1dd4d2c0fa087b40a058646c45a6484318f")]);
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW + 299_000)), Ok(Verified::Hmac));
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW + 301_000)), Err(Refused::StaleTimestamp));
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW - 301_000)), Err(Refused::StaleTimestamp));
}

#[test]
fn malformed_timestamps_are_refused() {
    let cfg = with_hmac(HmacSettings::with_key(KEY));
    for ts in ["-1", "1e12", "99999999999999999999", "١٢٣", "soon", ""] {
        let h = headers(&[("x-timestamp", ts), ("x-signature", "925182b8046e3fa987842729aa65f1dd4d2c0fa087b40a058646c45a6484318f")]);
        assert!(verify(&cfg, &h, BODY, &facts(NOW)).is_err(), "{ts:?}");
    }
    let missing = headers(&[("x-signature", "925182b8046e3fa987842729aa65f1dd4d2c0fa087b40a058646c45a6484318f")]);
    assert_eq!(verify(&cfg, &missing, BODY, &facts(NOW)), Err(Refused::MissingTimestamp));
}

#[test]
fn seconds_timestamps_are_accepted_alongside_milliseconds() {
    let s = HmacSettings::with_key(KEY);
    let sig = sign(&s, BODY, "1773500994", "", &facts(NOW));
    let cfg = with_hmac(s);
    let h = headers(&[("x-timestamp", "1773500994"), ("x-signature", &sig)]);
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW)), Ok(Verified::Hmac));
}

#[test]
fn shared_secret_is_accepted_as_x_vapi_secret_or_bearer() {
    let cfg = VapiSettings { secrets: vec![Secret::new("s3cret")], ..VapiSettings::defaults() };
    for h in
        [headers(&[("x-vapi-secret", "s3cret")]), headers(&[("authorization", "Bearer s3cret")]), headers(&[("authorization", "s3cret")])]
    {
        assert_eq!(verify(&cfg, &h, BODY, &facts(NOW)), Ok(Verified::SharedSecret));
    }
    for h in [headers(&[("x-vapi-secret", "wrong")]), headers(&[("authorization", "Bearer s3cre")]), headers(&[])] {
        assert!(verify(&cfg, &h, BODY, &facts(NOW)).is_err());
    }
}

#[test]
fn a_duplicated_auth_header_is_refused() {
    let cfg = VapiSettings { secrets: vec![Secret::new("s3cret")], ..VapiSettings::defaults() };
    let h = headers(&[("x-vapi-secret", "wrong"), ("x-vapi-secret", "s3cret")]);
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW)), Err(Refused::DuplicateHeader));
}

#[test]
fn an_hmac_header_is_never_downgraded_to_the_shared_secret() {
    let cfg = VapiSettings { secrets: vec![Secret::new("s3cret")], hmac: Some(HmacSettings::with_key(KEY)), ..VapiSettings::defaults() };
    let h = headers(&[("x-vapi-secret", "s3cret"), ("x-timestamp", TS), ("x-signature", "00")]);
    assert_eq!(verify(&cfg, &h, BODY, &facts(NOW)), Err(Refused::BadSignature));
    let secret_only = headers(&[("x-vapi-secret", "s3cret")]);
    assert_eq!(verify(&cfg, &secret_only, BODY, &facts(NOW)), Err(Refused::MissingCredentials));
}

#[test]
fn without_configured_secrets_everything_is_accepted_unsigned() {
    assert_eq!(verify(&VapiSettings::defaults(), &HeaderMap::new(), BODY, &facts(NOW)), Ok(Verified::Unsigned));
}
