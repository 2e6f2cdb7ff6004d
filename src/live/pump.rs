//! The socket's writer. It pulls live events straight from the socket's feeds (the topics'
//! broadcast receivers) and the few other frames from the socket's queue, and writes them in
//! batches with one flush per batch: under load one wake-up and one write carry everything
//! that arrived meanwhile, for every subscription of the socket.
//!
//! The bounded queue of the protocol is the pump's own backlog: while the client takes data,
//! the pump takes a batch at a time; once the client stops taking it (the socket's buffers are
//! full), the pump keeps pulling into its backlog, and a backlog over the limit closes the
//! socket with 4008. A slow client therefore costs the hub at most its limit in frames that
//! are shared with every other socket anyway.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt, future::poll_fn};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;

use super::connection::{CloseReason, Socket};
use super::feed::Feed;
use super::protocol::{self, close};
use crate::hub::{History, Published};

/// A frame the client does not take within this time means the socket is stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The close frame waits behind unread data; a client that reads again within this time learns
/// why it was closed, one that does not is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames taken per pass while the client keeps up: a busy socket writes many frames with one
/// syscall, and a burst is written as it is taken, not all taken first.
const MAX_BATCH: usize = 64;
/// A backlog that grew past this many frames gives its memory back once written.
const KEEP_CAPACITY: usize = 256;

/// What other tasks send the writer, in the order it must act on them.
pub(super) enum Out {
    /// A frame that is not a live event: `subscribed`, errors, answers, pings.
    Frame(Message),
    /// A subscription whose start was sent: its live events follow from the feed's position.
    /// Boxed: the queue allocates its slots in blocks, and every idle socket holds one; a slot
    /// as large as a feed would make that block twice as large for a message sent once.
    Follow(Box<Feed>),
    /// The topic's subscription ended or was replaced: drop any feed that is no longer current.
    Unfollow,
}

fn text_len(m: &Message) -> usize {
    if let Message::Text(t) = m { t.len() } else { 0 }
}

/// Why a pass of the pump stopped.
enum Step {
    /// Told to stop (the socket is closing) or the queue is gone.
    Stop,
    /// The backlog went over the limit.
    Overflow,
    /// The client took nothing for `WRITE_TIMEOUT`.
    Stuck,
    /// The connection is gone.
    Failed,
    /// Feed `i` has a gap, for this reason: repair it from history (async), then go on.
    Gap(usize, &'static str),
}

/// Why a feed's gap is there; `FEED_RESTARTED` also needs a new receiver.
const GAP: &str = "gap";
const LAGGED: &str = "lagged";
const FEED_RESTARTED: &str = "feed_restarted";

pub(super) struct Pump {
    sink: SplitSink<WebSocket, Message>,
    rx: mpsc::UnboundedReceiver<Out>,
    socket: Arc<Socket>,
    feeds: Vec<Feed>,
    backlog: VecDeque<Message>,
    backlog_bytes: usize,
    limit: usize,
    /// Frames were written since the last completed flush.
    unflushed: bool,
    /// The client is not taking data right now.
    blocked: bool,
    /// While blocked: when that turns into `Stuck`. Only a blocked socket holds a timer.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Pump {
    pub fn new(sink: SplitSink<WebSocket, Message>, rx: mpsc::UnboundedReceiver<Out>, socket: Arc<Socket>, limit: usize) -> Self {
        Pump {
            sink,
            rx,
            socket,
            feeds: Vec::new(),
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            limit,
            unflushed: false,
            blocked: false,
            deadline: None,
        }
    }

    /// Adds a frame to the backlog; `false` once that would pass the limit. One frame alone may
    /// exceed it (a big snapshot); a backlog may not.
    fn enqueue(&mut self, m: Message) -> bool {
        let n = text_len(&m);
        if self.backlog_bytes > 0 && self.backlog_bytes + n > self.limit {
            return false;
        }
        self.backlog_bytes += n;
        self.backlog.push_back(m);
        true
    }

    /// Queues an event if this socket may see it; `false` when the backlog is full.
    fn deliver(&mut self, p: &Published) -> bool {
        if !self.socket.who.scope.allows(&p.event.org_id) {
            return true;
        }
        self.enqueue(Message::Text(protocol::event(p)))
    }

    fn is_current(&self, topic: &str, generation: u64) -> bool {
        self.socket.subs.lock().map(|s| s.get(topic).is_some_and(|(g, _)| *g == generation)).unwrap_or(false)
    }

    fn follow(&mut self, feed: Feed) {
        // A start that lost a race with `unsubscribe` or a newer `subscribe` hands over a feed
        // nobody wants any more.
        if !self.is_current(&feed.topic, feed.generation) {
            return;
        }
        self.feeds.retain(|f| f.topic != feed.topic);
        self.feeds.push(feed);
    }

    fn unfollow(&mut self) {
        let subs = self.socket.subs.lock();
        if let Ok(subs) = subs {
            self.feeds.retain(|f| subs.get(&f.topic).is_some_and(|(g, _)| *g == f.generation));
        }
    }

    /// One live event of feed `i`, checked against the feed's position.
    fn on_event(&mut self, i: usize, r: Result<Arc<Published>, RecvError>) -> Result<(), Step> {
        let at = &mut self.feeds[i].at;
        match r {
            // Already sent (the start's snapshot position or recovery covered it).
            Ok(p) if p.epoch == at.epoch && p.seq <= at.seq => Ok(()),
            Ok(p) if p.epoch == at.epoch && p.seq == at.seq + 1 => {
                at.seq = p.seq;
                if self.deliver(&p) { Ok(()) } else { Err(Step::Overflow) }
            }
            Ok(_) => Err(Step::Gap(i, GAP)),
            Err(RecvError::Lagged(_)) => Err(Step::Gap(i, LAGGED)),
            Err(RecvError::Closed) => Err(Step::Gap(i, FEED_RESTARTED)),
        }
    }

    /// Takes what is there and writes what the client takes. One pass per wake-up: every
    /// source is polled until it is pending (so it will wake the task again) and the sink, if
    /// it cannot take more, wakes it too; only a pass cut short by the batch cap goes round
    /// again. A second pass just to find nothing new cost, per frame and socket, another lock
    /// of the topic's broadcast queue and another look at the socket's own queue.
    fn poll_step(&mut self, cx: &mut Context<'_>, stopped: &mut oneshot::Receiver<()>) -> Poll<Step> {
        loop {
            // Sent or dropped: either way the socket is closing.
            if Pin::new(&mut *stopped).poll(cx).is_ready() {
                return Poll::Ready(Step::Stop);
            }
            // The batch cap stopped the pass before every feed was polled to pending: some may
            // have more and no wake-up registered.
            let mut cut_short = false;
            // The queue first: a `subscribed` frame goes before the events of the feed after it.
            while let Poll::Ready(out) = self.rx.poll_recv(cx) {
                match out {
                    None => return Poll::Ready(Step::Stop),
                    Some(Out::Frame(m)) => {
                        self.socket.outbox.taken(text_len(&m));
                        if !self.enqueue(m) {
                            return Poll::Ready(Step::Overflow);
                        }
                    }
                    Some(Out::Follow(feed)) => self.follow(*feed),
                    Some(Out::Unfollow) => self.unfollow(),
                }
            }
            // A batch while the client keeps up; everything while it does not, so the limit
            // sees the whole backlog.
            let cap = if self.blocked { usize::MAX } else { MAX_BATCH };
            for i in 0..self.feeds.len() {
                loop {
                    if self.backlog.len() >= cap {
                        cut_short = true;
                        break;
                    }
                    match self.feeds[i].poll_next(cx) {
                        Poll::Pending => break,
                        Poll::Ready(r) => {
                            if let Err(step) = self.on_event(i, r) {
                                return Poll::Ready(step);
                            }
                        }
                    }
                }
            }
            let wrote = match self.write(cx) {
                Ok(w) => w,
                Err(step) => return Poll::Ready(step),
            };
            // The deadline is for a client that takes nothing: one that takes data, however
            // slowly, starts it again (as a timeout per written batch would).
            if wrote {
                self.deadline = None;
            }
            if self.blocked {
                let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Step::Stuck);
                }
            } else {
                self.deadline = None;
            }
            // A pass cut short goes round again (with no cap if the client stopped taking data,
            // so the limit sees everything and every feed gets its wake-up).
            if !cut_short {
                return Poll::Pending;
            }
        }
    }

    /// Writes the backlog while the client takes it, then flushes once. `Ok(true)` if anything
    /// was written.
    fn write(&mut self, cx: &mut Context<'_>) -> Result<bool, Step> {
        let mut wrote = false;
        while !self.backlog.is_empty() {
            match self.sink.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    let Some(m) = self.backlog.pop_front() else { break };
                    self.backlog_bytes -= text_len(&m);
                    self.sink.start_send_unpin(m).map_err(|_| Step::Failed)?;
                    self.unflushed = true;
                    wrote = true;
                }
                Poll::Ready(Err(_)) => return Err(Step::Failed),
                Poll::Pending => {
                    self.blocked = true;
                    return Ok(wrote);
                }
            }
        }
        if self.backlog.capacity() > KEEP_CAPACITY {
            self.backlog = VecDeque::new();
        }
        if self.unflushed {
            match self.sink.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return Err(Step::Failed),
                Poll::Pending => {
                    self.blocked = true;
                    return Ok(wrote);
                }
            }
        }
        self.blocked = false;
        Ok(wrote)
    }

    /// Repairs feed `i`'s gap from the topic's history; when history cannot cover it, the client
    /// is told to resync and the feed ends. `false` when the backlog overflowed.
    async fn repair(&mut self, i: usize, reason: &'static str) -> bool {
        let app = self.socket.app.clone();
        app.metrics.ws_gaps.inc();
        let feed = &mut self.feeds[i];
        if reason == FEED_RESTARTED {
            feed.resubscribe(app.broker.subscribe(&feed.topic));
        }
        let (topic, at) = (feed.topic.clone(), feed.at.clone());
        match app.broker.since(&topic, &at).await {
            Ok(History::Recovered(missed)) => {
                let mut last = at.seq;
                for p in missed.iter().filter(|p| p.seq > at.seq) {
                    if !self.deliver(p) {
                        return false;
                    }
                    last = p.seq;
                }
                self.feeds[i].at.seq = last;
                true
            }
            Ok(History::Lost) | Err(_) => {
                app.metrics.ws_resyncs.inc();
                let feed = self.feeds.swap_remove(i);
                self.socket.forget(&feed.topic, feed.generation);
                self.enqueue(Message::Text(protocol::resync(&feed.topic, reason)))
            }
        }
    }
}

/// Sends until told to stop, then the close frame (if there is a reason to give). The stop is a
/// oneshot, checked on every pass: cheaper than a cancellation token's lock.
pub(super) async fn run(mut pump: Pump, mut stopped: oneshot::Receiver<()>, closing: Arc<Mutex<Option<CloseReason>>>) {
    loop {
        let step = poll_fn(|cx| pump.poll_step(cx, &mut stopped)).await;
        let overflowed = match step {
            Step::Stop => break,
            Step::Failed => return,
            Step::Stuck => {
                if let Ok(mut c) = closing.lock() {
                    *c = Some((close::TOO_SLOW, "too slow: a frame was not taken in time"));
                }
                break;
            }
            Step::Overflow => true,
            // Boxed: the repair's futures are large and rarely needed; the pump lives for hours.
            Step::Gap(i, reason) => !Box::pin(pump.repair(i, reason)).await,
        };
        if overflowed {
            // The socket's task gives the reason and tells us to stop.
            pump.socket.outbox.overflow.cancel();
            let _ = stopped.await;
            break;
        }
    }
    let reason = closing.lock().ok().and_then(|c| *c);
    if let Some((code, reason)) = reason {
        if code == close::TOO_SLOW {
            pump.socket.app.metrics.ws_slow_closed.inc();
        }
        // Queued behind what the client has not read yet; it gets a while to get there.
        let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, pump.sink.send(frame)).await;
    }
}
