-- The audit trail of live call control: one row per action a supervisor sent (or tried to
-- send) to a call's VAPI control URL. Written before the request goes out and completed after,
-- so an attempt interrupted by a crash still shows, as `pending`.
-- Times are milliseconds since the Unix epoch (INTEGER), JSON is TEXT.

CREATE TABLE control_actions (
    id              TEXT PRIMARY KEY,
    call_id         TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    org_id          TEXT NOT NULL,
    token_id        TEXT NOT NULL,
    actor           TEXT NOT NULL,
    action_type     TEXT NOT NULL,
    action          TEXT NOT NULL,
    vapi_body       TEXT NOT NULL,
    requested_at    INTEGER NOT NULL,
    finished_at     INTEGER,
    -- pending | sent | rejected | timeout | failed | refused
    outcome         TEXT NOT NULL,
    upstream_status INTEGER,
    error           TEXT,
    latency_ms      REAL
);
CREATE INDEX control_actions_by_call ON control_actions (call_id, requested_at, id);
