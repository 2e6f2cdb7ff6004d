//! Realistic VAPI traffic for one call: status changes, alternating turns streamed as partial
//! transcripts then a final, a tool call, the end-of-call report. Per call the mix is about
//! 70 % partials, 20 % finals and 10 % everything else, the shape of real assistant traffic.

use serde_json::{Value, json};

const LINES: &[(&str, &str)] = &[
    ("assistant", "Thanks for calling Riverside Dental, this is Ava. How can I help you today?"),
    ("user", "Hi, I'd like to move my cleaning appointment to next Tuesday afternoon."),
    ("assistant", "Of course. Let me check what we have open on Tuesday."),
    ("user", "Anything after two would be great."),
    ("assistant", "I have three o'clock or four fifteen. Which works best?"),
    ("user", "Three o'clock, please."),
    ("assistant", "Done. You're booked for three PM on Tuesday. Anything else?"),
    ("user", "Can you remind me what the cancellation policy is?"),
    ("assistant", "Cancellations need twenty four hours notice, otherwise a small fee applies."),
    ("user", "No, that's it. Thanks!"),
];

/// A tiny deterministic generator, so a run can be repeated exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

pub struct CallScript {
    pub call_id: String,
    pub org_id: String,
    pub customer: String,
    /// Messages in the order VAPI would send them, with the gap before each (ms of call time).
    pub messages: Vec<(u64, Value)>,
}

/// Builds one call. `recording_base` is where the report's recording URLs point.
pub fn call(seq: u64, org_id: &str, start_ms: i64, recording_base: &str, rng: &mut Rng) -> CallScript {
    let call_id = uuid_like(rng);
    let customer = format!("+1415555{:04}", 100 + rng.below(9000));
    let mut t = start_ms;
    let mut out: Vec<(u64, Value)> = Vec::new();
    let base = |t: i64, status: &str| envelope(&call_id, org_id, &customer, t, status);
    let mut push = |gap: u64, t: &mut i64, mut msg: Value, status: &str| {
        *t += gap as i64;
        let mut m = base(*t, status);
        if let (Some(dst), Some(src)) = (m.as_object_mut(), msg.as_object_mut()) {
            dst.append(src);
        }
        out.push((gap, json!({ "message": m })));
    };
    push(0, &mut t, json!({ "type": "status-update", "status": "ringing" }), "ringing");
    push(300 + rng.below(700), &mut t, json!({ "type": "status-update", "status": "in-progress" }), "in-progress");
    let turns = 10;
    let tool_after = 1 + rng.below(3) as usize * 2;
    for (i, (role, line)) in LINES.iter().cycle().take(turns).enumerate() {
        let words: Vec<&str> = line.split(' ').collect();
        let partials = 3 + rng.below(2) as usize;
        for p in 1..=partials {
            let upto = (words.len() * p / (partials + 1)).max(1);
            push(
                150 + rng.below(150),
                &mut t,
                json!({ "type": "transcript", "role": role, "transcriptType": "partial", "transcript": words[..upto].join(" ") }),
                "in-progress",
            );
        }
        push(
            200 + rng.below(300),
            &mut t,
            json!({ "type": "transcript", "role": role, "transcriptType": "final", "transcript": line }),
            "in-progress",
        );
        if i == tool_after {
            let id = format!("call_{}_{seq}", &uuid_like(rng)[..8]);
            let (name, args) = if rng.below(2) == 0 {
                ("lookupCustomer", json!({ "phone": customer }))
            } else {
                (
                    "bookAppointment",
                    json!({ "date": format!("2030-0{}-1{}", 1 + rng.below(8), rng.below(9)), "time": "15:00", "service": "cleaning" }),
                )
            };
            let item = json!({ "id": id, "type": "function", "function": { "name": name, "arguments": args } });
            push(100, &mut t, json!({ "type": "tool-calls", "toolCallList": [item.clone()], "toolCalls": [item] }), "in-progress");
        }
    }
    push(400, &mut t, json!({ "type": "status-update", "status": "ended", "endedReason": "customer-ended-call" }), "ended");
    let rec = format!("{}/{call_id}", recording_base.trim_end_matches('/'));
    let report = json!({
        "type": "end-of-call-report", "endedReason": "customer-ended-call", "cost": 0.0482,
        "analysis": { "summary": "Caller rescheduled a cleaning to Tuesday at 15:00.", "successEvaluation": "true" },
        "artifact": { "recording": { "stereoUrl": format!("{rec}-stereo.wav"), "mono": { "combinedUrl": format!("{rec}-mono.wav") } } },
        "startedAt": crate::clock::iso(start_ms), "endedAt": crate::clock::iso(t),
    });
    push(600, &mut t, report, "ended");
    CallScript { call_id, org_id: org_id.to_string(), customer, messages: out }
}

/// The fields every message carries: the (possibly stale) call, numbers, the time.
fn envelope(call_id: &str, org_id: &str, customer: &str, t: i64, status: &str) -> Value {
    json!({
        "timestamp": t,
        "call": {
            "id": call_id, "orgId": org_id, "type": "inboundPhoneCall", "status": status,
            "assistantId": "3f9d2b61-7a4e-4c0f-8d15-b2e6a9c47f08", "createdAt": crate::clock::iso(t),
            "customer": { "number": customer }, "phoneCallTransport": "pstn",
            "transport": { "provider": "twilio", "callSid": format!("CA{}", &call_id.replace('-', "")[..30]) },
            "monitor": {
                "listenUrl": format!("wss://phone-call-websocket.vapi.ai/{call_id}/listen"),
                "controlUrl": format!("https://phone-call-websocket.vapi.ai/{call_id}/control"),
            },
        },
        "phoneNumber": { "id": "9c4e1a77-0b3d-4f62-a8e5-1d7c3b9f2e60", "orgId": org_id, "number": "+16505550188", "provider": "twilio" },
        "customer": { "number": customer },
        "assistant": { "name": "Riverside Dental Receptionist", "model": { "provider": "openai", "model": "gpt-4.1" },
                       "voice": { "provider": "vapi", "voiceId": "Elliot" }, "metadata": { "tenantId": "riverside-dental-042" } },
    })
}

fn uuid_like(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff, (b >> 48) & 0xfff, b & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_has_the_realistic_mix_and_ends_with_a_report() {
        let mut rng = Rng::new(7);
        let s = call(1, "org", 0, "https://rec.example", &mut rng);
        let kinds: Vec<String> = s
            .messages
            .iter()
            .map(|(_, m)| {
                let t = m["message"]["type"].as_str().unwrap_or_default();
                if t == "transcript" {
                    format!("transcript.{}", m["message"]["transcriptType"].as_str().unwrap_or_default())
                } else {
                    t.to_string()
                }
            })
            .collect();
        let share = |k: &str| kinds.iter().filter(|x| *x == k).count() as f64 / kinds.len() as f64;
        assert!((0.6..0.8).contains(&share("transcript.partial")), "{kinds:?}");
        assert!((0.15..0.25).contains(&share("transcript.final")));
        assert_eq!(kinds.last().map(String::as_str), Some("end-of-call-report"));
        assert_eq!(kinds.iter().filter(|k| *k == "tool-calls").count(), 1);
    }
}
