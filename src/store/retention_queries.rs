//! Retention's SQL for both engines: deletes in small batches (`id IN (SELECT … LIMIT n)`, which
//! both engines accept), each its own short transaction, so a cleanup of a large backlog never
//! holds SQLite's single writer or a Postgres lock for long.

macro_rules! retention_queries {
    ($db:ty, $conn:ty) => {
        /// Raw webhook events received before `cutoff`.
        pub async fn prune_raw_events(c: &mut $conn, cutoff: i64, batch: i64) -> sqlx::Result<u64> {
            let r = sqlx::query(
                "DELETE FROM webhook_events WHERE id IN (SELECT id FROM webhook_events WHERE received_at < $1 ORDER BY id LIMIT $2)",
            )
            .bind(cutoff)
            .bind(batch)
            .execute(&mut *c)
            .await?;
            Ok(r.rows_affected())
        }

        /// Transcript segments of calls that ended (or were last heard of) before `cutoff`.
        pub async fn prune_transcripts(c: &mut $conn, cutoff: i64, batch: i64) -> sqlx::Result<u64> {
            let r = sqlx::query(
                "DELETE FROM transcript_segments WHERE id IN (SELECT s.id FROM transcript_segments s JOIN calls k ON k.id = s.call_id \
                 WHERE COALESCE(k.ended_at, k.updated_at) < $1 ORDER BY s.id LIMIT $2)",
            )
            .bind(cutoff)
            .bind(batch)
            .execute(&mut *c)
            .await?;
            Ok(r.rows_affected())
        }

        /// Chat sessions (their messages and runs go with them) idle since before `cutoff` and
        /// with no answer being generated; returns (sessions, messages) removed.
        pub async fn prune_chats(c: &mut $conn, cutoff: i64, batch: i64) -> sqlx::Result<(u64, u64)> {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM chat_sessions s WHERE updated_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM chat_runs r WHERE r.session_id = s.id AND r.status = 'running') ORDER BY id LIMIT $2",
            )
            .bind(cutoff)
            .bind(batch)
            .fetch_all(&mut *c)
            .await?;
            let (mut sessions, mut messages) = (0, 0);
            for id in &ids {
                messages += sqlx::query("DELETE FROM chat_messages WHERE session_id = $1").bind(id).execute(&mut *c).await?.rows_affected();
                sqlx::query("DELETE FROM chat_runs WHERE session_id = $1").bind(id).execute(&mut *c).await?;
                sessions += sqlx::query("DELETE FROM chat_sessions WHERE id = $1").bind(id).execute(&mut *c).await?.rows_affected();
            }
            // Budgets read only today's counts; older days are kept as long as the chats.
            sqlx::query("DELETE FROM chat_usage WHERE day < $1").bind(ChatUsage::day(cutoff)).execute(&mut *c).await?;
            Ok((sessions, messages))
        }

        /// Stored recordings of calls that ended before `cutoff`, oldest first.
        pub async fn expired_recordings(c: &mut $conn, cutoff: i64, batch: i64) -> sqlx::Result<Vec<RecordingRow>> {
            sqlx::query_as::<_, RecordingRow>(
                "SELECT r.id, r.call_id, r.kind, r.source_url, r.state, r.created_at, r.size_bytes, r.sha256, r.content_type, r.path, r.reason \
                 FROM recordings r JOIN calls k ON k.id = r.call_id \
                 WHERE r.state = 'ready' AND COALESCE(k.ended_at, k.updated_at) < $1 ORDER BY r.id LIMIT $2",
            )
            .bind(cutoff)
            .bind(batch)
            .fetch_all(&mut *c)
            .await
        }

        /// The file is gone: the row stays (the call's history shows it existed) as `deleted`.
        pub async fn mark_recording_deleted(c: &mut $conn, id: i64, now: i64) -> sqlx::Result<()> {
            sqlx::query("UPDATE recordings SET state = 'deleted', path = NULL, reason = 'removed by retention', updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *c)
                .await?;
            Ok(())
        }

        /// Jobs finished (`done`, `dead`, `cancelled`) before `cutoff`.
        pub async fn prune_jobs(c: &mut $conn, cutoff: i64, batch: i64) -> sqlx::Result<u64> {
            let r = sqlx::query(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status IN ('done', 'dead', 'cancelled') \
                 AND finished_at < $1 ORDER BY finished_at LIMIT $2)",
            )
            .bind(cutoff)
            .bind(batch)
            .execute(&mut *c)
            .await?;
            Ok(r.rows_affected())
        }
    };
}

pub(crate) use retention_queries;
