//! The scale-out broker: numbering and history live in Redis, so any instance can serve any
//! topic. Per topic: a hash `<prefix>:{<topic>}:meta` (epoch, last sequence number) and a
//! stream `<prefix>:{<topic>}:log` whose entry ids are the sequence numbers. Publishing is one
//! Lua script (number, append, trim, publish on `<prefix>:live`), so the live feed carries
//! each topic's events in sequence order.
//!
//! Live delivery: each instance holds one pub/sub connection subscribed to `<prefix>:live` and
//! receives every event of every topic, dropping those no local socket watches. That costs
//! each instance the whole event rate in bandwidth, but needs no SUBSCRIBE/UNSUBSCRIBE churn
//! per topic and keeps one ordered feed, so a reconnect is a single, clear break.
//!
//! While the live feed is down, events Redis does not take still reach this instance's own
//! subscribers, numbered in a local epoch (`outage`), so an outage is a gap to resync over, not
//! silence.
//!
//! Bounded memory: streams are trimmed to about `history_size` entries and expire
//! `history_age` after their last event; topic meta expires a day after its last use (the
//! epoch then changes, which the contract allows: the history is gone too); presence keys
//! expire with their last watcher. Locally, a topic's sender is dropped once nobody listens.

mod commands;
mod feed;
mod outage;
mod unpublished;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManagerConfig;
use redis::{Client, RedisResult, Script};
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{Broker, BrokerError, BrokerHealth, BrokerLimits, Event, History, Position, Published, Watcher};
use commands::Commands;
use feed::Senders;
use outage::Outage;
use unpublished::Unpublished;

/// A command (script) must be answered within this time; a webhook publishing through a dead
/// Redis fails fast instead of hanging.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Opening a connection (TCP, TLS, AUTH, SELECT) must finish within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a topic's numbering outlives its last use. Longer than any history (a position is
/// only worth keeping while history can serve it), short enough that old topics go away.
const META_TTL: Duration = Duration::from_secs(24 * 60 * 60);

pub struct RedisBroker {
    commands: Arc<Commands>,
    limits: BrokerLimits,
    prefix: String,
    meta_ttl: Duration,
    senders: Arc<Senders>,
    /// Whether the live feed is connected, and the local numbering while it is not.
    outage: Arc<Outage>,
    /// Topics with an event that did not reach Redis, to be given a new epoch.
    unpublished: Arc<Unpublished>,
    scripts: Scripts,
    /// Stops the live feed task when the broker is dropped.
    _stop: DropGuard,
}

struct Scripts {
    publish: Script,
    position: Script,
    history: Script,
    presence: Script,
}

impl RedisBroker {
    /// Connects both the command connection and the live feed; fails (within a few seconds)
    /// when Redis cannot be reached, so a misconfigured instance does not start.
    pub async fn connect(url: &str, prefix: &str, limits: BrokerLimits) -> Result<Self, BrokerError> {
        let client = Client::open(url).map_err(|e| BrokerError(format!("invalid Redis URL: {e}")))?;
        // The address only: the URL may hold a password.
        let addr = client.get_connection_info().addr().to_string();
        let unreachable = |e: String| BrokerError(format!("cannot connect to Redis at {addr}: {e}"));
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(2);
        let commands = Commands::connect(client.clone(), config).await.map_err(unreachable)?;
        let channel = format!("{prefix}:live");
        let first = feed::open(&client, &channel).await.map_err(unreachable)?;
        let senders: Arc<Senders> = Arc::default();
        let outage = Arc::new(Outage::new(limits));
        let stop = CancellationToken::new();
        let meta_ttl = META_TTL.max(limits.history_age);
        let unpublished = Arc::new(Unpublished::new(commands.clone(), prefix, meta_ttl));
        tokio::spawn(unpublished::run(unpublished.clone(), stop.clone()));
        let feed = feed::Feed {
            client,
            channel,
            senders: senders.clone(),
            commands: commands.clone(),
            outage: outage.clone(),
            unpublished: unpublished.clone(),
        };
        tokio::spawn(feed::run(feed, first, stop.clone()));
        Ok(Self {
            commands,
            limits,
            prefix: prefix.to_string(),
            meta_ttl,
            senders,
            outage,
            unpublished,
            scripts: Scripts {
                publish: Script::new(include_str!("publish.lua")),
                position: Script::new(include_str!("position.lua")),
                history: Script::new(include_str!("history.lua")),
                presence: Script::new(include_str!("presence.lua")),
            },
            _stop: stop.drop_guard(),
        })
    }

    fn key(&self, topic: &str, kind: &str) -> String {
        key(&self.prefix, topic, kind)
    }

    /// Topics with a local sender (some may have no receiver left until the next `maintain`).
    pub fn local_topics(&self) -> usize {
        self.senders.len()
    }

    async fn run<T>(&self, what: &str, call: impl Future<Output = RedisResult<T>>) -> Result<T, BrokerError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.commands.check(&e);
                Err(BrokerError(format!("redis {what}: {e}")))
            }
            Err(_) => Err(BrokerError(format!("redis {what}: no answer within {} ms", COMMAND_TIMEOUT.as_millis()))),
        }
    }

    /// Position and entries of a topic as `history.lua` returns them; `None` without meta.
    async fn history(&self, topic: &str, args: &[String]) -> Result<Option<wire::HistoryReply>, BrokerError> {
        let mut con = self.commands.get();
        let mut call = self.scripts.history.key(self.key(topic, "meta"));
        call.key(self.key(topic, "log"));
        for a in args {
            call.arg(a);
        }
        let reply: Vec<String> = self.run("history", call.invoke_async(&mut con)).await?;
        wire::HistoryReply::parse(topic, reply)
    }

    fn is_expired(&self, now_ms: i64, entry: &wire::Entry) -> bool {
        now_ms.saturating_sub(entry.at_ms) > i64::try_from(self.limits.history_age.as_millis()).unwrap_or(i64::MAX)
    }

    /// The oldest sequence number history may still serve (size limit; the stream's trimming
    /// is approximate, this makes it exact).
    fn oldest_kept(&self, seq: u64) -> u64 {
        seq.saturating_sub(self.limits.history_size as u64) + 1
    }

    async fn presence_call(&self, topic: &str, args: &[&str]) -> Result<Vec<String>, BrokerError> {
        let mut con = self.commands.get();
        let mut call = self.scripts.presence.key(self.key(topic, "watchers"));
        call.key(self.key(topic, "cards"));
        for a in args {
            call.arg(*a);
        }
        self.run("presence", call.invoke_async(&mut con)).await
    }

    /// Numbers, stores and broadcasts one encoded event: (epoch, sequence number).
    async fn number(&self, topic: &str, body: String) -> Result<(String, String), BrokerError> {
        // An earlier event of this topic may be missing: none goes into the old numbering
        // after that hole.
        self.unpublished.settle(topic).await?;
        let mut con = self.commands.get();
        self.run(
            "publish",
            self.scripts
                .publish
                .key(self.key(topic, "meta"))
                .key(self.key(topic, "log"))
                .arg(new_epoch())
                .arg(self.limits.history_size)
                .arg(ms(self.limits.history_age))
                .arg(ms(self.meta_ttl))
                .arg(format!("{}:live", self.prefix))
                .arg(topic)
                .arg(body)
                .invoke_async(&mut con),
        )
        .await
    }

    #[cfg(test)]
    fn with_meta_ttl(mut self, ttl: Duration) -> Self {
        self.meta_ttl = ttl;
        self
    }
}

/// The hash tag (`{topic}`) keeps a topic's keys in one slot, as a script needs on a cluster.
fn key(prefix: &str, topic: &str, kind: &str) -> String {
    format!("{prefix}:{{{topic}}}:{kind}")
}

fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Broker for RedisBroker {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// Ready means both connections work: without the live feed, this instance's subscribers
    /// would hear nothing.
    async fn ping(&self) -> Result<(), BrokerError> {
        let mut con = self.commands.get();
        let _: String = self.run("ping", redis::cmd("PING").query_async(&mut con)).await?;
        if !self.outage.feed_is_up() {
            return Err(BrokerError("redis live feed: reconnecting".into()));
        }
        Ok(())
    }

    /// Drops local senders nobody listens to (keys in Redis expire by themselves).
    async fn maintain(&self) {
        self.senders.retain(|_, tx| tx.receiver_count() > 0);
    }

    fn health(&self) -> BrokerHealth {
        let (local_events, local_topics) = self.outage.counts();
        BrokerHealth { feed_up: self.outage.feed_is_up(), local_events, local_topics, topics_to_reset: self.unpublished.pending() }
    }

    async fn publish(&self, topic: &str, event: Event) -> Result<Arc<Published>, BrokerError> {
        let body = wire::encode_event(&event)?;
        // Not published, or maybe numbered with its reply lost on the way: either way the
        // topic is reset later, so no subscriber takes history without this event as whole.
        let (epoch, seq) = match self.number(topic, body).await {
            Ok(numbered) => {
                self.outage.also_here(&self.senders, topic, &event);
                numbered
            }
            Err(e) => {
                self.unpublished.mark(topic);
                // With the feed down, this instance's subscribers still get it (see `outage`).
                return self.outage.publish(&self.senders, topic, event).ok_or(e);
            }
        };
        let seq = seq.parse().map_err(|_| BrokerError(format!("redis publish: bad sequence number {seq:?}")))?;
        Ok(Arc::new(Published::new(topic, epoch, seq, event)))
    }

    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<Published>> {
        feed::subscribe(&self.senders, topic, self.limits.subscriber_queue)
    }

    async fn position(&self, topic: &str) -> Result<Position, BrokerError> {
        if let Some(local) = self.outage.numbering(topic) {
            return Ok(local);
        }
        let mut con = self.commands.get();
        let read = self
            .run(
                "position",
                self.scripts
                    .position
                    .key(self.key(topic, "meta"))
                    .key(self.key(topic, "log"))
                    .arg(new_epoch())
                    .arg(ms(self.meta_ttl))
                    .invoke_async::<(String, String)>(&mut con),
            )
            .await;
        let (epoch, seq) = match read {
            Ok(position) => position,
            Err(e) => return self.outage.position(topic).ok_or(e),
        };
        let seq = seq.parse().map_err(|_| BrokerError(format!("redis position: bad sequence number {seq:?}")))?;
        Ok(Position { epoch, seq })
    }

    async fn since(&self, topic: &str, from: &Position) -> Result<History, BrokerError> {
        if let Some(local) = self.outage.since(topic, from) {
            return Ok(local);
        }
        let first = from.seq.saturating_add(1);
        let args =
            ["since".to_string(), from.epoch.clone(), from.seq.to_string(), format!("{first}-0"), self.limits.history_size.to_string()];
        let h = match self.history(topic, &args).await {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(History::Lost),
            // A Redis position cannot be served without Redis; while the feed is down its
            // subscriber goes on from a snapshot in the local numbering.
            Err(_) if !self.outage.feed_is_up() => return Ok(History::Lost),
            Err(e) => return Err(e),
        };
        if h.epoch != from.epoch || from.seq > h.seq {
            return Ok(History::Lost);
        }
        if from.seq == h.seq {
            return Ok(History::Recovered(Vec::new()));
        }
        // Recoverable only if the first missed event is still in history, by size and by age
        // (entries after it are newer, so they are too).
        let kept = first >= self.oldest_kept(h.seq);
        match h.entries.first() {
            Some(e) if kept && e.seq == first && !self.is_expired(h.now_ms, e) => {
                Ok(History::Recovered(h.entries.into_iter().map(|e| Arc::new(e.published(topic, &h.epoch))).collect()))
            }
            _ => Ok(History::Lost),
        }
    }

    async fn recent(&self, topic: &str, limit: usize) -> Result<Vec<Arc<Published>>, BrokerError> {
        let count = limit.min(self.limits.history_size);
        if count == 0 {
            return Ok(Vec::new());
        }
        if let Some(local) = self.outage.recent_here(topic, count) {
            return Ok(local);
        }
        let h = match self.history(topic, &["recent".to_string(), count.to_string()]).await {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Vec::new()),
            Err(e) => return self.outage.recent(topic, count).ok_or(e),
        };
        let oldest = self.oldest_kept(h.seq);
        let mut out: Vec<Arc<Published>> = h
            .entries
            .into_iter()
            .take_while(|e| e.seq >= oldest && !self.is_expired(h.now_ms, e))
            .map(|e| Arc::new(e.published(topic, &h.epoch)))
            .collect();
        out.reverse();
        Ok(out)
    }

    async fn presence_set(&self, topic: &str, watcher: &Watcher, ttl: Duration) -> Result<(), BrokerError> {
        let card = serde_json::to_string(watcher).map_err(|e| BrokerError(format!("cannot encode a watcher: {e}")))?;
        self.presence_call(topic, &["set", &watcher.id, &card, &ms(ttl).to_string()]).await.map(drop)
    }

    async fn presence_remove(&self, topic: &str, watcher_id: &str) -> Result<(), BrokerError> {
        self.presence_call(topic, &["remove", watcher_id]).await.map(drop)
    }

    async fn presence(&self, topic: &str) -> Result<Vec<Watcher>, BrokerError> {
        let cards = self.presence_call(topic, &["list"]).await?;
        let mut watchers = cards
            .iter()
            .map(|c| serde_json::from_str::<Watcher>(c).map_err(|e| BrokerError(format!("redis presence: bad watcher: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        watchers.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
        Ok(watchers)
    }
}

#[cfg(test)]
mod tests;
