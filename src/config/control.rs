//! Live call control: which control URLs the hub will call. The URL arrives in webhook
//! payloads, so it is untrusted input; only hosts on this allowlist are ever contacted.

use std::net::IpAddr;

use super::{ConfigArgs, ConfigError, Secret, parse_bool, pick};

const HOSTS_SETTING: &str = "control.allowed_hosts (SWITCHBOARD_CONTROL_ALLOWED_HOSTS)";

#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Host names (each also allows its subdomains) and IP addresses (exact) a control URL may
    /// name. Lowercase; IP addresses in canonical form.
    pub allowed_hosts: Vec<String>,
    /// Allow `http://` control URLs (a loopback fake in tests); VAPI's are always https.
    pub allow_http: bool,
    /// Sent as `Authorization: Bearer` when the assistant's `monitorPlan.controlAuthenticationEnabled` is on.
    pub api_key: Option<Secret>,
    /// Let control URLs reach loopback addresses (a local fake in tests); every other internal
    /// range stays refused. File only.
    pub allow_loopback: bool,
}

impl ControlSettings {
    pub fn defaults() -> Self {
        Self { allowed_hosts: vec!["vapi.ai".into()], allow_http: false, api_key: None, allow_loopback: false }
    }

    pub fn from_sources(file: &ControlFile, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut s = Self::defaults();
        if let Some(hosts) = allowed_hosts(&args.control_allowed_hosts, &file.allowed_hosts, HOSTS_SETTING)? {
            s.allowed_hosts = hosts;
        }
        if let Some(b) = parse_bool(&args.control_allow_http, file.allow_http, "control.allow_http (SWITCHBOARD_CONTROL_ALLOW_HTTP)")? {
            s.allow_http = b;
        }
        s.allow_loopback = file.allow_loopback.unwrap_or(false);
        let file_key = file.api_key.as_ref().map(|k| k.expose().to_string());
        if let Some(k) = pick(&args.control_api_key, &file_key) {
            if k.trim().is_empty() || k.chars().any(|c| c.is_control() || c == ' ') {
                return Err(ConfigError::new("control.api_key (SWITCHBOARD_CONTROL_API_KEY)", "must be a key without spaces"));
            }
            s.api_key = Some(Secret::new(k));
        }
        Ok(s)
    }
}

/// A host allowlist from a comma-separated variable or flag (which wins) or the file, each
/// entry validated; `None` when neither sets it.
pub(super) fn allowed_hosts(arg: &Option<String>, file: &Option<Vec<String>>, setting: &str) -> Result<Option<Vec<String>>, ConfigError> {
    let hosts: Option<Vec<String>> = match arg.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => Some(v.split(',').map(str::to_string).collect()),
        None => file.clone(),
    };
    hosts.map(|h| h.iter().map(|e| e.trim()).filter(|e| !e.is_empty()).map(|e| allowed_host(e, setting)).collect()).transpose()
}

/// A host name like `vapi.ai` or an IP address; wildcards, ports, schemes and paths are refused
/// so an entry can only ever mean what it says.
pub(super) fn allowed_host(entry: &str, setting: &str) -> Result<String, ConfigError> {
    let e = entry.to_ascii_lowercase();
    let bare = e.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(&e);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if e.len() > 253 || !e.split('.').all(label_ok) {
        return Err(ConfigError::new(
            setting,
            format!("{entry:?} is not a host name like vapi.ai (its subdomains are allowed too) or an IP address"),
        ));
    }
    Ok(e)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlFile {
    pub timeout_ms: Option<u64>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allow_http: Option<bool>,
    pub api_key: Option<Secret>,
    pub allow_loopback: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(v: &str) -> Result<Vec<String>, ConfigError> {
        let args = ConfigArgs { control_allowed_hosts: Some(v.into()), ..ConfigArgs::default() };
        ControlSettings::from_sources(&ControlFile::default(), &args).map(|s| s.allowed_hosts)
    }

    #[test]
    fn the_default_allows_vapi_ai_over_https_only() {
        let s = ControlSettings::from_sources(&ControlFile::default(), &ConfigArgs::default()).unwrap();
        assert_eq!((s.allowed_hosts, s.allow_http, s.api_key, s.allow_loopback), (vec!["vapi.ai".to_string()], false, None, false));
    }

    #[test]
    fn host_names_and_ip_addresses_are_accepted_and_normalised() {
        assert_eq!(hosts(" VAPI.ai , 127.0.0.1,[::1]").unwrap(), vec!["vapi.ai", "127.0.0.1", "::1"]);
    }

    #[test]
    fn wildcards_ports_schemes_and_paths_are_refused_naming_the_setting() {
        for bad in ["*.vapi.ai", ".vapi.ai", "vapi.ai:443", "https://vapi.ai", "vapi.ai/x", "a..b", "-x.ai"] {
            let e = hosts(bad).unwrap_err();
            assert!(e.to_string().contains("SWITCHBOARD_CONTROL_ALLOWED_HOSTS"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_file_sets_them_and_the_environment_wins() {
        let file: crate::config::FileConfig =
            toml::from_str("[control]\nallowed_hosts = [\"vapi.ai\", \"staging.example\"]\nallow_http = true\napi_key = \"pk_1\"\n")
                .unwrap();
        let s = crate::config::Settings::from_sources(file, &ConfigArgs::default()).unwrap().live.control;
        assert_eq!((s.allowed_hosts.len(), s.allow_http, s.api_key.map(|k| k.expose().to_string())), (2, true, Some("pk_1".into())));
        let args = ConfigArgs { control_allowed_hosts: Some("10.0.0.5".into()), ..ConfigArgs::default() };
        let file: crate::config::FileConfig = toml::from_str("[control]\nallowed_hosts = [\"vapi.ai\"]\n").unwrap();
        assert_eq!(crate::config::Settings::from_sources(file, &args).unwrap().live.control.allowed_hosts, vec!["10.0.0.5"]);
    }

    #[test]
    fn allow_http_must_be_a_boolean() {
        let args = ConfigArgs { control_allow_http: Some("maybe".into()), ..ConfigArgs::default() };
        let e = ControlSettings::from_sources(&ControlFile::default(), &args).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_CONTROL_ALLOW_HTTP"), "{e}");
    }
}
