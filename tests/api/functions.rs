//! Functions answer inside their timeout, and the built-ins work against the demo tables.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

fn tool_call(call: &str, id: &str, name: &str, args: Value) -> Value {
    message(
        call,
        ORG,
        json!({ "type": "tool-calls", "customer": { "number": "+14155550123" },
        "toolCallList": [{ "id": id, "type": "function", "function": { "name": name, "arguments": args } }] }),
    )
}

#[tokio::test]
async fn a_slow_function_answers_with_an_error_result_inside_its_timeout() {
    let fake = fake_functions(json!({ "slow": { "result": "too late" } }), Duration::from_secs(5)).await;
    let spec = fake.spec("slow", Duration::from_millis(300));
    let app = spawn_with(move |s| s.functions = vec![spec]).await;
    let started = Instant::now();
    let (status, reply) = app.post_vapi(&tool_call("c-slow", "t-slow", "slow", json!({}))).await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert!(reply["results"][0]["error"].as_str().unwrap().contains("timed out"), "{reply}");
    assert!(took < Duration::from_millis(1500), "answered in {took:?}");
    let inv = app.state.store.get_invocation("t-slow").await.unwrap().unwrap();
    assert_eq!(inv.status, "error");
    assert!(inv.latency_ms.unwrap() >= 250.0);
}

#[tokio::test]
async fn an_unknown_function_gets_an_error_result() {
    let app = spawn_app().await;
    let (status, reply) = app.post_vapi(&tool_call("c-x", "t-x", "deleteEverything", json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(reply["results"][0]["error"], "Unknown function \"deleteEverything\".");
}

#[tokio::test]
async fn an_endpoint_that_fails_gives_an_error_result_with_its_status() {
    let app = spawn_with(|s| {
        s.functions = vec![switchboard::config::FunctionSpec {
            name: "down".into(),
            description: String::new(),
            parameters: json!({ "type": "object" }),
            handler: switchboard::config::FunctionHandler::Http { url: "http://127.0.0.1:9/nothing".into(), secret: None },
            timeout: Duration::from_secs(2),
        }]
    })
    .await;
    let (_, reply) = app.post_vapi(&tool_call("c-d", "t-d", "down", json!({}))).await;
    assert!(reply["results"][0]["error"].as_str().unwrap().contains("unreachable"), "{reply}");
}

#[tokio::test]
async fn lookup_customer_finds_the_caller_in_the_customer_table() {
    let app = spawn_app().await;
    let (_, reply) = app.post_vapi(&tool_call("c-l", "t-l", "lookupCustomer", json!({}))).await;
    let found: Value = serde_json::from_str(reply["results"][0]["result"].as_str().unwrap()).unwrap();
    assert_eq!((found["found"].as_bool(), found["name"].as_str()), (Some(true), Some("Jordan Lee")));
    let (_, reply) = app.post_vapi(&tool_call("c-l", "t-l2", "lookupCustomer", json!({ "phone": "+19999999999" }))).await;
    assert_eq!(reply["results"][0]["result"], "{\"found\":false}");
}

#[tokio::test]
async fn book_appointment_books_a_slot_once_and_offers_the_open_ones() {
    let app = spawn_app().await;
    let args = json!({ "date": "2030-03-19", "time": "15:00", "service": "cleaning" });
    let (_, first) = app.post_vapi(&tool_call("c-b", "t-b1", "bookAppointment", args.clone())).await;
    let text = first["results"][0]["result"].as_str().unwrap();
    assert!(text.starts_with("Booked cleaning for Jordan Lee on 2030-03-19 at 15:00"), "{text}");
    let (_, second) = app.post_vapi(&tool_call("c-b", "t-b2", "bookAppointment", args)).await;
    let err = second["results"][0]["error"].as_str().unwrap();
    assert!(err.contains("is taken") && err.contains("14:30") && !err.contains("15:00,"), "{err}");
    let (_, weekend) = app.post_vapi(&tool_call("c-b", "t-b3", "bookAppointment", json!({ "date": "2030-03-16", "time": "10:00" }))).await;
    assert!(weekend["results"][0]["error"].as_str().unwrap().contains("closed"));
}

#[tokio::test]
async fn transfer_call_resolves_a_department_destination() {
    let app = spawn_app().await;
    let (_, reply) = app.post_vapi(&tool_call("c-t", "t-t", "transferCall", json!({ "department": "billing" }))).await;
    let v: Value = serde_json::from_str(reply["results"][0]["result"].as_str().unwrap()).unwrap();
    assert_eq!(v["destination"], json!({ "type": "number", "number": "+14155550188" }));
}

#[tokio::test]
async fn every_invocation_is_stored_with_its_latency() {
    let app = spawn_app().await;
    app.post_vapi(&tool_call("c-s", "t-s", "transferCall", json!({}))).await;
    let invs = app.state.store.invocations("c-s").await.unwrap();
    assert_eq!(invs.len(), 1);
    assert_eq!((invs[0].name.as_str(), invs[0].status.as_str()), ("transferCall", "ok"));
    assert!(invs[0].latency_ms.is_some() && invs[0].finished_at.is_some());
}

#[tokio::test]
async fn assistant_request_names_the_configured_assistant_with_the_callers_name() {
    let app = spawn_with(|s| s.vapi.assistant_default = Some(json!({ "assistantId": "asst-1" }))).await;
    let (status, reply) = app.post_fixture("assistant-request.json").await;
    assert_eq!(status, 200);
    assert_eq!(reply, json!({ "assistantId": "asst-1", "assistantOverrides": { "variableValues": { "callerName": "Jordan Lee" } } }));
}

#[tokio::test]
async fn assistant_request_routes_by_the_number_called() {
    let app = spawn_with(|s| {
        s.vapi.assistant_default = Some(json!({ "error": "closed" }));
        s.vapi.assistant_routes = vec![switchboard::config::AssistantRoute {
            phone_number: Some("+16505550188".into()),
            customer_number: None,
            answer: json!({ "destination": { "type": "number", "number": "+14155550177" } }),
        }];
    })
    .await;
    let (_, reply) = app.post_fixture("assistant-request.json").await;
    assert_eq!(reply, json!({ "destination": { "type": "number", "number": "+14155550177" } }));
}

#[tokio::test]
async fn without_configuration_destination_requests_get_an_error_reply() {
    let app = spawn_app().await;
    let (_, reply) = app.post_fixture("transfer-destination-request.json").await;
    assert_eq!(reply, json!({ "error": "No transfer destination is configured." }));
}

#[tokio::test]
async fn a_tool_call_answer_says_how_long_the_function_took_and_how_long_the_hub_took() {
    let fake = fake_functions(json!({ "check_availability": { "result": "Open at 15:00" } }), Duration::from_millis(50)).await;
    let spec = fake.spec("check_availability", Duration::from_secs(2));
    let app = spawn_with(move |s| s.functions = vec![spec]).await;
    let timing = |r: &reqwest::Response| -> (f64, f64) {
        let header = r.headers().get("server-timing").expect("a Server-Timing header").to_str().unwrap().to_string();
        let dur = |name: &str| -> f64 {
            let metric = header.split(", ").find(|m| m.starts_with(&format!("{name};"))).unwrap();
            metric.split(';').find_map(|p| p.strip_prefix("dur=")).unwrap().parse().unwrap()
        };
        (dur("fn"), dur("hub"))
    };
    let body = fixture("tool-calls.single.json").to_string();
    let first = app.post_raw(body.clone()).await;
    let (function, hub) = timing(&first);
    assert!(function >= 50.0, "the function waited 50 ms, the header says {function}");
    assert!(hub >= function, "the hub's whole handling ({hub}) includes the function ({function})");
    // A redelivery is answered from the store: no function ran.
    let (function, _) = timing(&app.post_raw(body).await);
    assert_eq!(function, 0.0);
    // Messages that run no function carry no timing.
    let plain = app.post_raw(fixture("transcript.final.json").to_string()).await;
    assert!(plain.headers().get("server-timing").is_none());
}

#[tokio::test]
async fn concurrent_deliveries_of_a_built_in_call_book_once_and_all_get_the_booking() {
    let app = spawn_app().await;
    let msg = tool_call("c-cb", "t-cb", "bookAppointment", json!({ "date": "2030-03-20", "time": "09:30" }));
    // A built-in's claim, the message's record and its result share one transaction, which the
    // redeliveries' claims join: they must find the first claim there and wait for its result.
    let replies = futures::future::join_all((0..4).map(|_| app.post_vapi(&msg))).await;
    for (status, reply) in &replies {
        assert_eq!(*status, 200);
        let text = reply["results"][0]["result"].as_str().unwrap_or_else(|| panic!("no result: {reply}"));
        assert!(text.starts_with("Booked appointment for Jordan Lee on 2030-03-20 at 09:30"), "{text}");
    }
    let invs = app.state.store.invocations("c-cb").await.unwrap();
    assert_eq!((invs.len(), invs[0].status.as_str()), (1, "ok"));
    // Booked once: a second call for the same slot finds it taken.
    let (_, again) = app.post_vapi(&tool_call("c-cb", "t-cb2", "bookAppointment", json!({ "date": "2030-03-20", "time": "09:30" }))).await;
    assert!(again["results"][0]["error"].as_str().unwrap().contains("is taken"), "{again}");
}
