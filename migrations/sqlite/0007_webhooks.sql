-- Outgoing webhooks: endpoints admins register, and the log of every delivery attempt.
-- Deliveries themselves run as `webhook.deliver` jobs. Times are milliseconds since the epoch.

CREATE TABLE webhook_endpoints (
    -- UUIDv7
    id                   TEXT PRIMARY KEY,
    url                  TEXT NOT NULL,
    -- JSON array of event names, or ["*"]
    events               TEXT NOT NULL,
    -- whsec_<base64>: the HMAC key of the signatures (needed to sign, so kept as is)
    secret               TEXT NOT NULL,
    description          TEXT,
    -- failed attempts since the last success, across all of the endpoint's events
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    -- set while the endpoint is disabled (410 Gone, too many failures); cleared by an admin
    disabled_at          INTEGER,
    disabled_reason      TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL,
    -- the webhook-id header: the same for every attempt of one event
    webhook_id  TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    -- NULL when no response arrived (connection refused, timeout, address refused)
    status_code INTEGER,
    duration_ms INTEGER NOT NULL,
    error       TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
