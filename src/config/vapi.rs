//! VAPI-facing settings: webhook authentication, limits, configured replies, and functions.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::file::{AssistantAnswerFile, DestinationReplyFile, FunctionFile, HmacFile, VapiFile, to_json};
use super::{ConfigArgs, ConfigError, Secret, parse_bool, parse_num, pick};

/// VAPI caps a Server URL request at 20 s by default; past this a function is misconfigured.
const MAX_FUNCTION_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct VapiSettings {
    /// Accepted as `x-vapi-secret` or `Authorization: Bearer` (several for rotation).
    pub secrets: Vec<Secret>,
    pub hmac: Option<HmacSettings>,
    pub body_limit: usize,
    pub default_org: String,
    pub tool_timeout: Duration,
    /// Also keep high-rate informational messages (transcript partials, model-output,
    /// speech-update) in the raw event log. Off by default: they are published, not stored.
    pub raw_log_ephemeral: bool,
    /// Fallback answer to `assistant-request`, as the JSON body VAPI expects.
    pub assistant_default: Option<Value>,
    pub assistant_routes: Vec<AssistantRoute>,
    pub lookup_caller: bool,
    pub transfer_destination: DestinationReply,
    pub handoff_destination: DestinationReply,
    pub knowledge: Vec<KnowledgeDoc>,
    pub endpointing_timeout_seconds: f64,
    pub campaign_eligible: bool,
}

#[derive(Debug, Clone)]
pub struct AssistantRoute {
    pub phone_number: Option<String>,
    pub customer_number: Option<String>,
    pub answer: Value,
}

/// A configured reply body for transfer/handoff destination requests; `None` = not configured.
#[derive(Debug, Clone, Default)]
pub struct DestinationReply(pub Option<Value>);

#[derive(Debug, Clone)]
pub struct KnowledgeDoc {
    pub id: String,
    pub content: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha256,
    Sha512,
    Sha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

#[derive(Clone)]
pub struct HmacSettings {
    /// Decoded keys; any one verifying is enough (rotation).
    pub keys: Vec<Vec<u8>>,
    pub algorithm: HmacAlgorithm,
    pub signature_header: String,
    pub timestamp_header: String,
    pub message_id_header: Option<String>,
    pub prefix: String,
    pub encoding: Encoding,
    pub payload_format: String,
    pub tolerance: Duration,
}

impl std::fmt::Debug for HmacSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSettings")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("algorithm", &self.algorithm)
            .field("signature_header", &self.signature_header)
            .field("timestamp_header", &self.timestamp_header)
            .field("message_id_header", &self.message_id_header)
            .field("prefix", &self.prefix)
            .field("encoding", &self.encoding)
            .field("payload_format", &self.payload_format)
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl HmacSettings {
    /// VAPI's HMAC credential defaults (spec §5) around one key.
    pub fn with_key(key: impl Into<Vec<u8>>) -> Self {
        Self {
            keys: vec![key.into()],
            algorithm: HmacAlgorithm::Sha256,
            signature_header: "x-signature".into(),
            timestamp_header: "x-timestamp".into(),
            message_id_header: None,
            prefix: String::new(),
            encoding: Encoding::Hex,
            payload_format: "{timestamp}.{body}".into(),
            tolerance: Duration::from_secs(300),
        }
    }

    /// Whether the signed payload carries a timestamp (and so gets a replay window).
    pub fn signs_timestamp(&self) -> bool {
        self.payload_format.contains("{timestamp}")
    }
}

#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub description: String,
    pub parameters: Value,
    pub handler: FunctionHandler,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum FunctionHandler {
    Builtin(String),
    Http { url: String, secret: Option<Secret> },
}

impl VapiSettings {
    pub fn defaults() -> Self {
        Self {
            secrets: Vec::new(),
            hmac: None,
            body_limit: 1024 * 1024,
            default_org: "default".into(),
            tool_timeout: Duration::from_secs(10),
            raw_log_ephemeral: false,
            assistant_default: None,
            assistant_routes: Vec::new(),
            lookup_caller: true,
            transfer_destination: DestinationReply::default(),
            handoff_destination: DestinationReply::default(),
            knowledge: Vec::new(),
            endpointing_timeout_seconds: 0.5,
            campaign_eligible: true,
        }
    }

    /// Whether any authentication is configured; without it the hub warns at start-up.
    pub fn auth_configured(&self) -> bool {
        !self.secrets.is_empty() || self.hmac.is_some()
    }

    pub(super) fn from_sources(file: &VapiFile, args: &ConfigArgs) -> Result<Self, ConfigError> {
        let mut v = Self::defaults();
        v.secrets = file.secrets.clone();
        if let Some(s) = &file.secret {
            v.secrets.insert(0, s.clone());
        }
        if let Some(s) = args.vapi_secret.as_deref().filter(|s| !s.is_empty()) {
            v.secrets = vec![Secret::new(s)];
        }
        if v.secrets.iter().any(|s| s.expose().is_empty()) {
            return Err(ConfigError::new("vapi.secret (SWITCHBOARD_VAPI_SECRET)", "must not be empty"));
        }
        v.hmac = hmac_from(file.hmac.as_ref(), args)?;
        if let Some(n) = parse_num::<usize>(&args.vapi_body_limit, file.body_limit, "vapi.body_limit (SWITCHBOARD_VAPI_BODY_LIMIT)")? {
            if n < 1024 {
                return Err(ConfigError::new("vapi.body_limit (SWITCHBOARD_VAPI_BODY_LIMIT)", "must be at least 1024 bytes"));
            }
            v.body_limit = n;
        }
        if let Some(org) = pick(&args.vapi_default_org, &file.default_org) {
            v.default_org = org;
        }
        if let Some(ms) =
            parse_num::<u64>(&args.vapi_tool_timeout_ms, file.tool_timeout_ms, "vapi.tool_timeout_ms (SWITCHBOARD_VAPI_TOOL_TIMEOUT_MS)")?
        {
            v.tool_timeout = function_timeout(ms, "vapi.tool_timeout_ms (SWITCHBOARD_VAPI_TOOL_TIMEOUT_MS)")?;
        }
        v.raw_log_ephemeral = file.raw_log_ephemeral.unwrap_or(false);
        if let Some(ar) = &file.assistant_request {
            v.assistant_default = assistant_answer(&ar.answer, "vapi.assistant_request")?;
            v.lookup_caller = ar.lookup_caller.unwrap_or(true);
            for (i, r) in ar.routes.iter().enumerate() {
                let name = format!("vapi.assistant_request.routes[{i}]");
                if r.phone_number.is_none() && r.customer_number.is_none() {
                    return Err(ConfigError::new(name, "needs phone_number or customer_number to match on"));
                }
                let answer = assistant_answer(&r.answer, &name)?
                    .ok_or_else(|| ConfigError::new(&name, "needs an answer (assistant_id, assistant, destination, error, …)"))?;
                v.assistant_routes.push(AssistantRoute {
                    phone_number: r.phone_number.clone(),
                    customer_number: r.customer_number.clone(),
                    answer,
                });
            }
        }
        if let Some(id) = args.vapi_assistant_id.as_deref().filter(|s| !s.is_empty()) {
            v.assistant_default = Some(json!({ "assistantId": id }));
        }
        v.transfer_destination = destination_reply(file.transfer_destination.as_ref(), "vapi.transfer_destination")?;
        v.handoff_destination = destination_reply(file.handoff_destination.as_ref(), "vapi.handoff_destination")?;
        v.knowledge = file
            .knowledge
            .iter()
            .enumerate()
            .map(|(i, k)| KnowledgeDoc { id: k.id.clone().unwrap_or_else(|| format!("kb-{i}")), content: k.content.clone() })
            .collect();
        if let Some(t) = file.endpointing_timeout_seconds {
            if !(0.0..=60.0).contains(&t) {
                return Err(ConfigError::new("vapi.endpointing_timeout_seconds", "must be between 0 and 60"));
            }
            v.endpointing_timeout_seconds = t;
        }
        v.campaign_eligible = file.campaign_eligible.unwrap_or(true);
        Ok(v)
    }
}

fn hmac_from(file: Option<&HmacFile>, args: &ConfigArgs) -> Result<Option<HmacSettings>, ConfigError> {
    let default = HmacFile::default();
    let f = file.unwrap_or(&default);
    let mut secrets: Vec<Secret> = f.secrets.clone();
    if let Some(s) = &f.secret {
        secrets.insert(0, s.clone());
    }
    if let Some(s) = args.vapi_hmac_secret.as_deref().filter(|s| !s.is_empty()) {
        secrets = vec![Secret::new(s)];
    }
    if secrets.is_empty() {
        if file.is_some() {
            return Err(ConfigError::new("vapi.hmac.secret (SWITCHBOARD_VAPI_HMAC_SECRET)", "[vapi.hmac] is present but has no secret"));
        }
        return Ok(None);
    }
    let is_b64 = parse_bool(
        &args.vapi_hmac_secret_is_base64,
        f.secret_is_base64,
        "vapi.hmac.secret_is_base64 (SWITCHBOARD_VAPI_HMAC_SECRET_IS_BASE64)",
    )?
    .unwrap_or(false);
    let mut keys = Vec::new();
    for s in &secrets {
        let key = if is_b64 {
            base64::engine::general_purpose::STANDARD.decode(s.expose().trim()).map_err(|_| {
                ConfigError::new(
                    "vapi.hmac.secret (SWITCHBOARD_VAPI_HMAC_SECRET)",
                    "secret_is_base64 is true but the secret is not valid base64",
                )
            })?
        } else {
            s.expose().as_bytes().to_vec()
        };
        if key.is_empty() {
            return Err(ConfigError::new("vapi.hmac.secret (SWITCHBOARD_VAPI_HMAC_SECRET)", "must not be empty"));
        }
        keys.push(key);
    }
    let mut h = HmacSettings::with_key(Vec::new());
    h.keys = keys;
    if let Some(a) = pick(&args.vapi_hmac_algorithm, &f.algorithm) {
        h.algorithm = match a.to_ascii_lowercase().as_str() {
            "sha256" => HmacAlgorithm::Sha256,
            "sha512" => HmacAlgorithm::Sha512,
            "sha1" => HmacAlgorithm::Sha1,
            other => {
                return Err(ConfigError::new(
                    "vapi.hmac.algorithm (SWITCHBOARD_VAPI_HMAC_ALGORITHM)",
                    format!("{other:?} is not sha256, sha512 or sha1"),
                ));
            }
        };
    }
    if let Some(v) = pick(&args.vapi_hmac_signature_header, &f.signature_header) {
        h.signature_header = header_name(&v, "vapi.hmac.signature_header (SWITCHBOARD_VAPI_HMAC_SIGNATURE_HEADER)")?;
    }
    if let Some(v) = pick(&args.vapi_hmac_timestamp_header, &f.timestamp_header) {
        h.timestamp_header = header_name(&v, "vapi.hmac.timestamp_header (SWITCHBOARD_VAPI_HMAC_TIMESTAMP_HEADER)")?;
    }
    if let Some(v) = pick(&args.vapi_hmac_message_id_header, &f.message_id_header) {
        h.message_id_header = Some(header_name(&v, "vapi.hmac.message_id_header (SWITCHBOARD_VAPI_HMAC_MESSAGE_ID_HEADER)")?);
    }
    if let Some(v) = pick(&args.vapi_hmac_prefix, &f.signature_prefix) {
        h.prefix = v;
    }
    if let Some(v) = pick(&args.vapi_hmac_encoding, &f.signature_encoding) {
        h.encoding = match v.to_ascii_lowercase().as_str() {
            "hex" => Encoding::Hex,
            "base64" => Encoding::Base64,
            other => {
                return Err(ConfigError::new(
                    "vapi.hmac.signature_encoding (SWITCHBOARD_VAPI_HMAC_ENCODING)",
                    format!("{other:?} is not hex or base64"),
                ));
            }
        };
    }
    let include_ts = parse_bool(
        &args.vapi_hmac_include_timestamp,
        f.include_timestamp,
        "vapi.hmac.include_timestamp (SWITCHBOARD_VAPI_HMAC_INCLUDE_TIMESTAMP)",
    )?
    .unwrap_or(true);
    match pick(&args.vapi_hmac_payload_format, &f.payload_format) {
        Some(p) => {
            if !p.contains("{body}") {
                return Err(ConfigError::new("vapi.hmac.payload_format (SWITCHBOARD_VAPI_HMAC_PAYLOAD_FORMAT)", "must contain {body}"));
            }
            if p.contains("{svix-id}") && h.message_id_header.is_none() {
                return Err(ConfigError::new(
                    "vapi.hmac.message_id_header",
                    "payload_format uses {svix-id}, so a message_id_header is needed",
                ));
            }
            h.payload_format = p;
        }
        None if !include_ts => h.payload_format = "{body}".into(),
        None => {}
    }
    if let Some(secs) = parse_num::<u64>(
        &args.vapi_hmac_tolerance_secs,
        f.tolerance_secs,
        "vapi.hmac.tolerance_secs (SWITCHBOARD_VAPI_HMAC_TOLERANCE_SECS)",
    )? {
        if secs == 0 {
            return Err(ConfigError::new("vapi.hmac.tolerance_secs (SWITCHBOARD_VAPI_HMAC_TOLERANCE_SECS)", "must be greater than 0"));
        }
        h.tolerance = Duration::from_secs(secs);
    }
    Ok(Some(h))
}

fn header_name(v: &str, setting: &str) -> Result<String, ConfigError> {
    let lower = v.trim().to_ascii_lowercase();
    axum::http::HeaderName::from_bytes(lower.as_bytes())
        .map_err(|_| ConfigError::new(setting, format!("{v:?} is not a valid header name")))?;
    Ok(lower)
}

fn function_timeout(ms: u64, setting: &str) -> Result<Duration, ConfigError> {
    let d = Duration::from_millis(ms);
    if ms == 0 || d > MAX_FUNCTION_TIMEOUT {
        return Err(ConfigError::new(setting, "must be between 1 and 300000 ms (VAPI's largest server timeout)"));
    }
    Ok(d)
}

/// Turns one configured answer into the reply body; `None` when nothing is set.
fn assistant_answer(a: &AssistantAnswerFile, setting: &str) -> Result<Option<Value>, ConfigError> {
    let mut set = Vec::new();
    let mut body = serde_json::Map::new();
    if let Some(e) = &a.error {
        set.push("error");
        body.insert("error".into(), Value::String(e.clone()));
    }
    if let Some(d) = &a.destination {
        set.push("destination");
        body.insert("destination".into(), to_json(d));
    }
    if let Some(id) = &a.assistant_id {
        set.push("assistant_id");
        body.insert("assistantId".into(), Value::String(id.clone()));
    }
    if let Some(asst) = &a.assistant {
        set.push("assistant");
        body.insert("assistant".into(), to_json(asst));
    }
    if let Some(id) = &a.squad_id {
        set.push("squad_id");
        body.insert("squadId".into(), Value::String(id.clone()));
    }
    if let Some(id) = &a.workflow_id {
        set.push("workflow_id");
        body.insert("workflowId".into(), Value::String(id.clone()));
    }
    if set.len() > 1 {
        return Err(ConfigError::new(
            setting,
            format!("set exactly one of assistant_id, assistant, squad_id, workflow_id, destination, error (found {})", set.join(", ")),
        ));
    }
    if let Some(o) = &a.assistant_overrides {
        if set.is_empty() {
            return Err(ConfigError::new(setting, "assistant_overrides needs an assistant to override"));
        }
        body.insert("assistantOverrides".into(), to_json(o));
    }
    Ok(if set.is_empty() { None } else { Some(Value::Object(body)) })
}

fn destination_reply(f: Option<&DestinationReplyFile>, setting: &str) -> Result<DestinationReply, ConfigError> {
    let Some(f) = f else { return Ok(DestinationReply(None)) };
    match (&f.destination, &f.error) {
        (Some(_), Some(_)) => Err(ConfigError::new(setting, "set destination or error, not both")),
        (None, None) => Err(ConfigError::new(setting, "needs a destination or an error")),
        (None, Some(e)) => Ok(DestinationReply(Some(json!({ "error": e })))),
        (Some(d), None) => {
            let d = to_json(d);
            if d.get("type").and_then(Value::as_str).is_none() {
                return Err(ConfigError::new(setting, "destination needs a type (number, sip or assistant)"));
            }
            let mut body = json!({ "destination": d });
            if let Some(m) = &f.message {
                body["message"] = json!({ "type": "request-start", "content": m });
            }
            Ok(DestinationReply(Some(body)))
        }
    }
}

/// The built-in demo functions, used when the file declares no `[[functions]]`.
pub(super) fn default_functions(timeout: Duration) -> Vec<FunctionSpec> {
    crate::functions::builtin::NAMES.iter().filter_map(|name| crate::functions::builtin::spec(name, timeout)).collect()
}

pub(super) fn functions_from(files: &[FunctionFile], default_timeout: Duration) -> Result<Vec<FunctionSpec>, ConfigError> {
    if files.is_empty() {
        return Ok(default_functions(default_timeout));
    }
    let mut out: Vec<FunctionSpec> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let setting = format!("functions[{i}] ({})", f.name);
        if f.name.is_empty() || !f.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || f.name.len() > 64 {
            return Err(ConfigError::new(setting, "name must be 1-64 characters of a-z, A-Z, 0-9, _ or -"));
        }
        if out.iter().any(|o| o.name == f.name) {
            return Err(ConfigError::new(setting, "is declared twice"));
        }
        let timeout = match f.timeout_ms {
            Some(ms) => function_timeout(ms, &format!("{setting}.timeout_ms"))?,
            None => default_timeout,
        };
        let handler_kind = f.handler.clone().unwrap_or_else(|| if f.url.is_some() { "http".into() } else { "builtin".into() });
        let handler = match handler_kind.as_str() {
            "http" => {
                let url = f.url.clone().ok_or_else(|| ConfigError::new(&setting, "an http handler needs a url"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::new(setting, format!("url {url:?} must start with http:// or https://")));
                }
                FunctionHandler::Http { url, secret: f.secret.clone() }
            }
            "builtin" => {
                let name = f.builtin.clone().unwrap_or_else(|| f.name.clone());
                if !crate::functions::builtin::NAMES.contains(&name.as_str()) {
                    return Err(ConfigError::new(
                        setting,
                        format!("unknown builtin {name:?}; built-ins are {}", crate::functions::builtin::NAMES.join(", ")),
                    ));
                }
                FunctionHandler::Builtin(name)
            }
            other => return Err(ConfigError::new(setting, format!("handler {other:?} is not http or builtin"))),
        };
        let builtin_spec = match &handler {
            FunctionHandler::Builtin(b) => crate::functions::builtin::spec(b, timeout),
            FunctionHandler::Http { .. } => None,
        };
        let parameters = match (&f.parameters, &builtin_spec) {
            (Some(p), _) => to_json(p),
            (None, Some(b)) => b.parameters.clone(),
            (None, None) => json!({ "type": "object", "properties": {} }),
        };
        if parameters.get("type").and_then(Value::as_str) != Some("object") {
            return Err(ConfigError::new(setting, "parameters must be a JSON schema of type object"));
        }
        let description = f.description.clone().or_else(|| builtin_spec.map(|b| b.description)).unwrap_or_default();
        out.push(FunctionSpec { name: f.name.clone(), description, parameters, handler, timeout });
    }
    Ok(out)
}
