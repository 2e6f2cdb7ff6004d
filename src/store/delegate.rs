//! The `Store` trait for both engines, as one body: each engine provides `conn` (a pooled
//! connection), `write` (a committed transaction), a `q` module of shared queries, and the writes of every webhook, tool call, chat
//! answer and job (the `…_write` methods), which SQLite runs on its writer's own connection, and
//! the reads that start a chat answer (`…_read`), which SQLite runs on the caller's thread.

macro_rules! impl_store {
    ($ty:ty, $name:literal) => {
        #[async_trait::async_trait]
        impl crate::store::Store for $ty {
            fn backend(&self) -> &'static str {
                $name
            }

            async fn ping(&self) -> crate::store::Result<()> {
                sqlx::query("SELECT 1").execute(&mut *self.conn().await?).await?;
                self.writer_alive()
            }

            async fn migrate(&self) -> crate::store::Result<()> {
                self.run_migrations().await
            }

            async fn ingest(&self, i: Ingest) -> crate::store::Result<IngestOutcome> {
                self.ingest_write(i).await
            }

            async fn claim_invocation(&self, n: NewInvocation) -> crate::store::Result<Claim> {
                self.claim_write(n).await
            }

            async fn finish_invocation(&self, d: Finished) -> crate::store::Result<bool> {
                self.finish_invocation_write(d).await
            }

            async fn get_invocation(&self, id: &str) -> crate::store::Result<Option<InvocationRow>> {
                Ok(q::get_invocation(&mut *self.conn().await?, id).await?)
            }

            async fn list_calls(&self, scope: &OrgScope, f: &CallFilter) -> crate::store::Result<Vec<CallRow>> {
                Ok(q::list_calls(&mut *self.conn().await?, scope, f).await?)
            }

            async fn get_call(&self, id: &str) -> crate::store::Result<Option<CallRow>> {
                Ok(q::get_call(&mut *self.conn().await?, id).await?)
            }

            async fn transcript(&self, call_id: &str) -> crate::store::Result<Vec<SegmentRow>> {
                Ok(q::transcript(&mut *self.conn().await?, call_id).await?)
            }

            async fn last_segments(&self, call_ids: &[String]) -> crate::store::Result<Vec<SegmentRow>> {
                Ok(q::last_segments(&mut *self.conn().await?, call_ids).await?)
            }

            async fn invocations(&self, call_id: &str) -> crate::store::Result<Vec<InvocationRow>> {
                Ok(q::invocations(&mut *self.conn().await?, call_id).await?)
            }

            async fn recordings(&self, call_id: &str) -> crate::store::Result<Vec<RecordingRow>> {
                Ok(q::recordings(&mut *self.conn().await?, call_id).await?)
            }

            async fn recording(&self, id: i64) -> crate::store::Result<Option<RecordingRow>> {
                Ok(q::recording(&mut *self.conn().await?, id).await?)
            }

            async fn finish_recording(&self, d: RecordingDone) -> crate::store::Result<()> {
                self.write(move |c| Box::pin(async move { q::finish_recording(c, &d).await })).await
            }

            async fn count_raw_events(&self, call_id: Option<&str>) -> crate::store::Result<i64> {
                Ok(q::count_raw_events(&mut *self.conn().await?, call_id).await?)
            }

            async fn insert_token(
                &self,
                id: &str,
                hash: &str,
                role: &str,
                orgs: &str,
                label: Option<&str>,
                now: i64,
            ) -> crate::store::Result<()> {
                let (id, hash, role, orgs, label) =
                    (id.to_owned(), hash.to_owned(), role.to_owned(), orgs.to_owned(), label.map(str::to_owned));
                self.write(move |c| Box::pin(async move { q::insert_token(c, &id, &hash, &role, &orgs, label.as_deref(), now).await }))
                    .await
            }

            async fn find_token(&self, hash: &str) -> crate::store::Result<Option<TokenRow>> {
                Ok(q::find_token(&mut *self.conn().await?, hash).await?)
            }

            async fn insert_control_action(&self, a: NewControlAction) -> crate::store::Result<()> {
                self.write(move |c| Box::pin(async move { q::insert_control_action(c, &a).await })).await
            }

            async fn finish_control_action(&self, d: ControlFinished) -> crate::store::Result<()> {
                self.write(move |c| Box::pin(async move { q::finish_control_action(c, &d).await })).await
            }

            async fn control_actions(&self, call_id: &str) -> crate::store::Result<Vec<ControlActionRow>> {
                Ok(q::control_actions(&mut *self.conn().await?, call_id).await?)
            }

            async fn create_chat_session(&self, s: NewChatSession) -> crate::store::Result<()> {
                self.create_chat_session_write(s).await
            }

            async fn get_chat_session(&self, id: &str) -> crate::store::Result<Option<ChatSessionRow>> {
                self.get_chat_session_read(id).await
            }

            async fn recent_chat_sessions(&self, scope: &OrgScope, since: i64, limit: i64) -> crate::store::Result<Vec<ChatSessionRow>> {
                Ok(q::recent_chat_sessions(&mut *self.conn().await?, scope, since, limit).await?)
            }

            async fn chat_messages(&self, session_id: &str) -> crate::store::Result<Vec<ChatMessageRow>> {
                self.chat_messages_read(session_id).await
            }

            async fn start_chat_run(&self, r: StartRun) -> crate::store::Result<RunStart> {
                self.start_chat_run_write(r).await
            }

            async fn finish_chat_run(&self, f: FinishRun) -> crate::store::Result<bool> {
                self.finish_chat_run_write(f).await
            }

            async fn chat_run(&self, run_id: &str) -> crate::store::Result<Option<ChatRunRow>> {
                Ok(q::chat_run(&mut *self.conn().await?, run_id).await?)
            }

            async fn renew_chat_run(&self, run_id: &str, lease_until: i64) -> crate::store::Result<bool> {
                self.renew_chat_run_write(run_id.to_owned(), lease_until).await
            }

            async fn last_chat_messages(&self, session_ids: &[String]) -> crate::store::Result<Vec<ChatMessageRow>> {
                Ok(q::last_chat_messages(&mut *self.conn().await?, session_ids).await?)
            }

            async fn active_chat_run(&self, session_id: &str, now: i64) -> crate::store::Result<Option<ChatRunRow>> {
                self.active_chat_run_read(session_id, now).await
            }

            async fn chat_usage(&self, day: i64, session_id: &str) -> crate::store::Result<ChatUsage> {
                self.chat_usage_read(day, session_id).await
            }

            async fn add_chat_usage(&self, day: i64, tokens: i64) -> crate::store::Result<()> {
                self.add_chat_usage_write(day, tokens).await
            }

            async fn enqueue_job(&self, j: NewJob) -> crate::store::Result<Enqueued> {
                self.enqueue_job_write(j).await
            }

            async fn claim_jobs(&self, k: ClaimJobs) -> crate::store::Result<Vec<JobRow>> {
                self.claim_jobs_write(k).await
            }

            async fn complete_job(&self, l: JobLease, now: i64) -> crate::store::Result<bool> {
                self.complete_job_write(l, now).await
            }

            async fn fail_job(&self, f: JobFailure) -> crate::store::Result<Option<String>> {
                self.fail_job_write(f).await
            }

            async fn renew_job(&self, l: JobLease, lease_until: i64, now: i64) -> crate::store::Result<bool> {
                self.renew_job_write(l, lease_until, now).await
            }

            async fn get_job(&self, id: &str) -> crate::store::Result<Option<JobRow>> {
                Ok(q::get_job(&mut *self.conn().await?, id).await?)
            }

            async fn prune_raw_events(&self, cutoff: i64, batch: i64) -> crate::store::Result<u64> {
                self.write(move |c| Box::pin(async move { q::prune_raw_events(c, cutoff, batch).await })).await
            }

            async fn prune_transcripts(&self, cutoff: i64, batch: i64) -> crate::store::Result<u64> {
                self.write(move |c| Box::pin(async move { q::prune_transcripts(c, cutoff, batch).await })).await
            }

            async fn prune_chats(&self, cutoff: i64, batch: i64) -> crate::store::Result<(u64, u64)> {
                self.write(move |c| Box::pin(async move { q::prune_chats(c, cutoff, batch).await })).await
            }

            async fn expired_recordings(&self, cutoff: i64, batch: i64) -> crate::store::Result<Vec<RecordingRow>> {
                Ok(q::expired_recordings(&mut *self.conn().await?, cutoff, batch).await?)
            }

            async fn mark_recording_deleted(&self, id: i64) -> crate::store::Result<()> {
                self.write(move |c| Box::pin(async move { q::mark_recording_deleted(c, id, crate::clock::now_ms()).await })).await
            }

            async fn prune_jobs(&self, cutoff: i64, batch: i64) -> crate::store::Result<u64> {
                self.write(move |c| Box::pin(async move { q::prune_jobs(c, cutoff, batch).await })).await
            }

            async fn prune_webhook_deliveries(&self, cutoff: i64, batch: i64) -> crate::store::Result<u64> {
                self.write(move |c| Box::pin(async move { q::prune_webhook_deliveries(c, cutoff, batch).await })).await
            }

            async fn stale_calls(&self, since: i64, before: i64, limit: i64) -> crate::store::Result<Vec<CallRow>> {
                Ok(q::stale_calls(&mut *self.conn().await?, since, before, limit).await?)
            }

            async fn list_jobs(&self, f: &JobFilter) -> crate::store::Result<Vec<JobRow>> {
                Ok(q::list_jobs(&mut *self.conn().await?, f).await?)
            }

            async fn retry_job(&self, id: &str, now: i64) -> crate::store::Result<JobRetry> {
                let id = id.to_owned();
                self.write(move |c| Box::pin(async move { q::retry_job(c, &id, now).await })).await
            }

            async fn create_webhook(&self, w: NewWebhook) -> crate::store::Result<WebhookRow> {
                self.write(move |c| Box::pin(async move { q::create_webhook(c, &w).await })).await
            }

            async fn list_webhooks(&self, enabled_only: bool) -> crate::store::Result<Vec<WebhookRow>> {
                Ok(q::list_webhooks(&mut *self.conn().await?, enabled_only).await?)
            }

            async fn get_webhook(&self, id: &str) -> crate::store::Result<Option<WebhookRow>> {
                Ok(q::get_webhook(&mut *self.conn().await?, id).await?)
            }

            async fn delete_webhook(&self, id: &str) -> crate::store::Result<bool> {
                let id = id.to_owned();
                self.write(move |c| Box::pin(async move { q::delete_webhook(c, &id).await })).await
            }

            async fn enable_webhook(&self, id: &str, now: i64) -> crate::store::Result<Option<WebhookRow>> {
                let id = id.to_owned();
                self.write(move |c| Box::pin(async move { q::enable_webhook(c, &id, now).await })).await
            }

            async fn rotate_webhook_secret(&self, r: SecretRotation) -> crate::store::Result<Option<WebhookRow>> {
                self.write(move |c| Box::pin(async move { q::rotate_webhook_secret(c, &r).await })).await
            }

            async fn record_webhook_attempt(&self, a: WebhookAttempt) -> crate::store::Result<Option<EndpointAfter>> {
                self.write(move |c| Box::pin(async move { q::record_webhook_attempt(c, &a).await })).await
            }

            async fn webhook_deliveries(
                &self,
                endpoint_id: &str,
                before: Option<i64>,
                limit: i64,
            ) -> crate::store::Result<Vec<DeliveryRow>> {
                Ok(q::webhook_deliveries(&mut *self.conn().await?, endpoint_id, before, limit).await?)
            }

            async fn find_customer(&self, phone: Option<&str>, name: Option<&str>) -> crate::store::Result<Option<CustomerRow>> {
                Ok(q::find_customer(&mut *self.conn().await?, phone, name).await?)
            }

            async fn booked_slots(&self, date: &str) -> crate::store::Result<Vec<String>> {
                Ok(q::booked_slots(&mut *self.conn().await?, date).await?)
            }

            async fn book_appointment(&self, phone: &str, starts_at: &str, service: &str, now: i64) -> crate::store::Result<Booking> {
                let (phone, starts_at, service) = (phone.to_owned(), starts_at.to_owned(), service.to_owned());
                self.write(move |c| Box::pin(async move { q::book_appointment(c, &phone, &starts_at, &service, now).await })).await
            }

            async fn find_department(&self, name: &str) -> crate::store::Result<Option<DepartmentRow>> {
                Ok(q::find_department(&mut *self.conn().await?, name).await?)
            }
        }
    };
}

pub(crate) use impl_store;
