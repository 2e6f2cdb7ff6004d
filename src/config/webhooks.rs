//! Outgoing webhooks: how deliveries reach endpoints. Endpoint URLs are admin-supplied, yet
//! the hub must not become a way into its own network: https only and public addresses only,
//! unless these (test) settings say otherwise.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigArgs, ConfigError, parse_bool, parse_num, positive_ms};

const DISABLE_AFTER: &str = "webhooks.disable_after (SWITCHBOARD_WEBHOOKS_DISABLE_AFTER)";
const TIMEOUT: &str = "webhooks.timeout_ms (SWITCHBOARD_WEBHOOKS_TIMEOUT_MS)";
const REFRESH: &str = "webhooks.refresh_ms (SWITCHBOARD_WEBHOOKS_REFRESH_MS)";

#[derive(Debug, Clone)]
pub struct WebhooksSettings {
    /// Allow `http://` endpoint URLs (a local receiver in tests); https otherwise.
    pub allow_http: bool,
    /// Tests only: let endpoints resolve to loopback addresses (every other internal range stays
    /// refused). File only, so a deployment cannot switch it on from the environment by accident.
    pub allow_loopback: bool,
    /// One delivery attempt, from connect to the end of the (capped) response.
    pub timeout: Duration,
    /// Consecutive failed attempts (across the endpoint's events) that disable an endpoint.
    pub disable_after: u32,
    /// How often each instance reloads the enabled endpoints, so changes made through another
    /// instance apply here within this time.
    pub refresh: Duration,
}

impl WebhooksSettings {
    pub fn defaults() -> Self {
        Self {
            allow_http: false,
            allow_loopback: false,
            timeout: Duration::from_secs(10),
            disable_after: 10,
            refresh: Duration::from_secs(5),
        }
    }

    pub fn from_sources(file: &WebhooksFile, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut s = Self::defaults();
        if let Some(b) = parse_bool(&args.webhooks_allow_http, file.allow_http, "webhooks.allow_http (SWITCHBOARD_WEBHOOKS_ALLOW_HTTP)")? {
            s.allow_http = b;
        }
        s.allow_loopback = file.allow_loopback.unwrap_or(false);
        if let Some(d) = positive_ms(&args.webhooks_timeout_ms, file.timeout_ms, TIMEOUT)? {
            if d > Duration::from_secs(300) {
                return Err(ConfigError::new(TIMEOUT, "must be at most 300000 (five minutes)"));
            }
            s.timeout = d;
        }
        if let Some(n) = parse_num::<u32>(&args.webhooks_disable_after, file.disable_after, DISABLE_AFTER)? {
            if n == 0 {
                return Err(ConfigError::new(DISABLE_AFTER, "must be at least 1"));
            }
            s.disable_after = n;
        }
        if let Some(d) = positive_ms(&args.webhooks_refresh_ms, file.refresh_ms, REFRESH)? {
            if d < Duration::from_millis(100) {
                return Err(ConfigError::new(REFRESH, "must be at least 100"));
            }
            s.refresh = d;
        }
        Ok(s)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFile {
    pub allow_http: Option<bool>,
    pub allow_loopback: Option<bool>,
    pub timeout_ms: Option<u64>,
    pub disable_after: Option<u32>,
    pub refresh_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_args(args: ConfigArgs) -> Result<WebhooksSettings, ConfigError> {
        WebhooksSettings::from_sources(&WebhooksFile::default(), &args)
    }

    #[test]
    fn the_defaults_are_https_only_ten_seconds_and_ten_failures() {
        let s = from_args(ConfigArgs::default()).unwrap();
        assert!(!s.allow_http && !s.allow_loopback);
        assert_eq!((s.timeout, s.disable_after, s.refresh), (Duration::from_secs(10), 10, Duration::from_secs(5)));
    }

    #[test]
    fn the_environment_sets_them_and_bad_values_name_the_setting() {
        let args = ConfigArgs {
            webhooks_allow_http: Some("true".into()),
            webhooks_timeout_ms: Some("2500".into()),
            webhooks_disable_after: Some("3".into()),
            webhooks_refresh_ms: Some("1000".into()),
            ..ConfigArgs::default()
        };
        let s = from_args(args).unwrap();
        assert!(s.allow_http);
        assert_eq!((s.timeout, s.disable_after, s.refresh), (Duration::from_millis(2500), 3, Duration::from_secs(1)));
        for (args, setting) in [
            (ConfigArgs { webhooks_disable_after: Some("0".into()), ..ConfigArgs::default() }, "SWITCHBOARD_WEBHOOKS_DISABLE_AFTER"),
            (ConfigArgs { webhooks_timeout_ms: Some("0".into()), ..ConfigArgs::default() }, "SWITCHBOARD_WEBHOOKS_TIMEOUT_MS"),
            (ConfigArgs { webhooks_timeout_ms: Some("999999".into()), ..ConfigArgs::default() }, "SWITCHBOARD_WEBHOOKS_TIMEOUT_MS"),
            (ConfigArgs { webhooks_refresh_ms: Some("10".into()), ..ConfigArgs::default() }, "SWITCHBOARD_WEBHOOKS_REFRESH_MS"),
            (ConfigArgs { webhooks_allow_http: Some("sure".into()), ..ConfigArgs::default() }, "SWITCHBOARD_WEBHOOKS_ALLOW_HTTP"),
        ] {
            let e = from_args(args).unwrap_err();
            assert!(e.to_string().contains(setting), "{e}");
        }
    }

    #[test]
    fn loopback_can_only_be_allowed_from_the_file() {
        let file: crate::config::FileConfig = toml::from_str("[webhooks]\nallow_loopback = true\ndisable_after = 2\n").unwrap();
        let s = crate::config::Settings::from_sources(file, &ConfigArgs::default()).unwrap().webhooks;
        assert!(s.allow_loopback);
        assert_eq!(s.disable_after, 2);
    }
}
