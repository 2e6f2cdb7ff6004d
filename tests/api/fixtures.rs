//! Every fixture of the spec's sample gets the reply its index.json names.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::config::{DestinationReply, Settings};

use crate::helpers::*;

/// Settings under which each configurable reply is the fixture's example reply.
fn configured(fake: &FakeFunctions, s: &mut Settings) {
    s.vapi.assistant_default = Some(fixture("responses/assistant-request.assistantId.response.json"));
    s.vapi.transfer_destination = DestinationReply(Some(fixture("responses/transfer-destination-request.response.json")));
    s.vapi.handoff_destination = DestinationReply(Some(fixture("responses/handoff-destination-request.response.json")));
    s.vapi.knowledge = vec![
        switchboard::config::KnowledgeDoc {
            id: "kb-cancel-policy".into(),
            content: "To move or cancel an appointment, give 24 hours notice or a $50 fee applies.".into(),
        },
        switchboard::config::KnowledgeDoc { id: "kb-hours".into(), content: "The office is open Mon-Fri 8am-5pm.".into() },
    ];
    s.functions = vec![fake.spec("check_availability", Duration::from_secs(2)), fake.spec("lookup_patient", Duration::from_secs(2))];
}

async fn fake_for(fixture_file: &str) -> FakeFunctions {
    // The single-call fixture's reply is text; the two-call fixture's is JSON in a string.
    let slots = if fixture_file == "tool-calls.two-calls.json" {
        json!({ "result": "{\"slots\":[\"13:30\",\"15:00\",\"16:15\"],\"date\":\"2026-03-17\"}" })
    } else {
        json!({ "result": "Open slots on 2026-03-17: 13:30, 15:00, 16:15" })
    };
    fake_functions(
        json!({ "check_availability": slots, "lookup_patient": { "error": "No patient found for that phone number" } }),
        Duration::ZERO,
    )
    .await
}

#[tokio::test]
async fn every_fixture_gets_the_reply_its_index_names() {
    let index = fixture("index.json");
    let entries = index["fixtures"].as_array().unwrap();
    assert!(entries.len() >= 18);
    for entry in entries {
        let file = entry["file"].as_str().unwrap();
        let fake = fake_for(file).await;
        let app = spawn_with(|s| configured(&fake, s)).await;
        let (status, reply) = app.post_fixture(file).await;
        assert_eq!(status, 200, "{file}");
        let expected = fixture(entry["exampleResponse"].as_str().unwrap());
        match entry["type"].as_str().unwrap() {
            // Ranked from configured documents: same shape, our own scores.
            "knowledge-base-request" => {
                let docs = reply["documents"].as_array().unwrap();
                assert!(!docs.is_empty(), "{file}: {reply}");
                for d in docs {
                    assert!(d["content"].is_string() && d["similarity"].is_number() && d["uuid"].is_string(), "{file}: {reply}");
                }
                assert_eq!(docs[0]["uuid"], expected["documents"][0]["uuid"]);
            }
            _ => assert_eq!(reply, expected, "{file}"),
        }
        app.shutdown().await;
    }
}

#[tokio::test]
async fn tool_results_are_strings_in_request_order_with_names() {
    let fake = fake_for("tool-calls.two-calls.json").await;
    let app = spawn_with(|s| configured(&fake, s)).await;
    let (_, reply) = app.post_fixture("tool-calls.two-calls.json").await;
    let results = reply["results"].as_array().unwrap();
    assert_eq!(
        results.iter().map(|r| r["toolCallId"].as_str().unwrap()).collect::<Vec<_>>(),
        ["call_Hk3vQ9mZtR2wLx7bNc4pYs1D", "call_8aPq2RmVw5XnT0yLk6sJd3Fh"]
    );
    for r in results {
        assert!(r["name"].is_string());
        assert!(r.get("result").map(Value::is_string).unwrap_or(true) && r.get("error").map(Value::is_string).unwrap_or(true));
    }
    assert_eq!(fake.signed.load(std::sync::atomic::Ordering::SeqCst), 2, "both calls reached the endpoint signed");
}
