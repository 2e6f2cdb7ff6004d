//! Following one run's events on its session topic, from any instance: live events from the
//! broker, and — after a resume, a lagging receiver or a broken feed — the missed ones from the
//! topic's history. Events are numbered by the run (`n`), so each is delivered exactly once and
//! in order; a hole history cannot fill is reported as `Lost` instead of being papered over.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::events::RunEvent;
use crate::hub::{DynBroker, Published};

#[derive(Debug)]
pub enum Followed {
    Event(RunEvent),
    /// Events after the last one delivered are gone from history: the follower should reload
    /// the session instead.
    Lost,
}

pub struct Follower {
    broker: DynBroker,
    topic: String,
    run_id: String,
    rx: broadcast::Receiver<Arc<Published>>,
    /// The last `n` delivered.
    last: u64,
    pending: VecDeque<RunEvent>,
    history_limit: usize,
    finished: bool,
    /// The session's place this stream holds, given back with the follower.
    slot: Option<super::streams::StreamSlot>,
}

impl Follower {
    /// Subscribes at once, so nothing published from now on is missed; events up to and
    /// including `after` are skipped.
    pub fn new(broker: DynBroker, topic: String, run_id: String, after: u64, history_limit: usize) -> Self {
        let rx = broker.subscribe(&topic);
        Self { broker, topic, run_id, rx, last: after, pending: VecDeque::new(), history_limit, finished: false, slot: None }
    }

    /// Holds the session's stream place until this follower is dropped.
    pub(super) fn holding(mut self, slot: super::streams::StreamSlot) -> Self {
        self.slot = Some(slot);
        self
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Loads what was published before the subscription (a resume); `false` when history no
    /// longer reaches back to the position. A position beyond what the run has published (a
    /// made-up or stale `Last-Event-ID`) restarts from the run's beginning instead of waiting
    /// for events that were already sent.
    pub async fn backfill(&mut self) -> bool {
        if let Ok(recent) = self.broker.recent(&self.topic, self.history_limit).await {
            let head = recent.iter().filter_map(RunEvent::from_published).filter(|ev| ev.run_id() == self.run_id).map(|ev| ev.n).max();
            if head.is_some_and(|h| h < self.last) {
                self.last = 0;
            }
        }
        self.repair(None).await
    }

    /// The next event, `Lost` once, or `None` after the run's last event.
    pub async fn next(&mut self) -> Option<Followed> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(ev) = self.pending.pop_front() {
                if ev.n <= self.last {
                    continue;
                }
                if ev.n == self.last + 1 {
                    return Some(self.deliver(ev));
                }
                let seen = ev.n;
                self.pending.clear();
                if !self.repair(Some(seen)).await {
                    return Some(self.lost());
                }
                continue;
            }
            // A hole, and the event seen past it (which history must then hold).
            let hole = match self.rx.recv().await {
                Ok(p) => match RunEvent::from_published(&p) {
                    Some(ev) if ev.run_id() == self.run_id && ev.n == self.last + 1 => return Some(self.deliver(ev)),
                    Some(ev) if ev.run_id() == self.run_id && ev.n > self.last + 1 => Some(Some(ev.n)),
                    _ => None,
                },
                Err(RecvError::Lagged(_)) => Some(None),
                Err(RecvError::Closed) => {
                    self.rx = self.broker.subscribe(&self.topic);
                    Some(None)
                }
            };
            if let Some(seen) = hole
                && !self.repair(seen).await
            {
                return Some(self.lost());
            }
        }
    }

    fn deliver(&mut self, ev: RunEvent) -> Followed {
        self.last = ev.n;
        self.finished = ev.is_terminal();
        Followed::Event(ev)
    }

    fn lost(&mut self) -> Followed {
        self.finished = true;
        Followed::Lost
    }

    /// Queues this run's events after `last` from history, in order; `false` when the next one
    /// is not there although later ones are (trimmed away), when history does not reach event
    /// `seen` that was already received live past a hole (another numbering's history: taking
    /// nothing from it would drop that event and every one after it), or when the broker
    /// cannot be read.
    async fn repair(&mut self, seen: Option<u64>) -> bool {
        let recent = match self.broker.recent(&self.topic, self.history_limit).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "chat follower cannot read history");
                return false;
            }
        };
        let mut mine: Vec<RunEvent> =
            recent.iter().filter_map(RunEvent::from_published).filter(|ev| ev.run_id() == self.run_id && ev.n > self.last).collect();
        mine.sort_by_key(|ev| ev.n);
        mine.dedup_by_key(|ev| ev.n);
        if let Some(first) = mine.first()
            && first.n != self.last + 1
        {
            return false;
        }
        if mine.windows(2).any(|w| w[1].n != w[0].n + 1) {
            return false;
        }
        if let Some(seen) = seen
            && mine.last().is_none_or(|ev| ev.n < seen)
        {
            return false;
        }
        self.pending = mine.into();
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::chat::events::{DELTA, DONE, run_event};
    use crate::hub::{BrokerLimits, MemoryBroker};

    fn broker(history: usize) -> DynBroker {
        Arc::new(MemoryBroker::new(BrokerLimits { history_size: history, ..BrokerLimits::default() }))
    }

    async fn emit(b: &DynBroker, run: &str, n: u64, kind: &str) {
        b.publish("chat:s", run_event(kind, "o", "s", run, n, json!({"content": format!("t{n}")}))).await.unwrap();
    }

    async fn collect(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(x) = f.next().await {
            out.push(match x {
                Followed::Event(ev) => format!("{}:{}", ev.kind(), ev.n),
                Followed::Lost => "lost".into(),
            });
        }
        out
    }

    #[tokio::test]
    async fn a_live_follower_sees_its_run_in_order_and_stops_at_the_end() {
        let b = broker(100);
        let mut f = Follower::new(b.clone(), "chat:s".into(), "r1".into(), 0, 100);
        emit(&b, "r1", 1, DELTA).await;
        emit(&b, "other", 1, DELTA).await;
        emit(&b, "r1", 2, DELTA).await;
        emit(&b, "r1", 3, DONE).await;
        assert_eq!(collect(&mut f).await, ["chat.delta:1", "chat.delta:2", "chat.done:3"]);
    }

    #[tokio::test]
    async fn a_resume_gets_exactly_what_came_after_its_position() {
        let b = broker(100);
        for n in 1..=4 {
            emit(&b, "r1", n, DELTA).await;
        }
        let mut f = Follower::new(b.clone(), "chat:s".into(), "r1".into(), 2, 100);
        assert!(f.backfill().await);
        emit(&b, "r1", 5, DONE).await;
        assert_eq!(collect(&mut f).await, ["chat.delta:3", "chat.delta:4", "chat.done:5"]);
    }

    #[tokio::test]
    async fn a_position_beyond_the_run_replays_it_from_the_start() {
        let b = broker(100);
        for n in 1..=3 {
            emit(&b, "r1", n, DELTA).await;
        }
        let mut f = Follower::new(b.clone(), "chat:s".into(), "r1".into(), 99, 100);
        assert!(f.backfill().await);
        emit(&b, "r1", 4, DONE).await;
        assert_eq!(collect(&mut f).await, ["chat.delta:1", "chat.delta:2", "chat.delta:3", "chat.done:4"]);
    }

    #[tokio::test]
    async fn a_position_older_than_history_is_reported_lost() {
        let b = broker(3);
        for n in 1..=6 {
            emit(&b, "r1", n, DELTA).await;
        }
        let mut f = Follower::new(b.clone(), "chat:s".into(), "r1".into(), 1, 3);
        assert!(!f.backfill().await);
    }

    #[tokio::test]
    async fn a_follower_that_fell_behind_catches_up_from_history() {
        let b = broker(10_000);
        let mut f = Follower::new(b.clone(), "chat:s".into(), "r1".into(), 0, 10_000);
        // More than the live channel holds, so the receiver lags and must repair.
        let total = 5_000;
        for n in 1..total {
            emit(&b, "r1", n, DELTA).await;
        }
        emit(&b, "r1", total, DONE).await;
        let got = collect(&mut f).await;
        assert_eq!(got.len() as u64, total);
        assert_eq!(got.last().map(String::as_str), Some(format!("chat.done:{total}").as_str()));
    }

    #[tokio::test]
    async fn a_hole_that_history_cannot_fill_is_lost_not_waited_on_forever() {
        // No history at all (as when the history read is another numbering's): event 2 never
        // arrived, event 3 did.
        let b = broker(0);
        let mut f = Follower::new(b.clone(), "chat:s".into(), "r1".into(), 0, 100);
        emit(&b, "r1", 1, DELTA).await;
        emit(&b, "r1", 3, DELTA).await;
        emit(&b, "r1", 4, DONE).await;
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), collect(&mut f))
            .await
            .expect("the follower gives up, it does not hang");
        assert_eq!(got, ["chat.delta:1", "lost"]);
    }
}
