//! What travels through Redis. `Event` leaves `org_id` out of its JSON (clients must not see
//! it), but subscribers on other instances need it for scoping, so events are stored and
//! broadcast in a form of their own.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hub::{BrokerError, Event, Published};

#[derive(Serialize)]
struct EventRef<'a> {
    kind: &'a str,
    at: &'a str,
    org: &'a str,
    data: &'a Value,
}

#[derive(Deserialize)]
struct EventOwned {
    kind: String,
    at: String,
    org: String,
    data: Value,
}

pub(super) fn encode_event(e: &Event) -> Result<String, BrokerError> {
    serde_json::to_string(&EventRef { kind: &e.kind, at: &e.at, org: &e.org_id, data: &e.data })
        .map_err(|e| BrokerError(format!("cannot encode an event: {e}")))
}

pub(super) fn decode_event(text: &str) -> Result<Event, String> {
    let e: EventOwned = serde_json::from_str(text).map_err(|e| format!("bad event: {e}"))?;
    Ok(Event { kind: e.kind, at: e.at, org_id: e.org, data: e.data })
}

/// A live message, as `publish.lua` builds it: `["<topic>","<epoch>","<seq>"]\n<event>`. The
/// header comes first so an instance can drop events of topics it does not serve without
/// decoding them.
pub(super) struct LiveHeader {
    pub topic: String,
    pub epoch: String,
    pub seq: u64,
}

pub(super) fn split_live(payload: &[u8]) -> Result<(LiveHeader, &[u8]), String> {
    let at = payload.iter().position(|b| *b == b'\n').ok_or("no header")?;
    let (topic, epoch, seq): (String, String, String) = serde_json::from_slice(&payload[..at]).map_err(|e| format!("bad header: {e}"))?;
    let seq = seq.parse().map_err(|_| format!("bad sequence number {seq:?}"))?;
    Ok((LiveHeader { topic, epoch, seq }, &payload[at + 1..]))
}

/// A live message with no event (`reset.lua`): the topic has a new epoch and nothing else.
pub(super) fn is_reset(body: &[u8]) -> bool {
    body.is_empty()
}

/// One history entry.
pub(super) struct Entry {
    pub seq: u64,
    /// Redis's clock when it was published.
    pub at_ms: i64,
    pub event: Event,
}

impl Entry {
    pub fn published(self, topic: &str, epoch: &str) -> Published {
        Published::new(topic, epoch, self.seq, self.event)
    }
}

/// `history.lua`'s answer: the topic's position, Redis's clock, and entries in the order read.
pub(super) struct HistoryReply {
    pub epoch: String,
    pub seq: u64,
    pub now_ms: i64,
    pub entries: Vec<Entry>,
}

impl HistoryReply {
    pub fn parse(topic: &str, reply: Vec<String>) -> Result<Option<Self>, BrokerError> {
        let bad = |what: &str| BrokerError(format!("redis history of {topic}: {what}"));
        if reply.is_empty() {
            return Ok(None);
        }
        if reply.len() < 3 || !(reply.len() - 3).is_multiple_of(3) {
            return Err(bad("malformed reply"));
        }
        let mut it = reply.into_iter();
        let mut next = || it.next().ok_or_else(|| bad("short reply"));
        let epoch = next()?;
        let seq = next()?.parse().map_err(|_| bad("bad sequence number"))?;
        let now_ms = next()?.parse().map_err(|_| bad("bad time"))?;
        let mut entries = Vec::new();
        while let (Some(id), Some(at), Some(event)) = (it.next(), it.next(), it.next()) {
            // Ids are `<seq>-0`.
            let seq = id.split('-').next().and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad entry id"))?;
            let at_ms = at.parse().map_err(|_| bad("bad entry time"))?;
            let event = decode_event(&event).map_err(|e| bad(&e))?;
            entries.push(Entry { seq, at_ms, event });
        }
        Ok(Some(Self { epoch, seq, now_ms, entries }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_event_keeps_its_org_through_the_wire_form() {
        let e = Event { kind: "k".into(), at: "t".into(), org_id: "org-1".into(), data: json!({ "x": [1, "\n"] }) };
        let back = decode_event(&encode_event(&e).unwrap()).unwrap();
        assert_eq!((back.kind, back.at, back.org_id, back.data), (e.kind, e.at, e.org_id, e.data));
    }

    #[test]
    fn a_live_message_splits_into_header_and_event_at_the_first_newline() {
        let (h, rest) = split_live(b"[\"call:a\\nb\",\"e1\",\"42\"]\n{\"kind\":\"k\"}\n").unwrap();
        assert_eq!((h.topic.as_str(), h.epoch.as_str(), h.seq), ("call:a\nb", "e1", 42));
        assert_eq!(rest, b"{\"kind\":\"k\"}\n");
        assert!(split_live(b"no header").is_err());
        assert!(split_live(b"[\"t\",\"e\",\"x\"]\n{}").is_err());
    }

    #[test]
    fn a_malformed_history_reply_is_an_error_not_a_panic() {
        let parse = |v: &[&str]| HistoryReply::parse("t", v.iter().map(|s| s.to_string()).collect());
        assert!(parse(&[]).unwrap().is_none());
        assert!(parse(&["e", "1"]).is_err());
        assert!(parse(&["e", "x", "0"]).is_err());
        assert!(parse(&["e", "1", "0", "1-0", "5", "{}"]).is_err());
        let ok = parse(&["e", "1", "10", "1-0", "5", r#"{"kind":"k","at":"","org":"o","data":null}"#]).unwrap().unwrap();
        assert_eq!((ok.seq, ok.now_ms, ok.entries[0].seq, ok.entries[0].at_ms), (1, 10, 1, 5));
    }
}
