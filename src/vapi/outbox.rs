//! The jobs a stored VAPI message leads to, written in the message's own transaction
//! (`store::FollowUps`): the downloads of the recordings an end-of-call report added, and the
//! outgoing webhooks that announce what it changed. A 2xx to VAPI means they are on record too.

use std::sync::Arc;

use crate::jobs::Jobs;
use crate::store::{Applied, FollowUps, NewJob};
use crate::webhooks::{Outbox, WebhookEvent, Webhooks, events as hooks};

const KINDS: [&str; 3] = [hooks::CALL_STARTED, hooks::CALL_ENDED, hooks::TRANSCRIPT_FINAL];

/// `None` when the message can lead to nothing: not an end-of-call report, and no enabled
/// endpoint wants a call or transcript event. The write then carries nothing extra.
pub fn follow_ups(webhooks: &Webhooks, jobs: &Arc<Jobs>, org: &str, at: i64, ended: bool) -> Option<FollowUps> {
    let outbox = webhooks.outbox(&KINDS);
    if outbox.is_none() && !ended {
        return None;
    }
    let jobs = jobs.clone();
    let org = org.to_string();
    Some(FollowUps(Arc::new(move |a: &Applied| rows(a, &jobs, outbox.as_ref(), ended, &org, at))))
}

/// Runs on the store's writer: events nobody subscribed to are not even built.
fn rows(a: &Applied, jobs: &Jobs, outbox: Option<&Outbox>, ended: bool, org: &str, at: i64) -> Vec<NewJob> {
    let mut rows: Vec<NewJob> = a.recordings.iter().filter_map(|id| crate::recordings::download_job(jobs, *id)).collect();
    if let Some(outbox) = outbox {
        let events = announced(a, ended, org, at, &|kind| outbox.wants(kind));
        rows.extend(events.iter().flat_map(|e| outbox.deliveries(e)));
    }
    rows
}

/// What an applied message announces, of the kinds `wanted`.
fn announced(a: &Applied, ended: bool, org: &str, at: i64, wanted: &dyn Fn(&str) -> bool) -> Vec<WebhookEvent> {
    let mut out = Vec::new();
    if let Some(call) = &a.call {
        // `call.started`: this message made the record say in progress (or the first message
        // about a call already said so). A step back from forwarding repeats it; the event's
        // id (the call) lets only the first through.
        let started = (a.call_created || a.status_changed) && matches!(call.status.as_str(), "in-progress" | "forwarding");
        if started && wanted(hooks::CALL_STARTED) {
            out.push(hooks::call_started(call, at));
        }
        if ended && wanted(hooks::CALL_ENDED) {
            out.push(hooks::call_ended(call, at));
        }
    }
    if let Some(seg) = a.segment.as_ref().filter(|_| wanted(hooks::TRANSCRIPT_FINAL)) {
        out.push(hooks::transcript_final(org, seg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallRow, SegmentRow};

    fn call(status: &str) -> CallRow {
        CallRow { id: "c1".into(), org_id: "o".into(), status: status.into(), ..CallRow::default() }
    }

    fn kinds(a: &Applied, ended: bool) -> Vec<&'static str> {
        announced(a, ended, "o", 5, &|_| true).iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_call_is_announced_started_only_when_a_message_moved_it_into_progress() {
        let moved = Applied { call: Some(call("in-progress")), status_changed: true, ..Applied::default() };
        assert_eq!(kinds(&moved, false), [hooks::CALL_STARTED]);
        let first_seen = Applied { call: Some(call("forwarding")), call_created: true, ..Applied::default() };
        assert_eq!(kinds(&first_seen, false), [hooks::CALL_STARTED]);
        let unchanged = Applied { call: Some(call("in-progress")), ..Applied::default() };
        assert!(kinds(&unchanged, false).is_empty(), "a message that moved nothing announces nothing");
        let ringing = Applied { call: Some(call("ringing")), status_changed: true, ..Applied::default() };
        assert!(kinds(&ringing, false).is_empty());
    }

    #[test]
    fn a_report_announces_the_end_and_a_stored_line_its_transcript() {
        let report = Applied { call: Some(call("ended")), status_changed: true, ..Applied::default() };
        assert_eq!(kinds(&report, true), [hooks::CALL_ENDED]);
        let seg = SegmentRow { id: 7, call_id: "c1".into(), role: "user".into(), text: "hi".into(), spoken_at: 3 };
        let line = Applied { segment: Some(seg), ..Applied::default() };
        let events = announced(&line, false, "o", 5, &|_| true);
        assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), [hooks::TRANSCRIPT_FINAL]);
        assert_eq!(events[0].data["org_id"], "o");
    }

    #[test]
    fn only_the_kinds_some_endpoint_wants_are_built() {
        let seg = SegmentRow { id: 7, call_id: "c1".into(), role: "user".into(), text: "hi".into(), spoken_at: 3 };
        let both = Applied { call: Some(call("in-progress")), status_changed: true, segment: Some(seg), ..Applied::default() };
        let only_ended = announced(&both, false, "o", 5, &|k| k == hooks::CALL_ENDED);
        assert!(only_ended.is_empty(), "{only_ended:?}");
        let only_lines = announced(&both, false, "o", 5, &|k| k == hooks::TRANSCRIPT_FINAL);
        assert_eq!(only_lines.iter().map(|e| e.kind).collect::<Vec<_>>(), [hooks::TRANSCRIPT_FINAL]);
    }
}
