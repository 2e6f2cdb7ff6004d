//! Flags shared by every subcommand that needs settings; each also reads its `SWITCHBOARD_*`
//! variable. Values stay strings here so validation can name the setting in its message.

use std::path::PathBuf;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file [default: ./switchboard.toml when it exists]
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    pub listen: Option<String>,
    /// Serve the web assets (widget, dashboard, demo) from this folder instead of the copies
    /// built into the binary — for working on the web without rebuilding
    #[arg(long, env = "SWITCHBOARD_WEB_DIR")]
    pub web_dir: Option<String>,
    /// VAPI API key: enables reconciliation of calls whose end-of-call report never arrived
    #[arg(long, env = "VAPI_API_KEY", hide_env_values = true)]
    pub vapi_api_key: Option<String>,
    /// VAPI's REST API [default: https://api.vapi.ai]
    #[arg(long, env = "SWITCHBOARD_VAPI_API_URL")]
    pub vapi_api_url: Option<String>,
    /// Days raw webhook payloads are kept; 0 keeps them [default: 30]
    #[arg(long, env = "SWITCHBOARD_RETENTION_RAW_EVENTS_DAYS")]
    pub retention_raw_events_days: Option<String>,
    /// Days transcripts of ended calls are kept; 0 keeps them [default: 0]
    #[arg(long, env = "SWITCHBOARD_RETENTION_TRANSCRIPTS_DAYS")]
    pub retention_transcripts_days: Option<String>,
    /// Days idle chat sessions are kept; 0 keeps them [default: 0]
    #[arg(long, env = "SWITCHBOARD_RETENTION_CHATS_DAYS")]
    pub retention_chats_days: Option<String>,
    /// Days recording files of ended calls are kept; 0 keeps them [default: 0]
    #[arg(long, env = "SWITCHBOARD_RETENTION_RECORDINGS_DAYS")]
    pub retention_recordings_days: Option<String>,
    /// sqlite://PATH or postgres://… [default: sqlite://switchboard.db]
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Database connection pool size [default: 8]
    #[arg(long, env = "SWITCHBOARD_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<String>,
    /// Event broker: memory, or redis://HOST:PORT/DB to share live events between instances [default: memory]
    #[arg(long, env = "SWITCHBOARD_BROKER_URL")]
    pub broker_url: Option<String>,
    /// Prefix of every Redis key and channel the broker uses; instances sharing live events share it [default: switchboard]
    #[arg(long, env = "SWITCHBOARD_BROKER_PREFIX")]
    pub broker_prefix: Option<String>,
    /// Events kept per topic for resuming subscribers [default: 1000]
    #[arg(long, env = "SWITCHBOARD_BROKER_HISTORY_SIZE")]
    pub broker_history_size: Option<String>,
    /// Age after which an event can no longer be resumed from [default: 600000]
    #[arg(long, env = "SWITCHBOARD_BROKER_HISTORY_AGE_MS")]
    pub broker_history_age_ms: Option<String>,
    /// Events the in-process broker keeps across all topics [default: 100000]
    #[arg(long, env = "SWITCHBOARD_BROKER_MAX_TOTAL_EVENTS")]
    pub broker_max_total_events: Option<String>,
    /// Supervisor sockets one token may hold open [default: 50]
    #[arg(long, env = "SWITCHBOARD_WS_MAX_CONNECTIONS_PER_TOKEN")]
    pub ws_max_connections_per_token: Option<String>,
    /// Supervisor sockets open in all [default: 20000]
    #[arg(long, env = "SWITCHBOARD_WS_MAX_CONNECTIONS")]
    pub ws_max_connections: Option<String>,
    /// Topics one socket may subscribe to [default: 128]
    #[arg(long, env = "SWITCHBOARD_WS_MAX_SUBSCRIPTIONS")]
    pub ws_max_subscriptions: Option<String>,
    /// Largest message a supervisor may send [default: 65536]
    #[arg(long, env = "SWITCHBOARD_WS_MAX_MESSAGE_BYTES")]
    pub ws_max_message_bytes: Option<String>,
    /// Bytes queued for a slow socket before it is closed with 4008 [default: 1048576]
    #[arg(long, env = "SWITCHBOARD_WS_QUEUE_BYTES")]
    pub ws_queue_bytes: Option<String>,
    /// Server ping interval [default: 25000]
    #[arg(long, env = "SWITCHBOARD_WS_PING_INTERVAL_MS")]
    pub ws_ping_interval_ms: Option<String>,
    /// A socket silent this long is closed [default: 60000]
    #[arg(long, env = "SWITCHBOARD_WS_IDLE_TIMEOUT_MS")]
    pub ws_idle_timeout_ms: Option<String>,
    /// Comma-separated browser origins allowed to open /ws besides the hub's own
    #[arg(long, env = "SWITCHBOARD_WS_ALLOWED_ORIGINS")]
    pub ws_allowed_origins: Option<String>,
    /// Time VAPI's control URL has to answer a live control action [default: 5000]
    #[arg(long, env = "SWITCHBOARD_CONTROL_TIMEOUT_MS")]
    pub control_timeout_ms: Option<String>,
    /// Comma-separated hosts a call's control URL may name (subdomains included) [default: vapi.ai]
    #[arg(long, env = "SWITCHBOARD_CONTROL_ALLOWED_HOSTS")]
    pub control_allowed_hosts: Option<String>,
    /// Allow http:// control URLs (testing against a local fake only) [default: false]
    #[arg(long, env = "SWITCHBOARD_CONTROL_ALLOW_HTTP")]
    pub control_allow_http: Option<String>,
    /// VAPI public API key sent as Bearer to control URLs (monitorPlan.controlAuthenticationEnabled)
    #[arg(long, env = "SWITCHBOARD_CONTROL_API_KEY", hide_env_values = true)]
    pub control_api_key: Option<String>,
    /// Public base URL of the hub, as VAPI calls it (HMAC {url})
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Log filter, e.g. info or switchboard=debug [default: info]
    #[arg(long, env = "SWITCHBOARD_LOG")]
    pub log: Option<String>,
    /// text or json [default: text]
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Grace period for in-flight requests at shutdown [default: 25000]
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT_MS")]
    pub shutdown_timeout_ms: Option<String>,
    /// Time a client has to send a request's headers, from their first byte [default: 10000]
    #[arg(long, env = "SWITCHBOARD_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<String>,
    /// Time a kept-alive connection may wait for its next request [default: 120000]
    #[arg(long, env = "SWITCHBOARD_KEEP_ALIVE_TIMEOUT_MS")]
    pub keep_alive_timeout_ms: Option<String>,
    /// Time a client has to send its request body [default: 30000]
    #[arg(long, env = "SWITCHBOARD_BODY_READ_TIMEOUT_MS")]
    pub body_read_timeout_ms: Option<String>,
    /// Open client connections at most [default: 10000]
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS")]
    pub max_connections: Option<String>,
    /// Connections queued by the kernel before the hub accepts them [default: 4096]
    #[arg(long, env = "SWITCHBOARD_LISTEN_BACKLOG")]
    pub listen_backlog: Option<String>,
    /// Shared secret VAPI sends as x-vapi-secret or Authorization: Bearer
    #[arg(long, env = "SWITCHBOARD_VAPI_SECRET", hide_env_values = true)]
    pub vapi_secret: Option<String>,
    /// HMAC key of VAPI's HMAC credential (enables HMAC verification)
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_SECRET", hide_env_values = true)]
    pub vapi_hmac_secret: Option<String>,
    /// sha256, sha512 or sha1 [default: sha256]
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_ALGORITHM")]
    pub vapi_hmac_algorithm: Option<String>,
    /// [default: x-signature]
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_SIGNATURE_HEADER")]
    pub vapi_hmac_signature_header: Option<String>,
    /// [default: x-timestamp]
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_TIMESTAMP_HEADER")]
    pub vapi_hmac_timestamp_header: Option<String>,
    /// Header carrying a message id, for {svix-id} payloads
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_MESSAGE_ID_HEADER")]
    pub vapi_hmac_message_id_header: Option<String>,
    /// Text before the encoded digest, e.g. sha256= [default: none]
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_PREFIX")]
    pub vapi_hmac_prefix: Option<String>,
    /// hex or base64 [default: hex]
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_ENCODING")]
    pub vapi_hmac_encoding: Option<String>,
    /// Signed payload template [default: {timestamp}.{body}]
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_PAYLOAD_FORMAT")]
    pub vapi_hmac_payload_format: Option<String>,
    /// false signs the body alone (VAPI includeTimestamp=false) [default: true]
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_INCLUDE_TIMESTAMP")]
    pub vapi_hmac_include_timestamp: Option<String>,
    /// The HMAC secret is base64 and is decoded before use [default: false]
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_SECRET_IS_BASE64")]
    pub vapi_hmac_secret_is_base64: Option<String>,
    /// Accepted clock skew of the timestamp header, both ways [default: 300]
    #[arg(long, env = "SWITCHBOARD_VAPI_HMAC_TOLERANCE_SECS")]
    pub vapi_hmac_tolerance_secs: Option<String>,
    /// Largest webhook body in bytes [default: 1048576]
    #[arg(long, env = "SWITCHBOARD_VAPI_BODY_LIMIT")]
    pub vapi_body_limit: Option<String>,
    /// Default time a function may take before an error result is returned [default: 10000]
    #[arg(long, env = "SWITCHBOARD_VAPI_TOOL_TIMEOUT_MS")]
    pub vapi_tool_timeout_ms: Option<String>,
    /// Organisation for calls that carry no orgId [default: default]
    #[arg(long, env = "SWITCHBOARD_VAPI_DEFAULT_ORG")]
    pub vapi_default_org: Option<String>,
    /// Assistant id answered to assistant-request when the file configures none
    #[arg(long, env = "SWITCHBOARD_VAPI_ASSISTANT_ID")]
    pub vapi_assistant_id: Option<String>,
    /// OpenAI-compatible API base for chat, e.g. http://127.0.0.1:8090/v1 [default: https://api.openai.com/v1]
    #[arg(long, env = "SWITCHBOARD_OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// API key sent to the model endpoint (never to browsers or logs)
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Model name sent upstream [default: gpt-4o-mini]
    #[arg(long, env = "SWITCHBOARD_MODEL")]
    pub model: Option<String>,
    /// System prompt of every chat
    #[arg(long, env = "SWITCHBOARD_CHAT_SYSTEM_PROMPT")]
    pub chat_system_prompt: Option<String>,
    /// Characters of history sent to the model [default: 24000]
    #[arg(long, env = "SWITCHBOARD_CHAT_CONTEXT_CHARS")]
    pub chat_context_chars: Option<String>,
    /// Earlier messages sent with a new one at most [default: 40]
    #[arg(long, env = "SWITCHBOARD_CHAT_HISTORY_MESSAGES")]
    pub chat_history_messages: Option<String>,
    /// Longest chat message in characters [default: 4000]
    #[arg(long, env = "SWITCHBOARD_CHAT_MAX_MESSAGE_CHARS")]
    pub chat_max_message_chars: Option<String>,
    /// Messages one chat session may hold [default: 200]
    #[arg(long, env = "SWITCHBOARD_CHAT_MAX_MESSAGES")]
    pub chat_max_messages: Option<String>,
    /// Largest chat request body in bytes [default: 32768]
    #[arg(long, env = "SWITCHBOARD_CHAT_BODY_LIMIT")]
    pub chat_body_limit: Option<String>,
    /// max_completion_tokens sent upstream [default: 1024]
    #[arg(long, env = "SWITCHBOARD_CHAT_MAX_COMPLETION_TOKENS")]
    pub chat_max_completion_tokens: Option<String>,
    /// Time the model has to start answering [default: 30000]
    #[arg(long, env = "SWITCHBOARD_CHAT_FIRST_TOKEN_TIMEOUT_MS")]
    pub chat_first_token_timeout_ms: Option<String>,
    /// Longest silence between two chunks of an answer [default: 30000]
    #[arg(long, env = "SWITCHBOARD_CHAT_IDLE_TIMEOUT_MS")]
    pub chat_idle_timeout_ms: Option<String>,
    /// Attempts repeated when the model fails before its first token [default: 2]
    #[arg(long, env = "SWITCHBOARD_CHAT_RETRIES")]
    pub chat_retries: Option<String>,
    /// Tool-call rounds one answer may take [default: 4]
    #[arg(long, env = "SWITCHBOARD_CHAT_MAX_TOOL_ROUNDS")]
    pub chat_max_tool_rounds: Option<String>,
    /// SSE keep-alive comment interval [default: 15000]
    #[arg(long, env = "SWITCHBOARD_CHAT_KEEPALIVE_MS")]
    pub chat_keepalive_ms: Option<String>,
    /// A run not renewed for this long is taken as abandoned by a dead instance [default: 30000]
    #[arg(long, env = "SWITCHBOARD_CHAT_RUN_LEASE_MS")]
    pub chat_run_lease_ms: Option<String>,
    /// Longest one chat answer may take, tool rounds included [default: 300000]
    #[arg(long, env = "SWITCHBOARD_CHAT_MAX_RUN_MS")]
    pub chat_max_run_ms: Option<String>,
    /// Comma-separated functions the model may call in chat (none by default; "" for none)
    #[arg(long, env = "SWITCHBOARD_CHAT_TOOLS")]
    pub chat_tools: Option<String>,
    /// Chat messages and new sessions per client IP per minute [default: 30]
    #[arg(long, env = "SWITCHBOARD_CHAT_RATE_IP_PER_MINUTE")]
    pub chat_rate_ip_per_minute: Option<String>,
    /// Chat messages per session per minute [default: 12]
    #[arg(long, env = "SWITCHBOARD_CHAT_RATE_SESSION_PER_MINUTE")]
    pub chat_rate_session_per_minute: Option<String>,
    /// Requests per API token per minute on /v1/chat/completions [default: 600]
    #[arg(long, env = "SWITCHBOARD_CHAT_RATE_TOKEN_PER_MINUTE")]
    pub chat_rate_token_per_minute: Option<String>,
    /// Chat messages and new sessions per widget site key per minute [default: 600]
    #[arg(long, env = "SWITCHBOARD_CHAT_RATE_SITE_PER_MINUTE")]
    pub chat_rate_site_per_minute: Option<String>,
    /// Send OpenAI's safety_identifier (a keyed hash, never the raw id) upstream [default: true]
    #[arg(long, env = "SWITCHBOARD_CHAT_SAFETY_IDENTIFIER")]
    pub chat_safety_identifier: Option<String>,
    /// Secret that keys the safety identifiers (the same on every instance; never sent) [default: one per process]
    #[arg(long, env = "SWITCHBOARD_CHAT_SAFETY_SECRET", hide_env_values = true)]
    pub chat_safety_secret: Option<String>,
    /// Comma-separated models a /v1/chat/completions caller may name besides chat.model ("*": any) [default: none]
    #[arg(long, env = "SWITCHBOARD_CHAT_PASSTHROUGH_MODELS")]
    pub chat_passthrough_models: Option<String>,
    /// Most completion tokens one /v1/chat/completions request may ask for (max_tokens × n) [default: 4096]
    #[arg(long, env = "SWITCHBOARD_CHAT_PASSTHROUGH_MAX_TOKENS")]
    pub chat_passthrough_max_tokens: Option<String>,
    /// SSE streams following one chat session at once, per instance [default: 16]
    #[arg(long, env = "SWITCHBOARD_CHAT_MAX_STREAMS_PER_SESSION")]
    pub chat_max_streams_per_session: Option<String>,
    /// Model tokens one chat session may use per UTC day, 0 = no limit [default: 200000]
    #[arg(long, env = "SWITCHBOARD_CHAT_SESSION_DAILY_TOKENS")]
    pub chat_session_daily_tokens: Option<String>,
    /// Model tokens all sessions of one widget site key may use per UTC day, 0 = no limit [default: 0]
    #[arg(long, env = "SWITCHBOARD_CHAT_SITE_DAILY_TOKENS")]
    pub chat_site_daily_tokens: Option<String>,
    /// Model tokens all chat may use per UTC day (the spend breaker: 503 beyond), 0 = no limit [default: 0]
    #[arg(long, env = "SWITCHBOARD_CHAT_DAILY_TOKENS")]
    pub chat_daily_tokens: Option<String>,
    /// Comma-separated proxy IPs whose X-Forwarded-For names the client
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// How often an idle job worker looks for due jobs [default: 1000]
    #[arg(long, env = "SWITCHBOARD_JOBS_POLL_MS")]
    pub jobs_poll_ms: Option<String>,
    /// Jobs one instance runs at once [default: 4]
    #[arg(long, env = "SWITCHBOARD_JOBS_CONCURRENCY")]
    pub jobs_concurrency: Option<String>,
    /// A job claim's length, renewed while it runs; a crashed worker's job runs again after it [default: 30000]
    #[arg(long, env = "SWITCHBOARD_JOBS_LEASE_MS")]
    pub jobs_lease_ms: Option<String>,
    /// Attempts before a job is dead [default: 5]
    #[arg(long, env = "SWITCHBOARD_JOBS_MAX_ATTEMPTS")]
    pub jobs_max_attempts: Option<String>,
    /// First retry delay, doubling after each failure [default: 1000]
    #[arg(long, env = "SWITCHBOARD_JOBS_BACKOFF_BASE_MS")]
    pub jobs_backoff_base_ms: Option<String>,
    /// Longest delay between two attempts [default: 3600000]
    #[arg(long, env = "SWITCHBOARD_JOBS_BACKOFF_MAX_MS")]
    pub jobs_backoff_max_ms: Option<String>,
    /// Register the demo job kinds noop and sleep [default: false]
    #[arg(long, env = "SWITCHBOARD_JOBS_DEMO_KINDS")]
    pub jobs_demo_kinds: Option<String>,
    /// Folder recordings are downloaded into, or s3://BUCKET[/PREFIX] [default: recordings]
    #[arg(long, env = "SWITCHBOARD_RECORDINGS")]
    pub recordings: Option<String>,
    /// Comma-separated hosts a recording URL may name (subdomains included) [default: storage.vapi.ai,auth.vapi.ai]
    #[arg(long, env = "SWITCHBOARD_RECORDINGS_ALLOWED_HOSTS")]
    pub recordings_allowed_hosts: Option<String>,
    /// Allow http:// recording URLs (testing against a local server only) [default: false]
    #[arg(long, env = "SWITCHBOARD_RECORDINGS_ALLOW_HTTP")]
    pub recordings_allow_http: Option<String>,
    /// Largest recording downloaded, in bytes [default: 536870912]
    #[arg(long, env = "SWITCHBOARD_RECORDINGS_MAX_BYTES")]
    pub recordings_max_bytes: Option<String>,
    /// Time one recording download may take in total [default: 300000]
    #[arg(long, env = "SWITCHBOARD_RECORDINGS_TIMEOUT_MS")]
    pub recordings_timeout_ms: Option<String>,
    /// Allow http:// webhook endpoint URLs (a local receiver for testing only) [default: false]
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS_ALLOW_HTTP")]
    pub webhooks_allow_http: Option<String>,
    /// Time one webhook delivery attempt may take [default: 10000]
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS_TIMEOUT_MS")]
    pub webhooks_timeout_ms: Option<String>,
    /// Consecutive failed delivery attempts that disable a webhook endpoint [default: 10]
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS_DISABLE_AFTER")]
    pub webhooks_disable_after: Option<String>,
    /// How often each instance reloads the enabled webhook endpoints [default: 5000]
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS_REFRESH_MS")]
    pub webhooks_refresh_ms: Option<String>,
    /// S3-compatible endpoint for an s3:// recordings location (MinIO, R2, a local test server) [default: AWS]
    #[arg(long, env = "SWITCHBOARD_RECORDINGS_S3_ENDPOINT")]
    pub recordings_s3_endpoint: Option<String>,
    /// Region of the recordings bucket [default: AWS_REGION, else us-east-1]
    #[arg(long, env = "SWITCHBOARD_RECORDINGS_S3_REGION")]
    pub recordings_s3_region: Option<String>,
    /// Allow an http:// S3 endpoint (a local test server only) [default: false]
    #[arg(long, env = "SWITCHBOARD_RECORDINGS_S3_ALLOW_HTTP")]
    pub recordings_s3_allow_http: Option<String>,
}
