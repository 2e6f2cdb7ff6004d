//! The live feed: one pub/sub connection per instance, subscribed to the prefix's channel,
//! handing each event to the local subscribers of its topic.
//!
//! Redis pub/sub delivers at most once: while the connection is down, events are lost. So when
//! it comes back, every local sender is dropped; their receivers see `Closed`, which tells each
//! subscriber to catch up from history (`since`) and subscribe again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures::StreamExt;
use redis::Client;
use redis::aio::{PubSub, PubSubSink};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::commands::Commands;
use super::outage::Outage;
use super::unpublished::Unpublished;
use super::wire;
use super::{COMMAND_TIMEOUT, CONNECT_TIMEOUT};
use crate::hub::Published;

pub(super) type Senders = DashMap<String, broadcast::Sender<Arc<Published>>>;

/// A silent connection is checked this often, so a half-open one (a network cut with no reset)
/// is noticed too, not only a closed one.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Reconnection attempts start this fast and slow down to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Longest the reconnected feed waits for the resets of topics that missed events before it
/// tells subscribers to catch up (the retry task finishes any left over).
const RESET_BUDGET: Duration = Duration::from_secs(2);

pub(super) fn subscribe(senders: &Senders, topic: &str, capacity: usize) -> broadcast::Receiver<Arc<Published>> {
    if let Some(tx) = senders.get(topic) {
        return tx.subscribe();
    }
    // Subscribing under the entry's lock: a concurrent cleanup (which checks the receiver
    // count under the same lock) cannot drop the sender this receiver belongs to.
    senders.entry(topic.to_string()).or_insert_with(|| broadcast::channel(capacity.max(1)).0).subscribe()
}

/// Opens a pub/sub connection and subscribes it to the live channel.
pub(super) async fn open(client: &Client, channel: &str) -> Result<PubSub, String> {
    let connect = async {
        let mut ps = client.get_async_pubsub().await?;
        ps.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(ps)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(ps)) => Ok(ps),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

/// What the feed task works with.
pub(super) struct Feed {
    pub client: Client,
    pub channel: String,
    pub senders: Arc<Senders>,
    /// The command connection, woken up after an outage (see `wake`).
    pub commands: Arc<Commands>,
    /// Whether the feed is connected (readiness reports it), and the local numbering while
    /// it is not.
    pub outage: Arc<Outage>,
    pub unpublished: Arc<Unpublished>,
}

/// Follows the live channel until `stop`, reconnecting (at most a second apart) whenever the
/// connection breaks. `first` is the connection opened at start-up.
pub(super) async fn run(feed: Feed, first: PubSub, stop: CancellationToken) {
    let Feed { client, channel, senders, commands, outage, unpublished } = feed;
    let mut current = Some(first);
    let mut backoff = MIN_BACKOFF;
    // The resets this instance made while reconnecting: their live messages follow on the new
    // feed, after the senders they concern were dropped anyway (see `dispatch`).
    let mut own_resets = HashSet::new();
    loop {
        let ps = match current.take() {
            Some(ps) => ps,
            None => {
                let opened = tokio::select! {
                    _ = stop.cancelled() => return,
                    opened = open(&client, &channel) => opened,
                };
                match opened {
                    Ok(ps) => {
                        wake(&commands).await;
                        unpublished.redis_is_back();
                        // Topics that missed events get their new epoch before anyone is told to
                        // catch up, so a subscriber reloads once, into the new epoch, instead of
                        // once now and again when the reset lands.
                        own_resets = unpublished.flush(Some(Instant::now() + RESET_BUDGET)).await;
                        // Local numbering ends, then its subscribers are told.
                        outage.feed_back();
                        // Everything published while the feed was down was missed.
                        let dropped = senders.len();
                        senders.clear();
                        tracing::info!(topics = dropped, "redis live feed reconnected; local subscribers catch up from history");
                        backoff = MIN_BACKOFF;
                        ps
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "redis live feed: reconnect failed");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
        };
        let (sink, stream) = ps.split();
        tokio::select! {
            _ = stop.cancelled() => return,
            why = follow(&senders, sink, stream, &mut own_resets) => tracing::warn!(reason = why, "redis live feed lost; reconnecting"),
        }
        outage.feed_lost();
    }
}

/// The command connection only notices a Redis restart when a command fails on it, which
/// would be the next webhook's publish. Once Redis answers the feed again, a few pings make
/// it reconnect now instead (the first one may fail and start the reconnection).
async fn wake(commands: &Arc<Commands>) {
    for _ in 0..3 {
        let mut con = commands.get();
        match tokio::time::timeout(COMMAND_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut con)).await {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => commands.check(&e),
            Err(_) => {}
        }
    }
}

/// Forwards messages until the connection ends or stops answering; returns why.
async fn follow(
    senders: &Senders,
    mut sink: PubSubSink,
    mut stream: redis::aio::PubSubStream,
    own_resets: &mut HashSet<(String, String)>,
) -> &'static str {
    let mut health = tokio::time::interval(HEALTH_INTERVAL);
    health.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => dispatch(senders, msg.get_payload_bytes(), own_resets),
                None => return "connection closed",
            },
            _ = health.tick() => {
                let answered = tokio::time::timeout(COMMAND_TIMEOUT * 2, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    return "no answer to ping";
                }
            }
        }
    }
}

fn dispatch(senders: &Senders, payload: &[u8], own_resets: &mut HashSet<(String, String)>) {
    let (header, body) = match wire::split_live(payload) {
        Ok(parts) => parts,
        Err(e) => {
            tracing::warn!(error = %e, "redis live feed: unreadable message dropped");
            return;
        }
    };
    if wire::is_reset(body) {
        // One of this instance's resets from its reconnect: every sender was dropped after it,
        // so whoever listens now read its position in the new epoch already.
        let reset = (header.topic, header.epoch);
        if own_resets.remove(&reset) {
            return;
        }
        // The topic has a new epoch (an event of it was never published): its receivers see
        // `Closed`, catch up from history, find the new epoch and resync their clients.
        senders.remove(&reset.0);
        return;
    }
    // Clone the sender out: no map guard is held while decoding.
    let Some(tx) = senders.get(&header.topic).map(|tx| tx.clone()) else { return };
    let event = match std::str::from_utf8(body).map_err(|e| e.to_string()).and_then(wire::decode_event) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, topic = header.topic, "redis live feed: unreadable event dropped");
            return;
        }
    };
    let published = Arc::new(Published::new(header.topic, header.epoch, header.seq, event));
    if tx.send(published.clone()).is_err() {
        // Nobody listens any more: forget the topic (unless someone subscribed meanwhile).
        senders.remove_if(&published.topic, |_, tx| tx.receiver_count() == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(topic: &str, epoch: &str) -> Vec<u8> {
        format!("{}\n", serde_json::json!([topic, epoch, "0"])).into_bytes()
    }

    #[test]
    fn a_reset_from_another_instance_closes_the_topics_local_subscribers() {
        let senders = Senders::default();
        let mut rx = subscribe(&senders, "t", 4);
        dispatch(&senders, &reset("t", "e2"), &mut HashSet::new());
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Closed)));
    }

    #[test]
    fn this_instances_own_reset_from_its_reconnect_closes_nobody_and_only_once() {
        let senders = Senders::default();
        let mut own = HashSet::from([("t".to_string(), "e2".to_string())]);
        // Subscribed after the reconnect dropped every sender: its position is in `e2` already.
        let mut rx = subscribe(&senders, "t", 4);
        dispatch(&senders, &reset("t", "e2"), &mut own);
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty)));
        assert!(own.is_empty());
        // Another reset of the topic (a later outage, another instance) is not skipped.
        dispatch(&senders, &reset("t", "e2"), &mut own);
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Closed)));
    }
}
