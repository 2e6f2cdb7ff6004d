//! Topics with an event that never reached Redis. A publish that fails (Redis down, the
//! network cut, no answer in time) leaves a hole nobody can see: the event was never numbered,
//! so once Redis is back, history after a subscriber's position looks whole without it. Such a
//! topic gets a new epoch as soon as Redis answers again (`reset.lua`), and every instance is
//! told, so each of its subscribers reloads a snapshot from the store (which has the event:
//! events are published after their commit) instead of carrying on without it.
//!
//! The reset runs when the live feed reconnects (before its subscribers are told to catch up),
//! from a task retrying every second, and before the topic's next publish, so no event is
//! numbered in the old epoch after the hole. Kept in memory: an instance that dies during the
//! outage takes its list with it (see README §What is not built yet).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Script;
use tokio_util::sync::CancellationToken;

use super::commands::Commands;
use super::{COMMAND_TIMEOUT, key, ms, new_epoch};
use crate::hub::BrokerError;

/// How often resets are retried while Redis does not answer.
const RETRY: Duration = Duration::from_secs(1);
/// More topics than any outage of one instance touches (each is a call or a chat, or one of
/// the two lists); past it the oldest marks are kept and the new topic is logged as an error.
const MAX_TOPICS: usize = 100_000;

pub(super) struct Unpublished {
    commands: Arc<Commands>,
    script: Script,
    prefix: String,
    channel: String,
    meta_ttl: Duration,
    /// Topic → the mark's number, so a reset only clears the mark it saw (a failure during the
    /// reset marks the topic again).
    topics: Mutex<HashMap<String, u64>>,
    /// `topics.len()`, read without the lock on every publish.
    count: AtomicUsize,
    marks: AtomicU64,
    /// One reset at a time, so the retry task and a publish never reset the same mark twice
    /// (each reset is one more resync for every subscriber of the topic).
    resetting: tokio::sync::Mutex<()>,
    /// When the last reset failed (`None` after one succeeds).
    failed_at: Mutex<Option<Instant>>,
}

impl Unpublished {
    pub fn new(commands: Arc<Commands>, prefix: &str, meta_ttl: Duration) -> Self {
        Self {
            commands,
            script: Script::new(include_str!("reset.lua")),
            prefix: prefix.to_string(),
            channel: format!("{prefix}:live"),
            meta_ttl,
            topics: Mutex::default(),
            count: AtomicUsize::new(0),
            marks: AtomicU64::new(0),
            resetting: tokio::sync::Mutex::new(()),
            failed_at: Mutex::new(None),
        }
    }

    fn failed_lately(&self) -> bool {
        self.failed_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some_and(|at| at.elapsed() < RETRY)
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.topics.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Topics marked and not reset yet.
    pub fn pending(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// An event of `topic` may not have been published.
    pub fn mark(&self, topic: &str) {
        let mark = self.marks.fetch_add(1, Ordering::Relaxed);
        let mut topics = self.topics();
        if topics.len() >= MAX_TOPICS && !topics.contains_key(topic) {
            tracing::error!(topic, "too many topics missed events during this Redis outage; this one is not reset");
            return;
        }
        topics.insert(topic.to_string(), mark);
        self.count.store(topics.len(), Ordering::Relaxed);
    }

    /// Resets `topic` if it is marked; an error when Redis does not take the reset. While
    /// Redis is still away (a reset failed less than `RETRY` ago) it fails at once instead of
    /// waiting up to a second once more. The caller marks the topic again on any error, so
    /// the event it could not publish is covered by a later reset.
    pub async fn settle(&self, topic: &str) -> Result<(), BrokerError> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        if !self.topics().contains_key(topic) {
            return Ok(());
        }
        let away = || BrokerError("redis: topics that missed events cannot be reset yet".into());
        if self.failed_lately() {
            return Err(away());
        }
        let Ok(_one) = tokio::time::timeout(COMMAND_TIMEOUT, self.resetting.lock()).await else { return Err(away()) };
        // The retry task may have just failed while this waited: no second attempt then, so a
        // publish during an outage stays within about a second.
        if self.failed_lately() {
            return Err(away());
        }
        // Looked up again under the lock: the retry task may have reset it meanwhile.
        let Some(mark) = self.topics().get(topic).copied() else { return Ok(()) };
        self.reset(topic).await?;
        self.clear(topic, mark);
        Ok(())
    }

    /// Resets every marked topic, stopping at the first failure (Redis is still away); the
    /// topics reset and their new epochs.
    ///
    /// With a deadline, no new reset starts after it (one under way finishes, within
    /// `COMMAND_TIMEOUT`), so what was done is known.
    pub async fn flush(&self, deadline: Option<Instant>) -> HashSet<(String, String)> {
        let mut done = HashSet::new();
        let _one = match deadline {
            Some(at) => match tokio::time::timeout_at(at.into(), self.resetting.lock()).await {
                Ok(one) => one,
                Err(_) => return done,
            },
            None => self.resetting.lock().await,
        };
        let pending: Vec<String> = self.topics().keys().cloned().collect();
        for topic in pending {
            if deadline.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            // Read now: a publish that failed while this waited marked it again, and this
            // reset covers that event too.
            let Some(mark) = self.topics().get(&topic).copied() else { continue };
            match self.reset(&topic).await {
                Ok(epoch) => {
                    self.clear(&topic, mark);
                    done.insert((topic, epoch));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis: resetting topics that missed events; retrying");
                    break;
                }
            }
        }
        done
    }

    fn clear(&self, topic: &str, mark: u64) {
        let mut topics = self.topics();
        if topics.get(topic) == Some(&mark) {
            topics.remove(topic);
            self.count.store(topics.len(), Ordering::Relaxed);
            tracing::info!(topic, "redis: a topic that missed events has a new epoch; its subscribers reload");
        }
    }

    /// Gives `topic` a new epoch; which one.
    async fn reset(&self, topic: &str) -> Result<String, BrokerError> {
        let mut con = self.commands.get();
        let epoch = new_epoch();
        let mut call = self.script.key(key(&self.prefix, topic, "meta"));
        call.key(key(&self.prefix, topic, "log")).arg(&epoch).arg(ms(self.meta_ttl)).arg(&self.channel).arg(topic);
        let call = call.invoke_async::<i64>(&mut con);
        let result = match tokio::time::timeout(COMMAND_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(epoch),
            Ok(Err(e)) => {
                self.commands.check(&e);
                Err(BrokerError(format!("redis reset: {e}")))
            }
            Err(_) => Err(BrokerError(format!("redis reset: no answer within {} ms", COMMAND_TIMEOUT.as_millis()))),
        };
        *self.failed_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = result.is_err().then(Instant::now);
        result
    }

    /// Redis answers again (the live feed reconnected): a publish may try a reset at once.
    pub fn redis_is_back(&self) {
        *self.failed_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// Retries the resets until `stop`. (While this instance's feed is down, a reset reaches its
/// own subscribers only as the feed's reconnect does: they reload once either way.)
pub(super) async fn run(u: Arc<Unpublished>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
        if u.count.load(Ordering::Relaxed) > 0 {
            u.flush(None).await;
        }
    }
}
