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
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    -- set while the endpoint is disabled (410 Gone, too many failures); cleared by an admin
    disabled_at          BIGINT,
    disabled_reason      TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id          BIGSERIAL PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_type  TEXT NOT NULL,
    -- the webhook-id header: the same for every attempt of one event
    webhook_id  TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    -- NULL when no response arrived (connection refused, timeout, address refused)
    status_code BIGINT,
    duration_ms BIGINT NOT NULL,
    error       TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
