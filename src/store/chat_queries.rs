//! Chat SQL for both engines, instantiated next to `shared_queries` (same `$n` placeholders,
//! same portable SQL). A session's messages are numbered by its `message_count`, which every
//! append bumps; that row update also serialises concurrent writers to one session.

macro_rules! chat_queries {
    ($db:ty, $conn:ty) => {
        use crate::store::sql::{
            CHAT_MESSAGE_COLUMNS as MESSAGE_COLUMNS, CHAT_RUN_COLUMNS as RUN_COLUMNS, CHAT_SESSION_COLUMNS as SESSION_COLUMNS,
        };

        pub async fn create_chat_session(c: &mut $conn, s: &NewChatSession) -> sqlx::Result<()> {
            sqlx::query(sql::CREATE_CHAT_SESSION)
                .bind(&s.id)
                .bind(&s.org_id)
                .bind(&s.site_key)
                .bind(s.created_at)
                .bind(clean(&s.metadata))
                .execute(&mut *c)
                .await?;
            Ok(())
        }

        pub async fn get_chat_session(c: &mut $conn, id: &str) -> sqlx::Result<Option<ChatSessionRow>> {
            sqlx::query_as::<_, ChatSessionRow>(sql::GET_CHAT_SESSION).bind(id).fetch_optional(&mut *c).await
        }

        /// Sessions heard from since `since`, newest first.
        pub async fn recent_chat_sessions(c: &mut $conn, scope: &OrgScope, since: i64, limit: i64) -> sqlx::Result<Vec<ChatSessionRow>> {
            let mut qb = QueryBuilder::<$db>::new(format!("SELECT {SESSION_COLUMNS} FROM chat_sessions s WHERE s.updated_at >= "));
            qb.push_bind(since);
            if !push_scope(&mut qb, scope, "s.org_id") {
                return Ok(Vec::new());
            }
            qb.push(" ORDER BY s.updated_at DESC, s.id DESC LIMIT ").push_bind(limit);
            qb.build_query_as::<ChatSessionRow>().fetch_all(&mut *c).await
        }

        pub async fn chat_messages(c: &mut $conn, session_id: &str) -> sqlx::Result<Vec<ChatMessageRow>> {
            sqlx::query_as::<_, ChatMessageRow>(sql::CHAT_MESSAGES).bind(session_id).fetch_all(&mut *c).await
        }

        pub async fn chat_run(c: &mut $conn, run_id: &str) -> sqlx::Result<Option<ChatRunRow>> {
            sqlx::query_as::<_, ChatRunRow>(&format!("SELECT {RUN_COLUMNS} FROM chat_runs WHERE id = $1"))
                .bind(run_id)
                .fetch_optional(&mut *c)
                .await
        }

        pub async fn active_chat_run(c: &mut $conn, session_id: &str, now: i64) -> sqlx::Result<Option<ChatRunRow>> {
            sqlx::query_as::<_, ChatRunRow>(sql::ACTIVE_CHAT_RUN).bind(session_id).bind(now).fetch_optional(&mut *c).await
        }

        /// Extends a running run's lease; `false` when it is no longer running (declared abandoned).
        pub async fn renew_chat_run(c: &mut $conn, run_id: &str, lease_until: i64) -> sqlx::Result<bool> {
            let r = sqlx::query(sql::RENEW_CHAT_RUN).bind(run_id).bind(lease_until).execute(&mut *c).await?;
            Ok(r.rows_affected() == 1)
        }

        /// The newest message other than a tool result of each of these sessions.
        pub async fn last_chat_messages(c: &mut $conn, session_ids: &[String]) -> sqlx::Result<Vec<ChatMessageRow>> {
            if session_ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb = QueryBuilder::<$db>::new(format!(
                "SELECT {MESSAGE_COLUMNS} FROM chat_messages m WHERE m.role <> 'tool' AND m.session_id IN ("
            ));
            let mut sep = qb.separated(", ");
            for id in session_ids {
                sep.push_bind(id.clone());
            }
            qb.push(
                ") AND NOT EXISTS (SELECT 1 FROM chat_messages n WHERE n.session_id = m.session_id AND n.role <> 'tool' AND n.seq > m.seq)",
            );
            qb.build_query_as::<ChatMessageRow>().fetch_all(&mut *c).await
        }

        /// Appends one message at the session's next position; `None` if the session is gone.
        async fn append_chat_message(c: &mut $conn, session_id: &str, m: &NewChatMessage) -> sqlx::Result<Option<i64>> {
            let seq: Option<i64> =
                sqlx::query_scalar(sql::TAKE_MESSAGE_POSITION).bind(session_id).bind(m.created_at).fetch_optional(&mut *c).await?;
            let Some(seq) = seq else { return Ok(None) };
            insert_chat_message(c, session_id, seq, m).await?;
            Ok(Some(seq))
        }

        /// Stores one message at a position already taken from the session's `message_count`.
        async fn insert_chat_message(c: &mut $conn, session_id: &str, seq: i64, m: &NewChatMessage) -> sqlx::Result<()> {
            sqlx::query(sql::INSERT_CHAT_MESSAGE)
                .bind(&m.id)
                .bind(session_id)
                .bind(seq)
                .bind(&m.role)
                .bind(sanitize_text(&m.content))
                .bind(&m.status)
                .bind(&m.run_id)
                .bind(clean(&m.finish_reason))
                .bind(clean(&m.tool_calls))
                .bind(clean(&m.tool_call_id))
                .bind(clean(&m.name))
                .bind(m.created_at)
                .execute(&mut *c)
                .await?;
            Ok(())
        }

        /// Four statements on the way that starts an answer (each a round trip to Postgres):
        /// take the message's position, settle the session's running run, open the new run,
        /// store the message. A refusal gives the position back.
        pub async fn start_chat_run(c: &mut $conn, r: &StartRun) -> sqlx::Result<RunStart> {
            // Also locks the session row (Postgres), so concurrent starts on one session queue here.
            let seq: Option<i64> =
                sqlx::query_scalar(sql::TAKE_MESSAGE_POSITION).bind(&r.session_id).bind(r.now).fetch_optional(&mut *c).await?;
            let Some(seq) = seq else { return Ok(RunStart::NoSession) };
            // A running run whose lease ran out is declared abandoned; one still alive makes the
            // session busy. One statement does both and says which.
            let running: Vec<(String, String)> =
                sqlx::query_as(sql::SETTLE_RUNNING_RUNS).bind(&r.session_id).bind(r.now).fetch_all(&mut *c).await?;
            let refused = if let Some((run_id, _)) = running.into_iter().find(|(_, status)| status == "running") {
                Some(RunStart::Busy { run_id })
            } else if seq + 1 > r.max_messages {
                // The answer needs a place too: a session one short of its maximum is full.
                Some(RunStart::Full)
            } else {
                let inserted = sqlx::query(sql::INSERT_CHAT_RUN)
                    .bind(&r.run_id)
                    .bind(&r.session_id)
                    .bind(r.now)
                    .bind(r.lease_until)
                    .execute(&mut *c)
                    .await?;
                (inserted.rows_affected() == 0).then(|| RunStart::Busy { run_id: String::new() })
            };
            if let Some(refused) = refused {
                sqlx::query(sql::GIVE_BACK_POSITION).bind(&r.session_id).execute(&mut *c).await?;
                return Ok(refused);
            }
            insert_chat_message(c, &r.session_id, seq, &r.message).await?;
            if let Some(follow_ups) = &r.follow_ups {
                enqueue_all(c, &follow_ups.jobs(&seq)).await?;
            }
            Ok(RunStart::Started { message_seq: seq })
        }

        /// Stores what a run produced and closes it; `false` (and nothing stored) when the run is
        /// no longer running (it was declared abandoned meanwhile).
        pub async fn finish_chat_run(c: &mut $conn, f: &FinishRun) -> sqlx::Result<bool> {
            // Counted even when the run was declared abandoned meanwhile: its tokens were spent.
            if f.charged_tokens > 0 {
                let day = ChatUsage::day(f.finished_at);
                for (scope, key) in ChatUsage::scopes(f) {
                    sqlx::query(sql::ADD_CHAT_USAGE).bind(scope).bind(key).bind(day).bind(f.charged_tokens).execute(&mut *c).await?;
                }
            }
            let closed = sqlx::query(sql::FINISH_CHAT_RUN)
                .bind(&f.run_id)
                .bind(&f.status)
                .bind(clean(&f.finish_reason))
                .bind(f.prompt_tokens)
                .bind(f.completion_tokens)
                .bind(&f.error_code)
                .bind(clean(&f.error))
                .bind(f.finished_at)
                .execute(&mut *c)
                .await?;
            if closed.rows_affected() == 0 {
                return Ok(false);
            }
            for m in &f.messages {
                append_chat_message(c, &f.session_id, m).await?;
            }
            enqueue_all(c, &f.announce).await?;
            Ok(true)
        }

        /// Tokens spent outside a session, counted for all chat.
        pub async fn add_chat_usage(c: &mut $conn, day: i64, tokens: i64) -> sqlx::Result<()> {
            sqlx::query(sql::ADD_CHAT_USAGE).bind("all").bind("").bind(day).bind(tokens).execute(&mut *c).await?;
            Ok(())
        }

        /// Today's token counts of the budgets a new message of this session is checked against.
        pub async fn chat_usage(c: &mut $conn, day: i64, session_id: &str) -> sqlx::Result<ChatUsage> {
            let rows: Vec<(String, i64)> = sqlx::query_as(sql::CHAT_USAGE).bind(day).bind(session_id).fetch_all(&mut *c).await?;
            Ok(ChatUsage::from_rows(rows))
        }
    };
}

pub(crate) use chat_queries;
