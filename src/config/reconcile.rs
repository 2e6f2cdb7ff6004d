//! Reconciliation with VAPI's REST API: with an API key, calls whose end-of-call report never
//! arrived are looked up (`GET /call`) and completed from VAPI's own record.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigArgs, ConfigError, Secret, pick, positive_ms};

#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// `VAPI_API_KEY`: without it there is no reconciliation.
    pub api_key: Option<Secret>,
    /// VAPI's API (tests point it at a fake).
    pub api_url: String,
    /// A call not ended and not heard from for this long is asked about.
    pub after: Duration,
    /// Calls created longer ago than this are left alone (VAPI keeps calls, but a report this
    /// late is not coming and the hub's own retention may apply).
    pub lookback: Duration,
    /// One API request's time limit.
    pub timeout: Duration,
}

impl ReconcileSettings {
    pub fn defaults() -> Self {
        Self {
            api_key: None,
            api_url: "https://api.vapi.ai".into(),
            after: Duration::from_secs(15 * 60),
            lookback: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(20),
        }
    }

    pub fn from_sources(file: &ReconcileFile, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut s = Self::defaults();
        let key = args.vapi_api_key.clone().filter(|k| !k.is_empty()).or_else(|| file.api_key.clone());
        s.api_key = key.map(Secret::new);
        if let Some(url) = pick(&args.vapi_api_url, &file.api_url) {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::new("reconcile.api_url (SWITCHBOARD_VAPI_API_URL)", format!("{url:?} must be an http(s) URL")));
            }
            s.api_url = url.trim_end_matches('/').to_string();
        }
        if let Some(d) = positive_ms(&None, file.after_ms, "reconcile.after_ms")? {
            s.after = d;
        }
        if let Some(d) = positive_ms(&None, file.lookback_ms, "reconcile.lookback_ms")? {
            s.lookback = d;
        }
        if let Some(d) = positive_ms(&None, file.timeout_ms, "reconcile.timeout_ms")? {
            s.timeout = d;
        }
        Ok(s)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileFile {
    pub api_key: Option<String>,
    pub api_url: Option<String>,
    pub after_ms: Option<u64>,
    pub lookback_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}
