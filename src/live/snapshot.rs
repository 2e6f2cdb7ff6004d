//! What a subscriber gets first: the state of things now, from the store (what lasts) and the
//! broker (what does not: the partial line being spoken, who is watching).

use std::collections::BTreeMap;

use futures::future::join_all;
use serde_json::{Value, json};

use super::connection::Socket;
use super::protocol::Topic;
use crate::calls::view;
use crate::hub::topics;
use crate::store::CallFilter;

/// A call not heard from for this long is not shown as live, even without an end-of-call report.
const LIVE_WINDOW_MS: i64 = 2 * 60 * 60 * 1000;
/// The board shows at most this many live calls (newest first).
const MAX_LIVE_CALLS: i64 = 500;
/// Events looked at to find the partial line of each speaker.
const PARTIAL_LOOKBACK: usize = 200;

pub(super) async fn build(socket: &Socket, topic: &Topic, name: &str) -> Result<Value, String> {
    match topic {
        Topic::Calls => calls(socket).await,
        Topic::Call(id) => call(socket, id, name).await,
        Topic::Chats => chats(socket).await,
        Topic::Chat(id) => chat(socket, id, name).await,
    }
}

/// Chats heard from recently, newest first, each with its last message.
async fn chats(socket: &Socket) -> Result<Value, String> {
    let app = &socket.app;
    let since = crate::clock::now_ms() - LIVE_WINDOW_MS;
    let rows = app.store.recent_chat_sessions(&socket.who.scope, since, MAX_LIVE_CALLS).await.map_err(|e| e.to_string())?;
    let ids: Vec<String> = rows.iter().map(|s| s.id.clone()).collect();
    let lasts = app.store.last_chat_messages(&ids).await.map_err(|e| e.to_string())?;
    let chats: Vec<Value> = rows
        .iter()
        .map(|s| {
            let mut v = crate::chat::session_view(s, &[], true);
            v.as_object_mut().map(|o| o.remove("messages"));
            v["last_message"] = lasts
                .iter()
                .find(|m| m.session_id == s.id)
                .map(|m| json!({"role": m.role, "content": m.content, "status": m.status}))
                .unwrap_or(Value::Null);
            v
        })
        .collect();
    Ok(json!({ "chats": chats }))
}

/// The session with its messages, and the answer being generated so far (from the broker's
/// history of the active run's deltas).
async fn chat(socket: &Socket, id: &str, name: &str) -> Result<Value, String> {
    let app = &socket.app;
    let session = app.store.get_chat_session(id).await.map_err(|e| e.to_string())?.ok_or_else(|| "the chat is gone".to_string())?;
    let messages = app.store.chat_messages(id).await.map_err(|e| e.to_string())?;
    let partial = match &session.active_run_id {
        Some(run) => {
            let recent = app.broker.recent(name, app.settings.live.history_size).await.map_err(|e| e.to_string())?;
            let deltas: Vec<&Value> = recent
                .iter()
                .filter(|p| p.event.kind == crate::chat::events::DELTA && p.event.data.get("run_id").and_then(Value::as_str) == Some(run))
                .map(|p| &p.event.data)
                .collect();
            let text: String = deltas.iter().filter_map(|d| d.get("content").and_then(Value::as_str)).collect();
            // The history read can run ahead of the subscription's position, so the deltas
            // right after the snapshot may already be in `content`: `n` (the run's numbering)
            // lets a client skip those instead of showing them twice.
            let n = deltas.iter().filter_map(|d| d.get("n").and_then(Value::as_u64)).max().unwrap_or(0);
            json!({"run_id": run, "content": text, "n": n})
        }
        None => Value::Null,
    };
    Ok(json!({ "chat": crate::chat::session_view(&session, &messages, true), "partial": partial }))
}

async fn calls(socket: &Socket) -> Result<Value, String> {
    let app = &socket.app;
    let filter = CallFilter { live_since: Some(crate::clock::now_ms() - LIVE_WINDOW_MS), limit: MAX_LIVE_CALLS, ..CallFilter::default() };
    let rows = app.store.list_calls(&socket.who.scope, &filter).await.map_err(|e| e.to_string())?;
    let ids: Vec<String> = rows.iter().map(|c| c.id.clone()).collect();
    let last = app.store.last_segments(&ids).await.map_err(|e| e.to_string())?;
    let topics: Vec<String> = rows.iter().map(|c| topics::call(&c.id)).collect();
    let watchers = join_all(topics.iter().map(|t| app.broker.presence(t))).await;
    let calls: Vec<Value> = rows
        .iter()
        .zip(watchers)
        .map(|(c, w)| {
            let mut v = view::summary(c);
            v["last_utterance"] = last.iter().find(|s| s.call_id == c.id).map(view::segment).unwrap_or(Value::Null);
            v["watchers"] = json!(w.unwrap_or_default());
            v
        })
        .collect();
    Ok(json!({ "calls": calls }))
}

async fn call(socket: &Socket, id: &str, name: &str) -> Result<Value, String> {
    let app = &socket.app;
    let store = &app.store;
    let call = store.get_call(id).await.map_err(|e| e.to_string())?.ok_or_else(|| "the call is gone".to_string())?;
    let (transcript, invocations, recordings) = tokio::join!(store.transcript(id), store.invocations(id), store.recordings(id));
    let e = |e: crate::store::StoreError| e.to_string();
    let detail = view::detail(&call, &transcript.map_err(e)?, &invocations.map_err(e)?, &recordings.map_err(e)?);
    // The broker only adds the line being spoken and who is watching: while it is away (a
    // Redis outage) the call is still shown, from the store, as on the `calls` list.
    let (recent, watchers) = tokio::join!(app.broker.recent(name, PARTIAL_LOOKBACK), app.broker.presence(name));
    Ok(json!({ "call": detail, "partial": partials(&recent.unwrap_or_default()), "watchers": watchers.unwrap_or_default() }))
}

/// Each speaker's line in progress: the newest partial not yet followed by a final.
fn partials(recent: &[std::sync::Arc<crate::hub::Published>]) -> Vec<Value> {
    let mut by_role: BTreeMap<String, Value> = BTreeMap::new();
    for p in recent {
        let role = p.event.data.get("role").and_then(Value::as_str).unwrap_or("user").to_string();
        match p.event.kind.as_str() {
            "transcript.partial" => {
                by_role.insert(role.clone(), json!({ "role": role, "text": p.event.data.get("text"), "at": p.event.at }));
            }
            "transcript.final" => {
                by_role.remove(&role);
            }
            _ => {}
        }
    }
    by_role.into_values().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::hub::{Event, Published};

    fn ev(seq: u64, kind: &str, role: &str, text: &str) -> Arc<Published> {
        let e = Event { kind: kind.into(), at: format!("t{seq}"), org_id: "o".into(), data: json!({ "role": role, "text": text }) };
        Arc::new(Published::new("call:1", "e", seq, e))
    }

    #[test]
    fn the_partial_line_is_the_newest_partial_after_each_speakers_last_final() {
        let recent = vec![
            ev(1, "transcript.partial", "user", "hel"),
            ev(2, "transcript.final", "user", "hello"),
            ev(3, "transcript.partial", "assistant", "hi th"),
            ev(4, "transcript.partial", "user", "I ne"),
            ev(5, "transcript.partial", "user", "I need"),
        ];
        let p = partials(&recent);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["role"], "assistant");
        assert_eq!(p[1]["text"], "I need");
        assert!(partials(&[ev(1, "transcript.partial", "user", "a"), ev(2, "transcript.final", "user", "ab")]).is_empty());
    }
}
