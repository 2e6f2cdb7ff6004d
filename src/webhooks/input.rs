//! The admin API's shapes: the create body, parsed whole before anything is stored (every
//! problem is a 4xx that changes nothing), and the JSON views of endpoints and attempts. A
//! view never shows the secret; only the create answer does, once.

use reqwest::Url;
use serde_json::{Map, Value, json};

use super::events::{ALL, Filter};
use super::{sign, target};
use crate::clock::iso;
use crate::config::WebhooksSettings;
use crate::http::ApiError;
use crate::store::{DeliveryRow, OrgScope, WebhookRow};

const FIELDS: [&str; 5] = ["url", "events", "orgs", "secret", "description"];
const MAX_DESCRIPTION: usize = 500;
/// Org ids an endpoint may name; each at most `MAX_ORG_CHARS` long.
const MAX_ORGS: usize = 100;
const MAX_ORG_CHARS: usize = 200;

/// A valid create request.
#[derive(Debug)]
pub struct NewEndpoint {
    pub url: Url,
    pub filter: Filter,
    /// The orgs whose events it receives; `None`: the creating token's.
    pub orgs: Option<OrgScope>,
    /// `None`: the hub generates one.
    pub secret: Option<String>,
    pub description: Option<String>,
}

impl NewEndpoint {
    pub fn parse(v: Value, cfg: &WebhooksSettings) -> Result<NewEndpoint, ApiError> {
        let Value::Object(obj) = v else {
            return Err(ApiError::invalid(
                "invalid_body",
                "The body must be an object: {\"url\", \"events\", \"orgs\"?, \"secret\"?, \"description\"?}.",
            ));
        };
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            let k: String = k.chars().take(40).collect();
            return Err(ApiError::invalid("unknown_field", format!("{k} is not accepted; send only {}.", FIELDS.join(", "))));
        }
        let url = match obj.get("url") {
            Some(Value::String(u)) => target::check(u.trim(), cfg).map_err(|m| ApiError::invalid("invalid_url", m))?,
            _ => return Err(ApiError::invalid("invalid_url", "url is required: the https URL deliveries are POSTed to.")),
        };
        let filter = events(&obj)?;
        let orgs = orgs(&obj)?;
        let secret = secret(&obj)?;
        let description = match obj.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d.chars().count() <= MAX_DESCRIPTION => Some(d.clone()),
            Some(_) => {
                return Err(ApiError::invalid(
                    "invalid_description",
                    format!("description must be a string of at most {MAX_DESCRIPTION} characters."),
                ));
            }
        };
        Ok(NewEndpoint { url, filter, orgs, secret, description })
    }
}

fn events(obj: &Map<String, Value>) -> Result<Filter, ApiError> {
    let expected = || format!("events must be a list of event names ({}) or [\"*\"].", ALL.join(", "));
    let Some(Value::Array(items)) = obj.get("events") else { return Err(ApiError::invalid("invalid_events", expected())) };
    let names: Vec<String> = items
        .iter()
        .map(|i| i.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| ApiError::invalid("invalid_events", expected()))?;
    let unknown = names.iter().any(|n| n != "*" && !ALL.contains(&n.as_str()));
    Filter::parse(&names).map_err(|m| ApiError::invalid(if unknown { "unknown_event" } else { "invalid_events" }, m))
}

fn orgs(obj: &Map<String, Value>) -> Result<Option<OrgScope>, ApiError> {
    let expected =
        || format!("orgs must be a list of 1 to {MAX_ORGS} org ids (each 1 to {MAX_ORG_CHARS} characters) or [\"*\"] for every org.");
    let items = match obj.get("orgs") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_ORGS => items,
        Some(_) => return Err(ApiError::invalid("invalid_orgs", expected())),
    };
    let names: Vec<String> = items
        .iter()
        .map(|i| i.as_str().filter(|o| !o.is_empty() && o.chars().count() <= MAX_ORG_CHARS).map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| ApiError::invalid("invalid_orgs", expected()))?;
    Ok(Some(OrgScope::from_names(names)))
}

/// Longest a rotated-out secret may keep signing, and how long it does by default.
const MAX_GRACE_MS: u64 = 7 * 24 * 3_600_000;
const DEFAULT_GRACE_MS: u64 = 24 * 3_600_000;

/// A valid rotation request: `{"secret"?, "grace_ms"?}`, or no body.
#[derive(Debug, PartialEq, Eq)]
pub struct Rotation {
    /// `None`: the hub generates one.
    pub secret: Option<String>,
    /// How long the replaced secret keeps signing; 0 retires it at once.
    pub grace_ms: u64,
}

impl Rotation {
    pub fn parse(v: Option<Value>) -> Result<Rotation, ApiError> {
        let obj = match v {
            None => return Ok(Rotation { secret: None, grace_ms: DEFAULT_GRACE_MS }),
            Some(Value::Object(obj)) => obj,
            Some(_) => return Err(ApiError::invalid("invalid_body", "The body must be an object: {\"secret\"?, \"grace_ms\"?}.")),
        };
        if let Some(k) = obj.keys().find(|k| !["secret", "grace_ms"].contains(&k.as_str())) {
            let k: String = k.chars().take(40).collect();
            return Err(ApiError::invalid("unknown_field", format!("{k} is not accepted; send only secret, grace_ms.")));
        }
        let secret = secret(&obj)?;
        let grace_ms = match obj.get("grace_ms") {
            None | Some(Value::Null) => DEFAULT_GRACE_MS,
            Some(v) => v.as_u64().filter(|ms| *ms <= MAX_GRACE_MS).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_grace",
                    format!("grace_ms must be a whole number of milliseconds from 0 to {MAX_GRACE_MS} (7 days)."),
                )
            })?,
        };
        Ok(Rotation { secret, grace_ms })
    }
}

/// An optional `secret`: `whsec_` and the base64 of 24–64 bytes.
fn secret(obj: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match obj.get("secret") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            sign::decode_secret(s).map_err(|m| ApiError::invalid("invalid_secret", format!("{m}; or leave secret out to get one")))?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(ApiError::invalid("invalid_secret", "secret must be a string (whsec_…).")),
    }
}

pub fn endpoint_view(w: &WebhookRow) -> Value {
    let events: Value = serde_json::from_str(&w.events).unwrap_or(Value::Null);
    let orgs: Value = serde_json::from_str(&w.orgs).unwrap_or(Value::Null);
    json!({
        "id": w.id,
        "url": w.url,
        "events": events,
        "orgs": orgs,
        "previous_secret_expires_at": w.previous_secret_at(crate::clock::now_ms()).and(w.previous_until).map(iso),
        "description": w.description,
        "enabled": w.enabled(),
        "disabled_at": w.disabled_at.map(iso),
        "disabled_reason": w.disabled_reason,
        "consecutive_failures": w.consecutive_failures,
        "created_at": iso(w.created_at),
        "updated_at": iso(w.updated_at),
    })
}

pub fn delivery_view(d: &DeliveryRow) -> Value {
    json!({
        "id": d.id,
        "event_type": d.event_type,
        "webhook_id": d.webhook_id,
        "attempt": d.attempt,
        "status_code": d.status_code,
        "duration_ms": d.duration_ms,
        "error": d.error,
        "at": iso(d.at),
    })
}
