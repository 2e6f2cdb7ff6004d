//! Chat settings: the model endpoint, what the hub sends it, and the limits one browser may
//! use. The server owns prompt, model and tools; a browser only ever sends its own text.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigArgs, ConfigError, Secret, parse_num, pick, positive_ms};

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
    /// A run not finished after this long is taken as abandoned (its instance died).
    pub run_lease: Duration,
    /// Org of sessions created without a widget site key.
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
            run_lease: Duration::from_secs(600),
            org: "default".into(),
        }
    }

    pub fn from_sources(file: &ChatFile, args: &ConfigArgs, default_org: &str) -> Result<Self, ConfigError> {
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
        if let Some(n) = at_least(&args.chat_max_messages, file.max_messages_per_session, "chat.max_messages_per_session (SWITCHBOARD_CHAT_MAX_MESSAGES)", 2)? {
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
        if let Some(n) = parse_num::<u32>(&args.chat_max_tool_rounds, file.max_tool_rounds, "chat.max_tool_rounds (SWITCHBOARD_CHAT_MAX_TOOL_ROUNDS)")? {
            s.max_tool_rounds = n;
        }
        if let Some(d) = positive_ms(&args.chat_keepalive_ms, file.keepalive_ms, "chat.keepalive_ms (SWITCHBOARD_CHAT_KEEPALIVE_MS)")? {
            s.keepalive = d;
        }
        if let Some(d) = positive_ms(&args.chat_run_lease_ms, file.run_lease_ms, "chat.run_lease_ms (SWITCHBOARD_CHAT_RUN_LEASE_MS)")? {
            s.run_lease = d;
        }
        if s.run_lease <= s.first_token_timeout {
            return Err(ConfigError::new("chat.run_lease_ms (SWITCHBOARD_CHAT_RUN_LEASE_MS)", "must be longer than chat.first_token_timeout_ms"));
        }
        if let Some(v) = file.org.clone().filter(|o| !o.trim().is_empty()) {
            s.org = v;
        }
        Ok(s)
    }
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
        let args = ConfigArgs { openai_base_url: Some("http://127.0.0.1:8090/v1/".into()), model: Some("mock".into()), ..ConfigArgs::default() };
        let s = load(args, "[chat]\nopenai_base_url = \"https://example.test/v1\"\nmodel = \"m\"\nmax_message_chars = 10\n").unwrap();
        assert_eq!((s.base_url.as_str(), s.model.as_str(), s.max_message_chars), ("http://127.0.0.1:8090/v1", "mock", 10));
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
    fn the_api_key_never_prints() {
        let s = load(ConfigArgs { openai_api_key: Some("sk-test-123".into()), ..ConfigArgs::default() }, "").unwrap();
        assert!(!format!("{s:?}").contains("sk-test-123"));
        assert_eq!(s.api_key.map(|k| k.expose().to_string()), Some("sk-test-123".into()));
    }
}
