-- Durable jobs: work the hub does in the background (later: recording downloads, outgoing
-- webhooks, retention, reconciliation), run at least once and, while a worker holds a valid
-- lease, by that worker only. Times are milliseconds since the Unix epoch.

CREATE TABLE jobs (
    -- UUIDv7: ordered by creation, the admin list's cursor
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    -- JSON text handed to the kind's handler
    payload      TEXT NOT NULL,
    -- queued | running | done | dead | cancelled
    status       TEXT NOT NULL,
    -- claims so far (a claim whose worker died counts too)
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    -- queued: not before this; the next retry's time after a failure
    run_at       BIGINT NOT NULL,
    -- running: the worker holds it until then, renewing while the handler runs
    lease_until  BIGINT,
    locked_by    TEXT,
    last_error   TEXT,
    -- at most one job per key, ever (a schedule's slot, an event's delivery)
    dedup_key    TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key) WHERE dedup_key IS NOT NULL;
-- The claim: a kind's due queued jobs, and its running ones (limit count, expired leases).
CREATE INDEX jobs_claim ON jobs (kind, status, run_at);
CREATE INDEX jobs_by_status ON jobs (status, id);
