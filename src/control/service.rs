//! One control action from request to audit: check the call, validate the action, check the
//! control URL, record the attempt, forward it, complete the record, publish `control.sent`.
//! The HTTP route and the supervisor WebSocket both come through `execute`.

use std::time::Instant;

use serde_json::{Value, json};

use super::action::Action;
use super::forward::{self, Sent};
use super::target;
use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::{iso, now_ms};
use crate::http::ApiError;
use crate::hub::{Event, topics};
use crate::store::{CallRow, ControlFinished, NewControlAction, TERMINAL_RANK};

/// A control action VAPI accepted.
#[derive(Debug, Clone)]
pub struct ControlResult {
    pub call_id: String,
    pub audit_id: String,
    /// The hub's action object, as validated.
    pub action: Value,
    pub upstream_status: u16,
}

impl ControlResult {
    /// The answer body: `{"ok":true,"action":…,"upstream_status":N,"audit_id":…}`.
    pub fn to_json(&self) -> Value {
        json!({ "ok": true, "action": self.action, "upstream_status": self.upstream_status, "audit_id": self.audit_id })
    }
}

/// Forwards `action` (the hub's action object) to the call's control URL on behalf of `who`.
///
/// Answers 404 for a call `who` may not see, 422 for an invalid action (nothing is sent or
/// audited), 409 `call_not_live` / `control_unavailable` (nothing to send to), 409
/// `control_url_refused` (audited), 502 `upstream_rejected` (with `upstream_status`) or
/// `upstream_failed`, 504 `upstream_timeout`. Every attempt that gets as far as the URL check
/// is audited and published as `control.sent` on `call:<id>`, whatever its outcome.
pub async fn execute(state: &AppState, who: &Principal, call_id: &str, action: Value) -> Result<ControlResult, ApiError> {
    let call = crate::calls::visible_call(state, who, call_id).await?;
    let action = Action::parse(&action)?;
    if call.status_rank >= TERMINAL_RANK {
        return Err(ApiError::Conflict { code: "call_not_live", message: "The call has ended.".into() });
    }
    let Some(control_url) = call.control_url.as_deref().filter(|u| !u.is_empty()) else {
        return Err(ApiError::Conflict { code: "control_unavailable", message: "VAPI has not given this call a control URL.".into() });
    };
    let cfg = &state.settings.live.control;
    let vapi_body = action.to_vapi();
    let mut attempt = Attempt::new(&call, who, &action, &vapi_body);

    let url = match target::check(control_url, cfg) {
        Ok(url) => url,
        Err(reason) => {
            tracing::warn!(call_id = %call.id, reason = %reason, "control URL refused");
            attempt.row.outcome = "refused".into();
            attempt.row.error = Some(reason);
            attempt.row.finished_at = Some(attempt.row.requested_at);
            state.store.insert_control_action(attempt.row.clone()).await?;
            attempt.report(state, "refused", None, attempt.row.requested_at).await;
            return Err(ApiError::Conflict {
                code: "control_url_refused",
                message: "The call's control URL is not one the hub may call (see control.allowed_hosts).".into(),
            });
        }
    };

    // Recorded before the request leaves: if the audit cannot be written, nothing is sent.
    state.store.insert_control_action(attempt.row.clone()).await?;
    // Forwarding and completing the record run as a task of their own, so a client that hangs
    // up mid-request cannot leave the audit pending; shutdown waits for it.
    let (http, store, timeout, key) =
        (state.control_http.clone(), state.store.clone(), state.settings.live.control_timeout, cfg.api_key.clone());
    let audit_id = attempt.row.id.clone();
    let task = state.tasks.spawn(async move {
        let started = Instant::now();
        let sent = forward::send(&http, url, &vapi_body, timeout, key.as_ref()).await;
        let finished_at = now_ms();
        let done = ControlFinished {
            id: audit_id,
            outcome: sent.outcome().into(),
            upstream_status: sent.upstream_status().map(i64::from),
            error: sent.error(),
            finished_at,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        // The action has happened either way: a failed update is logged, not turned into an
        // error that would invite the supervisor to send it again.
        if let Err(e) = store.finish_control_action(done).await {
            tracing::error!(error = %e, "a control action's outcome could not be recorded");
        }
        (sent, finished_at)
    });
    let (sent, finished_at) = task.await.map_err(|e| ApiError::Internal(format!("control task failed: {e}")))?;
    attempt.report(state, sent.outcome(), sent.upstream_status(), finished_at).await;
    match sent {
        Sent::Accepted(status) => {
            Ok(ControlResult { call_id: call.id.clone(), audit_id: attempt.row.id, action: attempt.action, upstream_status: status })
        }
        Sent::Rejected { status, .. } => Err(ApiError::BadGateway {
            code: "upstream_rejected",
            message: format!("VAPI refused the control action with HTTP {status}."),
            upstream_status: Some(status),
        }),
        Sent::TimedOut => Err(ApiError::GatewayTimeout {
            code: "upstream_timeout",
            message: format!("VAPI did not answer within {} ms.", timeout.as_millis()),
        }),
        Sent::Failed(_) => Err(ApiError::BadGateway {
            code: "upstream_failed",
            message: "VAPI's control URL could not be reached.".into(),
            upstream_status: None,
        }),
    }
}

/// One attempt's audit row and the facts its event repeats.
struct Attempt {
    row: NewControlAction,
    action: Value,
    org_id: String,
}

impl Attempt {
    fn new(call: &CallRow, who: &Principal, action: &Action, vapi_body: &Value) -> Self {
        let hub = action.to_hub();
        let row = NewControlAction {
            id: uuid::Uuid::now_v7().to_string(),
            call_id: call.id.clone(),
            org_id: call.org_id.clone(),
            token_id: who.token_id.clone(),
            actor: who.name.clone(),
            action_type: action.type_name().into(),
            action: hub.to_string(),
            vapi_body: vapi_body.to_string(),
            requested_at: now_ms(),
            outcome: "pending".into(),
            error: None,
            finished_at: None,
        };
        Self { row, action: hub, org_id: call.org_id.clone() }
    }

    /// Counts the outcome and tells the call's watchers. A broker hiccup is logged only: the
    /// audit row is the record, the event a courtesy.
    async fn report(&self, state: &AppState, outcome: &'static str, upstream_status: Option<u16>, at: i64) {
        state.metrics.control_action(&self.row.action_type, outcome);
        let data = json!({
            "call_id": self.row.call_id,
            "audit_id": self.row.id,
            "actor": self.row.actor,
            "action": self.action,
            "outcome": outcome,
            "upstream_status": upstream_status,
            "at": iso(at),
        });
        let event = Event { kind: "control.sent".into(), at: iso(at), org_id: self.org_id.clone(), data };
        if let Err(e) = state.broker.publish(&topics::call(&self.row.call_id), event).await {
            tracing::warn!(error = %e, call_id = %self.row.call_id, "control.sent was not published");
        }
    }
}
