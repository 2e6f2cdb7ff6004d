//! Settings: defaults, then `switchboard.toml`, then `SWITCHBOARD_*` variables, then flags.
//! Loaded once at start-up, validated with a message naming the bad setting, passed down.

mod args;
mod chat;
mod control;
mod file;
mod jobs;
mod live;
mod reconcile;
mod recordings;
mod retention;
mod secret;
mod vapi;
mod webhooks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use args::ConfigArgs;
pub use chat::{Budgets, ChatSettings, Passthrough, Rate, Widget, origin as chat_origin};
pub use control::ControlSettings;
pub use file::FileConfig;
pub use jobs::{JobsSettings, KindSettings, valid_kind as valid_job_kind};
pub use live::{LiveSettings, WsSettings};
pub use reconcile::ReconcileSettings;
pub use recordings::{RecordingsSettings, S3Settings};
pub use retention::RetentionSettings;
pub use secret::Secret;
pub use vapi::{
    AssistantRoute, DestinationReply, Encoding, FunctionHandler, FunctionSpec, HmacAlgorithm, HmacSettings, KnowledgeDoc, VapiSettings,
};
pub use webhooks::WebhooksSettings;

/// A setting that could not be used, with where it can be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self { setting: setting.into(), message: message.into() }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid setting `{}`: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub database_max_connections: u32,
    pub broker_url: String,
    /// The hub's URL as callers see it (used for HMAC `{url}` payloads behind a proxy).
    pub public_url: Option<String>,
    /// Web assets from this folder instead of the embedded copies.
    pub web_dir: Option<PathBuf>,
    pub log: String,
    pub log_format: LogFormat,
    /// How long shutdown waits for in-flight requests before closing them.
    pub shutdown_timeout: Duration,
    /// Slowloris guard: a client must finish sending a request's headers within this time
    /// from their first byte (a new connection's first request: from the accept).
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request. Longer than common
    /// clients' pools keep idle connections (reqwest and Go: 90 s), so the hub is not the one
    /// closing a connection just as a client sends on it.
    pub keep_alive_timeout: Duration,
    /// A request body must arrive within this time (slow-body guard), else 408.
    pub body_read_timeout: Duration,
    /// Accepted TCP connections at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Connections the kernel queues for the hub before it accepts them (capped by the
    /// kernel's `somaxconn`). A burst beyond it (every supervisor reconnecting after a
    /// restart, a wave of widget visitors) is dropped and retried by the clients a second
    /// or more later.
    pub listen_backlog: u32,
    pub live: LiveSettings,
    pub vapi: VapiSettings,
    pub functions: Vec<FunctionSpec>,
    pub chat: ChatSettings,
    pub jobs: JobsSettings,
    pub recordings: RecordingsSettings,
    pub retention: RetentionSettings,
    pub reconcile: ReconcileSettings,
    pub webhooks: WebhooksSettings,
}

impl Settings {
    /// Every default, as documented in the README.
    pub fn defaults() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://switchboard.db".into(),
            database_max_connections: 8,
            broker_url: "memory".into(),
            public_url: None,
            web_dir: None,
            log: "info".into(),
            log_format: LogFormat::Text,
            shutdown_timeout: Duration::from_secs(25),
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(120),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            listen_backlog: 4096,
            live: LiveSettings::defaults(),
            vapi: VapiSettings::defaults(),
            functions: vapi::default_functions(Duration::from_secs(10)),
            chat: ChatSettings::defaults(),
            jobs: JobsSettings::defaults(),
            recordings: RecordingsSettings::defaults(),
            retention: RetentionSettings::defaults(),
            reconcile: ReconcileSettings::defaults(),
            webhooks: WebhooksSettings::defaults(),
        }
    }

    /// Loads the file named by `--config`/`SWITCHBOARD_CONFIG`, or `./switchboard.toml` if present.
    pub fn load(args: &ConfigArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => Some(read_file(path)?),
            None if Path::new("switchboard.toml").exists() => Some(read_file(Path::new("switchboard.toml"))?),
            None => None,
        };
        Self::from_sources(file.unwrap_or_default(), args)
    }

    /// Merges a parsed file with flags/environment (the latter win) and validates the result.
    pub fn from_sources(file: FileConfig, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut s = Self::defaults();
        if let Some(v) = pick(&args.listen, &file.listen) {
            s.listen = v.parse().map_err(|_| {
                ConfigError::new("listen (--listen, SWITCHBOARD_LISTEN)", format!("{v:?} is not host:port, e.g. 127.0.0.1:8080"))
            })?;
        }
        if let Some(v) = pick(&args.database_url, &file.database_url) {
            if !(v.starts_with("sqlite:") || v.starts_with("postgres://") || v.starts_with("postgresql://")) {
                return Err(ConfigError::new(
                    "database_url (--database-url, SWITCHBOARD_DATABASE_URL)",
                    format!("{v:?} must start with sqlite: or postgres://"),
                ));
            }
            s.database_url = v;
        }
        if let Some(n) = parse_num::<u32>(
            &args.database_max_connections,
            file.database_max_connections,
            "database_max_connections (SWITCHBOARD_DATABASE_MAX_CONNECTIONS)",
        )? {
            if n == 0 {
                return Err(ConfigError::new("database_max_connections", "must be at least 1"));
            }
            s.database_max_connections = n;
        }
        if let Some(v) = pick(&args.broker_url, &file.broker_url) {
            if !(v == "memory" || v.starts_with("redis://") || v.starts_with("rediss://")) {
                return Err(ConfigError::new(
                    "broker_url (--broker-url, SWITCHBOARD_BROKER_URL)",
                    format!("{v:?} is not memory or a redis:// URL"),
                ));
            }
            s.broker_url = v;
        }
        if let Some(v) = pick(&args.public_url, &file.public_url) {
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(ConfigError::new("public_url (SWITCHBOARD_PUBLIC_URL)", format!("{v:?} must start with http:// or https://")));
            }
            s.public_url = Some(v.trim_end_matches('/').to_string());
        }
        if let Some(v) = pick(&args.web_dir, &file.web_dir) {
            let dir = PathBuf::from(&v);
            if !dir.join("widget").is_dir() {
                return Err(ConfigError::new("web_dir (SWITCHBOARD_WEB_DIR)", format!("{v:?} is not a web folder (no widget/ inside)")));
            }
            s.web_dir = Some(dir);
        }
        if let Some(v) = pick(&args.log, &file.log) {
            s.log = v;
        }
        if let Some(v) = pick(&args.log_format, &file.log_format) {
            s.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => return Err(ConfigError::new("log_format (SWITCHBOARD_LOG_FORMAT)", format!("{other:?} is not text or json"))),
            };
        }
        if let Some(ms) =
            parse_num::<u64>(&args.shutdown_timeout_ms, file.shutdown_timeout_ms, "shutdown_timeout_ms (SWITCHBOARD_SHUTDOWN_TIMEOUT_MS)")?
        {
            s.shutdown_timeout = Duration::from_millis(ms);
        }
        if let Some(d) = positive_ms(
            &args.header_read_timeout_ms,
            file.header_read_timeout_ms,
            "header_read_timeout_ms (SWITCHBOARD_HEADER_READ_TIMEOUT_MS)",
        )? {
            s.header_read_timeout = d;
        }
        if let Some(d) = positive_ms(
            &args.keep_alive_timeout_ms,
            file.keep_alive_timeout_ms,
            "keep_alive_timeout_ms (SWITCHBOARD_KEEP_ALIVE_TIMEOUT_MS)",
        )? {
            s.keep_alive_timeout = d;
        }
        if let Some(d) =
            positive_ms(&args.body_read_timeout_ms, file.body_read_timeout_ms, "body_read_timeout_ms (SWITCHBOARD_BODY_READ_TIMEOUT_MS)")?
        {
            s.body_read_timeout = d;
        }
        if let Some(n) = parse_num::<usize>(&args.max_connections, file.max_connections, "max_connections (SWITCHBOARD_MAX_CONNECTIONS)")? {
            if n == 0 {
                return Err(ConfigError::new("max_connections", "must be at least 1"));
            }
            s.max_connections = n;
        }
        if let Some(n) = parse_num::<u32>(&args.listen_backlog, file.listen_backlog, "listen_backlog (SWITCHBOARD_LISTEN_BACKLOG)")? {
            if n == 0 {
                return Err(ConfigError::new("listen_backlog (SWITCHBOARD_LISTEN_BACKLOG)", "must be at least 1"));
            }
            s.listen_backlog = n;
        }
        s.live = LiveSettings::from_sources(&file.broker, &file.ws, &file.control, args)?;
        if let Some(prefix) = live::broker_prefix(&args.broker_prefix, &file.broker_prefix)? {
            s.live.broker_prefix = prefix;
        }
        s.vapi = VapiSettings::from_sources(&file.vapi, args)?;
        s.functions = vapi::functions_from(&file.functions, s.vapi.tool_timeout)?;
        s.chat = ChatSettings::from_sources(&file.chat, &file.widgets, args, &s.vapi.default_org)?;
        if let Some(t) = s.chat.tools.iter().find(|t| !s.functions.iter().any(|f| &f.name == *t)) {
            return Err(ConfigError::new("chat.tools (SWITCHBOARD_CHAT_TOOLS)", format!("{t:?} is not a declared function")));
        }
        s.jobs = JobsSettings::from_sources(&file.jobs, args)?;
        s.recordings = RecordingsSettings::from_sources(&file.recordings, args)?;
        s.retention = RetentionSettings::from_sources(&file.retention, args)?;
        s.reconcile = ReconcileSettings::from_sources(&file.reconcile, args)?;
        s.webhooks = WebhooksSettings::from_sources(&file.webhooks, args)?;
        Ok(s)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("config (--config, SWITCHBOARD_CONFIG)", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError::new(format!("{}", path.display()), e.message().to_string()))
}

/// A flag or variable wins over the file.
fn pick(arg: &Option<String>, file: &Option<String>) -> Option<String> {
    arg.clone().filter(|s| !s.is_empty()).or_else(|| file.clone())
}

fn parse_num<T: std::str::FromStr + Copy>(arg: &Option<String>, file: Option<T>, name: &str) -> Result<Option<T>, ConfigError> {
    match arg.as_deref().filter(|s| !s.is_empty()) {
        Some(v) => v.trim().parse().map(Some).map_err(|_| ConfigError::new(name, format!("{v:?} is not a valid number"))),
        None => Ok(file),
    }
}

/// A duration in milliseconds that must not be zero (a zero timeout would refuse everything).
fn positive_ms(arg: &Option<String>, file: Option<u64>, name: &str) -> Result<Option<Duration>, ConfigError> {
    match parse_num::<u64>(arg, file, name)? {
        Some(0) => Err(ConfigError::new(name, "must be greater than 0")),
        other => Ok(other.map(Duration::from_millis)),
    }
}

fn parse_bool(arg: &Option<String>, file: Option<bool>, name: &str) -> Result<Option<bool>, ConfigError> {
    match arg.as_deref().filter(|s| !s.is_empty()) {
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(v) => Err(ConfigError::new(name, format!("{v:?} is not true or false"))),
        None => Ok(file),
    }
}

#[cfg(test)]
mod tests;
