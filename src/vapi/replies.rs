//! Answers that come from configuration (spec §3.2–§3.9): which assistant takes an inbound
//! call, where to transfer or hand off, knowledge-base documents, endpointing, pre-dial.

use std::time::Duration;

use serde_json::{Value, json};

use super::message::Message;
use crate::config::VapiSettings;
use crate::store::Store;

/// Caller lookup must not eat VAPI's fixed 7.5 s assistant-request budget.
const LOOKUP_BUDGET: Duration = Duration::from_millis(1500);

pub async fn assistant_request(cfg: &VapiSettings, m: &Message<'_>, store: &dyn Store) -> Value {
    let called = m.phone_number();
    let caller = m.customer_number();
    let route = cfg.assistant_routes.iter().find(|r| {
        r.phone_number.as_deref().is_none_or(|p| Some(p) == called) && r.customer_number.as_deref().is_none_or(|c| Some(c) == caller)
    });
    let Some(mut answer) = route.map(|r| r.answer.clone()).or_else(|| cfg.assistant_default.clone()) else {
        tracing::warn!("assistant-request received but no assistant is configured (vapi.assistant_request)");
        return json!({ "error": "Sorry, this number is not set up to take calls yet." });
    };
    let assigns_assistant = answer.get("assistantId").is_some() || answer.get("assistant").is_some();
    if cfg.lookup_caller
        && assigns_assistant
        && let Some(number) = caller
        && let Ok(Ok(Some(customer))) = tokio::time::timeout(LOOKUP_BUDGET, store.find_customer(Some(number), None)).await
    {
        let vars = &mut answer["assistantOverrides"]["variableValues"];
        if vars.get("callerName").is_none() {
            vars["callerName"] = Value::String(customer.name);
        }
    }
    answer
}

pub fn destination(reply: &crate::config::DestinationReply, what: &str) -> Value {
    reply.0.clone().unwrap_or_else(|| json!({ "error": format!("No {what} destination is configured.") }))
}

/// Documents whose words overlap the caller's last words, best first (at most three).
pub fn knowledge(cfg: &VapiSettings, m: &Message<'_>) -> Value {
    let question = last_user_text(m).unwrap_or_default().to_lowercase();
    let asked: Vec<&str> = question.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2).collect();
    let mut scored: Vec<(f64, &crate::config::KnowledgeDoc)> = cfg
        .knowledge
        .iter()
        .filter_map(|d| {
            if asked.is_empty() {
                return None;
            }
            let text = d.content.to_lowercase();
            let hits = asked.iter().filter(|w| text.contains(**w)).count();
            (hits > 0).then(|| (hits as f64 / asked.len() as f64, d))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let documents: Vec<Value> = scored
        .into_iter()
        .take(3)
        .map(|(score, d)| json!({ "content": d.content, "similarity": (score * 100.0).round() / 100.0, "uuid": d.id }))
        .collect();
    json!({ "documents": documents })
}

fn last_user_text(m: &Message<'_>) -> Option<String> {
    let openai = m.get(&["messagesOpenAIFormatted"]).and_then(Value::as_array);
    let from_openai = openai.and_then(|msgs| {
        msgs.iter().rev().find(|x| x.get("role").and_then(Value::as_str) == Some("user")).and_then(|x| x.get("content")?.as_str())
    });
    let from_vapi = || {
        m.get(&["messages"]).and_then(Value::as_array).and_then(|msgs| {
            msgs.iter().rev().find(|x| x.get("role").and_then(Value::as_str) == Some("user")).and_then(|x| x.get("message")?.as_str())
        })
    };
    from_openai.or_else(from_vapi).map(str::to_string)
}

pub fn endpointing(cfg: &VapiSettings) -> Value {
    json!({ "timeoutSeconds": cfg.endpointing_timeout_seconds })
}

pub fn predial(cfg: &VapiSettings) -> Value {
    json!({ "eligible": cfg.campaign_eligible })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KnowledgeDoc;

    #[test]
    fn knowledge_ranks_documents_by_overlap_with_the_last_user_words() {
        let cfg = VapiSettings {
            knowledge: vec![
                KnowledgeDoc { id: "hours".into(), content: "The office is open Monday to Friday.".into() },
                KnowledgeDoc { id: "cancel".into(), content: "Cancellations need 24 hours notice.".into() },
            ],
            ..VapiSettings::defaults()
        };
        let body = json!({"message": {"type": "knowledge-base-request",
            "messagesOpenAIFormatted": [{"role": "user", "content": "What is your cancellations policy, how much notice?"}]}});
        let docs = knowledge(&cfg, &Message::from_body(&body).unwrap());
        assert_eq!(docs["documents"][0]["uuid"], "cancel");
        assert_eq!(docs["documents"].as_array().unwrap().len(), 1);
    }
}
