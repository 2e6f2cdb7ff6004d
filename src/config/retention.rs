//! Retention: how long each kind of data is kept before the scheduled cleanup removes it. `0`
//! keeps it forever. Raw webhook payloads (which carry personal data) and finished jobs have
//! ages by default; calls' transcripts, chats and recording files are kept unless configured.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigArgs, ConfigError, parse_num};

const DAY: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    pub raw_events: Option<Duration>,
    pub transcripts: Option<Duration>,
    pub chats: Option<Duration>,
    pub recordings: Option<Duration>,
    pub finished_jobs: Option<Duration>,
    pub webhook_deliveries: Option<Duration>,
}

impl RetentionSettings {
    pub fn defaults() -> Self {
        Self {
            raw_events: Some(DAY * 30),
            transcripts: None,
            chats: None,
            recordings: None,
            finished_jobs: Some(DAY * 14),
            webhook_deliveries: Some(DAY * 30),
        }
    }

    pub fn from_sources(file: &RetentionFile, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut s = Self::defaults();
        let days = |arg: &Option<String>, file: Option<u32>, name: &str, into: &mut Option<Duration>| -> Result<(), ConfigError> {
            if let Some(n) = parse_num::<u32>(arg, file, name)? {
                if n > 36_500 {
                    return Err(ConfigError::new(name, "must be at most 36500 days (0 keeps forever)"));
                }
                *into = (n > 0).then(|| DAY * n);
            }
            Ok(())
        };
        days(
            &args.retention_raw_events_days,
            file.raw_events_days,
            "retention.raw_events_days (SWITCHBOARD_RETENTION_RAW_EVENTS_DAYS)",
            &mut s.raw_events,
        )?;
        days(
            &args.retention_transcripts_days,
            file.transcripts_days,
            "retention.transcripts_days (SWITCHBOARD_RETENTION_TRANSCRIPTS_DAYS)",
            &mut s.transcripts,
        )?;
        days(&args.retention_chats_days, file.chats_days, "retention.chats_days (SWITCHBOARD_RETENTION_CHATS_DAYS)", &mut s.chats)?;
        days(
            &args.retention_recordings_days,
            file.recordings_days,
            "retention.recordings_days (SWITCHBOARD_RETENTION_RECORDINGS_DAYS)",
            &mut s.recordings,
        )?;
        days(&None, file.finished_jobs_days, "retention.finished_jobs_days", &mut s.finished_jobs)?;
        days(&None, file.webhook_deliveries_days, "retention.webhook_deliveries_days", &mut s.webhook_deliveries)?;
        Ok(s)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFile {
    pub raw_events_days: Option<u32>,
    pub transcripts_days: Option<u32>,
    pub chats_days: Option<u32>,
    pub recordings_days: Option<u32>,
    pub finished_jobs_days: Option<u32>,
    pub webhook_deliveries_days: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_events_and_finished_jobs_age_out_by_default_and_the_rest_is_kept() {
        let s = RetentionSettings::from_sources(&RetentionFile::default(), &ConfigArgs::default()).unwrap();
        assert_eq!(s.raw_events, Some(DAY * 30));
        assert_eq!(s.finished_jobs, Some(DAY * 14));
        assert_eq!(s.webhook_deliveries, Some(DAY * 30));
        assert_eq!((s.transcripts, s.chats, s.recordings), (None, None, None));
    }

    #[test]
    fn zero_keeps_forever_and_the_environment_wins_over_the_file() {
        let file = RetentionFile { raw_events_days: Some(0), chats_days: Some(7), ..RetentionFile::default() };
        let args = ConfigArgs { retention_chats_days: Some("3".into()), ..ConfigArgs::default() };
        let s = RetentionSettings::from_sources(&file, &args).unwrap();
        assert_eq!(s.raw_events, None);
        assert_eq!(s.chats, Some(DAY * 3));
        let bad = ConfigArgs { retention_transcripts_days: Some("-1".into()), ..ConfigArgs::default() };
        let e = RetentionSettings::from_sources(&RetentionFile::default(), &bad).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_RETENTION_TRANSCRIPTS_DAYS"), "{e}");
    }
}
