//! Chat settings: the model endpoint, what the hub sends it, and the limits one browser may
//! use. The server owns prompt, model and tools; a browser only ever sends its own text.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigArgs, ConfigError, Secret, parse_bool, parse_num, pick, positive_ms};

#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// OpenAI-compatible API base, ending before `/chat/completions`.
    pub base_url: String,
    /// Sent upstream only; never to a browser or a log.
    pub api_key: Option<Secret>,
    pub model: String,
    pub system_prompt: String,
    /// History sent to the model, newest first, until this many characters (the new message
    /// always goes).
    pub context_chars: usize,
    /// At most this many earlier messages go with the new one.
    pub history_messages: usize,
    /// Longest user message, in characters (`422` beyond).
    pub max_message_chars: usize,
    /// Messages a session may hold (`422` beyond).
    pub max_messages_per_session: usize,
    /// Largest request body on the chat routes (`413` beyond).
    pub body_limit: usize,
    pub max_completion_tokens: u32,
    /// Time the model has to send its first chunk.
    pub first_token_timeout: Duration,
    /// Longest silence between two chunks once the answer started.
    pub idle_timeout: Duration,
    /// Whole attempts repeated when the model fails before its first token (on top of the
    /// client's own retries of 429/5xx answers).
    pub retries: u32,
    /// Rounds of tool calls one answer may take before the hub stops it.
    pub max_tool_rounds: u32,
    /// SSE comment interval while nothing else is sent.
    pub keepalive: Duration,
    /// A run's claim on its session, renewed by the instance running it every third of this;
    /// one not renewed in time counts as abandoned (its instance died) and the session is free.
    pub run_lease: Duration,
    /// Longest one answer may take, tool rounds included; past it the run fails.
    pub max_run: Duration,
    /// Functions the model may call in chat. None by default: a chat visitor is anonymous, so
    /// only functions that are safe for anyone to trigger belong here.
    pub tools: Vec<String>,
    /// Org of sessions created without a widget site key.
    pub org: String,
    /// Sites that embed the widget: a public key each, with the origins it may be used from.
    pub widgets: Vec<Widget>,
    /// Messages and new sessions per client IP (IPv6 by /64): a token bucket.
    pub ip_rate: Rate,
    /// Messages per session.
    pub session_rate: Rate,
    /// Requests per API token on `/v1/chat/completions`.
    pub token_rate: Rate,
    /// Messages and new sessions per widget site key, whatever the visitor's address: one site
    /// that draws a crowd (or a script that rotates addresses) cannot spend the whole key.
    pub site_rate: Rate,
    /// SSE streams following one session at once, per instance (the answer's own included).
    pub max_streams_per_session: usize,
    /// Daily token budgets (UTC days), counted from the model's reported usage; 0 = none. A
    /// session or site key over its budget gets `429`, all chat over the global one `503`.
    pub budgets: Budgets,
    /// Send OpenAI's `safety_identifier` (a keyed hash of the session, client or token) with
    /// every request to the model; off for a compatible server that refuses unknown fields.
    pub safety_identifier: bool,
    /// Keys the safety identifiers; never sent anywhere. The same on every instance for names
    /// stable across instances; without it each process draws its own.
    pub safety_secret: Option<Secret>,
    /// Peers whose `X-Forwarded-For` names the client (a reverse proxy); others' is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// What a `/v1/chat/completions` caller may ask of the model on the hub's key.
    pub passthrough: Passthrough,
}

/// The pass-through's bounds: which models a caller may name, and the most completion tokens
/// one request may ask for (its `max_tokens` or `max_completion_tokens`, times `n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthrough {
    /// Besides `chat.model`, which callers always get; `"*"` allows any.
    pub models: Vec<String>,
    pub max_tokens: u32,
}

impl Passthrough {
    pub fn allows(&self, model: &str, default_model: &str) -> bool {
        model == default_model || self.models.iter().any(|m| m == "*" || m == model)
    }
}

/// Model tokens per UTC day; 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budgets {
    pub session: u64,
    pub site: u64,
    pub all: u64,
}

impl Budgets {
    pub fn any(&self) -> bool {
        self.session > 0 || self.site > 0 || self.all > 0
    }
}

/// A token bucket: `per_minute` refill, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widget {
    pub site_key: String,
    pub name: String,
    /// Exact origins (`scheme://host[:port]`), lowercase.
    pub allowed_origins: Vec<String>,
    pub org: String,
}

impl ChatSettings {
    pub fn defaults() -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            model: "gpt-4o-mini".into(),
            system_prompt: "You are a helpful assistant. Answer briefly and plainly.".into(),
            context_chars: 24_000,
            history_messages: 40,
            max_message_chars: 4_000,
            max_messages_per_session: 200,
            body_limit: 32 * 1024,
            max_completion_tokens: 1024,
            first_token_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            retries: 2,
            max_tool_rounds: 4,
            keepalive: Duration::from_secs(15),
            run_lease: Duration::from_secs(30),
            max_run: Duration::from_secs(300),
            tools: Vec::new(),
            org: "default".into(),
            widgets: Vec::new(),
            ip_rate: Rate { per_minute: 30, burst: 10 },
            session_rate: Rate { per_minute: 12, burst: 4 },
            token_rate: Rate { per_minute: 600, burst: 100 },
            site_rate: Rate { per_minute: 600, burst: 100 },
            safety_identifier: true,
            safety_secret: None,
            budgets: Budgets { session: 200_000, site: 0, all: 0 },
            max_streams_per_session: 16,
            trusted_proxies: Vec::new(),
            passthrough: Passthrough { models: Vec::new(), max_tokens: 4096 },
        }
    }

    pub fn from_sources(file: &ChatFile, widgets: &[WidgetFile], args: &ConfigArgs, default_org: &str) -> Result<Self, ConfigError> {
        let mut s = Self { org: default_org.to_string(), ..Self::defaults() };
        if let Some(v) = pick(&args.openai_base_url, &file.openai_base_url) {
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(ConfigError::new(
                    "chat.openai_base_url (SWITCHBOARD_OPENAI_BASE_URL)",
                    format!("{v:?} must start with https:// (or http:// for a local server)"),
                ));
            }
            s.base_url = v.trim_end_matches('/').to_string();
        }
        let file_key = file.openai_api_key.as_ref().map(|k| k.expose().to_string());
        if let Some(k) = pick(&args.openai_api_key, &file_key) {
            if k.chars().any(|c| c.is_control() || c == ' ') {
                return Err(ConfigError::new("chat.openai_api_key (OPENAI_API_KEY)", "must be a key without spaces"));
            }
            s.api_key = Some(Secret::new(k));
        }
        if let Some(v) = pick(&args.model, &file.model) {
            if v.trim().is_empty() {
                return Err(ConfigError::new("chat.model (SWITCHBOARD_MODEL)", "must not be empty"));
            }
            s.model = v;
        }
        if let Some(v) = pick(&args.chat_system_prompt, &file.system_prompt) {
            s.system_prompt = v;
        }
        let at_least = |arg: &Option<String>, file: Option<usize>, name: &str, min: usize| -> Result<Option<usize>, ConfigError> {
            match parse_num::<usize>(arg, file, name)? {
                Some(n) if n < min => Err(ConfigError::new(name, format!("must be at least {min}"))),
                other => Ok(other),
            }
        };
        if let Some(n) = at_least(&args.chat_context_chars, file.context_chars, "chat.context_chars (SWITCHBOARD_CHAT_CONTEXT_CHARS)", 1)? {
            s.context_chars = n;
        }
        if let Some(n) = parse_num::<usize>(&args.chat_history_messages, file.history_messages, HISTORY)? {
            s.history_messages = n;
        }
        if let Some(n) = at_least(
            &args.chat_max_message_chars,
            file.max_message_chars,
            "chat.max_message_chars (SWITCHBOARD_CHAT_MAX_MESSAGE_CHARS)",
            1,
        )? {
            s.max_message_chars = n;
        }
        if let Some(n) = at_least(
            &args.chat_max_messages,
            file.max_messages_per_session,
            "chat.max_messages_per_session (SWITCHBOARD_CHAT_MAX_MESSAGES)",
            2,
        )? {
            s.max_messages_per_session = n;
        }
        if let Some(n) = at_least(&args.chat_body_limit, file.body_limit, "chat.body_limit (SWITCHBOARD_CHAT_BODY_LIMIT)", 256)? {
            s.body_limit = n;
        }
        if let Some(n) = parse_num::<u32>(
            &args.chat_max_completion_tokens,
            file.max_completion_tokens,
            "chat.max_completion_tokens (SWITCHBOARD_CHAT_MAX_COMPLETION_TOKENS)",
        )? {
            if n == 0 {
                return Err(ConfigError::new("chat.max_completion_tokens (SWITCHBOARD_CHAT_MAX_COMPLETION_TOKENS)", "must be at least 1"));
            }
            s.max_completion_tokens = n;
        }
        if let Some(d) = positive_ms(
            &args.chat_first_token_timeout_ms,
            file.first_token_timeout_ms,
            "chat.first_token_timeout_ms (SWITCHBOARD_CHAT_FIRST_TOKEN_TIMEOUT_MS)",
        )? {
            s.first_token_timeout = d;
        }
        if let Some(d) =
            positive_ms(&args.chat_idle_timeout_ms, file.idle_timeout_ms, "chat.idle_timeout_ms (SWITCHBOARD_CHAT_IDLE_TIMEOUT_MS)")?
        {
            s.idle_timeout = d;
        }
        if let Some(n) = parse_num::<u32>(&args.chat_retries, file.retries, "chat.retries (SWITCHBOARD_CHAT_RETRIES)")? {
            s.retries = n;
        }
        if let Some(n) =
            parse_num::<u32>(&args.chat_max_tool_rounds, file.max_tool_rounds, "chat.max_tool_rounds (SWITCHBOARD_CHAT_MAX_TOOL_ROUNDS)")?
        {
            s.max_tool_rounds = n;
        }
        if let Some(d) = positive_ms(&args.chat_keepalive_ms, file.keepalive_ms, "chat.keepalive_ms (SWITCHBOARD_CHAT_KEEPALIVE_MS)")? {
            s.keepalive = d;
        }
        if let Some(d) = positive_ms(&args.chat_run_lease_ms, file.run_lease_ms, "chat.run_lease_ms (SWITCHBOARD_CHAT_RUN_LEASE_MS)")? {
            s.run_lease = d;
        }
        if s.run_lease < Duration::from_secs(3) {
            return Err(ConfigError::new("chat.run_lease_ms (SWITCHBOARD_CHAT_RUN_LEASE_MS)", "must be at least 3000"));
        }
        if let Some(d) = positive_ms(&args.chat_max_run_ms, file.max_run_ms, "chat.max_run_ms (SWITCHBOARD_CHAT_MAX_RUN_MS)")? {
            s.max_run = d;
        }
        let tools: Option<Vec<String>> = match args.chat_tools.as_deref() {
            Some(v) => Some(v.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()),
            None => file.tools.clone(),
        };
        if let Some(t) = tools {
            s.tools = t;
        }
        if let Some(v) = file.org.clone().filter(|o| !o.trim().is_empty()) {
            s.org = v;
        }
        s.ip_rate = rate(
            s.ip_rate,
            &args.chat_rate_ip_per_minute,
            file.rate_ip_per_minute,
            file.rate_ip_burst,
            "chat.rate_ip_per_minute (SWITCHBOARD_CHAT_RATE_IP_PER_MINUTE)",
        )?;
        s.session_rate = rate(
            s.session_rate,
            &args.chat_rate_session_per_minute,
            file.rate_session_per_minute,
            file.rate_session_burst,
            "chat.rate_session_per_minute (SWITCHBOARD_CHAT_RATE_SESSION_PER_MINUTE)",
        )?;
        s.token_rate = rate(
            s.token_rate,
            &args.chat_rate_token_per_minute,
            file.rate_token_per_minute,
            file.rate_token_burst,
            "chat.rate_token_per_minute (SWITCHBOARD_CHAT_RATE_TOKEN_PER_MINUTE)",
        )?;
        s.site_rate = rate(
            s.site_rate,
            &args.chat_rate_site_per_minute,
            file.rate_site_per_minute,
            file.rate_site_burst,
            "chat.rate_site_per_minute (SWITCHBOARD_CHAT_RATE_SITE_PER_MINUTE)",
        )?;
        let file_secret = file.safety_secret.as_ref().map(|k| k.expose().to_string());
        if let Some(k) = pick(&args.chat_safety_secret, &file_secret) {
            if k.len() < 16 {
                return Err(ConfigError::new("chat.safety_secret (SWITCHBOARD_CHAT_SAFETY_SECRET)", "must be at least 16 characters"));
            }
            s.safety_secret = Some(Secret::new(k));
        }
        if let Some(n) = parse_num::<usize>(
            &args.chat_max_streams_per_session,
            file.max_streams_per_session,
            "chat.max_streams_per_session (SWITCHBOARD_CHAT_MAX_STREAMS_PER_SESSION)",
        )? {
            if n == 0 {
                return Err(ConfigError::new(
                    "chat.max_streams_per_session (SWITCHBOARD_CHAT_MAX_STREAMS_PER_SESSION)",
                    "must be at least 1",
                ));
            }
            s.max_streams_per_session = n;
        }
        let b = &mut s.budgets;
        for (slot, arg, file, name) in [
            (
                &mut b.session,
                &args.chat_session_daily_tokens,
                file.session_daily_tokens,
                "chat.session_daily_tokens (SWITCHBOARD_CHAT_SESSION_DAILY_TOKENS)",
            ),
            (
                &mut b.site,
                &args.chat_site_daily_tokens,
                file.site_daily_tokens,
                "chat.site_daily_tokens (SWITCHBOARD_CHAT_SITE_DAILY_TOKENS)",
            ),
            (&mut b.all, &args.chat_daily_tokens, file.daily_tokens, "chat.daily_tokens (SWITCHBOARD_CHAT_DAILY_TOKENS)"),
        ] {
            if let Some(n) = parse_num::<u64>(arg, file, name)? {
                *slot = n;
            }
        }
        let models: Option<Vec<String>> = match args.chat_passthrough_models.as_deref() {
            Some(v) => Some(v.split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect()),
            None => file.passthrough_models.clone(),
        };
        if let Some(m) = models {
            s.passthrough.models = m;
        }
        const PASS_MAX: &str = "chat.passthrough_max_tokens (SWITCHBOARD_CHAT_PASSTHROUGH_MAX_TOKENS)";
        if let Some(n) = parse_num::<u32>(&args.chat_passthrough_max_tokens, file.passthrough_max_tokens, PASS_MAX)? {
            if n == 0 {
                return Err(ConfigError::new(PASS_MAX, "must be at least 1"));
            }
            s.passthrough.max_tokens = n;
        }
        if let Some(on) =
            parse_bool(&args.chat_safety_identifier, file.safety_identifier, "chat.safety_identifier (SWITCHBOARD_CHAT_SAFETY_IDENTIFIER)")?
        {
            s.safety_identifier = on;
        }
        let proxies: Option<Vec<String>> = match args.trusted_proxies.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => Some(v.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()),
            None => file.trusted_proxies.clone(),
        };
        if let Some(list) = proxies {
            s.trusted_proxies = list
                .iter()
                .map(|p| {
                    p.parse::<IpAddr>().map_err(|_| {
                        ConfigError::new("chat.trusted_proxies (SWITCHBOARD_TRUSTED_PROXIES)", format!("{p:?} is not an IP address"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let mut keys = std::collections::HashSet::new();
        for w in widgets {
            let widget = widget(w, &s.org)?;
            if !keys.insert(widget.site_key.clone()) {
                return Err(ConfigError::new("widgets.site_key", format!("{:?} is declared twice", widget.site_key)));
            }
            s.widgets.push(widget);
        }
        Ok(s)
    }
}

fn rate(default: Rate, arg: &Option<String>, per_minute: Option<u32>, burst: Option<u32>, name: &str) -> Result<Rate, ConfigError> {
    let mut r = default;
    if let Some(n) = parse_num::<u32>(arg, per_minute, name)? {
        if n == 0 {
            return Err(ConfigError::new(name, "must be at least 1"));
        }
        r.per_minute = n;
    }
    if let Some(b) = burst {
        if b == 0 {
            return Err(ConfigError::new(name.replace("per_minute", "burst"), "must be at least 1"));
        }
        r.burst = b;
    }
    Ok(r)
}

/// A site key is public (it sits in a page's HTML); what it guards is which origins may use it.
fn widget(w: &WidgetFile, default_org: &str) -> Result<Widget, ConfigError> {
    let key_ok =
        !w.site_key.is_empty() && w.site_key.len() <= 100 && w.site_key.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
    if !key_ok {
        return Err(ConfigError::new("widgets.site_key", format!("{:?} must be 1–100 letters, digits, _ or -", w.site_key)));
    }
    let mut origins = Vec::new();
    for o in &w.allowed_origins {
        origins.push(origin(o).ok_or_else(|| {
            ConfigError::new(
                format!("widgets.allowed_origins of {}", w.site_key),
                format!("{o:?} is not an origin like https://www.example.com (no path, no wildcard)"),
            )
        })?);
    }
    if origins.is_empty() {
        return Err(ConfigError::new(format!("widgets.allowed_origins of {}", w.site_key), "name at least one origin"));
    }
    Ok(Widget {
        site_key: w.site_key.clone(),
        name: w.name.clone().unwrap_or_else(|| w.site_key.clone()),
        allowed_origins: origins,
        org: w.org.clone().filter(|o| !o.trim().is_empty()).unwrap_or_else(|| default_org.to_string()),
    })
}

/// `scheme://host[:port]` normalised to lowercase, or `None` for anything else.
pub fn origin(raw: &str) -> Option<String> {
    let o = raw.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = o.split_once("://")?;
    if !(scheme == "https" || scheme == "http") || rest.is_empty() {
        return None;
    }
    let bad = |c: char| c == '/' || c == '*' || c == '@' || c == '?' || c == '#' || c.is_whitespace();
    (!rest.chars().any(bad)).then_some(o)
}

const HISTORY: &str = "chat.history_messages (SWITCHBOARD_CHAT_HISTORY_MESSAGES)";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatFile {
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<Secret>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub context_chars: Option<usize>,
    pub history_messages: Option<usize>,
    pub max_message_chars: Option<usize>,
    pub max_messages_per_session: Option<usize>,
    pub body_limit: Option<usize>,
    pub max_completion_tokens: Option<u32>,
    pub first_token_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub max_tool_rounds: Option<u32>,
    pub keepalive_ms: Option<u64>,
    pub run_lease_ms: Option<u64>,
    pub max_run_ms: Option<u64>,
    pub tools: Option<Vec<String>>,
    pub org: Option<String>,
    pub rate_ip_per_minute: Option<u32>,
    pub rate_ip_burst: Option<u32>,
    pub rate_session_per_minute: Option<u32>,
    pub rate_session_burst: Option<u32>,
    pub rate_token_per_minute: Option<u32>,
    pub rate_token_burst: Option<u32>,
    pub rate_site_per_minute: Option<u32>,
    pub rate_site_burst: Option<u32>,
    pub safety_identifier: Option<bool>,
    pub safety_secret: Option<Secret>,
    pub session_daily_tokens: Option<u64>,
    pub max_streams_per_session: Option<usize>,
    pub site_daily_tokens: Option<u64>,
    pub daily_tokens: Option<u64>,
    pub trusted_proxies: Option<Vec<String>>,
    pub passthrough_models: Option<Vec<String>>,
    pub passthrough_max_tokens: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WidgetFile {
    pub site_key: String,
    pub name: Option<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub org: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: ConfigArgs, toml_text: &str) -> Result<ChatSettings, ConfigError> {
        let file: crate::config::FileConfig = toml::from_str(toml_text).unwrap();
        crate::config::Settings::from_sources(file, &args).map(|s| s.chat)
    }

    #[test]
    fn the_defaults_talk_to_openai_with_no_key() {
        let s = load(ConfigArgs::default(), "").unwrap();
        assert_eq!((s.base_url.as_str(), s.model.as_str(), s.api_key.is_none()), ("https://api.openai.com/v1", "gpt-4o-mini", true));
        assert_eq!(s.org, "default");
    }

    #[test]
    fn the_environment_wins_over_the_file_and_trailing_slashes_go() {
        let args =
            ConfigArgs { openai_base_url: Some("http://127.0.0.1:8090/v1/".into()), model: Some("mock".into()), ..ConfigArgs::default() };
        let s = load(args, "[chat]\nopenai_base_url = \"https://example.test/v1\"\nmodel = \"m\"\nmax_message_chars = 10\n").unwrap();
        assert_eq!((s.base_url.as_str(), s.model.as_str(), s.max_message_chars), ("http://127.0.0.1:8090/v1", "mock", 10));
    }

    #[test]
    fn the_pass_through_bounds_come_from_the_file_or_the_environment_and_zero_is_refused() {
        let d = load(ConfigArgs::default(), "").unwrap().passthrough;
        assert_eq!(d, Passthrough { models: Vec::new(), max_tokens: 4096 });
        let file = "[chat]\npassthrough_models = [\"gpt-4o\"]\npassthrough_max_tokens = 500\n";
        assert_eq!(load(ConfigArgs::default(), file).unwrap().passthrough, Passthrough { models: vec!["gpt-4o".into()], max_tokens: 500 });
        let env = ConfigArgs {
            chat_passthrough_models: Some(" gpt-4.1 , o3,".into()),
            chat_passthrough_max_tokens: Some("800".into()),
            ..ConfigArgs::default()
        };
        assert_eq!(load(env, file).unwrap().passthrough, Passthrough { models: vec!["gpt-4.1".into(), "o3".into()], max_tokens: 800 });
        let zero = ConfigArgs { chat_passthrough_max_tokens: Some("0".into()), ..ConfigArgs::default() };
        assert!(load(zero, "").unwrap_err().to_string().contains("SWITCHBOARD_CHAT_PASSTHROUGH_MAX_TOKENS"));
    }

    #[test]
    fn a_bad_value_names_its_setting() {
        let e = load(ConfigArgs { openai_base_url: Some("ftp://x".into()), ..ConfigArgs::default() }, "").unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_OPENAI_BASE_URL"), "{e}");
        let e = load(ConfigArgs { chat_first_token_timeout_ms: Some("0".into()), ..ConfigArgs::default() }, "").unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_CHAT_FIRST_TOKEN_TIMEOUT_MS"), "{e}");
        assert!(toml::from_str::<crate::config::FileConfig>("[chat]\nmodle = \"x\"\n").is_err(), "a misspelt key is refused");
    }

    #[test]
    fn widgets_are_read_with_their_origins_normalised() {
        let s = load(
            ConfigArgs::default(),
            "[[widgets]]\nsite_key = \"pk_clinic\"\nallowed_origins = [\"https://Clinic.example/\", \"http://localhost:3000\"]\norg = \"org-1\"\n",
        )
        .unwrap();
        assert_eq!(s.widgets[0].allowed_origins, ["https://clinic.example", "http://localhost:3000"]);
        assert_eq!((s.widgets[0].org.as_str(), s.widgets[0].name.as_str()), ("org-1", "pk_clinic"));
    }

    #[test]
    fn a_widget_origin_with_a_path_or_wildcard_is_refused() {
        for bad in ["https://*.example.com", "https://example.com/chat", "example.com", "ftp://example.com", "https://u@example.com"] {
            let text = format!("[[widgets]]\nsite_key = \"k\"\nallowed_origins = [\"{bad}\"]\n");
            let e = load(ConfigArgs::default(), &text).unwrap_err();
            assert!(e.to_string().contains("allowed_origins"), "{bad}: {e}");
        }
        let e = load(ConfigArgs::default(), "[[widgets]]\nsite_key = \"k\"\n").unwrap_err();
        assert!(e.to_string().contains("at least one origin"), "{e}");
    }

    #[test]
    fn rates_and_trusted_proxies_come_from_the_environment() {
        let args = ConfigArgs {
            chat_rate_ip_per_minute: Some("5".into()),
            trusted_proxies: Some("10.0.0.1, ::1".into()),
            ..ConfigArgs::default()
        };
        let s = load(args, "[chat]\nrate_ip_burst = 2\n").unwrap();
        assert_eq!(s.ip_rate, Rate { per_minute: 5, burst: 2 });
        assert_eq!(s.trusted_proxies.len(), 2);
        let e = load(ConfigArgs { trusted_proxies: Some("proxy.local".into()), ..ConfigArgs::default() }, "").unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_TRUSTED_PROXIES"), "{e}");
    }

    #[test]
    fn the_site_rate_and_the_safety_identifier_come_from_the_file_and_the_environment() {
        let d = load(ConfigArgs::default(), "").unwrap();
        assert_eq!((d.site_rate, d.safety_identifier), (Rate { per_minute: 600, burst: 100 }, true));
        let args = ConfigArgs { chat_rate_site_per_minute: Some("40".into()), ..ConfigArgs::default() };
        let s = load(args, "[chat]\nrate_site_burst = 3\nsafety_identifier = false\n").unwrap();
        assert_eq!((s.site_rate, s.safety_identifier), (Rate { per_minute: 40, burst: 3 }, false));
        let s = load(ConfigArgs::default(), "[chat]\nsafety_secret = \"0123456789abcdef-shared\"\n").unwrap();
        assert_eq!(s.safety_secret.map(|k| k.expose().to_string()), Some("0123456789abcdef-shared".into()));
        let e = load(ConfigArgs { chat_safety_secret: Some("short".into()), ..ConfigArgs::default() }, "").unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_CHAT_SAFETY_SECRET"), "{e}");
        let e = load(ConfigArgs { chat_safety_identifier: Some("maybe".into()), ..ConfigArgs::default() }, "").unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_CHAT_SAFETY_IDENTIFIER"), "{e}");
        let e = load(ConfigArgs { chat_rate_site_per_minute: Some("0".into()), ..ConfigArgs::default() }, "").unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_CHAT_RATE_SITE_PER_MINUTE"), "{e}");
        assert_eq!(d.max_streams_per_session, 16);
        assert_eq!(load(ConfigArgs::default(), "[chat]\nmax_streams_per_session = 3\n").unwrap().max_streams_per_session, 3);
        let e = load(ConfigArgs { chat_max_streams_per_session: Some("0".into()), ..ConfigArgs::default() }, "").unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_CHAT_MAX_STREAMS_PER_SESSION"), "{e}");
    }

    #[test]
    fn daily_budgets_come_from_the_file_and_the_environment_and_zero_means_none() {
        let d = load(ConfigArgs::default(), "").unwrap();
        assert_eq!(d.budgets, Budgets { session: 200_000, site: 0, all: 0 });
        let args =
            ConfigArgs { chat_daily_tokens: Some("5000000".into()), chat_session_daily_tokens: Some("0".into()), ..ConfigArgs::default() };
        let s = load(args, "[chat]\nsite_daily_tokens = 90000\n").unwrap();
        assert_eq!(s.budgets, Budgets { session: 0, site: 90_000, all: 5_000_000 });
        let e = load(ConfigArgs { chat_site_daily_tokens: Some("lots".into()), ..ConfigArgs::default() }, "").unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_CHAT_SITE_DAILY_TOKENS"), "{e}");
    }

    #[test]
    fn the_api_key_never_prints() {
        let s = load(ConfigArgs { openai_api_key: Some("sk-test-123".into()), ..ConfigArgs::default() }, "").unwrap();
        assert!(!format!("{s:?}").contains("sk-test-123"));
        assert_eq!(s.api_key.map(|k| k.expose().to_string()), Some("sk-test-123".into()));
    }
}
