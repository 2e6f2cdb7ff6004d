//! Turns an answer into the steps of its response body: the chunk sequence OpenAI streams
//! (role, deltas, finish, usage, `[DONE]`), paced, and cut short where a failure directive
//! says so.

use std::time::Duration;

use serde_json::json;

use super::answer::{Reply, argument_pieces, text_pieces};
use super::directives::Directives;
use super::stream::Step;
use super::wire::{self, DONE, Envelope, SERVER_ERROR_MESSAGE, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Before the first chunk.
    pub ttft: Duration,
    /// Before each content (or tool-argument) chunk.
    pub delay: Duration,
    pub chunks: usize,
}

impl Pacing {
    /// How long a whole answer takes: what a non-streamed answer waits before it is sent.
    pub fn total(&self) -> Duration {
        self.ttft.saturating_add(self.delay.saturating_mul(u32::try_from(self.chunks).unwrap_or(u32::MAX)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// An OpenAI error object as a data event, then the body ends without `[DONE]`.
    Error,
    /// The connection is cut: no finish chunk, no `[DONE]`.
    Drop,
    /// Nothing more is sent until the client goes away.
    Stall,
}

/// A failure after `after` content chunks (or after the last, when there are fewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub after: usize,
    pub kind: FaultKind,
}

impl Fault {
    /// The earliest of the failure directives; on a tie, error before drop before stall.
    pub fn from_directives(d: &Directives) -> Option<Fault> {
        [(d.error_after, FaultKind::Error), (d.drop_after, FaultKind::Drop), (d.stall_after, FaultKind::Stall)]
            .into_iter()
            .filter_map(|(after, kind)| after.map(|after| Fault { after, kind }))
            .min_by_key(|f| f.after)
    }

    /// The steps that end a body this way.
    pub fn steps(self) -> Vec<Step> {
        match self.kind {
            FaultKind::Error => vec![Step::Send(wire::frame(&wire::error_body(SERVER_ERROR_MESSAGE, "server_error", None)))],
            FaultKind::Drop => vec![Step::Abort],
            FaultKind::Stall => vec![Step::Stall],
        }
    }
}

/// The steps of a streamed answer. With `running_usage` (and `include_usage`), a usage chunk
/// with the totals so far follows every delta, as some OpenAI-compatible servers send.
pub fn streamed(env: &Envelope, reply: &Reply, usage: Usage, running_usage: bool, pacing: Pacing, fault: Option<Fault>) -> Vec<Step> {
    let mut steps = Vec::new();
    if !pacing.ttft.is_zero() {
        steps.push(Step::Wait(pacing.ttft));
    }
    steps.push(Step::Send(env.role_chunk(reply)));
    let deltas = deltas(reply, pacing.chunks);
    for (sent, delta) in deltas.iter().enumerate() {
        if let Some(f) = fault.filter(|f| f.after == sent) {
            steps.extend(f.steps());
            return steps;
        }
        if !pacing.delay.is_zero() {
            steps.push(Step::Wait(pacing.delay));
        }
        steps.push(Step::Send(match delta {
            Delta::Content(text) => env.content_chunk(text),
            Delta::Tool(v) => env.chunk(v, None),
        }));
        if env.include_usage && running_usage {
            let so_far = usage.completion * (sent as u64 + 1) / deltas.len() as u64;
            steps.push(Step::Send(env.usage_chunk(Usage { completion: so_far, ..usage })));
        }
    }
    if let Some(f) = fault {
        // Asked to fail after more chunks than there are: fail before the finish chunk, so
        // the directive is never silently a no-op.
        steps.extend(f.steps());
        return steps;
    }
    steps.push(Step::Send(env.chunk(&json!({}), Some(reply.finish_reason()))));
    if env.include_usage {
        steps.push(Step::Send(env.usage_chunk(usage)));
    }
    steps.push(Step::Send(bytes::Bytes::from_static(DONE)));
    steps
}

/// What one chunk after the role chunk carries.
#[derive(Debug)]
enum Delta<'a> {
    Content(&'a str),
    Tool(serde_json::Value),
}

/// The deltas after the role chunk: text pieces, or tool-call fragments interleaved by call
/// (each call's header, then its argument pieces, round-robin) so clients must join by index.
fn deltas(reply: &Reply, chunks: usize) -> Vec<Delta<'_>> {
    match reply {
        Reply::Text { text, .. } => text_pieces(text, chunks).into_iter().map(Delta::Content).collect(),
        Reply::ToolCalls(calls) => {
            let pieces: Vec<Vec<&str>> = calls.iter().map(|c| argument_pieces(&c.arguments, chunks)).collect();
            let rounds = 1 + pieces.iter().map(Vec::len).max().unwrap_or(0);
            let mut out = Vec::new();
            for round in 0..rounds {
                for (index, call) in calls.iter().enumerate() {
                    if round == 0 {
                        out.push(Delta::Tool(wire::tool_call_delta(index, Some(call), "")));
                    } else if let Some(piece) = pieces[index].get(round - 1) {
                        out.push(Delta::Tool(wire::tool_call_delta(index, None, piece)));
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::answer::ToolCall;
    use super::*;

    fn env() -> Envelope {
        Envelope::new("chatcmpl-1".into(), 1, "m".into(), false)
    }

    fn pacing(chunks: usize) -> Pacing {
        Pacing { ttft: Duration::ZERO, delay: Duration::ZERO, chunks }
    }

    fn sent(steps: &[Step]) -> Vec<String> {
        steps.iter().filter_map(|s| if let Step::Send(b) = s { Some(String::from_utf8_lossy(b).into_owned()) } else { None }).collect()
    }

    const USAGE: Usage = Usage { prompt: 1, completion: 4 };

    #[test]
    fn a_text_stream_is_role_content_finish_done_paced_before_each_content_chunk() {
        let reply = Reply::Text { text: "a b c d".into(), finish: "stop" };
        let p = Pacing { ttft: Duration::from_millis(5), delay: Duration::from_millis(2), chunks: 2 };
        let steps = streamed(&env(), &reply, USAGE, false, p, None);
        assert_eq!(steps[0], Step::Wait(Duration::from_millis(5)));
        assert_eq!(steps.iter().filter(|s| **s == Step::Wait(Duration::from_millis(2))).count(), 2);
        let frames = sent(&steps);
        assert_eq!(frames.len(), 5);
        assert!(frames[1].contains(r#""content":"a b ""#) && frames[2].contains(r#""content":"c d""#));
        assert!(frames[3].contains(r#""finish_reason":"stop""#));
        assert_eq!(frames[4], "data: [DONE]\n\n");
    }

    #[test]
    fn running_usage_follows_every_delta_with_the_totals_so_far_and_ends_with_the_whole() {
        let reply = Reply::Text { text: "a b c d".into(), finish: "stop" };
        let with_usage = Envelope::new("chatcmpl-t".into(), 1, "m".into(), true);
        let frames = sent(&streamed(&with_usage, &reply, USAGE, true, pacing(2), None));
        let reports: Vec<&String> = frames.iter().filter(|f| f.contains(r#""usage":{"#)).collect();
        assert_eq!(reports.len(), 3, "{frames:?}");
        assert!(reports[0].contains(r#""completion_tokens":2"#) && reports[1].contains(r#""completion_tokens":4"#));
        assert!(reports[2].contains(r#""total_tokens":5"#));
        let once = sent(&streamed(&with_usage, &reply, USAGE, false, pacing(2), None));
        assert_eq!(once.iter().filter(|f| f.contains(r#""usage":{"#)).count(), 1);
    }

    #[test]
    fn a_mid_stream_error_is_sent_as_an_error_chunk_and_the_stream_ends_without_done() {
        let reply = Reply::Text { text: "a b c d".into(), finish: "stop" };
        let fault = Some(Fault { after: 1, kind: FaultKind::Error });
        let frames = sent(&streamed(&env(), &reply, USAGE, false, pacing(4), fault));
        assert_eq!(frames.len(), 3);
        assert!(frames[2].starts_with(r#"data: {"error":"#), "{}", frames[2]);
    }

    #[test]
    fn a_fault_beyond_the_last_chunk_still_happens_before_the_finish_chunk() {
        let reply = Reply::Text { text: "a b".into(), finish: "stop" };
        let steps = streamed(&env(), &reply, USAGE, false, pacing(2), Some(Fault { after: 99, kind: FaultKind::Drop }));
        assert_eq!(steps.last(), Some(&Step::Abort));
        assert!(!sent(&steps).iter().any(|f| f.contains("finish_reason\":\"stop") || f.contains("[DONE]")));
    }

    #[test]
    fn the_earliest_failure_directive_wins() {
        let d = Directives { error_after: Some(5), stall_after: Some(2), drop_after: Some(3), ..Directives::default() };
        assert_eq!(Fault::from_directives(&d), Some(Fault { after: 2, kind: FaultKind::Stall }));
        assert_eq!(Fault::from_directives(&Directives::default()), None);
    }

    #[test]
    fn two_tool_calls_interleave_their_fragments_by_index() {
        let call = |id: &str, args: &str| ToolCall { id: id.into(), name: "f".into(), arguments: args.into() };
        let reply = Reply::ToolCalls(vec![call("call_a", r#"{"x":1}"#), call("call_b", "{}")]);
        let index = |d: &Delta<'_>| match d {
            Delta::Tool(v) => v["tool_calls"][0]["index"].as_u64().unwrap(),
            Delta::Content(_) => panic!("a tool call's fragment"),
        };
        let indexes: Vec<u64> = deltas(&reply, 3).iter().map(index).collect();
        assert_eq!(indexes, vec![0, 1, 0, 1, 0, 1, 0]);
        let frames = sent(&streamed(&env(), &reply, USAGE, false, pacing(3), None));
        assert!(frames[frames.len() - 2].contains(r#""finish_reason":"tool_calls""#));
    }
}
