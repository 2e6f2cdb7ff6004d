//! A chat answer's writes on the writer's own connection, and the reads that start it:
//! `chat_queries`' functions of the same names for this driver.

use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};

use super::{all, execute, first};
use crate::store::sanitize::{clean, sanitize_text};
use crate::store::sql;
use crate::store::types::*;

pub fn create_chat_session(c: &Connection, s: &NewChatSession) -> rusqlite::Result<()> {
    let metadata = clean(&s.metadata);
    execute(c, sql::CREATE_CHAT_SESSION, &[&s.id, &s.org_id, &s.site_key, &s.created_at, &metadata]).map(drop)
}

pub fn renew_chat_run(c: &Connection, run_id: &str, lease_until: i64) -> rusqlite::Result<bool> {
    Ok(execute(c, sql::RENEW_CHAT_RUN, &[&run_id, &lease_until])? == 1)
}

/// Takes the message's position, settles the session's running run, opens the new run,
/// stores the message. A refusal gives the position back.
pub fn start_chat_run(c: &Connection, r: &StartRun) -> rusqlite::Result<RunStart> {
    let Some(seq) = take_position(c, &r.session_id, r.now)? else { return Ok(RunStart::NoSession) };
    let mut busy = None;
    {
        let mut stmt = c.prepare_cached(sql::SETTLE_RUNNING_RUNS)?;
        super::bind(&mut stmt, &[&r.session_id, &r.now])?;
        let mut rows = stmt.raw_query();
        // More than one row only if an earlier run's lease ran out; the live one says busy.
        while let Some(row) = rows.next()? {
            if row.get_ref(1)?.as_str()? == "running" {
                busy = Some(row.get::<_, String>(0)?);
            }
        }
    }
    let refused = if let Some(run_id) = busy {
        Some(RunStart::Busy { run_id })
    } else if seq + 1 > r.max_messages {
        // The answer needs a place too: a session one short of its maximum is full.
        Some(RunStart::Full)
    } else {
        let opened = execute(c, sql::INSERT_CHAT_RUN, &[&r.run_id, &r.session_id, &r.now, &r.lease_until])?;
        (opened == 0).then(|| RunStart::Busy { run_id: String::new() })
    };
    if let Some(refused) = refused {
        execute(c, sql::GIVE_BACK_POSITION, &[&r.session_id])?;
        return Ok(refused);
    }
    insert_message(c, &r.session_id, seq, &r.message)?;
    if let Some(follow_ups) = &r.follow_ups {
        super::jobs::enqueue_all(c, &follow_ups.jobs(&seq))?;
    }
    Ok(RunStart::Started { message_seq: seq })
}

/// Stores what a run produced and closes it; `false` (and nothing stored) when the run is no
/// longer running (it was declared abandoned meanwhile).
pub fn finish_chat_run(c: &Connection, f: &FinishRun) -> rusqlite::Result<bool> {
    let (reason, error) = (clean(&f.finish_reason), clean(&f.error));
    let values: [&dyn ToSql; 8] =
        [&f.run_id, &f.status, &reason, &f.prompt_tokens, &f.completion_tokens, &f.error_code, &error, &f.finished_at];
    // Counted even when the run was declared abandoned meanwhile: its tokens were spent.
    if f.charged_tokens > 0 {
        let day = ChatUsage::day(f.finished_at);
        for (scope, key) in ChatUsage::scopes(f) {
            execute(c, sql::ADD_CHAT_USAGE, &[&scope, &key, &day, &f.charged_tokens])?;
        }
    }
    if execute(c, sql::FINISH_CHAT_RUN, &values)? == 0 {
        return Ok(false);
    }
    for m in &f.messages {
        if let Some(seq) = take_position(c, &f.session_id, m.created_at)? {
            insert_message(c, &f.session_id, seq, m)?;
        }
    }
    super::jobs::enqueue_all(c, &f.announce)?;
    Ok(true)
}

/// Tokens spent outside a session, counted for all chat.
pub fn add_chat_usage(c: &Connection, day: i64, tokens: i64) -> rusqlite::Result<()> {
    execute(c, sql::ADD_CHAT_USAGE, &[&"all", &"", &day, &tokens]).map(drop)
}

/// Today's token counts of the budgets a new message of this session is checked against.
pub fn chat_usage(c: &Connection, day: i64, session_id: &str) -> rusqlite::Result<ChatUsage> {
    all(c, sql::CHAT_USAGE, &[&day, &session_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map(ChatUsage::from_rows)
}

/// The session's next message position; `None` if the session is gone.
fn take_position(c: &Connection, session_id: &str, now: i64) -> rusqlite::Result<Option<i64>> {
    first(c, sql::TAKE_MESSAGE_POSITION, &[&session_id, &now], |row| row.get(0))
}

fn insert_message(c: &Connection, session_id: &str, seq: i64, m: &NewChatMessage) -> rusqlite::Result<()> {
    let content = sanitize_text(&m.content);
    let (reason, tool_calls, tool_call_id, name) = (clean(&m.finish_reason), clean(&m.tool_calls), clean(&m.tool_call_id), clean(&m.name));
    let values: [&dyn ToSql; 12] =
        [&m.id, &session_id, &seq, &m.role, &content, &m.status, &m.run_id, &reason, &tool_calls, &tool_call_id, &name, &m.created_at];
    execute(c, sql::INSERT_CHAT_MESSAGE, &values).map(drop)
}

pub fn get_chat_session(c: &Connection, id: &str) -> rusqlite::Result<Option<ChatSessionRow>> {
    first(c, sql::GET_CHAT_SESSION, &[&id], |r| {
        Ok(ChatSessionRow {
            id: r.get(0)?,
            org_id: r.get(1)?,
            site_key: r.get(2)?,
            created_at: r.get(3)?,
            updated_at: r.get(4)?,
            message_count: r.get(5)?,
            active_run_id: r.get(6)?,
        })
    })
}

pub fn chat_messages(c: &Connection, session_id: &str) -> rusqlite::Result<Vec<ChatMessageRow>> {
    all(c, sql::CHAT_MESSAGES, &[&session_id], message_row)
}

pub fn active_chat_run(c: &Connection, session_id: &str, now: i64) -> rusqlite::Result<Option<ChatRunRow>> {
    first(c, sql::ACTIVE_CHAT_RUN, &[&session_id, &now], |r| {
        Ok(ChatRunRow {
            id: r.get(0)?,
            session_id: r.get(1)?,
            status: r.get(2)?,
            started_at: r.get(3)?,
            lease_until: r.get(4)?,
            finished_at: r.get(5)?,
            finish_reason: r.get(6)?,
            prompt_tokens: r.get(7)?,
            completion_tokens: r.get(8)?,
            error_code: r.get(9)?,
            error: r.get(10)?,
        })
    })
}

/// A `chat_messages` row in `sql::CHAT_MESSAGE_COLUMNS` order.
fn message_row(r: &Row<'_>) -> rusqlite::Result<ChatMessageRow> {
    Ok(ChatMessageRow {
        id: r.get(0)?,
        session_id: r.get(1)?,
        seq: r.get(2)?,
        role: r.get(3)?,
        content: r.get(4)?,
        status: r.get(5)?,
        run_id: r.get(6)?,
        finish_reason: r.get(7)?,
        tool_calls: r.get(8)?,
        tool_call_id: r.get(9)?,
        name: r.get(10)?,
        created_at: r.get(11)?,
    })
}
