//! Outgoing webhooks' SQL for both engines, instantiated next to `shared_queries` (same `$n`
//! placeholders, same portable SQL). An attempt is logged and counted against its endpoint in
//! one transaction; the disable decision is made by the UPDATE itself, so concurrent attempts
//! on several instances count every failure once.

macro_rules! webhook_queries {
    ($db:ty, $conn:ty) => {
        const WEBHOOK_COLUMNS: &str =
            "id, url, events, orgs, secret, previous_secret, previous_until, description, consecutive_failures, disabled_at, \
             disabled_reason, created_at, updated_at";
        const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_type, webhook_id, attempt, status_code, duration_ms, error, at";

        pub async fn create_webhook(c: &mut $conn, w: &NewWebhook) -> sqlx::Result<WebhookRow> {
            sqlx::query_as::<_, WebhookRow>(&format!(
                "INSERT INTO webhook_endpoints (id, url, events, orgs, secret, description, consecutive_failures, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) RETURNING {WEBHOOK_COLUMNS}"
            ))
            .bind(&w.id)
            .bind(sanitize_text(&w.url))
            .bind(&w.events)
            .bind(&w.orgs)
            .bind(&w.secret)
            .bind(clean(&w.description))
            .bind(w.now)
            .fetch_one(&mut *c)
            .await
        }

        /// Oldest first; `enabled_only` for the delivery cache.
        pub async fn list_webhooks(c: &mut $conn, enabled_only: bool) -> sqlx::Result<Vec<WebhookRow>> {
            let filter = if enabled_only { " WHERE disabled_at IS NULL" } else { "" };
            sqlx::query_as::<_, WebhookRow>(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints{filter} ORDER BY id"))
                .fetch_all(&mut *c)
                .await
        }

        pub async fn get_webhook(c: &mut $conn, id: &str) -> sqlx::Result<Option<WebhookRow>> {
            sqlx::query_as::<_, WebhookRow>(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *c)
                .await
        }

        /// Its delivery log goes with it (ON DELETE CASCADE).
        pub async fn delete_webhook(c: &mut $conn, id: &str) -> sqlx::Result<bool> {
            let r = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut *c).await?;
            Ok(r.rows_affected() == 1)
        }

        /// A new signing secret; the one it replaces stays valid until `previous_until` (an
        /// earlier previous one is dropped: at most two secrets sign at once).
        pub async fn rotate_webhook_secret(c: &mut $conn, r: &SecretRotation) -> sqlx::Result<Option<WebhookRow>> {
            sqlx::query_as::<_, WebhookRow>(&format!(
                "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $3, secret = $2, updated_at = $4 \
                 WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}"
            ))
            .bind(&r.id)
            .bind(&r.secret)
            .bind(r.previous_until)
            .bind(r.now)
            .fetch_optional(&mut *c)
            .await
        }

        /// Enabled again with a clean slate: no failures counted.
        pub async fn enable_webhook(c: &mut $conn, id: &str, now: i64) -> sqlx::Result<Option<WebhookRow>> {
            sqlx::query_as::<_, WebhookRow>(&format!(
                "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0, updated_at = $2 \
                 WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}"
            ))
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *c)
            .await
        }

        pub async fn record_webhook_attempt(c: &mut $conn, a: &WebhookAttempt) -> sqlx::Result<Option<EndpointAfter>> {
            // In an UPDATE every right-hand side reads the row as it was, so `consecutive_failures + 1`
            // is this attempt's count in both the counter and the disable test.
            let updated = match a.outcome {
                AttemptOutcome::Delivered => {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = $1 \
                         RETURNING consecutive_failures, disabled_at",
                    )
                    .bind(&a.endpoint_id)
                    .fetch_optional(&mut *c)
                    .await?
                }
                AttemptOutcome::Failed { disable_after } => {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1, \
                           disabled_at = CASE WHEN disabled_at IS NULL AND consecutive_failures + 1 >= $2 THEN $3 ELSE disabled_at END, \
                           disabled_reason = CASE WHEN disabled_at IS NULL AND consecutive_failures + 1 >= $2 THEN $4 \
                                             ELSE disabled_reason END, \
                           updated_at = CASE WHEN disabled_at IS NULL AND consecutive_failures + 1 >= $2 THEN $3 ELSE updated_at END \
                         WHERE id = $1 RETURNING consecutive_failures, disabled_at",
                    )
                    .bind(&a.endpoint_id)
                    .bind(disable_after)
                    .bind(a.at)
                    .bind(format!("{disable_after} consecutive delivery attempts failed"))
                    .fetch_optional(&mut *c)
                    .await?
                }
                AttemptOutcome::Gone => {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1, \
                           disabled_reason = CASE WHEN disabled_at IS NULL THEN $3 ELSE disabled_reason END, \
                           updated_at = CASE WHEN disabled_at IS NULL THEN $2 ELSE updated_at END, \
                           disabled_at = COALESCE(disabled_at, $2) \
                         WHERE id = $1 RETURNING consecutive_failures, disabled_at",
                    )
                    .bind(&a.endpoint_id)
                    .bind(a.at)
                    .bind("the endpoint answered 410 Gone")
                    .fetch_optional(&mut *c)
                    .await?
                }
            };
            let Some(row) = updated else { return Ok(None) };
            let after = EndpointAfter {
                consecutive_failures: row.try_get("consecutive_failures")?,
                disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
            };
            sqlx::query(
                "INSERT INTO webhook_deliveries (endpoint_id, event_type, webhook_id, attempt, status_code, duration_ms, error, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&a.endpoint_id)
            .bind(&a.event_type)
            .bind(&a.webhook_id)
            .bind(a.attempt)
            .bind(a.status_code)
            .bind(a.duration_ms)
            .bind(clean(&a.error))
            .bind(a.at)
            .execute(&mut *c)
            .await?;
            Ok(Some(after))
        }

        /// Newest first; `before` is the previous page's last id.
        pub async fn webhook_deliveries(c: &mut $conn, endpoint_id: &str, before: Option<i64>, limit: i64) -> sqlx::Result<Vec<DeliveryRow>> {
            let mut qb = QueryBuilder::<$db>::new(format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = "));
            qb.push_bind(endpoint_id.to_string());
            if let Some(before) = before {
                qb.push(" AND id < ").push_bind(before);
            }
            qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            qb.build_query_as::<DeliveryRow>().fetch_all(&mut *c).await
        }
    };
}

pub(crate) use webhook_queries;
