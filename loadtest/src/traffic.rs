//! The `fanout` scenario's webhooks: a fixed set of calls created first (so `call:<id>` can be
//! subscribed), then an open-loop stream of messages each of which names itself, so the frame
//! it turns into can be matched to its send time: transcripts carry `lt<k> ` at the start of
//! their text, speech-updates carry `k` as their `turn`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use switchboard::simulate::Poster;
use switchboard::simulate::script::{self, Rng};

use crate::load::Latency;
use crate::supervisors::{MARK, Tally, new_hist};

/// What message `k` is, which decides the topics its event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// Not stored; `call:<id>` only.
    Partial,
    /// Stored (a transcript segment), then `calls` and `call:<id>`.
    Final,
    /// Not stored; `call:<id>` only.
    Speech,
}

/// The calls of one phase, each with the envelope its messages are sent in.
pub struct Calls {
    pub ids: Vec<String>,
    envelopes: Vec<Value>,
    ringing: Vec<Value>,
}

impl Calls {
    pub fn new(count: usize, org: &str, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let (mut ids, mut envelopes, mut ringing) = (Vec::new(), Vec::new(), Vec::new());
        let now = switchboard::clock::now_ms();
        for i in 0..count.max(1) as u64 {
            let s = script::call(seed.wrapping_mul(1_000_003).wrapping_add(i), org, now, "https://storage.vapi.ai", &mut rng);
            let mut msgs = s.messages.into_iter().map(|(_, m)| m);
            let (Some(first), Some(second)) = (msgs.next(), msgs.next()) else { continue };
            ids.push(s.call_id);
            ringing.push(first);
            // The in-progress status-update's envelope: the call as it is while people talk.
            envelopes.push(second);
        }
        Calls { ids, envelopes, ringing }
    }

    /// ringing and in-progress status-updates of every call: they create the calls.
    pub fn openers(&self) -> Vec<String> {
        self.ringing.iter().chain(self.envelopes.iter()).map(Value::to_string).collect()
    }

    /// An ended status-update for every call, so the next phase's `calls` snapshot lists only its own.
    pub fn closers(&self, ts: i64) -> Vec<String> {
        self.envelopes
            .iter()
            .map(|e| {
                let mut m = e.clone();
                m["message"]["status"] = json!("ended");
                m["message"]["endedReason"] = json!("customer-ended-call");
                m["message"]["timestamp"] = json!(ts);
                m.to_string()
            })
            .collect()
    }

    /// Message `k` of kind `msg` for call `call`.
    pub fn body(&self, k: usize, call: usize, msg: Msg, ts: i64) -> String {
        let mut env = self.envelopes.get(call).cloned().unwrap_or_else(|| json!({ "message": {} }));
        if let Some(m) = env.get_mut("message").and_then(Value::as_object_mut) {
            m.remove("status");
            m.insert("timestamp".into(), json!(ts));
            let role = if k.is_multiple_of(2) { "user" } else { "assistant" };
            match msg {
                Msg::Partial | Msg::Final => {
                    m.insert("type".into(), json!("transcript"));
                    m.insert("role".into(), json!(role));
                    m.insert("transcriptType".into(), json!(if msg == Msg::Final { "final" } else { "partial" }));
                    m.insert("transcript".into(), json!(format!("{MARK}{k} I'd like to move my cleaning to Tuesday")));
                }
                Msg::Speech => {
                    m.insert("type".into(), json!("speech-update"));
                    m.insert("role".into(), json!(role));
                    m.insert("status".into(), json!("started"));
                    m.insert("turn".into(), json!(k));
                }
            }
        }
        env.to_string()
    }
}

/// The schedule: message `k` is of kind `plan[k].0` for call `plan[k].1`. Calls take turns, so
/// each gets the same share; kinds are drawn from the mix.
pub fn plan(messages: usize, calls: usize, final_pct: u32, speech_pct: u32, seed: u64) -> Vec<(Msg, usize)> {
    let mut rng = Rng::new(seed ^ 0xfa_0075);
    (0..messages)
        .map(|k| {
            let r = rng.below(100) as u32;
            let kind = if r < final_pct {
                Msg::Final
            } else if r < final_pct + speech_pct {
                Msg::Speech
            } else {
                Msg::Partial
            };
            (kind, k % calls.max(1))
        })
        .collect()
}

/// Posts bodies a few at a time; returns how many got a 2xx.
pub async fn post_all(poster: &Arc<Poster>, bodies: Vec<String>) -> (usize, Vec<String>) {
    let mut ok = 0;
    let mut errors = Vec::new();
    for chunk in bodies.chunks(32) {
        let replies = futures::future::join_all(chunk.iter().map(|b| poster.post(b.clone()))).await;
        for r in replies {
            match r {
                Ok(r) if r.status().is_success() => ok += 1,
                Ok(r) => errors.push(format!("HTTP {}", r.status())),
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    errors.truncate(5);
    (ok, errors)
}

/// The webhook side of a delivery phase.
#[derive(Debug, Clone, Serialize)]
pub struct SendStats {
    pub target_rate: f64,
    pub duration_s: f64,
    pub scheduled: u64,
    pub sent: u64,
    /// sent / time from the first due send to the last actual send.
    pub achieved_rate: f64,
    pub ok: u64,
    pub non_2xx: u64,
    pub transport_errors: u64,
    /// Due but not sent: the in-flight cap, or the time cap while behind.
    pub not_sent: u64,
    /// Still unanswered at the drain deadline.
    pub unanswered: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub error_samples: Vec<String>,
    /// HTTP round trip of the webhook, from its actual send (exact, HdrHistogram).
    pub webhook_latency: Option<Latency>,
    /// The same by message kind: a stored final is published only after its commit, so a slow
    /// final answer means a late event, whatever the sockets do.
    pub webhook_latency_by_kind: BTreeMap<String, Latency>,
    /// From the last send until every answer was in (or the drain ran out).
    pub answers_drain_s: f64,
    /// How late sends left against the schedule.
    pub dispatch_lag: Option<Latency>,
    pub partials: u64,
    pub finals: u64,
    pub speech: u64,
}

/// Per message: 0 not answered, 1 2xx, 2 other status, 3 transport error.
pub struct Outcomes(pub Vec<AtomicU8>);

impl Outcomes {
    pub fn ok(&self, k: usize) -> bool {
        self.0.get(k).is_some_and(|o| o.load(Ordering::Acquire) == 1)
    }
}

pub struct Sender<'a> {
    pub poster: Arc<Poster>,
    pub calls: &'a Calls,
    pub plan: &'a [(Msg, usize)],
    pub tally: Arc<Tally>,
    pub rate: f64,
    pub duration: Duration,
    pub max_in_flight: u64,
    pub drain: Duration,
}

struct Flight {
    in_flight: AtomicU64,
    statuses: Mutex<BTreeMap<u16, u64>>,
    errors: Mutex<Vec<String>>,
    hist: Mutex<hdrhistogram::Histogram<u64>>,
    /// By `Msg` (partial, final, speech).
    by_kind: Mutex<Vec<hdrhistogram::Histogram<u64>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sender<'_> {
    /// Open loop: message `k` is due at `start + k / rate` and goes out then in its own task,
    /// whether or not earlier ones were answered. Its send time is taken right before the post.
    pub async fn run(&self) -> Result<(SendStats, Arc<Outcomes>), hdrhistogram::CreationError> {
        let scheduled = self.plan.len() as u64;
        let outcomes = Arc::new(Outcomes((0..self.plan.len()).map(|_| AtomicU8::new(0)).collect()));
        let flight = Arc::new(Flight {
            in_flight: AtomicU64::new(0),
            statuses: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(Vec::new()),
            hist: Mutex::new(new_hist(3)?),
            by_kind: Mutex::new(vec![new_hist(3)?, new_hist(3)?, new_hist(3)?]),
        });
        let mut lag = new_hist(3)?;
        let interval = 1.0 / self.rate;
        let start = Instant::now() + Duration::from_millis(5);
        self.tally.start_traffic(start);
        let hard_stop = start + self.duration + Duration::from_secs(2);
        let ts0 = switchboard::clock::now_ms();
        let (mut sent, mut not_sent, mut last_send) = (0u64, 0u64, start);
        let mut counts = [0u64; 3];
        for (k, (msg, call)) in self.plan.iter().enumerate() {
            let intended = start + Duration::from_secs_f64(k as f64 * interval);
            let now = Instant::now();
            if now >= hard_stop {
                not_sent += scheduled - k as u64;
                break;
            }
            if intended > now {
                tokio::time::sleep_until(intended.into()).await;
            } else if k % 64 == 0 {
                // Catching up must not starve the sockets' tasks.
                tokio::task::yield_now().await;
            }
            if flight.in_flight.load(Ordering::Relaxed) >= self.max_in_flight {
                not_sent += 1;
                continue;
            }
            counts[*msg as usize] += 1;
            lag.saturating_record((Instant::now().saturating_duration_since(intended).as_micros() as u64).max(1));
            // Distinct timestamps: the hub's dedup key includes the time.
            let body = self.calls.body(k, *call, *msg, ts0 + k as i64);
            flight.in_flight.fetch_add(1, Ordering::Relaxed);
            sent += 1;
            last_send = Instant::now();
            let (poster, tally, fl, oc, kind) = (self.poster.clone(), self.tally.clone(), flight.clone(), outcomes.clone(), *msg as usize);
            tokio::spawn(async move {
                tally.mark_sent(k);
                let t = Instant::now();
                let code = match poster.post(body).await {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) => {
                                let micros = (t.elapsed().as_micros() as u64).max(1);
                                lock(&fl.hist).saturating_record(micros);
                                if let Some(h) = lock(&fl.by_kind).get_mut(kind) {
                                    h.saturating_record(micros);
                                }
                                *lock(&fl.statuses).entry(status.as_u16()).or_insert(0) += 1;
                                if status.is_success() { 1 } else { 2 }
                            }
                            Err(e) => {
                                sample(&fl.errors, format!("reading the body: {e}"));
                                3
                            }
                        }
                    }
                    Err(e) => {
                        sample(&fl.errors, e.to_string());
                        3
                    }
                };
                if let Some(o) = oc.0.get(k) {
                    o.store(code, Ordering::Release);
                }
                fl.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        let gen_secs = last_send.saturating_duration_since(start).as_secs_f64().max(interval);
        let drain_started = Instant::now();
        while flight.in_flight.load(Ordering::Relaxed) > 0 && drain_started.elapsed() < self.drain {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let names = ["partial", "final", "speech"];
        let by_kind =
            lock(&flight.by_kind).iter().zip(names).filter(|(h, _)| !h.is_empty()).map(|(h, n)| (n.to_string(), Latency::of(h))).collect();
        let count = |c: u8| outcomes.0.iter().filter(|o| o.load(Ordering::Acquire) == c).count() as u64;
        let hist = lock(&flight.hist).clone();
        let stats = SendStats {
            target_rate: self.rate,
            duration_s: self.duration.as_secs_f64(),
            scheduled,
            sent,
            achieved_rate: if sent > 1 { (sent - 1) as f64 / gen_secs } else { sent as f64 / gen_secs },
            ok: count(1),
            non_2xx: count(2),
            transport_errors: count(3),
            not_sent,
            unanswered: flight.in_flight.load(Ordering::Relaxed),
            statuses: lock(&flight.statuses).clone(),
            error_samples: lock(&flight.errors).clone(),
            webhook_latency: (!hist.is_empty()).then(|| Latency::of(&hist)),
            webhook_latency_by_kind: by_kind,
            answers_drain_s: drain_started.elapsed().as_secs_f64(),
            dispatch_lag: (!lag.is_empty()).then(|| Latency::of(&lag)),
            partials: counts[Msg::Partial as usize],
            finals: counts[Msg::Final as usize],
            speech: counts[Msg::Speech as usize],
        };
        Ok((stats, outcomes))
    }
}

fn sample(errors: &Mutex<Vec<String>>, e: String) {
    let mut s = lock(errors);
    if s.len() < 5 && !s.contains(&e) {
        s.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_names_itself_and_its_call() {
        let calls = Calls::new(3, "org", 1);
        assert_eq!(calls.ids.len(), 3);
        let b: Value = serde_json::from_str(&calls.body(41, 2, Msg::Final, 1000)).unwrap();
        let m = &b["message"];
        assert_eq!(m["type"], "transcript");
        assert_eq!(m["transcriptType"], "final");
        assert!(m["transcript"].as_str().unwrap().starts_with("lt41 "));
        assert_eq!(m["call"]["id"], calls.ids[2].as_str());
        assert!(m.get("status").is_none(), "a transcript is not a status-update");
        let s: Value = serde_json::from_str(&calls.body(7, 0, Msg::Speech, 1000)).unwrap();
        assert_eq!(s["message"]["turn"], 7);
        assert_eq!(s["message"]["type"], "speech-update");
    }

    #[test]
    fn the_plan_follows_the_mix_and_calls_take_turns() {
        let p = plan(10_000, 4, 20, 10, 1);
        let share = |m: Msg| p.iter().filter(|(k, _)| *k == m).count() as f64 / p.len() as f64;
        assert!((0.17..0.23).contains(&share(Msg::Final)));
        assert!((0.08..0.12).contains(&share(Msg::Speech)));
        assert_eq!(p.iter().filter(|(_, c)| *c == 3).count(), 2500);
    }
}
