//! Recording downloads: where files go (a local folder or an S3-compatible bucket) and which
//! URLs may be fetched. The URLs arrive in end-of-call reports, so they are untrusted input:
//! https only, hosts on an allowlist, and the resolved address checked too (see
//! `recordings::guard`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::control::allowed_hosts;
use super::{ConfigArgs, ConfigError, Secret, parse_bool, parse_num, pick, positive_ms};

const HOSTS_SETTING: &str = "recordings.allowed_hosts (SWITCHBOARD_RECORDINGS_ALLOWED_HOSTS)";
const DIR_SETTING: &str = "recordings.dir (SWITCHBOARD_RECORDINGS)";
const ENDPOINT_SETTING: &str = "recordings.s3_endpoint (SWITCHBOARD_RECORDINGS_S3_ENDPOINT)";
const REGION_SETTING: &str = "recordings.s3_region (SWITCHBOARD_RECORDINGS_S3_REGION)";
const S3_HTTP_SETTING: &str = "recordings.s3_allow_http (SWITCHBOARD_RECORDINGS_S3_ALLOW_HTTP)";

#[derive(Debug, Clone)]
pub struct RecordingsSettings {
    /// The local folder files are stored under, as `<org>/<call>/<kind>.<ext>` (not used when
    /// `s3` is set).
    pub dir: PathBuf,
    /// An S3-compatible bucket instead of the folder (`recordings.dir = "s3://bucket/prefix"`).
    pub s3: Option<S3Settings>,
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
            s3: None,
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
                return Err(ConfigError::new(DIR_SETTING, "must name a folder or s3://BUCKET[/PREFIX]"));
            }
            match d.strip_prefix("s3://") {
                Some(rest) => s.s3 = Some(S3Settings::from_sources(rest, file, args)?),
                None => s.dir = PathBuf::from(d),
            }
        }
        if s.s3.is_none() {
            let s3_keys = [
                (args.recordings_s3_endpoint.is_some() || file.s3_endpoint.is_some(), ENDPOINT_SETTING),
                (args.recordings_s3_region.is_some() || file.s3_region.is_some(), REGION_SETTING),
                (args.recordings_s3_allow_http.is_some() || file.s3_allow_http.is_some(), S3_HTTP_SETTING),
                (file.s3_access_key_id.is_some() || file.s3_secret_access_key.is_some(), "recordings.s3_access_key_id"),
                (file.s3_session_token.is_some(), "recordings.s3_session_token"),
            ];
            if let Some((_, name)) = s3_keys.iter().find(|(set, _)| *set) {
                return Err(ConfigError::new(*name, "is only used when recordings.dir is s3://BUCKET[/PREFIX]"));
            }
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

/// Where in which S3-compatible service recordings are stored. Credentials not given here come
/// from the standard `AWS_*` environment (keys, session token, web identity, container or
/// instance credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix without leading or trailing slash (may be empty).
    pub prefix: String,
    /// MinIO, R2, a local test server; requests then use path-style addressing.
    pub endpoint: Option<String>,
    /// None: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    pub allow_http: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
}

impl S3Settings {
    /// `rest` is what follows `s3://`: `BUCKET[/PREFIX]`.
    fn from_sources(rest: &str, file: &RecordingsFile, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
        if !bucket_ok {
            return Err(ConfigError::new(
                DIR_SETTING,
                format!("{bucket:?} is not a bucket name (3-63 lowercase letters, digits, dots, hyphens): use s3://BUCKET[/PREFIX]"),
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && prefix.split('/').any(|p| p.is_empty() || p == "." || p == ".." || p.chars().any(char::is_control)) {
            return Err(ConfigError::new(DIR_SETTING, format!("{prefix:?} is not a key prefix (no empty, . or .. parts)")));
        }
        let allow_http = parse_bool(&args.recordings_s3_allow_http, file.s3_allow_http, S3_HTTP_SETTING)?.unwrap_or(false);
        let endpoint = pick(&args.recordings_s3_endpoint, &file.s3_endpoint).map(|e| e.trim().trim_end_matches('/').to_string());
        if let Some(e) = &endpoint {
            let url = reqwest::Url::parse(e).map_err(|err| ConfigError::new(ENDPOINT_SETTING, format!("{e:?} is not a URL ({err})")))?;
            if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
                return Err(ConfigError::new(
                    ENDPOINT_SETTING,
                    "must not carry credentials or a query (credentials go in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
                ));
            }
            match url.scheme() {
                "https" => {}
                "http" if allow_http => {}
                "http" => return Err(ConfigError::new(S3_HTTP_SETTING, format!("must be true to use the http:// endpoint {e:?}"))),
                other => return Err(ConfigError::new(ENDPOINT_SETTING, format!("the scheme {other:?} is not http or https"))),
            }
        }
        let region = pick(&args.recordings_s3_region, &file.s3_region).map(|r| r.trim().to_string());
        if let Some(r) = &region
            && (r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(ConfigError::new(REGION_SETTING, format!("{r:?} is not a region name such as us-east-1")));
        }
        let access_key_id = file.s3_access_key_id.clone().filter(|k| !k.is_empty());
        let secret_access_key = file.s3_secret_access_key.clone().filter(|k| !k.expose().is_empty());
        if access_key_id.is_some() != secret_access_key.is_some() {
            return Err(ConfigError::new(
                "recordings.s3_access_key_id / recordings.s3_secret_access_key",
                "must be given together (or neither, to use the AWS_* environment)",
            ));
        }
        let session_token = file.s3_session_token.clone().filter(|t| !t.expose().is_empty());
        if session_token.is_some() && access_key_id.is_none() {
            return Err(ConfigError::new("recordings.s3_session_token", "needs recordings.s3_access_key_id and s3_secret_access_key"));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint,
            region,
            allow_http,
            access_key_id,
            secret_access_key,
            session_token,
        })
    }

    /// `s3://bucket/prefix`, for logs and errors.
    pub fn location(&self) -> String {
        if self.prefix.is_empty() { format!("s3://{}", self.bucket) } else { format!("s3://{}/{}", self.bucket, self.prefix) }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingsFile {
    pub dir: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_allow_http: Option<bool>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret>,
    pub s3_session_token: Option<Secret>,
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
    fn an_s3_location_names_the_bucket_and_prefix_and_takes_its_settings_from_file_and_env() {
        let file: crate::config::FileConfig = toml::from_str(
            "[recordings]\ndir = \"s3://calls-audio/prod/recordings/\"\ns3_region = \"eu-west-1\"\n\
             s3_access_key_id = \"AKIAEXAMPLE\"\ns3_secret_access_key = \"very-secret\"\n",
        )
        .unwrap();
        let args = ConfigArgs {
            recordings_s3_endpoint: Some("http://127.0.0.1:9000/".into()),
            recordings_s3_allow_http: Some("true".into()),
            ..ConfigArgs::default()
        };
        let s = crate::config::Settings::from_sources(file, &args).unwrap().recordings;
        let s3 = s.s3.clone().unwrap();
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("calls-audio", "prod/recordings"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert!(s3.allow_http);
        assert_eq!(s3.location(), "s3://calls-audio/prod/recordings");
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        let bare = RecordingsSettings::from_sources(
            &RecordingsFile::default(),
            &ConfigArgs { recordings: Some("s3://bucket".into()), ..ConfigArgs::default() },
        )
        .unwrap();
        assert_eq!(bare.s3.map(|b| (b.bucket, b.prefix, b.endpoint, b.region)), Some(("bucket".into(), String::new(), None, None)));
    }

    #[test]
    fn bad_s3_settings_are_refused_naming_the_setting() {
        let with = |dir: &str, f: &dyn Fn(&mut ConfigArgs)| {
            let mut args = ConfigArgs { recordings: Some(dir.into()), ..ConfigArgs::default() };
            f(&mut args);
            RecordingsSettings::from_sources(&RecordingsFile::default(), &args).unwrap_err().to_string()
        };
        assert!(with("s3://", &|_| {}).contains("SWITCHBOARD_RECORDINGS)"));
        assert!(with("s3://Bad_Bucket!", &|_| {}).contains("bucket name"));
        assert!(with("s3://bucket/a//b", &|_| {}).contains("key prefix"));
        assert!(with("s3://bucket/../b", &|_| {}).contains("key prefix"));
        let e = with("s3://bucket", &|a| a.recordings_s3_endpoint = Some("http://127.0.0.1:9000".into()));
        assert!(e.contains("SWITCHBOARD_RECORDINGS_S3_ALLOW_HTTP"), "{e}");
        let e = with("s3://bucket", &|a| a.recordings_s3_endpoint = Some("ftp://minio".into()));
        assert!(e.contains("SWITCHBOARD_RECORDINGS_S3_ENDPOINT"), "{e}");
        let e = with("s3://bucket", &|a| a.recordings_s3_endpoint = Some("https://key:secret@minio".into()));
        assert!(e.contains("SWITCHBOARD_RECORDINGS_S3_ENDPOINT") && !e.contains("secret@"), "{e}");
        let e = with("/var/rec", &|a| a.recordings_s3_region = Some("eu-west-1".into()));
        assert!(e.contains("SWITCHBOARD_RECORDINGS_S3_REGION") && e.contains("s3://"), "{e}");
        let file: crate::config::FileConfig =
            toml::from_str("[recordings]\ndir = \"s3://bucket\"\ns3_access_key_id = \"AKIAEXAMPLE\"\n").unwrap();
        let e = crate::config::Settings::from_sources(file, &ConfigArgs::default()).unwrap_err().to_string();
        assert!(e.contains("s3_secret_access_key"), "{e}");
    }

    #[test]
    fn loopback_can_only_be_allowed_from_the_file() {
        let file: crate::config::FileConfig = toml::from_str("[recordings]\nallow_loopback = true\n").unwrap();
        assert!(crate::config::Settings::from_sources(file, &ConfigArgs::default()).unwrap().recordings.allow_loopback);
    }
}
