-- Calls, transcripts, function invocations, the raw webhook log, recordings, API tokens.
-- Times are milliseconds since the Unix epoch (INTEGER), JSON is TEXT.

CREATE TABLE calls (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    assistant_id    TEXT,
    call_type       TEXT,
    customer_number TEXT,
    phone_number    TEXT,
    status          TEXT NOT NULL,
    status_rank     INTEGER NOT NULL,
    status_at       INTEGER,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    ended_at        INTEGER,
    ended_reason    TEXT,
    cost            REAL,
    cost_breakdown  TEXT,
    summary         TEXT,
    analysis        TEXT,
    metadata        TEXT,
    control_url     TEXT,
    listen_url      TEXT,
    last_event_at   INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX calls_by_created ON calls (created_at DESC, id DESC);
CREATE INDEX calls_by_org_created ON calls (org_id, created_at DESC, id DESC);
CREATE INDEX calls_by_status ON calls (status, created_at DESC);

CREATE TABLE transcript_segments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id    TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    text       TEXT NOT NULL,
    spoken_at  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX transcript_by_call ON transcript_segments (call_id, spoken_at, id);

CREATE TABLE function_invocations (
    tool_call_id TEXT PRIMARY KEY,
    call_id      TEXT,
    org_id       TEXT NOT NULL,
    name         TEXT NOT NULL,
    arguments    TEXT NOT NULL,
    status       TEXT NOT NULL,
    result       TEXT,
    error        TEXT,
    latency_ms   REAL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    lease_until  INTEGER NOT NULL
);
CREATE INDEX invocations_by_call ON function_invocations (call_id, started_at);

CREATE TABLE webhook_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id     TEXT,
    org_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    message_ts  INTEGER,
    dedup_key   TEXT NOT NULL UNIQUE,
    payload     TEXT NOT NULL
);
CREATE INDEX webhook_events_by_received ON webhook_events (received_at);
CREATE INDEX webhook_events_by_call ON webhook_events (call_id, received_at);

CREATE TABLE recordings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id    TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    source_url TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (call_id, kind)
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    orgs       TEXT NOT NULL,
    label      TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
