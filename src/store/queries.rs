//! The SQL both engines share. sqlx's executors and `rows_affected` are per-driver types, so
//! this body is written once as a macro and instantiated for SQLite and for Postgres; every
//! statement uses `$n` placeholders, `ON CONFLICT` and portable functions valid in both.

macro_rules! shared_queries {
    ($db:ty, $conn:ty) => {
        use sqlx::{QueryBuilder, Row};

        use crate::store::sanitize::{clean, sanitize_text};
        use crate::store::sql::{self, CALL_COLUMNS, INVOCATION_COLUMNS};
        use crate::store::types::*;
        use crate::store::{TERMINAL_RANK, status_rank};

        /// Records the delivery; `false` means the dedup key was seen before.
        pub async fn insert_raw(c: &mut $conn, r: &RawEvent) -> sqlx::Result<bool> {
            let res = sqlx::query(sql::INSERT_RAW)
                .bind(&r.call_id)
                .bind(&r.org_id)
                .bind(&r.kind)
                .bind(r.received_at)
                .bind(r.message_ts)
                .bind(&r.dedup_key)
                .bind(sanitize_text(&r.payload))
                .execute(&mut *c)
                .await?;
            Ok(res.rows_affected() == 1)
        }

        /// Inserts the call or fills in what an earlier message did not know.
        /// Identity fields keep their first value; control/listen URLs take the newest.
        pub async fn upsert_call(c: &mut $conn, s: &CallSeen) -> sqlx::Result<()> {
            let status = s.initial_status.clone().unwrap_or_else(|| "unknown".into());
            let rank = status_rank(&status);
            sqlx::query(sql::UPSERT_CALL)
                .bind(&s.id)
                .bind(&s.org_id)
                .bind(&s.assistant_id)
                .bind(&s.call_type)
                .bind(&s.customer_number)
                .bind(&s.phone_number)
                .bind(&status)
                .bind(rank)
                .bind(s.created_at)
                .bind(&s.control_url)
                .bind(&s.listen_url)
                .bind(clean(&s.metadata))
                .bind(s.seen_at)
                .bind(&s.assistant_name)
                .execute(&mut *c)
                .await?;
            Ok(())
        }

        /// Moves the status forward only: an update of lower rank, or older than the status it
        /// would replace, is out of order and ignored; an ended call stays ended (and `ended`
        /// always applies). The one step back allowed is forwarding → in-progress when newer
        /// (a transfer that did not happen).
        pub async fn apply_status(c: &mut $conn, call_id: &str, ch: &StatusChange, now: i64) -> sqlx::Result<bool> {
            let rank = status_rank(&ch.status);
            if rank < 0 {
                return Ok(false);
            }
            let res = sqlx::query(sql::APPLY_STATUS)
                .bind(call_id)
                .bind(&ch.status)
                .bind(rank)
                .bind(ch.at)
                .bind(&ch.ended_reason)
                .bind(TERMINAL_RANK)
                .bind(now)
                .execute(&mut *c)
                .await?;
            if res.rows_affected() == 1 {
                return Ok(true);
            }
            // The same status again, newer: remember when, so an older update cannot follow it.
            sqlx::query(sql::TOUCH_STATUS_AT).bind(call_id).bind(&ch.status).bind(ch.at).execute(&mut *c).await?;
            Ok(false)
        }

        /// The end-of-call report completes the record whatever order things arrived in.
        /// Whether it moved the status, and the recordings it added.
        pub async fn apply_end_report(c: &mut $conn, call_id: &str, r: &EndReport, now: i64) -> sqlx::Result<(bool, Vec<i64>)> {
            let res = sqlx::query(sql::APPLY_END_REPORT)
                .bind(call_id)
                .bind(TERMINAL_RANK)
                .bind(r.ended_at)
                .bind(&r.ended_reason)
                .bind(r.started_at)
                .bind(r.cost)
                .bind(clean(&r.cost_breakdown))
                .bind(clean(&r.summary))
                .bind(clean(&r.analysis))
                .bind(now)
                .execute(&mut *c)
                .await?;
            let mut added = Vec::new();
            for rec in &r.recordings {
                let id: Option<i64> = sqlx::query_scalar(sql::INSERT_RECORDING)
                    .bind(call_id)
                    .bind(&rec.kind)
                    .bind(&rec.source_url)
                    .bind(now)
                    .fetch_optional(&mut *c)
                    .await?;
                added.extend(id);
            }
            Ok((res.rows_affected() == 1, added))
        }

        pub async fn insert_segment(c: &mut $conn, call_id: &str, s: &NewSegment, now: i64) -> sqlx::Result<SegmentRow> {
            let text = sanitize_text(&s.text).into_owned();
            let row = sqlx::query(sql::INSERT_SEGMENT)
                .bind(call_id)
                .bind(&s.role)
                .bind(&text)
                .bind(s.spoken_at)
                .bind(now)
                .fetch_one(&mut *c)
                .await?;
            Ok(SegmentRow { id: row.try_get("id")?, call_id: call_id.to_string(), role: s.role.clone(), text, spoken_at: s.spoken_at })
        }

        /// The whole of one message, inside the caller's transaction.
        pub async fn ingest(c: &mut $conn, i: &Ingest, now: i64) -> sqlx::Result<IngestOutcome> {
            let Some(call) = &i.call else {
                return if insert_raw(c, &i.raw).await? { applied(c, i, Applied::default()).await } else { Ok(IngestOutcome::Duplicate) };
            };
            // One statement logs the message and reads its call's owner and staleness (see
            // `sql::LOG_AND_CHECK_CALL`): one round trip fewer. No row back: a redelivery.
            let known = sqlx::query(sql::LOG_AND_CHECK_CALL)
                .bind(&i.raw.call_id)
                .bind(&i.raw.org_id)
                .bind(&i.raw.kind)
                .bind(i.raw.received_at)
                .bind(i.raw.message_ts)
                .bind(&i.raw.dedup_key)
                .bind(sanitize_text(&i.raw.payload))
                .bind(&call.id)
                .bind(&call.assistant_id)
                .bind(&call.call_type)
                .bind(&call.customer_number)
                .bind(&call.phone_number)
                .bind(&call.control_url)
                .bind(&call.listen_url)
                .bind(clean(&call.metadata))
                .bind(&call.assistant_name)
                .fetch_optional(&mut *c)
                .await?;
            let Some(known) = known else { return Ok(IngestOutcome::Duplicate) };
            let org: Option<String> = known.try_get("org_id")?;
            let owner: Option<(String, i32)> = match org {
                Some(org) => Some((org, known.try_get("stale")?)),
                None => None,
            };
            if owner.as_ref().is_some_and(|(o, _)| *o != call.org_id) {
                // A call belongs to the org that first named it; another org's message is only logged.
                return applied(c, i, Applied::default()).await;
            }
            let existed = owner.is_some();
            if owner.is_none_or(|(_, stale)| stale == 1) {
                upsert_call(c, call).await?;
            }
            let mut applied = Applied { call_created: !existed, ..Applied::default() };
            match &i.change {
                CallChange::Nothing => {}
                CallChange::Status(ch) => applied.status_changed = apply_status(c, &call.id, ch, now).await?,
                CallChange::Transcript(seg) => applied.segment = Some(insert_segment(c, &call.id, seg, now).await?),
                CallChange::Ended(r) => (applied.status_changed, applied.recordings) = apply_end_report(c, &call.id, r, now).await?,
            }
            // The row is read back only when an event will show it (created, status, end).
            if applied.call_created || applied.status_changed || matches!(i.change, CallChange::Ended(_)) {
                applied.call = get_call(c, &call.id).await?;
            }
            self::applied(c, i, applied).await
        }

        /// Enqueues the message's follow-ups in its transaction, then reports what it changed.
        async fn applied(c: &mut $conn, i: &Ingest, mut applied: Applied) -> sqlx::Result<IngestOutcome> {
            if let Some(follow_ups) = &i.follow_ups {
                applied.jobs_created = enqueue_all(c, &follow_ups.jobs(&applied)).await?;
            }
            Ok(IngestOutcome::Applied(Box::new(applied)))
        }

        /// Calls not over, created since `since` and not heard from since `before`: the ones
        /// whose end-of-call report may never have arrived (reconciliation).
        pub async fn stale_calls(c: &mut $conn, since: i64, before: i64, limit: i64) -> sqlx::Result<Vec<CallRow>> {
            sqlx::query_as::<_, CallRow>(&format!(
                "SELECT {} FROM calls WHERE status_rank < $1 AND created_at >= $2 AND last_event_at < $3 ORDER BY created_at LIMIT $4",
                CALL_COLUMNS
            ))
            .bind(TERMINAL_RANK)
            .bind(since)
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *c)
            .await
        }

        /// Outgoing webhook delivery attempts logged before `cutoff` (oldest ids first: the log
        /// is append-only, so they are also the oldest attempts).
        pub async fn prune_webhook_deliveries(c: &mut $conn, cutoff: i64, batch: i64) -> sqlx::Result<u64> {
            let r = sqlx::query(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE at < $1 ORDER BY id LIMIT $2)",
            )
            .bind(cutoff)
            .bind(batch)
            .execute(&mut *c)
            .await?;
            Ok(r.rows_affected())
        }

        pub async fn get_call(c: &mut $conn, id: &str) -> sqlx::Result<Option<CallRow>> {
            sqlx::query_as::<_, CallRow>(sql::GET_CALL).bind(id).fetch_optional(&mut *c).await
        }

        pub async fn list_calls(c: &mut $conn, scope: &OrgScope, f: &CallFilter) -> sqlx::Result<Vec<CallRow>> {
            let mut qb = QueryBuilder::<$db>::new(format!("SELECT {CALL_COLUMNS} FROM calls WHERE 1 = 1"));
            if !push_scope(&mut qb, scope, "org_id") {
                return Ok(Vec::new());
            }
            if let Some(s) = &f.status {
                qb.push(" AND status = ").push_bind(s.clone());
            }
            if let Some(a) = &f.assistant_id {
                qb.push(" AND assistant_id = ").push_bind(a.clone());
            }
            if let Some(t) = f.since {
                qb.push(" AND created_at >= ").push_bind(t);
            }
            if let Some(t) = f.until {
                qb.push(" AND created_at < ").push_bind(t);
            }
            if let Some(q) = &f.q {
                let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
                qb.push(" AND (EXISTS (SELECT 1 FROM transcript_segments t WHERE t.call_id = calls.id AND lower(t.text) LIKE ")
                    .push_bind(pattern.clone())
                    .push(" ESCAPE '\\') OR lower(COALESCE(summary, '')) LIKE ")
                    .push_bind(pattern)
                    .push(" ESCAPE '\\')");
            }
            if let Some(t) = f.live_since {
                qb.push(" AND status_rank < ").push_bind(TERMINAL_RANK).push(" AND last_event_at >= ").push_bind(t);
            }
            if let Some((created, id)) = &f.before {
                qb.push(" AND (created_at < ").push_bind(*created);
                qb.push(" OR (created_at = ").push_bind(*created);
                qb.push(" AND id < ").push_bind(id.clone()).push("))");
            }
            qb.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(f.limit);
            qb.build_query_as::<CallRow>().fetch_all(&mut *c).await
        }

        pub async fn transcript(c: &mut $conn, call_id: &str) -> sqlx::Result<Vec<SegmentRow>> {
            sqlx::query_as::<_, SegmentRow>(
                "SELECT id, call_id, role, text, spoken_at FROM transcript_segments WHERE call_id = $1 ORDER BY spoken_at, id",
            )
            .bind(call_id)
            .fetch_all(&mut *c)
            .await
        }

        /// The newest final segment of each call named.
        pub async fn last_segments(c: &mut $conn, call_ids: &[String]) -> sqlx::Result<Vec<SegmentRow>> {
            if call_ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb =
                QueryBuilder::<$db>::new("SELECT id, call_id, role, text, spoken_at FROM transcript_segments t WHERE call_id IN (");
            let mut sep = qb.separated(", ");
            for id in call_ids {
                sep.push_bind(id.clone());
            }
            qb.push(
                ") AND NOT EXISTS (SELECT 1 FROM transcript_segments u WHERE u.call_id = t.call_id \
                 AND (u.spoken_at > t.spoken_at OR (u.spoken_at = t.spoken_at AND u.id > t.id)))",
            );
            qb.build_query_as::<SegmentRow>().fetch_all(&mut *c).await
        }

        pub async fn get_invocation(c: &mut $conn, id: &str) -> sqlx::Result<Option<InvocationRow>> {
            sqlx::query_as::<_, InvocationRow>(sql::GET_INVOCATION).bind(id).fetch_optional(&mut *c).await
        }

        pub async fn invocations(c: &mut $conn, call_id: &str) -> sqlx::Result<Vec<InvocationRow>> {
            sqlx::query_as::<_, InvocationRow>(&format!(
                "SELECT {INVOCATION_COLUMNS} FROM function_invocations WHERE call_id = $1 ORDER BY started_at, tool_call_id"
            ))
            .bind(call_id)
            .fetch_all(&mut *c)
            .await
        }

        /// Insert-if-absent is the claim; a running claim whose lease ran out is taken over.
        pub async fn claim_invocation(c: &mut $conn, n: &NewInvocation) -> sqlx::Result<Claim> {
            let inserted = sqlx::query(sql::CLAIM_INVOCATION)
                .bind(&n.tool_call_id)
                .bind(&n.call_id)
                .bind(&n.org_id)
                .bind(&n.name)
                .bind(sanitize_text(&n.arguments))
                .bind(n.started_at)
                .bind(n.lease_until)
                .execute(&mut *c)
                .await?;
            if inserted.rows_affected() == 1 {
                return Ok(Claim::Claimed);
            }
            let taken = sqlx::query(sql::TAKE_OVER_INVOCATION)
                .bind(&n.tool_call_id)
                .bind(n.started_at)
                .bind(n.lease_until)
                .execute(&mut *c)
                .await?;
            if taken.rows_affected() == 1 {
                return Ok(Claim::Claimed);
            }
            match get_invocation(c, &n.tool_call_id).await? {
                Some(row) => Ok(Claim::Existing(Box::new(row))),
                None => Err(sqlx::Error::RowNotFound),
            }
        }

        pub async fn finish_invocation(c: &mut $conn, d: &Finished) -> sqlx::Result<bool> {
            let n = &d.claim;
            let done = sqlx::query(sql::FINISH_INVOCATION)
                .bind(&n.tool_call_id)
                .bind(&n.call_id)
                .bind(&n.org_id)
                .bind(&n.name)
                .bind(sanitize_text(&n.arguments))
                .bind(if d.ok { "ok" } else { "error" })
                .bind(clean(&d.result))
                .bind(clean(&d.error))
                .bind(d.latency_ms)
                .bind(n.started_at)
                .bind(d.finished_at)
                .bind(n.lease_until)
                .execute(&mut *c)
                .await?;
            let stored = done.rows_affected() == 1;
            if stored {
                enqueue_all(c, &d.announce).await?;
            }
            Ok(stored)
        }

        pub async fn recordings(c: &mut $conn, call_id: &str) -> sqlx::Result<Vec<RecordingRow>> {
            sqlx::query_as::<_, RecordingRow>(
                "SELECT id, call_id, kind, source_url, state, created_at, size_bytes, sha256, content_type, path, reason \
                 FROM recordings WHERE call_id = $1 ORDER BY kind",
            )
            .bind(call_id)
            .fetch_all(&mut *c)
            .await
        }

        pub async fn recording(c: &mut $conn, id: i64) -> sqlx::Result<Option<RecordingRow>> {
            sqlx::query_as::<_, RecordingRow>(
                "SELECT id, call_id, kind, source_url, state, created_at, size_bytes, sha256, content_type, path, reason \
                 FROM recordings WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *c)
            .await
        }

        pub async fn finish_recording(c: &mut $conn, d: &RecordingDone) -> sqlx::Result<()> {
            sqlx::query(
                "UPDATE recordings SET state = $2, size_bytes = $3, sha256 = $4, content_type = $5, path = $6, reason = $7, \
                 updated_at = $8 WHERE id = $1",
            )
            .bind(d.id)
            .bind(&d.state)
            .bind(d.size_bytes)
            .bind(&d.sha256)
            .bind(clean(&d.content_type))
            .bind(&d.path)
            .bind(clean(&d.reason))
            .bind(d.now)
            .execute(&mut *c)
            .await?;
            enqueue_all(c, &d.announce).await?;
            Ok(())
        }

        pub async fn count_raw_events(c: &mut $conn, call_id: Option<&str>) -> sqlx::Result<i64> {
            let row = match call_id {
                Some(id) => sqlx::query("SELECT COUNT(*) AS n FROM webhook_events WHERE call_id = $1").bind(id).fetch_one(&mut *c).await?,
                None => sqlx::query("SELECT COUNT(*) AS n FROM webhook_events").fetch_one(&mut *c).await?,
            };
            row.try_get("n")
        }

        pub async fn insert_token(
            c: &mut $conn,
            id: &str,
            hash: &str,
            role: &str,
            orgs: &str,
            label: Option<&str>,
            now: i64,
        ) -> sqlx::Result<()> {
            sqlx::query("INSERT INTO api_tokens (id, token_hash, role, orgs, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(id)
                .bind(hash)
                .bind(role)
                .bind(orgs)
                .bind(label)
                .bind(now)
                .execute(&mut *c)
                .await?;
            Ok(())
        }

        pub async fn find_token(c: &mut $conn, hash: &str) -> sqlx::Result<Option<TokenRow>> {
            sqlx::query_as::<_, TokenRow>("SELECT id, role, orgs, label, created_at, revoked_at FROM api_tokens WHERE token_hash = $1")
                .bind(hash)
                .fetch_optional(&mut *c)
                .await
        }

        pub async fn find_customer(c: &mut $conn, phone: Option<&str>, name: Option<&str>) -> sqlx::Result<Option<CustomerRow>> {
            if let Some(p) = phone {
                let found = sqlx::query_as::<_, CustomerRow>("SELECT phone, name, email, notes FROM demo_customers WHERE phone = $1")
                    .bind(p)
                    .fetch_optional(&mut *c)
                    .await?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            match name {
                Some(n) => {
                    sqlx::query_as::<_, CustomerRow>(
                        "SELECT phone, name, email, notes FROM demo_customers WHERE lower(name) LIKE $1 ESCAPE '\\' ORDER BY name LIMIT 1",
                    )
                    .bind(format!("%{}%", escape_like(&n.to_lowercase())))
                    .fetch_optional(&mut *c)
                    .await
                }
                None => Ok(None),
            }
        }

        pub async fn booked_slots(c: &mut $conn, date: &str) -> sqlx::Result<Vec<String>> {
            let rows = sqlx::query("SELECT starts_at FROM demo_appointments WHERE starts_at LIKE $1 ORDER BY starts_at")
                .bind(format!("{}%", escape_like(date)))
                .fetch_all(&mut *c)
                .await?;
            rows.iter().map(|r| r.try_get::<String, _>("starts_at")).collect()
        }

        pub async fn book_appointment(c: &mut $conn, phone: &str, starts_at: &str, service: &str, now: i64) -> sqlx::Result<Booking> {
            let row = sqlx::query(
                "INSERT INTO demo_appointments (customer_phone, starts_at, service, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (starts_at) DO NOTHING RETURNING id",
            )
            .bind(phone)
            .bind(starts_at)
            .bind(service)
            .bind(now)
            .fetch_optional(&mut *c)
            .await?;
            Ok(match row {
                Some(r) => Booking::Booked { id: r.try_get("id")? },
                None => Booking::SlotTaken,
            })
        }

        pub async fn find_department(c: &mut $conn, name: &str) -> sqlx::Result<Option<DepartmentRow>> {
            sqlx::query_as::<_, DepartmentRow>("SELECT name, number, sip_uri FROM demo_departments WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *c)
                .await
        }

        pub async fn insert_control_action(c: &mut $conn, a: &NewControlAction) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO control_actions (id, call_id, org_id, token_id, actor, action_type, action, vapi_body, \
                 requested_at, finished_at, outcome, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&a.id)
            .bind(&a.call_id)
            .bind(&a.org_id)
            .bind(&a.token_id)
            .bind(sanitize_text(&a.actor))
            .bind(&a.action_type)
            .bind(sanitize_text(&a.action))
            .bind(sanitize_text(&a.vapi_body))
            .bind(a.requested_at)
            .bind(a.finished_at)
            .bind(&a.outcome)
            .bind(clean(&a.error))
            .execute(&mut *c)
            .await?;
            Ok(())
        }

        /// Completes a pending attempt; a row already final is left as it is.
        pub async fn finish_control_action(c: &mut $conn, d: &ControlFinished) -> sqlx::Result<()> {
            sqlx::query(
                "UPDATE control_actions SET outcome = $2, upstream_status = $3, error = $4, finished_at = $5, latency_ms = $6 \
                 WHERE id = $1 AND outcome = 'pending'",
            )
            .bind(&d.id)
            .bind(&d.outcome)
            .bind(d.upstream_status)
            .bind(clean(&d.error))
            .bind(d.finished_at)
            .bind(d.latency_ms)
            .execute(&mut *c)
            .await?;
            Ok(())
        }

        pub async fn control_actions(c: &mut $conn, call_id: &str) -> sqlx::Result<Vec<ControlActionRow>> {
            sqlx::query_as::<_, ControlActionRow>(
                "SELECT id, call_id, org_id, token_id, actor, action_type, action, vapi_body, requested_at, finished_at, \
                 outcome, upstream_status, error, latency_ms FROM control_actions WHERE call_id = $1 ORDER BY requested_at, id",
            )
            .bind(call_id)
            .fetch_all(&mut *c)
            .await
        }

        /// ` AND <column> IN (…)` for a scope limited to some orgs; `false` when it allows none.
        fn push_scope(qb: &mut QueryBuilder<'_, $db>, scope: &OrgScope, column: &str) -> bool {
            if let OrgScope::Only(orgs) = scope {
                if orgs.is_empty() {
                    return false;
                }
                qb.push(format!(" AND {column} IN ("));
                let mut sep = qb.separated(", ");
                for o in orgs {
                    sep.push_bind(o.clone());
                }
                qb.push(")");
            }
            true
        }

        /// LIKE patterns are built from user text: its own wildcards must match literally.
        fn escape_like(s: &str) -> String {
            s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
        }
    };
}

pub(crate) use shared_queries;
