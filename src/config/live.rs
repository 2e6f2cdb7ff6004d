//! Live fan-out settings: the broker's history limits, the supervisor WebSocket's limits and
//! live call control. Every limit here is a promise to operators that one client cannot take
//! more than its share.

use std::time::Duration;

use serde::Deserialize;

use super::control::{ControlFile, ControlSettings};
use super::{ConfigArgs, ConfigError, parse_num, positive_ms};

#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// Namespace of the Redis broker's keys and channel: instances that share live events share
    /// it; hubs (or tests) sharing one Redis keep apart with different ones.
    pub broker_prefix: String,
    /// Events kept per topic for `since` recovery.
    pub history_size: usize,
    /// Events older than this are no longer recoverable.
    pub history_age: Duration,
    /// Events kept across all topics by the in-process broker.
    pub max_total_events: usize,
    pub ws: WsSettings,
    /// Time VAPI's control URL has to answer a control action.
    pub control_timeout: Duration,
    /// Which control URLs may be called, and how.
    pub control: ControlSettings,
}

#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Open supervisor sockets per token.
    pub max_connections_per_token: usize,
    /// Open supervisor sockets in all.
    pub max_connections: usize,
    /// Topics one socket may subscribe to.
    pub max_subscriptions: usize,
    /// Largest client message (frame) accepted.
    pub max_message_bytes: usize,
    /// Frames waiting for a slow socket, in bytes; past it the socket is closed with 4008.
    pub queue_bytes: usize,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// A socket that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// Browser origins allowed besides the hub's own (cross-site WebSocket hijacking guard).
    pub allowed_origins: Vec<String>,
}

impl LiveSettings {
    pub fn defaults() -> Self {
        Self {
            broker_prefix: "switchboard".into(),
            history_size: 1000,
            history_age: Duration::from_secs(600),
            max_total_events: 100_000,
            ws: WsSettings {
                max_connections_per_token: 50,
                max_connections: 20_000,
                max_subscriptions: 128,
                max_message_bytes: 64 * 1024,
                queue_bytes: 1024 * 1024,
                ping_interval: Duration::from_secs(25),
                idle_timeout: Duration::from_secs(60),
                allowed_origins: Vec::new(),
            },
            control_timeout: Duration::from_secs(5),
            control: ControlSettings::defaults(),
        }
    }

    pub fn from_sources(broker: &BrokerFile, ws: &WsFile, control: &ControlFile, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut s = Self::defaults();
        if let Some(n) =
            at_least_one(&args.broker_history_size, broker.history_size, "broker.history_size (SWITCHBOARD_BROKER_HISTORY_SIZE)")?
        {
            s.history_size = n;
        }
        if let Some(d) =
            positive_ms(&args.broker_history_age_ms, broker.history_age_ms, "broker.history_age_ms (SWITCHBOARD_BROKER_HISTORY_AGE_MS)")?
        {
            s.history_age = d;
        }
        if let Some(n) = at_least_one(
            &args.broker_max_total_events,
            broker.max_total_events,
            "broker.max_total_events (SWITCHBOARD_BROKER_MAX_TOTAL_EVENTS)",
        )? {
            s.max_total_events = n;
        }
        let w = &mut s.ws;
        if let Some(n) = at_least_one(
            &args.ws_max_connections_per_token,
            ws.max_connections_per_token,
            "ws.max_connections_per_token (SWITCHBOARD_WS_MAX_CONNECTIONS_PER_TOKEN)",
        )? {
            w.max_connections_per_token = n;
        }
        if let Some(n) = at_least_one(&args.ws_max_connections, ws.max_connections, "ws.max_connections (SWITCHBOARD_WS_MAX_CONNECTIONS)")?
        {
            w.max_connections = n;
        }
        if let Some(n) =
            at_least_one(&args.ws_max_subscriptions, ws.max_subscriptions, "ws.max_subscriptions (SWITCHBOARD_WS_MAX_SUBSCRIPTIONS)")?
        {
            w.max_subscriptions = n;
        }
        if let Some(n) =
            parse_num::<usize>(&args.ws_max_message_bytes, ws.max_message_bytes, "ws.max_message_bytes (SWITCHBOARD_WS_MAX_MESSAGE_BYTES)")?
        {
            if n < 256 {
                return Err(ConfigError::new("ws.max_message_bytes (SWITCHBOARD_WS_MAX_MESSAGE_BYTES)", "must be at least 256"));
            }
            w.max_message_bytes = n;
        }
        if let Some(n) = parse_num::<usize>(&args.ws_queue_bytes, ws.queue_bytes, "ws.queue_bytes (SWITCHBOARD_WS_QUEUE_BYTES)")? {
            if n < 4096 {
                return Err(ConfigError::new("ws.queue_bytes (SWITCHBOARD_WS_QUEUE_BYTES)", "must be at least 4096"));
            }
            w.queue_bytes = n;
        }
        if let Some(d) =
            positive_ms(&args.ws_ping_interval_ms, ws.ping_interval_ms, "ws.ping_interval_ms (SWITCHBOARD_WS_PING_INTERVAL_MS)")?
        {
            w.ping_interval = d;
        }
        if let Some(d) = positive_ms(&args.ws_idle_timeout_ms, ws.idle_timeout_ms, "ws.idle_timeout_ms (SWITCHBOARD_WS_IDLE_TIMEOUT_MS)")? {
            w.idle_timeout = d;
        }
        if w.idle_timeout <= w.ping_interval {
            return Err(ConfigError::new(
                "ws.idle_timeout_ms (SWITCHBOARD_WS_IDLE_TIMEOUT_MS)",
                "must be longer than ws.ping_interval_ms, or every quiet socket would be closed",
            ));
        }
        let origins: Option<Vec<String>> = match args.ws_allowed_origins.as_deref().filter(|s| !s.is_empty()) {
            Some(v) => Some(v.split(',').map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect()),
            None => ws.allowed_origins.clone(),
        };
        if let Some(origins) = origins {
            for o in &origins {
                let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
                if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                    return Err(ConfigError::new(
                        "ws.allowed_origins (SWITCHBOARD_WS_ALLOWED_ORIGINS)",
                        format!("{o:?} is not an origin like https://example.com (scheme, host, optional port, no path)"),
                    ));
                }
            }
            w.allowed_origins = origins.into_iter().map(|o| o.to_ascii_lowercase()).collect();
        }
        if let Some(d) = positive_ms(&args.control_timeout_ms, control.timeout_ms, "control.timeout_ms (SWITCHBOARD_CONTROL_TIMEOUT_MS)")? {
            s.control_timeout = d;
        }
        s.control = ControlSettings::from_sources(control, args)?;
        Ok(s)
    }
}

/// The Redis key prefix: short and plain, since it is part of every key and of the pub/sub
/// channel name (which Redis does not scope by database).
pub(super) fn broker_prefix(arg: &Option<String>, file: &Option<String>) -> Result<Option<String>, ConfigError> {
    const NAME: &str = "broker_prefix (SWITCHBOARD_BROKER_PREFIX)";
    let Some(v) = super::pick(arg, file) else { return Ok(None) };
    if v.is_empty() || v.len() > 64 {
        return Err(ConfigError::new(NAME, "must be 1 to 64 characters"));
    }
    if !v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')) {
        return Err(ConfigError::new(NAME, format!("{v:?} may only hold letters, digits and _ - . :")));
    }
    Ok(Some(v))
}

fn at_least_one(arg: &Option<String>, file: Option<usize>, name: &str) -> Result<Option<usize>, ConfigError> {
    match parse_num::<usize>(arg, file, name)? {
        Some(0) => Err(ConfigError::new(name, "must be at least 1")),
        other => Ok(other),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerFile {
    pub history_size: Option<usize>,
    pub history_age_ms: Option<u64>,
    pub max_total_events: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsFile {
    pub max_connections_per_token: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_subscriptions: Option<usize>,
    pub max_message_bytes: Option<usize>,
    pub queue_bytes: Option<usize>,
    pub ping_interval_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub allowed_origins: Option<Vec<String>>,
}
