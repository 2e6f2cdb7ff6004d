//! `GET /openapi.json`: the HTTP API as OpenAPI 3.1, built from one table of routes. A test
//! checks every entry against the real router (the path answers, the method is routed), so the
//! description cannot drift from what is served. Bodies are described in words and with the
//! README's shapes rather than full schemas: the README is the reference, this is the index
//! tools and generators read.

use axum::Json;
use serde_json::{Map, Value, json};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anyone,
    Vapi,
    Browser,
    Supervisor,
    Admin,
    AnyToken,
}

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub who: Who,
    pub summary: &'static str,
    /// Success status and what it returns.
    pub ok: (u16, &'static str),
}

const fn r(method: &'static str, path: &'static str, tag: &'static str, who: Who, summary: &'static str, ok: (u16, &'static str)) -> Route {
    Route { method, path, tag, who, summary, ok }
}

pub const ROUTES: &[Route] = &[
    r("get", "/healthz", "operations", Who::Anyone, "Liveness", (200, "`{\"status\":\"ok\"}`")),
    r(
        "get",
        "/readyz",
        "operations",
        Who::Anyone,
        "Readiness: store and broker answer",
        (200, "ready; 503 names the dependency that failed"),
    ),
    r("get", "/metrics", "operations", Who::Anyone, "Prometheus / OpenMetrics text", (200, "metrics")),
    r(
        "post",
        "/vapi/webhook",
        "vapi",
        Who::Vapi,
        "VAPI's Server URL: every server message",
        (200, "the reply the message type calls for (`{}` for informational ones)"),
    ),
    r(
        "get",
        "/api/calls",
        "calls",
        Who::Supervisor,
        "Calls, newest first (status, assistant_id, since, until, q, limit, cursor)",
        (200, "`{\"calls\":[…],\"next_cursor\":…}`"),
    ),
    r(
        "get",
        "/api/calls/{id}",
        "calls",
        Who::Supervisor,
        "One call with transcript, function invocations, recordings, control actions",
        (200, "the call"),
    ),
    r("get", "/api/calls/{id}/transcript", "calls", Who::Supervisor, "The final transcript (format=json|txt|vtt)", (200, "the transcript")),
    r(
        "get",
        "/api/calls/{id}/recording",
        "calls",
        Who::Supervisor,
        "The stored recording (kind=mono|stereo|assistant|customer|video), with Range",
        (200, "the audio; 206 for a range"),
    ),
    r(
        "post",
        "/api/calls/{id}/control",
        "calls",
        Who::Supervisor,
        "Live control forwarded to VAPI's control URL, audited",
        (200, "`{\"ok\":true,\"action\",\"upstream_status\",\"audit_id\"}`"),
    ),
    r("get", "/ws", "live", Who::Supervisor, "The supervisor WebSocket (token by ?token= or subprotocol)", (101, "switching protocols")),
    r(
        "get",
        "/api/chat/widgets/{site_key}",
        "chat",
        Who::Browser,
        "A widget's public configuration, for pages its site key allows",
        (200, "`{\"site_key\",\"name\",\"max_message_chars\"}`"),
    ),
    r(
        "post",
        "/api/chat/sessions",
        "chat",
        Who::Browser,
        "Start a chat session (optional site_key)",
        (201, "`{\"session_id\",\"created_at\"}`"),
    ),
    r("get", "/api/chat/sessions/{id}", "chat", Who::Browser, "A session with its messages", (200, "the session")),
    r(
        "post",
        "/api/chat/sessions/{id}/messages",
        "chat",
        Who::Browser,
        "Send a message; the answer streams as SSE (delta, tool, done, error)",
        (200, "text/event-stream"),
    ),
    r(
        "get",
        "/api/chat/sessions/{id}/stream",
        "chat",
        Who::Browser,
        "Follow the answer being generated, from Last-Event-ID",
        (200, "text/event-stream; 204 when none is active"),
    ),
    r(
        "post",
        "/api/chat/sessions/{id}/stop",
        "chat",
        Who::Browser,
        "Stop the answer; the partial answer is stored as stopped",
        (200, "`{\"run_id\",\"status\"}`"),
    ),
    r(
        "post",
        "/api/ai/chat",
        "chat",
        Who::Browser,
        "Stateless compatibility route (useAIChat): data: {\"content\"} events, then [DONE]",
        (200, "text/event-stream"),
    ),
    r(
        "post",
        "/v1/chat/completions",
        "chat",
        Who::AnyToken,
        "OpenAI-compatible pass-through, streamed or not",
        (200, "an OpenAI chat completion or its stream"),
    ),
    r(
        "get",
        "/api/admin/jobs",
        "admin",
        Who::Admin,
        "Durable jobs (status, kind, limit, cursor)",
        (200, "`{\"jobs\":[…],\"next_cursor\":…}`"),
    ),
    r("post", "/api/admin/jobs/{id}/retry", "admin", Who::Admin, "Run a dead or waiting job now with fresh attempts", (200, "the job")),
    r(
        "post",
        "/api/admin/jobs/run/{kind}",
        "admin",
        Who::Admin,
        "Run now: enqueue a job of a kind (JSON body = payload)",
        (202, "the job"),
    ),
    r("post", "/api/admin/retention/run", "admin", Who::Admin, "Run the retention cleanup now", (200, "what it removed")),
    r("get", "/api/admin/webhooks", "admin", Who::Admin, "Outgoing webhook endpoints", (200, "`{\"webhooks\":[…]}`")),
    r(
        "post",
        "/api/admin/webhooks",
        "admin",
        Who::Admin,
        "Add an endpoint (url, events, secret?, description?)",
        (201, "the endpoint with its secret, shown once"),
    ),
    r("get", "/api/admin/webhooks/{id}", "admin", Who::Admin, "One endpoint", (200, "the endpoint")),
    r("delete", "/api/admin/webhooks/{id}", "admin", Who::Admin, "Remove an endpoint", (204, "removed")),
    r("post", "/api/admin/webhooks/{id}/enable", "admin", Who::Admin, "Enable a disabled endpoint", (200, "the endpoint")),
    r(
        "post",
        "/api/admin/webhooks/{id}/rotate",
        "admin",
        Who::Admin,
        "A new signing secret; the old one signs too for grace_ms (default 24 h)",
        (200, "the endpoint with its new secret, shown once"),
    ),
    r(
        "get",
        "/api/admin/webhooks/{id}/deliveries",
        "admin",
        Who::Admin,
        "The endpoint's delivery attempts (limit, cursor)",
        (200, "`{\"deliveries\":[…],\"next_cursor\":…}`"),
    ),
    r("get", "/widget.js", "web", Who::Anyone, "The embeddable chat widget", (200, "JavaScript")),
    r("get", "/dashboard/", "web", Who::Anyone, "The supervisor dashboard", (200, "HTML")),
    r("get", "/demo/", "web", Who::Anyone, "The demo page embedding the widget", (200, "HTML")),
    r("get", "/openapi.json", "operations", Who::Anyone, "This description", (200, "OpenAPI 3.1")),
];

pub async fn openapi() -> Json<Value> {
    Json(document())
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        entry[route.method] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "switchboard",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A real-time hub between VAPI voice assistants, browser chat and live supervisors. Errors are {\"error\":{\"code\",\"message\"}}; the README describes every body.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": { "type": "http", "scheme": "bearer", "description": "An API token (`switchboard token create`): supervisor or admin, scoped to orgs" },
                "vapi": { "type": "apiKey", "in": "header", "name": "x-vapi-secret", "description": "Or Authorization: Bearer, or HMAC signature headers, as configured" },
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message"],
                        "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } },
                },
            },
        },
    })
}

fn operation(route: &Route) -> Value {
    let params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    let error =
        json!({ "description": "An error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let mut op = json!({
        "tags": [route.tag],
        "summary": route.summary,
        "operationId": format!("{}_{}", route.method, route.path.trim_matches('/').replace(['/', '{', '}', '.'], "_")),
        "responses": { route.ok.0.to_string(): { "description": route.ok.1 }, "4XX": error.clone(), "5XX": error },
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    match route.who {
        Who::Supervisor | Who::Admin | Who::AnyToken => op["security"] = json!([{ "token": [] }]),
        Who::Vapi => op["security"] = json!([{ "vapi": [] }, {}]),
        Who::Browser => op["security"] = json!([{}, { "token": [] }]),
        Who::Anyone => {}
    }
    if route.who == Who::Admin {
        op["description"] = json!("Admin tokens only: a supervisor token gets 403.");
    }
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_once_with_its_path_parameters() {
        let doc = document();
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "{} {} twice", r.method, r.path);
            let op = &doc["paths"][r.path][r.method];
            assert_eq!(op["summary"], r.summary);
            let braces = r.path.matches('{').count();
            assert_eq!(op["parameters"].as_array().map_or(0, Vec::len), braces, "{}", r.path);
        }
    }
}
