//! The optional `switchboard.toml`: every field optional, unknown keys rejected so a typo
//! is reported at start-up instead of silently ignored.

use serde::Deserialize;
use serde_json::Value;

use super::secret::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub database_max_connections: Option<u32>,
    pub broker_url: Option<String>,
    pub broker_prefix: Option<String>,
    pub public_url: Option<String>,
    pub web_dir: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub shutdown_timeout_ms: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
    pub keep_alive_timeout_ms: Option<u64>,
    pub body_read_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub listen_backlog: Option<u32>,
    #[serde(default)]
    pub broker: super::live::BrokerFile,
    #[serde(default)]
    pub ws: super::live::WsFile,
    #[serde(default)]
    pub control: super::control::ControlFile,
    #[serde(default)]
    pub vapi: VapiFile,
    #[serde(default)]
    pub chat: super::chat::ChatFile,
    #[serde(default)]
    pub widgets: Vec<super::chat::WidgetFile>,
    #[serde(default)]
    pub functions: Vec<FunctionFile>,
    #[serde(default)]
    pub jobs: super::jobs::JobsFile,
    #[serde(default)]
    pub recordings: super::recordings::RecordingsFile,
    #[serde(default)]
    pub retention: super::retention::RetentionFile,
    #[serde(default)]
    pub reconcile: super::reconcile::ReconcileFile,
    #[serde(default)]
    pub webhooks: super::webhooks::WebhooksFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VapiFile {
    /// One secret, accepted as `x-vapi-secret` or `Authorization: Bearer`.
    pub secret: Option<Secret>,
    /// Several secrets at once, for rotation without downtime.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    pub hmac: Option<HmacFile>,
    pub body_limit: Option<usize>,
    pub default_org: Option<String>,
    pub tool_timeout_ms: Option<u64>,
    pub raw_log_ephemeral: Option<bool>,
    pub assistant_request: Option<AssistantRequestFile>,
    pub transfer_destination: Option<DestinationReplyFile>,
    pub handoff_destination: Option<DestinationReplyFile>,
    #[serde(default)]
    pub knowledge: Vec<KnowledgeFile>,
    pub endpointing_timeout_seconds: Option<f64>,
    pub campaign_eligible: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacFile {
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secrets: Vec<Secret>,
    pub secret_is_base64: Option<bool>,
    pub algorithm: Option<String>,
    pub signature_header: Option<String>,
    pub timestamp_header: Option<String>,
    pub message_id_header: Option<String>,
    pub signature_prefix: Option<String>,
    pub signature_encoding: Option<String>,
    pub payload_format: Option<String>,
    pub include_timestamp: Option<bool>,
    pub tolerance_secs: Option<u64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantRequestFile {
    #[serde(flatten)]
    pub answer: AssistantAnswerFile,
    /// Look the caller up in the customer table and pass `callerName` to the assistant.
    pub lookup_caller: Option<bool>,
    #[serde(default)]
    pub routes: Vec<AssistantRouteFile>,
}

/// Exactly one of the fields should be set; validated when settings are built.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantAnswerFile {
    pub assistant_id: Option<String>,
    pub assistant: Option<toml::Value>,
    pub squad_id: Option<String>,
    pub workflow_id: Option<String>,
    pub destination: Option<toml::Value>,
    pub error: Option<String>,
    pub assistant_overrides: Option<toml::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantRouteFile {
    /// The VAPI number that was called (`phoneNumber.number`).
    pub phone_number: Option<String>,
    /// The caller (`customer.number`).
    pub customer_number: Option<String>,
    #[serde(flatten)]
    pub answer: AssistantAnswerFile,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationReplyFile {
    pub destination: Option<toml::Value>,
    /// Spoken before the transfer (`message.content`).
    pub message: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeFile {
    pub id: Option<String>,
    pub content: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionFile {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<toml::Value>,
    /// `builtin` (default when `builtin` is set) or `http`.
    pub handler: Option<String>,
    pub builtin: Option<String>,
    pub url: Option<String>,
    pub secret: Option<Secret>,
    pub timeout_ms: Option<u64>,
}

/// TOML tables become JSON values (VAPI payload fragments are JSON).
pub fn to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}
