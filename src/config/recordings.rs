//! Recording downloads: where files go and which URLs may be fetched. The URLs arrive in
//! end-of-call reports, so they are untrusted input: https only, hosts on an allowlist, and the
//! resolved address checked too (see `recordings::guard`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::control::allowed_hosts;
use super::{ConfigArgs, ConfigError, parse_bool, parse_num, pick, positive_ms};

const HOSTS_SETTING: &str = "recordings.allowed_hosts (SWITCHBOARD_RECORDINGS_ALLOWED_HOSTS)";

#[derive(Debug, Clone)]
pub struct RecordingsSettings {
    /// The local folder files are stored under, as `<org>/<call>/<kind>.<ext>`.
    pub dir: PathBuf,
    /// Host names (each also allows its subdomains) and IP addresses (exact) a recording URL
    /// may name. Lowercase; IP addresses in canonical form.
    pub allowed_hosts: Vec<String>,
    /// Allow `http://` recording URLs (a local test server); VAPI's are https.
    pub allow_http: bool,
    /// Tests only: allow loopback addresses after resolution (every other private range stays
    /// refused). Settable in the file only, never from the environment, so it is not switched on
    /// by accident in a deployment.
    pub allow_loopback: bool,
    /// A download larger than this is refused (and its partial file removed).
    pub max_bytes: u64,
    /// One download, redirects included, from the first connect to the last byte.
    pub timeout: Duration,
}

impl RecordingsSettings {
    pub fn defaults() -> Self {
        Self {
            dir: PathBuf::from("recordings"),
            allowed_hosts: vec!["storage.vapi.ai".into(), "auth.vapi.ai".into()],
            allow_http: false,
            allow_loopback: false,
            max_bytes: 512 * 1024 * 1024,
            timeout: Duration::from_secs(300),
        }
    }

    pub fn from_sources(file: &RecordingsFile, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut s = Self::defaults();
        let file_dir = file.dir.clone();
        if let Some(d) = pick(&args.recordings, &file_dir) {
            if d.trim().is_empty() {
                return Err(ConfigError::new("recordings.dir (SWITCHBOARD_RECORDINGS)", "must name a folder"));
            }
            s.dir = PathBuf::from(d);
        }
        if let Some(hosts) = allowed_hosts(&args.recordings_allowed_hosts, &file.allowed_hosts, HOSTS_SETTING)? {
            s.allowed_hosts = hosts;
        }
        if let Some(b) =
            parse_bool(&args.recordings_allow_http, file.allow_http, "recordings.allow_http (SWITCHBOARD_RECORDINGS_ALLOW_HTTP)")?
        {
            s.allow_http = b;
        }
        s.allow_loopback = file.allow_loopback.unwrap_or(false);
        if let Some(n) =
            parse_num::<u64>(&args.recordings_max_bytes, file.max_bytes, "recordings.max_bytes (SWITCHBOARD_RECORDINGS_MAX_BYTES)")?
        {
            if n == 0 {
                return Err(ConfigError::new("recordings.max_bytes (SWITCHBOARD_RECORDINGS_MAX_BYTES)", "must be at least 1"));
            }
            s.max_bytes = n;
        }
        if let Some(d) =
            positive_ms(&args.recordings_timeout_ms, file.timeout_ms, "recordings.timeout_ms (SWITCHBOARD_RECORDINGS_TIMEOUT_MS)")?
        {
            s.timeout = d;
        }
        Ok(s)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingsFile {
    pub dir: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allow_http: Option<bool>,
    pub allow_loopback: Option<bool>,
    pub max_bytes: Option<u64>,
    pub timeout_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_allow_vapi_storage_over_https_without_loopback() {
        let s = RecordingsSettings::from_sources(&RecordingsFile::default(), &ConfigArgs::default()).unwrap();
        assert_eq!(s.allowed_hosts, vec!["storage.vapi.ai", "auth.vapi.ai"]);
        assert!(!s.allow_http && !s.allow_loopback);
        assert_eq!(s.dir, PathBuf::from("recordings"));
    }

    #[test]
    fn the_environment_sets_the_folder_hosts_and_limits() {
        let args = ConfigArgs {
            recordings: Some("/var/rec".into()),
            recordings_allowed_hosts: Some("Files.Example, 10.0.0.5".into()),
            recordings_allow_http: Some("true".into()),
            recordings_max_bytes: Some("1024".into()),
            recordings_timeout_ms: Some("5000".into()),
            ..ConfigArgs::default()
        };
        let s = RecordingsSettings::from_sources(&RecordingsFile::default(), &args).unwrap();
        assert_eq!(s.dir, PathBuf::from("/var/rec"));
        assert_eq!(s.allowed_hosts, vec!["files.example", "10.0.0.5"]);
        assert!(s.allow_http);
        assert_eq!((s.max_bytes, s.timeout), (1024, Duration::from_secs(5)));
    }

    #[test]
    fn bad_hosts_and_a_zero_cap_are_refused_naming_the_setting() {
        let args = ConfigArgs { recordings_allowed_hosts: Some("*.vapi.ai".into()), ..ConfigArgs::default() };
        let e = RecordingsSettings::from_sources(&RecordingsFile::default(), &args).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_RECORDINGS_ALLOWED_HOSTS"), "{e}");
        let args = ConfigArgs { recordings_max_bytes: Some("0".into()), ..ConfigArgs::default() };
        let e = RecordingsSettings::from_sources(&RecordingsFile::default(), &args).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_RECORDINGS_MAX_BYTES"), "{e}");
    }

    #[test]
    fn loopback_can_only_be_allowed_from_the_file() {
        let file: crate::config::FileConfig = toml::from_str("[recordings]\nallow_loopback = true\n").unwrap();
        assert!(crate::config::Settings::from_sources(file, &ConfigArgs::default()).unwrap().recordings.allow_loopback);
    }
}
