//! Outgoing webhooks: admins register endpoints (`routes`), and the writes that store what an
//! event announces (a VAPI message, a tool call's result, a recording, a chat message) write its
//! deliveries in their own transaction (`Outbox`). Each matching enabled endpoint gets a durable
//! `webhook.deliver` job (`deliver`), signed per Standard Webhooks (`sign`), sent only to
//! public addresses (`target`). The enabled endpoints are cached in memory, so an event nobody
//! subscribed to costs no store round trip; admin changes refresh the cache at once on this
//! instance, and every instance reloads it every `webhooks.refresh_ms`.

mod deliver;
pub mod events;
mod input;
mod routes;
pub mod sign;
pub mod target;

use std::sync::{Arc, RwLock};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use events::{Filter, WebhookEvent};
pub use routes::router;

use crate::config::WebhooksSettings;
use crate::jobs::{EnqueueOptions, JobContext, JobKind, Jobs};
use crate::store::{DynStore, NewJob, OrgScope, StoreError};

pub const KIND: &str = "webhook.deliver";
/// Deliveries in flight at once across every instance: a slow receiver cannot take every slot
/// of every worker.
const LIMIT: usize = 16;
/// With the jobs' backoff (1 s doubling, at most an hour, by default) about three hours of
/// retries; `[jobs.kinds."webhook.deliver"]` can change it.
const MAX_ATTEMPTS: u32 = 15;

/// The webhooks of one instance: the endpoint cache and the way into the job queue.
pub struct Webhooks {
    pub settings: Arc<WebhooksSettings>,
    cache: Arc<Cache>,
    jobs: Arc<Jobs>,
}

/// An enabled endpoint, as much as matching an event needs.
struct Cached {
    id: String,
    filter: Filter,
    /// The orgs whose events it receives.
    orgs: OrgScope,
}

/// The enabled endpoints. Replaced whole on each refresh; read (cloned out, lock dropped) on
/// every event.
pub(crate) struct Cache {
    store: DynStore,
    endpoints: RwLock<Arc<Vec<Cached>>>,
    /// One refresh at a time, so an older read cannot overwrite a newer one.
    refreshing: tokio::sync::Mutex<()>,
}

impl Cache {
    async fn load(&self) -> Result<(), StoreError> {
        let _one = self.refreshing.lock().await;
        let rows = self.store.list_webhooks(true).await?;
        let endpoints = rows
            .into_iter()
            .filter_map(|r| match (Filter::from_stored(&r.events), OrgScope::from_json(&r.orgs)) {
                (Some(filter), Some(orgs)) => Some(Cached { id: r.id, filter, orgs }),
                _ => {
                    tracing::warn!(endpoint = %r.id, "a webhook endpoint's stored events or orgs cannot be read; it gets nothing");
                    None
                }
            })
            .collect();
        *self.endpoints.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(endpoints);
        Ok(())
    }

    /// A failed reload keeps the previous set (and says so).
    pub(crate) async fn refresh(&self) {
        if let Err(e) = self.load().await {
            tracing::warn!(error = %e, "could not reload the webhook endpoints; keeping the previous set");
        }
    }

    fn snapshot(&self) -> Arc<Vec<Cached>> {
        self.endpoints.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Webhooks {
    /// Registers the `webhook.deliver` kind on `jobs`. Call `load` before serving.
    pub fn new(settings: WebhooksSettings, store: DynStore, jobs: Arc<Jobs>) -> Self {
        let settings = Arc::new(settings);
        let cache =
            Arc::new(Cache { store: store.clone(), endpoints: RwLock::new(Arc::new(Vec::new())), refreshing: tokio::sync::Mutex::new(()) });
        let deliverer = Arc::new(deliver::Deliverer {
            settings: settings.clone(),
            store,
            client: crate::http::public_only_client(settings.allow_loopback),
            cache: cache.clone(),
        });
        let handler = move |payload: serde_json::Value, ctx: JobContext| {
            let d = deliverer.clone();
            async move { deliver::run(&d, payload, ctx).await }
        };
        jobs.register(JobKind::new(KIND, handler).limit(LIMIT).max_attempts(MAX_ATTEMPTS));
        Self { settings, cache, jobs }
    }

    /// Reads the enabled endpoints from the store.
    pub async fn load(&self) -> Result<(), StoreError> {
        self.cache.load().await
    }

    /// After an admin change on this instance.
    pub async fn refresh(&self) {
        self.cache.refresh().await;
    }

    /// Reloads the endpoints every `webhooks.refresh_ms` until `stop`, so changes made through
    /// another instance (and disables by its deliveries) reach this one.
    pub fn start(&self, stop: CancellationToken, tasks: &TaskTracker) {
        let (cache, every) = (self.cache.clone(), self.settings.refresh);
        tasks.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => cache.refresh().await,
                    _ = stop.cancelled() => break,
                }
            }
        });
    }

    /// For a write that commits the deliveries of its events in its own transaction (see
    /// `Outbox`): `None` when no enabled endpoint wants any of `kinds`, so such writes carry
    /// nothing extra.
    pub fn outbox(&self, kinds: &[&str]) -> Option<Outbox> {
        let endpoints = self.cache.snapshot();
        let wanted = endpoints.iter().any(|e| kinds.iter().any(|k| e.filter.matches(k)));
        wanted.then(|| Outbox { endpoints, jobs: self.jobs.clone() })
    }

    /// After such a write committed deliveries: they go out now rather than at the next poll.
    pub fn committed(&self) {
        self.jobs.created(KIND);
    }
}

/// The deliveries of events as job rows, for a write that stores them in the same transaction
/// as the fact they announce. That write commits both or neither: an instance that dies right
/// after the commit has its deliveries on record, where enqueueing them after the commit would
/// have lost them (and a redelivered VAPI message, seen as a duplicate, enqueues nothing). The
/// dedup key `webhook:<endpoint>:<event id>` makes a repeat of the same fact deliver once.
#[derive(Clone)]
pub struct Outbox {
    endpoints: Arc<Vec<Cached>>,
    jobs: Arc<Jobs>,
}

impl Outbox {
    /// Some endpoint wants events of `kind`: build the event only then.
    pub fn wants(&self, kind: &str) -> bool {
        self.endpoints.iter().any(|e| e.filter.matches(kind))
    }

    /// One row per endpoint that wants `event` and receives its org, each with its dedup key.
    pub fn deliveries(&self, event: &WebhookEvent) -> Vec<NewJob> {
        let mut body = None;
        let mut rows = Vec::new();
        let org = event.data["org_id"].as_str().unwrap_or_default();
        for e in self.endpoints.iter().filter(|e| e.filter.matches(event.kind) && e.orgs.allows(org)) {
            let body = body.get_or_insert_with(|| event.body()).clone();
            let payload = json!({ "endpoint_id": e.id, "webhook_id": event.id, "type": event.kind, "body": body });
            let opts = EnqueueOptions { run_at: None, dedup_key: Some(format!("webhook:{}:{}", e.id, event.id)) };
            match self.jobs.new_job(KIND, &payload, opts) {
                Ok(job) => rows.push(job),
                Err(err) => tracing::warn!(endpoint = %e.id, event = event.kind, error = %err, "could not build a webhook delivery"),
            }
        }
        rows
    }
}
