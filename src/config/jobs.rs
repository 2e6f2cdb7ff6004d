//! Durable jobs: how often a worker looks for work, how much it runs at once, how long a claim
//! lasts without renewal, and how failures are retried. Per-kind settings (`[jobs.kinds.NAME]`)
//! override what the code registering a kind chose.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigArgs, ConfigError, parse_bool, parse_num, positive_ms};

#[derive(Debug, Clone)]
pub struct JobsSettings {
    /// How often an idle worker looks for due jobs.
    pub poll: Duration,
    /// Jobs one instance runs at once.
    pub concurrency: usize,
    /// A claim's length; renewed every third of it while the handler runs. A job whose worker
    /// stopped renewing (crashed) runs again once it has passed.
    pub lease: Duration,
    /// Attempts before a job is `dead`, unless its kind says otherwise.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles (plus up to 25 % jitter).
    pub backoff_base: Duration,
    /// The longest delay between two attempts.
    pub backoff_max: Duration,
    /// Registers the `noop` and `sleep` kinds, for demos and tests.
    pub demo_kinds: bool,
    pub kinds: BTreeMap<String, KindSettings>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindSettings {
    /// Jobs of this kind running at once across every instance.
    pub limit: Option<usize>,
    /// Enqueue one job of this kind per interval (a slot), on whichever instance gets there first.
    pub every: Option<Duration>,
    pub max_attempts: Option<u32>,
}

impl JobsSettings {
    pub fn defaults() -> Self {
        Self {
            poll: Duration::from_secs(1),
            concurrency: 4,
            lease: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            demo_kinds: false,
            kinds: BTreeMap::new(),
        }
    }

    pub fn from_sources(file: &JobsFile, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut s = Self::defaults();
        if let Some(d) = positive_ms(&args.jobs_poll_ms, file.poll_ms, "jobs.poll_ms (SWITCHBOARD_JOBS_POLL_MS)")? {
            s.poll = d;
        }
        if let Some(n) = parse_num::<usize>(&args.jobs_concurrency, file.concurrency, CONCURRENCY)? {
            if !(1..=1000).contains(&n) {
                return Err(ConfigError::new(CONCURRENCY, "must be between 1 and 1000"));
            }
            s.concurrency = n;
        }
        if let Some(ms) = parse_num::<u64>(&args.jobs_lease_ms, file.lease_ms, LEASE)? {
            // Renewal runs every third of the lease; much shorter and a busy store loses leases.
            if ms < 300 {
                return Err(ConfigError::new(LEASE, "must be at least 300"));
            }
            s.lease = Duration::from_millis(ms);
        }
        if let Some(n) = parse_num::<u32>(&args.jobs_max_attempts, file.max_attempts, MAX_ATTEMPTS)? {
            if n == 0 {
                return Err(ConfigError::new(MAX_ATTEMPTS, "must be at least 1"));
            }
            s.max_attempts = n;
        }
        if let Some(d) =
            positive_ms(&args.jobs_backoff_base_ms, file.backoff_base_ms, "jobs.backoff_base_ms (SWITCHBOARD_JOBS_BACKOFF_BASE_MS)")?
        {
            s.backoff_base = d;
        }
        if let Some(d) = positive_ms(&args.jobs_backoff_max_ms, file.backoff_max_ms, BACKOFF_MAX)? {
            s.backoff_max = d;
        }
        if s.backoff_max < s.backoff_base {
            return Err(ConfigError::new(BACKOFF_MAX, "must not be shorter than jobs.backoff_base_ms"));
        }
        if let Some(b) = parse_bool(&args.jobs_demo_kinds, file.demo_kinds, "jobs.demo_kinds (SWITCHBOARD_JOBS_DEMO_KINDS)")? {
            s.demo_kinds = b;
        }
        for (name, k) in &file.kinds {
            let setting = |field: &str| format!("jobs.kinds.{name}.{field}");
            if !valid_kind(name) {
                return Err(ConfigError::new(format!("jobs.kinds.{name}"), "a kind is 1 to 64 of a-z 0-9 _ - ."));
            }
            if k.limit == Some(0) {
                return Err(ConfigError::new(setting("limit"), "must be at least 1"));
            }
            if k.max_attempts == Some(0) {
                return Err(ConfigError::new(setting("max_attempts"), "must be at least 1"));
            }
            // One row per slot stays in the table (it is the slot's dedup key): not too many.
            if k.every_ms.is_some_and(|ms| ms < 1000) {
                return Err(ConfigError::new(setting("every_ms"), "must be at least 1000"));
            }
            let every = k.every_ms.map(Duration::from_millis);
            s.kinds.insert(name.clone(), KindSettings { limit: k.limit, every, max_attempts: k.max_attempts });
        }
        Ok(s)
    }
}

const CONCURRENCY: &str = "jobs.concurrency (SWITCHBOARD_JOBS_CONCURRENCY)";
const LEASE: &str = "jobs.lease_ms (SWITCHBOARD_JOBS_LEASE_MS)";
const MAX_ATTEMPTS: &str = "jobs.max_attempts (SWITCHBOARD_JOBS_MAX_ATTEMPTS)";
const BACKOFF_MAX: &str = "jobs.backoff_max_ms (SWITCHBOARD_JOBS_BACKOFF_MAX_MS)";

/// Kind names appear in URLs (`/api/admin/jobs/run/{kind}`) and dedup keys: keep them plain.
pub fn valid_kind(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsFile {
    pub poll_ms: Option<u64>,
    pub concurrency: Option<usize>,
    pub lease_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub demo_kinds: Option<bool>,
    #[serde(default)]
    pub kinds: BTreeMap<String, KindFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindFile {
    pub limit: Option<usize>,
    pub every_ms: Option<u64>,
    pub max_attempts: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<JobsSettings, ConfigError> {
        let file: crate::config::FileConfig = toml::from_str(text).unwrap();
        crate::config::Settings::from_sources(file, &ConfigArgs::default()).map(|s| s.jobs)
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let s = JobsSettings::from_sources(&JobsFile::default(), &ConfigArgs::default()).unwrap();
        assert_eq!((s.poll, s.concurrency, s.lease), (Duration::from_secs(1), 4, Duration::from_secs(30)));
        assert_eq!((s.max_attempts, s.backoff_base, s.backoff_max), (5, Duration::from_secs(1), Duration::from_secs(3600)));
        assert!(!s.demo_kinds && s.kinds.is_empty());
    }

    #[test]
    fn the_file_sets_kinds_and_the_environment_wins_for_the_main_settings() {
        let text = "[jobs]\nconcurrency = 2\nlease_ms = 5000\n[jobs.kinds.retention]\nlimit = 1\nevery_ms = 60000\nmax_attempts = 3\n";
        let s = from_toml(text).unwrap();
        assert_eq!((s.concurrency, s.lease), (2, Duration::from_secs(5)));
        let k = &s.kinds["retention"];
        assert_eq!((k.limit, k.every, k.max_attempts), (Some(1), Some(Duration::from_secs(60)), Some(3)));
        let args = ConfigArgs { jobs_concurrency: Some("8".into()), ..ConfigArgs::default() };
        let file: crate::config::FileConfig = toml::from_str(text).unwrap();
        assert_eq!(crate::config::Settings::from_sources(file, &args).unwrap().jobs.concurrency, 8);
    }

    #[test]
    fn bad_values_are_refused_naming_the_setting() {
        for (args, name) in [
            (ConfigArgs { jobs_concurrency: Some("0".into()), ..ConfigArgs::default() }, "SWITCHBOARD_JOBS_CONCURRENCY"),
            (ConfigArgs { jobs_lease_ms: Some("10".into()), ..ConfigArgs::default() }, "SWITCHBOARD_JOBS_LEASE_MS"),
            (ConfigArgs { jobs_max_attempts: Some("0".into()), ..ConfigArgs::default() }, "SWITCHBOARD_JOBS_MAX_ATTEMPTS"),
            (ConfigArgs { jobs_poll_ms: Some("soon".into()), ..ConfigArgs::default() }, "SWITCHBOARD_JOBS_POLL_MS"),
            (ConfigArgs { jobs_backoff_max_ms: Some("10".into()), ..ConfigArgs::default() }, "SWITCHBOARD_JOBS_BACKOFF_MAX_MS"),
            (ConfigArgs { jobs_demo_kinds: Some("maybe".into()), ..ConfigArgs::default() }, "SWITCHBOARD_JOBS_DEMO_KINDS"),
        ] {
            let e = JobsSettings::from_sources(&JobsFile::default(), &args).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
        for (text, name) in [
            ("[jobs.kinds.x]\nlimit = 0\n", "jobs.kinds.x.limit"),
            ("[jobs.kinds.x]\nevery_ms = 10\n", "jobs.kinds.x.every_ms"),
            ("[jobs.kinds.Bad]\nlimit = 1\n", "jobs.kinds.Bad"),
        ] {
            let e = from_toml(text).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }
}
