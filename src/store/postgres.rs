//! Postgres, the scale-out engine: pooled connections, one transaction per write. Postgres
//! batches concurrent commits itself, and its unique indexes make every instance agree on
//! dedup keys and tool-call claims.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection, PgPool, Row};

use super::types::*;
use super::{Result, StoreError};

mod q {
    crate::store::queries::shared_queries!(sqlx::Postgres, sqlx::PgConnection);
    crate::store::chat_queries::chat_queries!(sqlx::Postgres, sqlx::PgConnection);
    crate::store::webhook_queries::webhook_queries!(sqlx::Postgres, sqlx::PgConnection);
    crate::store::job_queries::job_queries!(
        sqlx::Postgres,
        sqlx::PgConnection,
        " FOR UPDATE SKIP LOCKED",
        Some("SELECT pg_advisory_xact_lock(hashtext('switchboard.jobs:' || $1::text))")
    );
    crate::store::retention_queries::retention_queries!(sqlx::Postgres, sqlx::PgConnection);
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options: PgConnectOptions = url.parse().map_err(|e| StoreError::Internal(format!("bad Postgres URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.disable_statement_logging())
            .await?;
        let sync: String = sqlx::query("SHOW synchronous_commit").fetch_one(&pool).await?.try_get(0)?;
        if sync == "off" {
            tracing::warn!("Postgres has synchronous_commit=off: a webhook answered 2xx may be lost in a crash");
        }
        Ok(Self { pool })
    }

    async fn run_migrations(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Postgres has no separate writer; a pooled round trip is the whole check.
    fn writer_alive(&self) -> Result<()> {
        Ok(())
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
        Ok(self.pool.acquire().await?)
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, sqlx::Result<T>> + Send + 'static,
    ) -> Result<T> {
        let mut tx = self.pool.begin().await?;
        let value = f(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    async fn ingest_write(&self, i: Ingest) -> Result<IngestOutcome> {
        self.write(move |c| Box::pin(async move { q::ingest(c, &i, crate::clock::now_ms()).await })).await
    }

    /// Instances share nothing but the database: a claim keeps others out only once committed.
    async fn claim_write(&self, n: NewInvocation) -> Result<Claim> {
        self.write(move |c| Box::pin(async move { q::claim_invocation(c, &n).await })).await
    }

    async fn finish_invocation_write(&self, d: Finished) -> Result<bool> {
        self.write(move |c| Box::pin(async move { q::finish_invocation(c, &d).await })).await
    }

    async fn create_chat_session_write(&self, s: NewChatSession) -> Result<()> {
        self.write(move |c| Box::pin(async move { q::create_chat_session(c, &s).await })).await
    }

    async fn start_chat_run_write(&self, r: StartRun) -> Result<RunStart> {
        self.write(move |c| Box::pin(async move { q::start_chat_run(c, &r).await })).await
    }

    async fn finish_chat_run_write(&self, f: FinishRun) -> Result<bool> {
        self.write(move |c| Box::pin(async move { q::finish_chat_run(c, &f).await })).await
    }

    async fn enqueue_job_write(&self, j: NewJob) -> Result<Enqueued> {
        self.write(move |c| Box::pin(async move { q::enqueue_job(c, &j).await })).await
    }

    async fn claim_jobs_write(&self, k: ClaimJobs) -> Result<Vec<JobRow>> {
        self.write(move |c| Box::pin(async move { q::claim_jobs(c, &k).await })).await
    }

    async fn complete_job_write(&self, l: JobLease, now: i64) -> Result<bool> {
        self.write(move |c| Box::pin(async move { q::complete_job(c, &l, now).await })).await
    }

    async fn fail_job_write(&self, f: JobFailure) -> Result<Option<String>> {
        self.write(move |c| Box::pin(async move { q::fail_job(c, &f).await })).await
    }

    async fn renew_job_write(&self, l: JobLease, lease_until: i64, now: i64) -> Result<bool> {
        self.write(move |c| Box::pin(async move { q::renew_job(c, &l, lease_until, now).await })).await
    }

    async fn get_chat_session_read(&self, id: &str) -> Result<Option<ChatSessionRow>> {
        Ok(q::get_chat_session(&mut *self.conn().await?, id).await?)
    }

    async fn chat_messages_read(&self, session_id: &str) -> Result<Vec<ChatMessageRow>> {
        Ok(q::chat_messages(&mut *self.conn().await?, session_id).await?)
    }

    async fn active_chat_run_read(&self, session_id: &str, now: i64) -> Result<Option<ChatRunRow>> {
        Ok(q::active_chat_run(&mut *self.conn().await?, session_id, now).await?)
    }

    async fn chat_usage_read(&self, day: i64, session_id: &str) -> Result<ChatUsage> {
        Ok(q::chat_usage(&mut *self.conn().await?, day, session_id).await?)
    }

    async fn renew_chat_run_write(&self, run_id: String, lease_until: i64) -> Result<bool> {
        self.write(move |c| Box::pin(async move { q::renew_chat_run(c, &run_id, lease_until).await })).await
    }

    async fn add_chat_usage_write(&self, day: i64, tokens: i64) -> Result<()> {
        self.write(move |c| Box::pin(async move { q::add_chat_usage(c, day, tokens).await })).await
    }
}

super::delegate::impl_store!(PgStore, "postgres");
