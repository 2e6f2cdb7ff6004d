//! The text of the statements a stored webhook, a tool call, a chat answer and a job run, for
//! the two drivers that run them: sqlx (both engines, `queries.rs`, `chat_queries.rs`, `job_queries.rs`) and the SQLite writer's own connection
//! (`sqlite_direct/`). Placeholders are `$n`: sqlx binds them by number, rusqlite by name (see
//! `sqlite_direct::bind`).

macro_rules! call_columns {
    () => {
        "id, org_id, assistant_id, call_type, customer_number, phone_number, status, \
         status_rank, status_at, created_at, started_at, ended_at, ended_reason, cost, cost_breakdown, summary, \
         analysis, metadata, control_url, listen_url, last_event_at, updated_at, assistant_name"
    };
}

macro_rules! invocation_columns {
    () => {
        "tool_call_id, call_id, org_id, name, arguments, status, result, error, latency_ms, started_at, finished_at, lease_until"
    };
}

macro_rules! chat_session_columns {
    () => {
        "s.id, s.org_id, s.site_key, s.created_at, s.updated_at, s.message_count, \
         (SELECT r.id FROM chat_runs r WHERE r.session_id = s.id AND r.status = 'running') AS active_run_id"
    };
}

macro_rules! chat_message_columns {
    () => {
        "id, session_id, seq, role, content, status, run_id, finish_reason, tool_calls, tool_call_id, name, created_at"
    };
}

macro_rules! chat_run_columns {
    () => {
        "id, session_id, status, started_at, lease_until, finished_at, finish_reason, prompt_tokens, \
         completion_tokens, error_code, error"
    };
}

macro_rules! job_columns {
    () => {
        "id, kind, payload, status, attempts, max_attempts, run_at, lease_until, locked_by, last_error, \
         dedup_key, created_at, updated_at, finished_at"
    };
}

/// Claims up to `$3` due jobs of a kind (and running ones whose lease passed: a worker that
/// stopped renewing). `$lock` is what keeps concurrent claims apart: nothing on SQLite (one
/// writer), `FOR UPDATE SKIP LOCKED` on Postgres.
macro_rules! claim_jobs_sql {
    ($lock:literal) => {
        concat!(
            "WITH picked AS (SELECT id FROM jobs WHERE kind = $1 \
               AND ((status = 'queued' AND run_at <= $2) OR (status = 'running' AND lease_until < $2)) \
               ORDER BY run_at, id LIMIT $3",
            $lock,
            ") UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_until = $4, locked_by = $5, updated_at = $2 \
             WHERE id IN (SELECT id FROM picked) RETURNING ",
            $crate::store::sql::job_columns!()
        )
    };
}
pub(crate) use {claim_jobs_sql, job_columns};

pub const CALL_COLUMNS: &str = call_columns!();
pub const JOB_COLUMNS: &str = job_columns!();
pub const INVOCATION_COLUMNS: &str = invocation_columns!();

pub const CHAT_SESSION_COLUMNS: &str = chat_session_columns!();
pub const CHAT_MESSAGE_COLUMNS: &str = chat_message_columns!();
pub const CHAT_RUN_COLUMNS: &str = chat_run_columns!();

pub const GET_CALL: &str = concat!("SELECT ", call_columns!(), " FROM calls WHERE id = $1");
pub const GET_INVOCATION: &str = concat!("SELECT ", invocation_columns!(), " FROM function_invocations WHERE tool_call_id = $1");

/// A message that names no call: only logged. No row changed: a redelivery.
pub const INSERT_RAW: &str = "INSERT INTO webhook_events (call_id, org_id, kind, received_at, message_ts, dedup_key, payload) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup_key) DO NOTHING";

/// Logs the message and answers, for a new one: whose call is it, and does this message add
/// anything to it? (Most messages repeat the call.) No row back: a redelivery.
pub const LOG_AND_CHECK_CALL: &str = "INSERT INTO webhook_events (call_id, org_id, kind, received_at, message_ts, dedup_key, payload) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup_key) DO NOTHING \
     RETURNING (SELECT org_id FROM calls WHERE id = $8) AS org_id, \
       (SELECT CASE WHEN (assistant_id IS NULL AND $9 IS NOT NULL) OR (call_type IS NULL AND $10 IS NOT NULL) \
       OR (customer_number IS NULL AND $11 IS NOT NULL) OR (phone_number IS NULL AND $12 IS NOT NULL) \
       OR ($13 IS NOT NULL AND (control_url IS NULL OR control_url <> $13)) \
       OR ($14 IS NOT NULL AND (listen_url IS NULL OR listen_url <> $14)) \
       OR ($15 IS NOT NULL AND (metadata IS NULL OR metadata <> $15)) \
       OR ($16 IS NOT NULL AND (assistant_name IS NULL OR assistant_name <> $16)) THEN 1 ELSE 0 END \
       FROM calls WHERE id = $8) AS stale";

/// Inserts the call or fills in what an earlier message did not know. Identity fields keep
/// their first value; control/listen URLs take the newest.
pub const UPSERT_CALL: &str = "INSERT INTO calls (id, org_id, assistant_id, call_type, customer_number, phone_number, status, \
     status_rank, created_at, control_url, listen_url, metadata, last_event_at, updated_at, assistant_name) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14) \
     ON CONFLICT (id) DO UPDATE SET \
       assistant_id = COALESCE(calls.assistant_id, excluded.assistant_id), \
       assistant_name = COALESCE(excluded.assistant_name, calls.assistant_name), \
       call_type = COALESCE(calls.call_type, excluded.call_type), \
       customer_number = COALESCE(calls.customer_number, excluded.customer_number), \
       phone_number = COALESCE(calls.phone_number, excluded.phone_number), \
       control_url = COALESCE(excluded.control_url, calls.control_url), \
       listen_url = COALESCE(excluded.listen_url, calls.listen_url), \
       metadata = COALESCE(excluded.metadata, calls.metadata), \
       last_event_at = CASE WHEN excluded.last_event_at > calls.last_event_at \
                            THEN excluded.last_event_at ELSE calls.last_event_at END";

/// Moves the status forward only: an update of lower rank, or older than the status it would
/// replace, is out of order and ignored; an ended call stays ended (and `ended` always
/// applies). The one step back allowed is forwarding → in-progress when newer (a transfer that
/// did not happen).
pub const APPLY_STATUS: &str = "UPDATE calls SET status = $2, status_rank = $3, status_at = $4, \
       ended_reason = COALESCE($5, ended_reason), \
       started_at = CASE WHEN $2 = 'in-progress' AND started_at IS NULL THEN $4 ELSE started_at END, \
       ended_at = CASE WHEN $3 >= $6 AND ended_at IS NULL THEN $4 ELSE ended_at END, \
       updated_at = $7 \
     WHERE id = $1 AND status_rank < $6 AND ($3 >= $6 \
       OR (status_rank < $3 AND $4 >= COALESCE(status_at, 0)) \
       OR (status = 'forwarding' AND $2 = 'in-progress' AND $4 > COALESCE(status_at, 0)))";

/// The same status again, newer: remember when, so an older update cannot follow it.
pub const TOUCH_STATUS_AT: &str = "UPDATE calls SET status_at = $3 WHERE id = $1 AND status = $2 AND $3 > COALESCE(status_at, 0)";

/// The end-of-call report completes the record whatever order things arrived in.
pub const APPLY_END_REPORT: &str = "UPDATE calls SET status = 'ended', status_rank = $2, \
       status_at = CASE WHEN status_rank < $2 THEN $3 ELSE status_at END, \
       ended_reason = COALESCE($4, ended_reason), \
       started_at = COALESCE($5, started_at), ended_at = $3, \
       cost = COALESCE($6, cost), cost_breakdown = COALESCE($7, cost_breakdown), \
       summary = COALESCE($8, summary), analysis = COALESCE($9, analysis), updated_at = $10 \
     WHERE id = $1";

pub const INSERT_RECORDING: &str = "INSERT INTO recordings (call_id, kind, source_url, state, created_at, updated_at) \
     VALUES ($1, $2, $3, 'pending', $4, $4) ON CONFLICT (call_id, kind) DO NOTHING RETURNING id";

pub const INSERT_SEGMENT: &str = "INSERT INTO transcript_segments (call_id, role, text, spoken_at, created_at) \
     VALUES ($1, $2, $3, $4, $5) RETURNING id";

/// Insert-if-absent is the claim.
pub const CLAIM_INVOCATION: &str = "INSERT INTO function_invocations (tool_call_id, call_id, org_id, name, arguments, status, started_at, lease_until) \
     VALUES ($1, $2, $3, $4, $5, 'running', $6, $7) ON CONFLICT (tool_call_id) DO NOTHING";

/// A running claim whose lease ran out is taken over.
pub const TAKE_OVER_INVOCATION: &str = "UPDATE function_invocations SET started_at = $2, lease_until = $3 \
     WHERE tool_call_id = $1 AND status = 'running' AND lease_until < $2";

/// The result, written only over its own claim (same `started_at`, still running); a claim that
/// is gone altogether (rolled back with a failed batch after it was seen) is written whole.
pub const FINISH_INVOCATION: &str = "INSERT INTO function_invocations \
     (tool_call_id, call_id, org_id, name, arguments, status, result, error, latency_ms, started_at, finished_at, lease_until) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (tool_call_id) DO UPDATE SET status = excluded.status, result = excluded.result, error = excluded.error, \
       latency_ms = excluded.latency_ms, finished_at = excluded.finished_at \
     WHERE function_invocations.status = 'running' AND function_invocations.started_at = excluded.started_at";

pub const CREATE_CHAT_SESSION: &str = "INSERT INTO chat_sessions (id, org_id, site_key, created_at, updated_at, message_count, metadata) \
     VALUES ($1, $2, $3, $4, $4, 0, $5)";

/// Extends a running run's lease; no row changed when it is no longer running.
pub const RENEW_CHAT_RUN: &str = "UPDATE chat_runs SET lease_until = $2 WHERE id = $1 AND status = 'running'";

/// A session's messages are numbered by its `message_count`: this takes the next number (and,
/// on Postgres, locks the session row, so concurrent starts on one session queue here).
pub const TAKE_MESSAGE_POSITION: &str =
    "UPDATE chat_sessions SET message_count = message_count + 1, updated_at = $2 WHERE id = $1 RETURNING message_count";

/// Gives back a position taken by a start that was refused.
pub const GIVE_BACK_POSITION: &str = "UPDATE chat_sessions SET message_count = message_count - 1 WHERE id = $1";

/// A running run whose lease ran out is declared abandoned; one still alive makes the session
/// busy. One statement does both and says which.
pub const SETTLE_RUNNING_RUNS: &str = "UPDATE chat_runs SET \
       status = CASE WHEN lease_until < $2 THEN 'failed' ELSE status END, \
       error_code = CASE WHEN lease_until < $2 THEN 'abandoned' ELSE error_code END, \
       error = CASE WHEN lease_until < $2 \
         THEN 'The instance running this answer stopped before it finished.' ELSE error END, \
       finished_at = CASE WHEN lease_until < $2 THEN $2 ELSE finished_at END \
     WHERE session_id = $1 AND status = 'running' RETURNING id, status";

pub const INSERT_CHAT_RUN: &str = "INSERT INTO chat_runs (id, session_id, status, started_at, lease_until) VALUES ($1, $2, 'running', $3, $4) \
     ON CONFLICT DO NOTHING";

pub const INSERT_CHAT_MESSAGE: &str = "INSERT INTO chat_messages (id, session_id, seq, role, content, status, run_id, finish_reason, tool_calls, \
     tool_call_id, name, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Closes a run; no row changed when it is no longer running (declared abandoned meanwhile).
pub const FINISH_CHAT_RUN: &str = "UPDATE chat_runs SET status = $2, finish_reason = $3, prompt_tokens = $4, completion_tokens = $5, \
     error_code = $6, error = $7, finished_at = $8 WHERE id = $1 AND status = 'running'";

/// Adds a run's tokens to one budget's count for the day.
pub const ADD_CHAT_USAGE: &str = "INSERT INTO chat_usage (scope, key, day, tokens) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (scope, key, day) DO UPDATE SET tokens = chat_usage.tokens + excluded.tokens";

/// A day's counts of a session, its site key (`''` for sessions of no widget) and all chat:
/// three key lookups, with the session's site key read in the same statement.
pub const CHAT_USAGE: &str = "SELECT scope, tokens FROM chat_usage WHERE day = $1 \
     AND ((scope = 'session' AND key = $2) OR (scope = 'all' AND key = '') \
     OR (scope = 'site' AND key = COALESCE((SELECT site_key FROM chat_sessions WHERE id = $2), '')))";

pub const GET_CHAT_SESSION: &str = concat!("SELECT ", chat_session_columns!(), " FROM chat_sessions s WHERE s.id = $1");
pub const CHAT_MESSAGES: &str = concat!("SELECT ", chat_message_columns!(), " FROM chat_messages WHERE session_id = $1 ORDER BY seq");

/// The session's running run, unless its lease ran out (its instance died).
pub const ACTIVE_CHAT_RUN: &str =
    concat!("SELECT ", chat_run_columns!(), " FROM chat_runs WHERE session_id = $1 AND status = 'running' AND lease_until >= $2");

pub const ENQUEUE_JOB: &str = concat!(
    "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, dedup_key, created_at, updated_at) \
     VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING RETURNING ",
    job_columns!()
);
pub const JOB_BY_DEDUP_KEY: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE dedup_key = $1");

/// A worker that died during the last attempt leaves nothing to retry: dead, not run once more
/// than allowed.
pub const BURY_ABANDONED_JOBS: &str = "UPDATE jobs SET status = 'dead', lease_until = NULL, finished_at = $2, updated_at = $2, \
     last_error = 'The worker running the last attempt stopped before it finished (lease expired).' \
     WHERE kind = $1 AND status = 'running' AND lease_until < $2 AND attempts >= max_attempts";
pub const COUNT_RUNNING_JOBS: &str = "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND status = 'running' AND lease_until >= $2";
pub const CLAIM_JOBS: &str = claim_jobs_sql!("");

pub const COMPLETE_JOB: &str = "UPDATE jobs SET status = 'done', lease_until = NULL, finished_at = $4, updated_at = $4 \
     WHERE id = $1 AND status = 'running' AND locked_by = $2 AND attempts = $3";

/// Queued again for `$5`, or dead once its attempts are used up; the new status comes back.
pub const FAIL_JOB: &str = "UPDATE jobs SET \
       status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
       run_at = CASE WHEN attempts >= max_attempts THEN run_at ELSE $5 END, \
       finished_at = CASE WHEN attempts >= max_attempts THEN $6 ELSE NULL END, \
       lease_until = NULL, last_error = $4, updated_at = $6 \
     WHERE id = $1 AND status = 'running' AND locked_by = $2 AND attempts = $3 RETURNING status";

pub const RENEW_JOB: &str = "UPDATE jobs SET lease_until = $4, updated_at = $5 \
     WHERE id = $1 AND status = 'running' AND locked_by = $2 AND attempts = $3";
