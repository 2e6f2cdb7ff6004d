//! What the model is shown: the configured system prompt, then as much of the session's
//! history as fits the budget, newest kept first. History lives on the server; a browser
//! never sends roles, prompts or earlier turns.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::store::ChatMessageRow;

/// The messages for a model request. The last message (the user's new one) always goes, even
/// alone over budget: it passed its own size limit already.
pub fn build(system_prompt: &str, history: &[ChatMessageRow], max_chars: usize, max_messages: usize) -> Vec<Value> {
    let usable: Vec<&ChatMessageRow> = history.iter().filter(|m| worth_sending(m)).collect();
    let mut kept: Vec<&ChatMessageRow> = Vec::new();
    let mut used = 0usize;
    for (i, m) in usable.iter().rev().enumerate() {
        let size = m.content.chars().count() + m.tool_calls.as_ref().map_or(0, |t| t.len());
        let first = i == 0;
        if !first && (used + size > max_chars || kept.len() > max_messages) {
            break;
        }
        used += size;
        kept.push(m);
    }
    kept.reverse();
    let kept = paired(kept);
    let mut out = Vec::with_capacity(kept.len() + 1);
    if !system_prompt.trim().is_empty() {
        out.push(json!({"role": "system", "content": system_prompt}));
    }
    out.extend(kept.iter().map(|m| to_model(m)));
    out
}

/// Tool requests and results only in complete pairs: the model API refuses a tool result
/// without its request, and a request without all its results (a stop in the middle of a tool
/// round, or a request whose results were trimmed away).
fn paired(kept: Vec<&ChatMessageRow>) -> Vec<&ChatMessageRow> {
    let answered: HashSet<&str> = kept.iter().filter(|m| m.role == "tool").filter_map(|m| m.tool_call_id.as_deref()).collect();
    let mut complete: HashSet<String> = HashSet::new();
    let mut broken: HashSet<&str> = HashSet::new();
    for m in kept.iter().filter(|m| m.role == "assistant") {
        let ids = call_ids(m);
        if ids.iter().all(|id| answered.contains(id.as_str())) {
            complete.extend(ids);
        } else {
            broken.insert(m.id.as_str());
        }
    }
    kept.into_iter()
        .filter(|m| match m.role.as_str() {
            "tool" => m.tool_call_id.as_ref().is_some_and(|id| complete.contains(id)),
            "assistant" => !broken.contains(m.id.as_str()),
            _ => true,
        })
        .collect()
}

fn call_ids(m: &ChatMessageRow) -> Vec<String> {
    let Some(calls) = m.tool_calls.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()) else { return Vec::new() };
    calls.as_array().map(|a| a.iter().filter_map(|c| c["id"].as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Failed answers with nothing in them taught the model nothing; stopped ones were seen.
fn worth_sending(m: &ChatMessageRow) -> bool {
    match m.role.as_str() {
        "user" | "tool" => true,
        "assistant" => !m.content.is_empty() || m.tool_calls.is_some(),
        _ => false,
    }
}

fn to_model(m: &ChatMessageRow) -> Value {
    match m.role.as_str() {
        "tool" => json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}),
        "assistant" => {
            let mut v = json!({"role": "assistant", "content": m.content});
            if let Some(calls) = m.tool_calls.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()) {
                v["tool_calls"] = calls;
                if m.content.is_empty() {
                    v["content"] = Value::Null;
                }
            }
            v
        }
        _ => json!({"role": "user", "content": m.content}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: i64, role: &str, content: &str) -> ChatMessageRow {
        ChatMessageRow {
            id: format!("m{seq}"),
            session_id: "s".into(),
            seq,
            role: role.into(),
            content: content.into(),
            status: "complete".into(),
            run_id: None,
            finish_reason: None,
            tool_calls: None,
            tool_call_id: None,
            name: None,
            created_at: 0,
        }
    }

    #[test]
    fn the_system_prompt_comes_first_then_the_history_in_order() {
        let h = [msg(1, "user", "hi"), msg(2, "assistant", "hello"), msg(3, "user", "how are you")];
        let out = build("Be brief.", &h, 1000, 40);
        let roles: Vec<&str> = out.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(out[3]["content"], "how are you");
    }

    #[test]
    fn the_oldest_messages_go_first_when_the_budget_is_small() {
        let h = [msg(1, "user", "aaaaaaaaaa"), msg(2, "assistant", "bbbbbbbbbb"), msg(3, "user", "cccccccccc")];
        let out = build("", &h, 25, 40);
        let contents: Vec<&str> = out.iter().map(|m| m["content"].as_str().unwrap()).collect();
        assert_eq!(contents, ["bbbbbbbbbb", "cccccccccc"]);
    }

    #[test]
    fn the_new_message_goes_even_over_budget() {
        let out = build("", &[msg(1, "user", "x".repeat(100).as_str())], 10, 40);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_tool_result_never_leads_without_its_request() {
        let mut asked = msg(2, "assistant", "");
        asked.tool_calls = Some(r#"[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]"#.into());
        let mut result = msg(3, "tool", "42");
        result.tool_call_id = Some("c1".into());
        let h = [msg(1, "user", "q"), asked, result, msg(4, "user", "and?")];
        let all = build("", &h, 1000, 40);
        assert_eq!(all[1]["tool_calls"][0]["id"], "c1");
        assert_eq!(all[1]["content"], Value::Null);
        // Budget for the tool result and the new message only: the orphaned result is dropped.
        let cut = build("", &h, 7, 40);
        let roles: Vec<&str> = cut.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user"]);
    }

    #[test]
    fn a_tool_request_whose_results_are_missing_is_left_out() {
        // A stop in the middle of a round stored the request and only one of its two results.
        let mut asked = msg(2, "assistant", "");
        asked.tool_calls = Some(r#"[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]"#.into());
        let mut one = msg(3, "tool", "42");
        one.tool_call_id = Some("c1".into());
        let h = [msg(1, "user", "q"), asked, one, msg(4, "assistant", "partial"), msg(5, "user", "again")];
        let out = build("", &h, 1000, 40);
        let roles: Vec<&str> = out.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
    }

    #[test]
    fn failed_empty_answers_are_left_out() {
        let mut failed = msg(2, "assistant", "");
        failed.status = "failed".into();
        let out = build("", &[msg(1, "user", "a"), failed, msg(3, "user", "b")], 1000, 40);
        assert_eq!(out.len(), 2);
    }
}
