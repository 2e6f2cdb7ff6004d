//! Records of outgoing webhooks (see `webhook_queries`): the endpoints admins register and the
//! log of delivery attempts. An attempt's outcome and the endpoint's failure count change in
//! one transaction, so instances delivering at once agree on when an endpoint is disabled.

use serde::Serialize;

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: String,
    pub url: String,
    /// JSON array of event names, or `["*"]`.
    pub events: String,
    /// JSON array of the org ids whose events it receives, or `["*"]`.
    pub orgs: String,
    pub secret: String,
    pub description: Option<String>,
    pub now: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub events: String,
    /// JSON array of org ids, or `["*"]`.
    pub orgs: String,
    pub secret: String,
    /// The secret before the last rotation, still signing until `previous_until` (ms).
    pub previous_secret: Option<String>,
    pub previous_until: Option<i64>,
    pub description: Option<String>,
    pub consecutive_failures: i64,
    /// Set while disabled.
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new secret for an endpoint.
#[derive(Debug, Clone)]
pub struct SecretRotation {
    pub id: String,
    pub secret: String,
    /// Until when (ms) the replaced secret still signs; `now` or earlier retires it at once.
    pub previous_until: i64,
    pub now: i64,
}

impl WebhookRow {
    pub fn enabled(&self) -> bool {
        self.disabled_at.is_none()
    }

    /// The secret a rotation replaced, while it still signs at `now`.
    pub fn previous_secret_at(&self, now: i64) -> Option<&str> {
        self.previous_secret.as_deref().filter(|_| self.previous_until.is_some_and(|until| now < until))
    }
}

/// One delivery attempt's outcome, to log and count against the endpoint.
#[derive(Debug, Clone)]
pub struct WebhookAttempt {
    pub endpoint_id: String,
    pub event_type: String,
    pub webhook_id: String,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub at: i64,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx: the failure count starts over.
    Delivered,
    /// Counts as one more consecutive failure; at `disable_after` the endpoint is disabled.
    Failed { disable_after: i64 },
    /// 410 Gone: the receiver asked for no more; disabled at once.
    Gone,
}

/// The endpoint after an attempt was recorded; `None` from the store when it no longer exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointAfter {
    pub consecutive_failures: i64,
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub endpoint_id: String,
    pub event_type: String,
    pub webhook_id: String,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub at: i64,
}
