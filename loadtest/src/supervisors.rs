//! A crowd of supervisor sockets for the `fanout` scenario. Each socket is one task that
//! connects, subscribes to one topic, and then reads every frame: it checks the topic's
//! sequence numbers (lost, duplicated, reordered) and, for frames that carry a message id of
//! the traffic generator, records the time from the webhook's send to the frame's arrival.
//! Send and receive times come from the same `Instant` base in this one process: one clock.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::lean_ws::{Frame, LeanWs};
use crate::load::Latency;

/// What a delivered frame was, for latency by kind. The hub routes partials and speech to
/// `call:<id>` only, finals to both `calls` and `call:<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Partial = 0,
    Speech = 1,
    FinalOnCall = 2,
    FinalOnCalls = 3,
}

pub const CLASS_NAMES: [&str; 4] =
    ["transcript.partial @ call:<id>", "speech @ call:<id>", "transcript.final @ call:<id>", "transcript.final @ calls"];

/// Marks a transcript as the generator's message `k`: the text starts with `lt<k> `.
pub const MARK: &str = "lt";

/// How long one socket may take to connect, and then to be subscribed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);
/// After our close frame, how long we wait for the connection to end.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// Latency samples a socket keeps before it takes a shared histogram's lock.
const BATCH: usize = 256;
/// Gaps remembered per socket, to tell a late (reordered) frame from a duplicate.
const MAX_MISSING: usize = 100_000;
const SHARDS: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn new_hist(sigfig: u8) -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    // 1 µs .. 10 min; larger values saturate at the top.
    Histogram::new_with_bounds(1, 600_000_000, sigfig)
}

struct Hists {
    by_class: Vec<Histogram<u64>>,
    /// By second of send time since the traffic started, all classes.
    per_sec: Vec<Histogram<u64>>,
}

/// What the traffic generator and the sockets share during one phase.
pub struct Tally {
    base: Instant,
    /// When the traffic started, ns since `base`.
    start_ns: AtomicU64,
    /// Per message: ns since `base` + 1 when its webhook was sent; 0 = not sent.
    sent_at: Vec<AtomicU64>,
    /// Per message: frames that carried it, over all sockets.
    delivered: Vec<AtomicU32>,
    /// Frames that named a message id that was never sent (should stay 0).
    pub unmatched: AtomicU64,
    shards: Vec<Mutex<Hists>>,
}

impl Tally {
    pub fn new(messages: usize, seconds: usize) -> Result<Self, hdrhistogram::CreationError> {
        let mut shards = Vec::with_capacity(SHARDS);
        for _ in 0..SHARDS {
            let mut by_class = Vec::new();
            for _ in CLASS_NAMES {
                by_class.push(new_hist(3)?);
            }
            let mut per_sec = Vec::new();
            for _ in 0..seconds {
                per_sec.push(new_hist(2)?);
            }
            shards.push(Mutex::new(Hists { by_class, per_sec }));
        }
        Ok(Tally {
            base: Instant::now(),
            start_ns: AtomicU64::new(0),
            sent_at: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            delivered: (0..messages).map(|_| AtomicU32::new(0)).collect(),
            unmatched: AtomicU64::new(0),
            shards,
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    pub fn start_traffic(&self, at: Instant) {
        self.start_ns.store(at.saturating_duration_since(self.base).as_nanos() as u64, Ordering::Release);
    }

    /// Called right before message `k`'s webhook goes out.
    pub fn mark_sent(&self, k: usize) {
        if let Some(s) = self.sent_at.get(k) {
            s.store(self.now_ns() + 1, Ordering::Release);
        }
    }

    pub fn delivered(&self, k: usize) -> u32 {
        self.delivered.get(k).map(|d| d.load(Ordering::Acquire)).unwrap_or(0)
    }

    pub fn delivered_total(&self) -> u64 {
        self.delivered.iter().map(|d| d.load(Ordering::Relaxed) as u64).sum()
    }

    /// A frame for message `k` arrived at `now_ns`: (latency µs, second of its send) if it was sent.
    fn arrived(&self, k: usize, now_ns: u64) -> Option<(u64, usize)> {
        let sent = self.sent_at.get(k)?.load(Ordering::Acquire);
        if sent == 0 {
            return None;
        }
        self.delivered.get(k)?.fetch_add(1, Ordering::AcqRel);
        let sent = sent - 1;
        let second = (sent.saturating_sub(self.start_ns.load(Ordering::Acquire)) / 1_000_000_000) as usize;
        Some((now_ns.saturating_sub(sent) / 1000, second))
    }

    fn record(&self, shard: usize, batch: &mut Vec<(Class, usize, u64)>) {
        if batch.is_empty() {
            return;
        }
        let mut h = lock(&self.shards[shard % SHARDS]);
        for (class, second, micros) in batch.drain(..) {
            let v = micros.max(1);
            if let Some(c) = h.by_class.get_mut(class as usize) {
                c.saturating_record(v);
            }
            if let Some(s) = h.per_sec.get_mut(second) {
                s.saturating_record(v);
            }
        }
    }

    /// Merged histograms: every delivery, by class, per second of send time.
    pub fn histograms(&self) -> Result<Merged, hdrhistogram::CreationError> {
        let mut by_class: Vec<Histogram<u64>> = Vec::new();
        let mut per_sec: Vec<Histogram<u64>> = Vec::new();
        for shard in &self.shards {
            let h = lock(shard);
            if by_class.is_empty() {
                by_class = h.by_class.clone();
                per_sec = h.per_sec.clone();
                continue;
            }
            for (a, b) in by_class.iter_mut().zip(&h.by_class) {
                let _ = a.add(b);
            }
            for (a, b) in per_sec.iter_mut().zip(&h.per_sec) {
                let _ = a.add(b);
            }
        }
        let mut all = new_hist(3)?;
        for h in &by_class {
            let _ = all.add(h);
        }
        Ok(Merged { all, by_class, per_sec })
    }
}

pub struct Merged {
    pub all: Histogram<u64>,
    pub by_class: Vec<Histogram<u64>>,
    pub per_sec: Vec<Histogram<u64>>,
}

/// One socket's view of its subscription, when it ended.
#[derive(Debug, Clone, Default)]
pub struct SocketOutcome {
    pub id: usize,
    pub topic: String,
    pub subscribed: bool,
    pub open_error: Option<String>,
    pub epoch: String,
    /// The position in the `subscribed` answer; events continue from the next one.
    pub start_seq: u64,
    pub last_seq: u64,
    /// Sequence number of the last event that carried a generated message: the same on every
    /// socket of a topic when none lost the tail (presence events of the teardown come after it).
    pub last_marked_seq: u64,
    pub frames: u64,
    pub events: u64,
    /// Events that carried a generator message id.
    pub marked: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub epoch_changes: u64,
    pub resyncs: u64,
    pub error_frames: u64,
    /// Frames that were not JSON of the protocol's shape.
    pub bad_frames: u64,
    /// Events of a topic this socket did not subscribe to.
    pub foreign: u64,
    /// The hub closed the socket before we did: its close code (0 = no close frame, dropped).
    pub closed_by_hub: Option<u16>,
    pub close_reason: Option<String>,
    missing: BTreeSet<u64>,
}

impl SocketOutcome {
    /// Sequence bookkeeping for one event of our topic.
    fn sequence(&mut self, epoch: &str, seq: u64) {
        if epoch != self.epoch {
            // A new epoch means the hub lost its history: the client must reload (counted, not repaired).
            self.epoch_changes += 1;
            self.epoch = epoch.to_string();
            self.last_seq = seq;
            self.missing.clear();
            return;
        }
        if seq == self.last_seq + 1 {
            self.last_seq = seq;
        } else if seq > self.last_seq + 1 {
            self.lost += seq - self.last_seq - 1;
            for s in self.last_seq + 1..seq {
                if self.missing.len() >= MAX_MISSING {
                    break;
                }
                self.missing.insert(s);
            }
            self.last_seq = seq;
        } else if self.missing.remove(&seq) {
            // It came after all, just late: not lost but out of order.
            self.lost -= 1;
            self.reordered += 1;
        } else {
            self.duplicated += 1;
        }
    }
}

/// A string of a frame, borrowed from it unless it has escapes. serde's `borrow` borrows a
/// `Cow<str>` field but not one inside an `Option`: that one was copied into a new `String` for
/// every field of every frame.
#[derive(Debug)]
struct Text<'a>(Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
struct FrameIn<'a> {
    #[serde(rename = "type", borrow)]
    ty: Text<'a>,
    #[serde(default, borrow)]
    topic: Option<Text<'a>>,
    #[serde(default, borrow)]
    epoch: Option<Text<'a>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default, borrow)]
    event: Option<EventIn<'a>>,
}

#[derive(Deserialize)]
struct EventIn<'a> {
    #[serde(borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    data: Option<DataIn<'a>>,
}

#[derive(Deserialize)]
struct DataIn<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default)]
    turn: Option<serde_json::Value>,
}

/// A frame of the protocol's shape, or `None`. The text is checked as UTF-8 once, as a whole:
/// reading bytes, serde_json checks each string apart, which cost four times as much.
fn parse(text: &[u8]) -> Option<FrameIn<'_>> {
    serde_json::from_str(std::str::from_utf8(text).ok()?).ok()
}

/// The generator's message id in an event, and what kind of delivery it is.
fn marked(ev: &EventIn<'_>, on_calls: bool) -> Option<(usize, Class)> {
    let data = ev.data.as_ref()?;
    let from_text = || -> Option<usize> {
        let t = data.text.as_deref()?.strip_prefix(MARK)?;
        t.split(' ').next()?.parse().ok()
    };
    match &*ev.kind {
        "transcript.partial" => Some((from_text()?, Class::Partial)),
        "transcript.final" => Some((from_text()?, if on_calls { Class::FinalOnCalls } else { Class::FinalOnCall })),
        "speech" => Some((data.turn.as_ref()?.as_u64()? as usize, Class::Speech)),
        _ => None,
    }
}

/// Ready (subscribed) or failed, with the time from connect to `subscribed`.
struct Ready {
    id: usize,
    result: Result<Duration, String>,
}

struct Reader {
    tally: Arc<Tally>,
    out: SocketOutcome,
    on_calls: bool,
    batch: Vec<(Class, usize, u64)>,
}

impl Reader {
    fn frame(&mut self, text: &[u8], now_ns: u64) {
        self.out.frames += 1;
        let Some(f) = parse(text) else {
            self.out.bad_frames += 1;
            return;
        };
        match &*f.ty {
            "event" => {
                self.out.events += 1;
                if f.topic.as_deref() != Some(self.out.topic.as_str()) {
                    self.out.foreign += 1;
                    return;
                }
                if let (Some(epoch), Some(seq)) = (f.epoch.as_deref(), f.seq) {
                    self.out.sequence(epoch, seq);
                } else {
                    self.out.bad_frames += 1;
                }
                if let Some((k, class)) = f.event.as_ref().and_then(|e| marked(e, self.on_calls)) {
                    self.out.marked += 1;
                    self.out.last_marked_seq = self.out.last_marked_seq.max(f.seq.unwrap_or(0));
                    match self.tally.arrived(k, now_ns) {
                        Some((micros, second)) => {
                            self.batch.push((class, second, micros));
                            if self.batch.len() >= BATCH {
                                self.tally.record(self.out.id, &mut self.batch);
                            }
                        }
                        None => {
                            self.tally.unmatched.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            "resync" => self.out.resyncs += 1,
            "error" => self.out.error_frames += 1,
            _ => {}
        }
    }
}

/// Connects and subscribes; returns the socket and the `subscribed` position.
async fn open_one(url: &str, topic: &str, read_buffer: usize) -> Result<(LeanWs, String, u64), String> {
    let mut ws =
        tokio::time::timeout(CONNECT_TIMEOUT, LeanWs::connect(url, read_buffer)).await.map_err(|_| "connect timed out".to_string())??;
    if topic.is_empty() {
        // Connected and nothing else: the bare socket's cost.
        return Ok((ws, String::new(), 0));
    }
    let sub = serde_json::json!({ "type": "subscribe", "topic": topic }).to_string();
    ws.send_text(&sub).await.map_err(|e| format!("subscribe: {e}"))?;
    let deadline = tokio::time::Instant::now() + SUBSCRIBE_TIMEOUT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.map_err(|_| "no `subscribed` in time".to_string())??;
        match frame {
            Frame::Text(t) => {
                let Some(f) = parse(t) else { continue };
                match &*f.ty {
                    "subscribed" if f.topic.as_deref() == Some(topic) => {
                        let (epoch, seq) = (f.epoch.map(|e| e.0.into_owned()).unwrap_or_default(), f.seq.unwrap_or(0));
                        return Ok((ws, epoch, seq));
                    }
                    "error" => return Err(format!("error frame: {}", String::from_utf8_lossy(t).chars().take(200).collect::<String>())),
                    _ => continue,
                }
            }
            Frame::Close(code, reason) => return Err(format!("closed by the hub with {code} {reason}")),
            Frame::Binary => continue,
            Frame::End => return Err("the connection ended before `subscribed`".into()),
        }
    }
}

/// Our close; whatever the hub sends meanwhile (presence of other sockets leaving) is not counted.
async fn close_ours(ws: &mut LeanWs) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.send_close().await.is_err() {
            return;
        }
        while let Ok(Frame::Text(_) | Frame::Binary) = ws.next().await {}
    })
    .await;
}

/// What every socket task of a crowd gets.
#[derive(Clone)]
struct Shared {
    url: Arc<str>,
    read_buffer: usize,
    tally: Arc<Tally>,
    ready: mpsc::UnboundedSender<Ready>,
    stop: watch::Receiver<bool>,
}

async fn run_socket(id: usize, topic: String, sh: Shared, permit: OwnedSemaphorePermit) -> SocketOutcome {
    let Shared { url, read_buffer, tally, ready, mut stop } = sh;
    let on_calls = topic == "calls";
    let mut out = SocketOutcome { id, topic: topic.clone(), ..SocketOutcome::default() };
    let t0 = Instant::now();
    let (mut ws, epoch, seq) = match open_one(&url, &topic, read_buffer).await {
        Ok(x) => x,
        Err(e) => {
            out.open_error = Some(e.clone());
            let _ = ready.send(Ready { id, result: Err(e) });
            return out;
        }
    };
    out.subscribed = true;
    out.epoch = epoch;
    out.start_seq = seq;
    out.last_seq = seq;
    let _ = ready.send(Ready { id, result: Ok(t0.elapsed()) });
    drop(permit);
    let mut r = Reader { tally: tally.clone(), out, on_calls, batch: Vec::new() };
    // The stop is sent once, so "changed" means "stopping". Both checks are made per frame, so they
    // must be cheap: one future waits for the whole life of the socket (a fresh `changed()` per
    // frame would register with the watch's shared waiter list and leave it again, for every
    // frame of every socket), and the per-frame check is an atomic load (`has_changed`).
    let peek = stop.clone();
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => {
                close_ours(&mut ws).await;
                break;
            }
            msg = ws.next() => {
                let now_ns = tally.now_ns();
                // The stop branch is not always the one taken once the stop is sent (smoke runs counted
                // presence events of other sockets leaving): what arrives then is teardown, not traffic.
                if peek.has_changed().unwrap_or(true) {
                    close_ours(&mut ws).await;
                    break;
                }
                match msg {
                    Ok(Frame::Text(t)) => r.frame(t, now_ns),
                    Ok(Frame::Close(code, reason)) => {
                        r.out.closed_by_hub = Some(code);
                        r.out.close_reason = Some(reason);
                        break;
                    }
                    Ok(Frame::Binary) => r.out.bad_frames += 1,
                    Err(e) => {
                        r.out.closed_by_hub = Some(0);
                        r.out.close_reason = Some(e);
                        break;
                    }
                    Ok(Frame::End) => {
                        r.out.closed_by_hub = Some(0);
                        r.out.close_reason = Some("connection ended".into());
                        break;
                    }
                }
            }
        }
    }
    tally.record(id, &mut r.batch);
    r.out
}

/// How the opening went.
#[derive(Debug, Clone, Serialize)]
pub struct OpenStats {
    pub requested: usize,
    pub subscribed: usize,
    pub failed: usize,
    pub error_samples: Vec<String>,
    pub wall_s: f64,
    /// Sockets subscribed per second of opening.
    pub rate: f64,
    /// Connect + handshake + `subscribed` (with its snapshot), per socket.
    pub latency: Option<Latency>,
}

/// Open sockets and a way to close them all.
pub struct Crowd {
    handles: Vec<JoinHandle<SocketOutcome>>,
    stop: watch::Sender<bool>,
    /// Which sockets are subscribed, by id.
    pub subscribed: Vec<bool>,
    pub open: OpenStats,
}

/// Opens one socket per topic (an empty topic: connect only), `rate` per second and at most `concurrency` handshakes at once,
/// and returns once every one is subscribed or has failed. Sockets from index `settle` on are opened only after every
/// earlier one is subscribed or has failed (0: no wait), so nothing the earlier ones cause (presence) reaches them.
pub async fn open(
    url: &str,
    topics: Vec<String>,
    rate: f64,
    concurrency: usize,
    read_buffer: usize,
    tally: Arc<Tally>,
    settle: usize,
) -> Result<Crowd, hdrhistogram::CreationError> {
    let url: Arc<str> = Arc::from(url);
    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Ready>();
    let shared = Shared { url, read_buffer, tally, ready: ready_tx, stop: stop_rx };
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(topics.len());
    let mut subscribed = vec![false; topics.len()];
    let mut lat = new_hist(3)?;
    let (mut ok, mut failed, mut samples) = (0usize, 0usize, Vec::<String>::new());
    let mut take = |r: Ready, ok: &mut usize, failed: &mut usize| match r.result {
        Ok(d) => {
            *ok += 1;
            if let Some(s) = subscribed.get_mut(r.id) {
                *s = true;
            }
            lat.saturating_record((d.as_micros() as u64).max(1));
        }
        Err(e) => {
            *failed += 1;
            if samples.len() < 5 && !samples.contains(&e) {
                samples.push(e);
            }
        }
    };
    // Every socket answers within its connect and subscribe timeouts; the waits below are only a backstop.
    let backstop = CONNECT_TIMEOUT + SUBSCRIBE_TIMEOUT + Duration::from_secs(5);
    let (mut paced_from, mut first_paced) = (started, 0usize);
    for (id, topic) in topics.iter().enumerate() {
        if id > 0 && id == settle {
            let deadline = tokio::time::Instant::now() + backstop;
            while ok + failed < handles.len() {
                match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                    Ok(Some(r)) => take(r, &mut ok, &mut failed),
                    Ok(None) | Err(_) => break,
                }
            }
            (paced_from, first_paced) = (Instant::now(), id);
        }
        tokio::time::sleep_until((paced_from + Duration::from_secs_f64((id - first_paced) as f64 / rate)).into()).await;
        let Ok(permit) = gate.clone().acquire_owned().await else { break };
        while let Ok(r) = ready_rx.try_recv() {
            take(r, &mut ok, &mut failed);
        }
        handles.push(tokio::spawn(run_socket(id, topic.clone(), shared.clone(), permit)));
    }
    drop(shared);
    let deadline = tokio::time::Instant::now() + backstop;
    while ok + failed < handles.len() {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(r)) => take(r, &mut ok, &mut failed),
            Ok(None) | Err(_) => break,
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    let requested = topics.len();
    let failed_total = requested - ok;
    let open = OpenStats {
        requested,
        subscribed: ok,
        failed: failed_total,
        error_samples: samples,
        wall_s,
        rate: ok as f64 / wall_s.max(1e-3),
        latency: (!lat.is_empty()).then(|| Latency::of(&lat)),
    };
    Ok(Crowd { handles, stop, subscribed, open })
}

impl Crowd {
    /// Sockets the hub closed so far (their tasks ended on their own).
    pub fn ended(&self) -> usize {
        self.handles.iter().filter(|h| h.is_finished()).count()
    }

    /// Closes every socket (a close frame each) and returns what each one saw.
    pub async fn close(self, within: Duration) -> (Vec<SocketOutcome>, usize) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + within;
        let mut outcomes = Vec::with_capacity(self.handles.len());
        let mut lost_tasks = 0;
        for mut h in self.handles {
            match tokio::time::timeout_at(deadline, &mut h).await {
                Ok(Ok(o)) => outcomes.push(o),
                Ok(Err(_)) => lost_tasks += 1,
                Err(_) => {
                    h.abort();
                    lost_tasks += 1;
                }
            }
        }
        (outcomes, lost_tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(seq: u64) -> SocketOutcome {
        SocketOutcome { epoch: "e".into(), start_seq: seq, last_seq: seq, ..SocketOutcome::default() }
    }

    #[test]
    fn a_gap_is_lost_until_the_missing_event_comes_late_then_it_is_reordered() {
        let mut s = sub(10);
        for seq in [11, 12, 14, 15] {
            s.sequence("e", seq);
        }
        assert_eq!((s.lost, s.reordered, s.duplicated), (1, 0, 0));
        s.sequence("e", 13);
        assert_eq!((s.lost, s.reordered, s.duplicated), (0, 1, 0));
        s.sequence("e", 15);
        s.sequence("e", 9);
        assert_eq!((s.lost, s.reordered, s.duplicated), (0, 1, 2));
        assert_eq!(s.last_seq, 15);
    }

    #[test]
    fn a_new_epoch_is_counted_and_restarts_the_count() {
        let mut s = sub(3);
        s.sequence("e", 4);
        s.sequence("f", 1);
        s.sequence("f", 2);
        assert_eq!((s.epoch_changes, s.lost, s.last_seq), (1, 0, 2));
    }

    #[test]
    fn marked_events_name_their_message_and_class() {
        let f: FrameIn<'_> = serde_json::from_str(
            r#"{"type":"event","topic":"calls","epoch":"e","seq":3,"event":{"kind":"transcript.final","at":"t","data":{"text":"lt42 hello"}}}"#,
        )
        .unwrap();
        assert_eq!(marked(f.event.as_ref().unwrap(), true), Some((42, Class::FinalOnCalls)));
        let f: FrameIn<'_> =
            serde_json::from_str(r#"{"type":"event","topic":"call:x","epoch":"e","seq":3,"event":{"kind":"speech","data":{"turn":7}}}"#)
                .unwrap();
        assert_eq!(marked(f.event.as_ref().unwrap(), false), Some((7, Class::Speech)));
        let f: FrameIn<'_> = serde_json::from_str(
            r#"{"type":"event","topic":"calls","epoch":"e","seq":3,"event":{"kind":"presence","data":{"watchers":[]}}}"#,
        )
        .unwrap();
        assert_eq!(marked(f.event.as_ref().unwrap(), true), None);
    }

    #[test]
    fn frames_with_escaped_text_are_read_and_frames_that_are_not_utf8_or_json_are_not() {
        let f = parse(
            br#"{"type":"event","topic":"calls","epoch":"e","seq":4,"event":{"kind":"transcript.final","data":{"text":"lt9 say \"hi\""}}}"#,
        )
        .unwrap();
        assert!(matches!(f.event.as_ref().unwrap().data.as_ref().unwrap().text.as_ref().unwrap().0, Cow::Owned(_)));
        assert_eq!(marked(f.event.as_ref().unwrap(), true), Some((9, Class::FinalOnCalls)));
        let f = parse(br#"{"type":"event","topic":"calls","epoch":"e","seq":4}"#).unwrap();
        assert!(matches!(f.topic.as_ref().unwrap().0, Cow::Borrowed("calls")));
        assert!(parse(b"{\"type\":\"event\",\"topic\":\"\xff\"}").is_none());
        assert!(parse(b"not json").is_none());
    }

    #[test]
    fn a_frame_arriving_after_its_send_is_timed_and_counted() {
        let t = Tally::new(4, 2).unwrap();
        t.start_traffic(Instant::now());
        assert_eq!(t.arrived(1, t.now_ns()), None, "never sent");
        t.mark_sent(1);
        let (micros, second) = t.arrived(1, t.now_ns() + 2_000_000).unwrap();
        assert!(micros >= 2000, "{micros}");
        assert_eq!(second, 0);
        assert_eq!(t.delivered(1), 1);
        assert_eq!(t.delivered_total(), 1);
    }
}
