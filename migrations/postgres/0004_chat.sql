-- Chat: sessions a browser opened, their messages, and the runs (one model answer each, with
-- any tool rounds) the hub owns. At most one run per session is `running`: the partial unique
-- index makes every instance agree on that. Times are milliseconds since the Unix epoch.

CREATE TABLE chat_sessions (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL,
    site_key      TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    message_count BIGINT NOT NULL DEFAULT 0,
    metadata      TEXT
);
CREATE INDEX chat_sessions_by_update ON chat_sessions (updated_at, id);

CREATE TABLE chat_runs (
    id                TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    -- running | done | stopped | failed
    status            TEXT NOT NULL,
    started_at        BIGINT NOT NULL,
    lease_until       BIGINT NOT NULL,
    finished_at       BIGINT,
    finish_reason     TEXT,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    error_code        TEXT,
    error             TEXT
);
CREATE UNIQUE INDEX chat_runs_one_running ON chat_runs (session_id) WHERE status = 'running';
CREATE INDEX chat_runs_by_session ON chat_runs (session_id, started_at);

CREATE TABLE chat_messages (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    -- position in the session, from 1
    seq           BIGINT NOT NULL,
    -- user | assistant | tool
    role          TEXT NOT NULL,
    content       TEXT NOT NULL,
    -- complete | stopped | failed
    status        TEXT NOT NULL,
    run_id        TEXT,
    finish_reason TEXT,
    -- assistant: the tool calls it asked for (JSON); tool: the call it answers
    tool_calls    TEXT,
    tool_call_id  TEXT,
    name          TEXT,
    created_at    BIGINT NOT NULL,
    UNIQUE (session_id, seq)
);
