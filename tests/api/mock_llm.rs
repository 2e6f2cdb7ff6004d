//! The mock model over real HTTP: OpenAI's wire format, tool calls, every failure directive,
//! the API key, and that a dropped client frees its stream at once.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use switchboard::mockllm::{MockConfig, MockLlm};

async fn start(adjust: impl FnOnce(&mut MockConfig)) -> MockLlm {
    let mut cfg = MockConfig { listen: "127.0.0.1:0".parse().unwrap(), chunk_delay: Duration::ZERO, ..MockConfig::default() };
    adjust(&mut cfg);
    MockLlm::start(cfg).await.unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn post(mock: &MockLlm, body: Value) -> reqwest::Response {
    http().post(format!("{}/chat/completions", mock.base_url())).json(&body).send().await.unwrap()
}

fn ask(text: &str, stream: bool) -> Value {
    json!({ "model": "gpt-test", "stream": stream, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}] })
}

/// The data payloads of an SSE body, and whether the body ended cleanly.
async fn read_frames(resp: reqwest::Response) -> (Vec<String>, bool) {
    let mut text = String::new();
    let mut body = resp.bytes_stream();
    let mut clean = true;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(b) => text.push_str(std::str::from_utf8(&b).unwrap()),
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    let frames = text
        .split_terminator("\n\n")
        .map(|f| f.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data-only frame: {f:?}")).to_string())
        .collect();
    (frames, clean)
}

fn json_of(frame: &str) -> Value {
    serde_json::from_str(frame).unwrap_or_else(|e| panic!("{e}: {frame}"))
}

fn content_of(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

#[tokio::test]
async fn a_streamed_answer_is_a_role_chunk_content_chunks_a_finish_chunk_and_done() {
    let mock = start(|c| c.chunks = 5).await;
    let resp = post(&mock, ask("Hello", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (frames, clean) = read_frames(resp).await;
    assert!(clean);
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = frames[..frames.len() - 1].iter().map(|f| json_of(f)).collect();
    assert_eq!(chunks.len(), 1 + 5 + 1);

    let first = &chunks[0];
    assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["model"], "gpt-test");
    assert_eq!(first["system_fingerprint"], "fp_mock");
    assert_eq!(
        first["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null}])
    );
    for c in &chunks {
        assert_eq!((&c["id"], &c["created"], &c["model"]), (&first["id"], &first["created"], &first["model"]));
        assert!(c.get("usage").is_none(), "usage only when asked for: {c}");
    }
    for c in &chunks[1..6] {
        let delta = c["choices"][0]["delta"].as_object().unwrap();
        assert_eq!(delta.keys().collect::<Vec<_>>(), vec!["content"]);
        assert!(!delta["content"].as_str().unwrap().is_empty());
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
    }
    assert_eq!(chunks[6]["choices"], json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]));

    // The pieces are the whole answer: the same text a non-streamed request gets.
    let whole: Value = post(&mock, ask("Hello", false)).await.json().await.unwrap();
    assert_eq!(content_of(&chunks), whole["choices"][0]["message"]["content"].as_str().unwrap());
}

#[tokio::test]
async fn usage_comes_last_before_done_and_only_with_include_usage() {
    let mock = start(|_| {}).await;
    let mut body = ask("Count these four words", true);
    body["stream_options"] = json!({"include_usage": true});
    let (frames, _) = read_frames(post(&mock, body).await).await;
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = frames[..frames.len() - 1].iter().map(|f| json_of(f)).collect();
    let (usage, rest) = chunks.split_last().unwrap();
    assert!(rest.iter().all(|c| c["usage"] == Value::Null && c.get("usage").is_some()));
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
    assert_eq!(usage["choices"], json!([]));
    let words = content_of(rest).split_whitespace().count() as u64;
    assert_eq!(usage["usage"], json!({"prompt_tokens": 2 + 4, "completion_tokens": words, "total_tokens": 6 + words}));
}

#[tokio::test]
async fn a_non_streamed_answer_is_one_chat_completion_with_usage() {
    let mock = start(|c| c.model = "house-model".into()).await;
    let resp = post(&mock, json!({"messages": [{"role": "user", "content": "Hi there"}], "unknown_field": {"x": 1}})).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "house-model", "the configured model stands in for a missing one");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["finish_reason"], "stop");
    let words = choice["message"]["content"].as_str().unwrap().split_whitespace().count() as u64;
    assert_eq!(v["usage"], json!({"prompt_tokens": 2, "completion_tokens": words, "total_tokens": 2 + words}));
}

#[tokio::test]
async fn max_tokens_cuts_the_answer_with_finish_reason_length() {
    let mock = start(|_| {}).await;
    let mut body = ask("Hi", false);
    body["max_completion_tokens"] = json!(3);
    let v: Value = post(&mock, body).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

fn with_tools(text: &str) -> Value {
    let mut body = ask(text, true);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    body
}

#[tokio::test]
async fn tool_calls_stream_as_deltas_by_index_whose_arguments_join_to_the_exact_json() {
    let mock = start(|c| c.chunks = 4).await;
    let a = r#"{"city": "Zürich", "days": [1, 2]}"#;
    let b = r#"{"q":"x"}"#;
    let text = format!("Weather? [mock:tool=get_weather {a}] and [mock:tool=search {b}]");
    let (frames, clean) = read_frames(post(&mock, with_tools(&text)).await).await;
    assert!(clean);
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = frames[..frames.len() - 1].iter().map(|f| json_of(f)).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let (finish, deltas) = chunks[1..].split_last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");

    let mut calls: Vec<(Value, String)> = vec![(Value::Null, String::new()), (Value::Null, String::new())];
    let mut order = Vec::new();
    for d in deltas {
        let fragments = d["choices"][0]["delta"]["tool_calls"].as_array().unwrap();
        assert_eq!(fragments.len(), 1);
        let f = &fragments[0];
        let i = f["index"].as_u64().unwrap() as usize;
        order.push(i);
        if calls[i].0.is_null() {
            assert!(f["id"].as_str().unwrap().starts_with("call_"), "{f}");
            assert_eq!(f["type"], "function");
            assert_eq!(f["function"]["arguments"], "", "the first fragment names the call");
            calls[i].0 = f.clone();
        } else {
            assert!(f.get("id").is_none() && f["function"].get("name").is_none(), "{f}");
            calls[i].1.push_str(f["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(calls[0].0["function"]["name"], "get_weather");
    assert_eq!(calls[1].0["function"]["name"], "search");
    assert_ne!(calls[0].0["id"], calls[1].0["id"]);
    assert_eq!(calls[0].1, a);
    assert_eq!(calls[1].1, b);
    assert_eq!(&order[..4], &[0, 1, 0, 1], "the two calls interleave");
    assert!(deltas.len() > 4, "arguments arrive in several pieces");
}

#[tokio::test]
async fn a_tool_directive_without_offered_tools_is_answered_with_text() {
    let mock = start(|_| {}).await;
    let v: Value = post(&mock, ask("[mock:tool=get_weather {}]", false)).await.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["content"].is_string());
}

#[tokio::test]
async fn a_non_streamed_tool_call_carries_the_whole_arguments() {
    let mock = start(|_| {}).await;
    let mut body = with_tools(r#"[mock:tool=get_weather {"city":"Oslo"}]"#);
    body["stream"] = json!(false);
    let v: Value = post(&mock, body).await.json().await.unwrap();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(choice["message"]["tool_calls"][0]["function"], json!({"name": "get_weather", "arguments": r#"{"city":"Oslo"}"#}));
}

#[tokio::test]
async fn a_tool_result_fed_back_is_answered_with_text_that_quotes_it() {
    let mock = start(|_| {}).await;
    let mut body = with_tools(r#"Weather? [mock:tool=get_weather {"city":"Oslo"}]"#);
    body["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 4, \"sky\": \"snow\"}"}),
    ]);
    let (frames, _) = read_frames(post(&mock, body).await).await;
    let chunks: Vec<Value> = frames[..frames.len() - 1].iter().map(|f| json_of(f)).collect();
    let text = content_of(&chunks);
    assert!(text.starts_with("Tool result: {\"temp_c\": 4, \"sky\": \"snow\"}. "), "{text}");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

fn assert_openai_error(v: &Value, kind: &str) {
    let e = v["error"].as_object().unwrap_or_else(|| panic!("no error object: {v}"));
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(e["type"], kind);
    assert_eq!(e["param"], Value::Null);
    assert!(e.contains_key("code"));
}

#[tokio::test]
async fn a_status_directive_answers_that_error_before_any_stream() {
    let mock = start(|_| {}).await;
    let resp = post(&mock, ask("[mock:status=429]", true)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: Value = resp.json().await.unwrap();
    assert_openai_error(&v, "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    let resp = post(&mock, ask("[mock:status=500]", true)).await;
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().get("retry-after").is_none());
    assert_openai_error(&resp.json().await.unwrap(), "server_error");
}

#[tokio::test]
async fn a_mid_stream_error_is_sent_as_an_error_chunk_and_the_stream_ends_without_done() {
    let mock = start(|_| {}).await;
    let (frames, clean) = read_frames(post(&mock, ask("[mock:error_after=2]", true)).await).await;
    assert!(clean, "the body ends normally, just early");
    assert_eq!(frames.len(), 1 + 2 + 1);
    assert_eq!(
        json_of(&frames[3]),
        json!({"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}})
    );
}

#[tokio::test]
async fn drop_after_cuts_the_connection_without_a_finish_chunk_or_done() {
    let mock = start(|_| {}).await;
    let (frames, clean) = read_frames(post(&mock, ask("[mock:drop_after=3]", true)).await).await;
    assert!(!clean, "the client sees a broken body");
    assert_eq!(frames.len(), 1 + 3);
    assert!(frames.iter().all(|f| f != "[DONE]" && !f.contains("finish_reason\":\"stop")));
}

#[tokio::test]
async fn stall_after_sends_nothing_more_until_the_client_goes_away() {
    let mock = start(|_| {}).await;
    let resp = post(&mock, ask("[mock:stall_after=2]", true)).await;
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while text.matches("\n\n").count() < 3 {
        text.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
    }
    assert_eq!(text.matches("\n\n").count(), 3, "the role chunk and two content chunks");
    assert!(tokio::time::timeout(Duration::from_millis(300), body.next()).await.is_err(), "nothing more arrives");
    assert_eq!(mock.open_streams(), 1);
    drop(body);
    wait_for_no_open_streams(&mock).await;
}

#[tokio::test]
async fn fail_first_fails_the_first_n_requests_per_value_then_succeeds() {
    let mock = start(|_| {}).await;
    let statuses = async |text: &str, n: usize| {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(post(&mock, ask(text, false)).await.status().as_u16());
        }
        out
    };
    assert_eq!(statuses("[mock:fail_first=2]", 3).await, vec![500, 500, 200]);
    assert_eq!(statuses("again [mock:fail_first=2 other-test]", 3).await, vec![500, 500, 200], "a label has its own counter");
    assert_eq!(statuses("[mock:fail_first=2]", 1).await, vec![200]);
    assert_eq!(mock.request_count(), 7);
}

#[tokio::test]
async fn with_an_api_key_configured_requests_without_it_get_openais_401() {
    let mock = start(|c| c.api_key = Some("sk-mock".into())).await;
    let url = format!("{}/chat/completions", mock.base_url());
    for auth in [None, Some("Bearer sk-wrong"), Some("sk-mock")] {
        let mut req = http().post(&url).json(&ask("hi", false));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let v: Value = resp.json().await.unwrap();
        assert_openai_error(&v, "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
    }
    let resp = http().post(&url).bearer_auth("sk-mock").json(&ask("hi", false)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn malformed_json_and_bad_directives_are_400_in_openais_error_shape() {
    let mock = start(|_| {}).await;
    let url = format!("{}/chat/completions", mock.base_url());
    let resp = http().post(&url).header("content-type", "application/json").body("{\"messages\": [").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_openai_error(&resp.json().await.unwrap(), "invalid_request_error");

    let resp = post(&mock, json!({"model": "m"})).await;
    assert_eq!(resp.status(), 400, "messages are required");

    let resp = post(&mock, ask("[mock:chunk=3]", true)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("chunk"), "{v}");

    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_openai_error(&resp.json().await.unwrap(), "invalid_request_error");
}

#[tokio::test]
async fn every_request_body_is_kept_in_order() {
    let mock = start(|_| {}).await;
    post(&mock, ask("one", false)).await;
    http().post(format!("{}/chat/completions", mock.base_url())).body("not json").send().await.unwrap();
    post(&mock, ask("two", true)).await;
    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0]["messages"][1]["content"], "one");
    assert_eq!(seen[1], json!("not json"));
    assert_eq!(seen[2]["stream"], true);
    assert_eq!(mock.request_count(), 3);
}

async fn wait_for_no_open_streams(mock: &MockLlm) {
    let dropped = Instant::now();
    while mock.open_streams() > 0 {
        assert!(dropped.elapsed() < Duration::from_secs(1), "the stream is still open 1 s after the client left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_client_that_drops_a_paced_stream_frees_it_within_a_second() {
    let mock = start(|c| {
        c.chunks = 100;
        c.chunk_delay = Duration::from_millis(200);
        c.ttft = Duration::from_millis(50);
    })
    .await;
    let resp = post(&mock, ask("Tell me a long story", true)).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: {"));
    assert_eq!(mock.open_streams(), 1);
    drop(body);
    wait_for_no_open_streams(&mock).await;
    mock.shutdown().await;
}

#[tokio::test]
async fn ttft_and_chunk_delay_pace_the_stream() {
    let mock = start(|_| {}).await;
    let started = Instant::now();
    let (frames, _) = read_frames(post(&mock, ask("[mock:ttft_ms=150][mock:delay_ms=20][mock:chunks=5]", true)).await).await;
    assert_eq!(frames.len(), 1 + 5 + 2);
    assert!(started.elapsed() >= Duration::from_millis(150 + 5 * 20), "{:?}", started.elapsed());
}

#[tokio::test]
async fn shutdown_ends_a_stalled_stream_instead_of_waiting_for_it() {
    let mock = start(|_| {}).await;
    let resp = post(&mock, ask("[mock:stall_after=0]", true)).await;
    let started = Instant::now();
    mock.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(1));
    let (_, clean) = read_frames(resp).await;
    assert!(!clean);
}

#[tokio::test]
async fn the_mock_llm_command_logs_its_url_and_answers_there() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["mock-llm", "--listen", "127.0.0.1:0", "--chunk-delay-ms", "0", "--model", "cli-model"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().expect("the URL is logged");
        if let Some(at) = line.find("http://") {
            break line[at..].split(|c: char| c.is_whitespace() || c.is_control()).next().unwrap().to_string();
        }
    };
    assert!(url.ends_with("/v1"), "{url}");
    let v: Value =
        http().post(format!("{url}/chat/completions")).json(&json!({"messages": []})).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["model"], "cli-model");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn echo_streams_the_users_own_text_word_by_word_so_tests_choose_the_answer() {
    let mock = start(|_| {}).await;
    let said = "**Bold** <img src=x onerror=alert(1)> café ✨ 日本語";
    let (frames, clean) = read_frames(post(&mock, ask(&format!("{said} [mock:echo=1]"), true)).await).await;
    assert!(clean);
    let chunks: Vec<Value> = frames.iter().filter(|f| *f != "[DONE]").map(|f| json_of(f)).collect();
    assert_eq!(content_of(&chunks), said);
    let pieces = chunks.iter().filter(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty())).count();
    assert_eq!(pieces, said.split_whitespace().count(), "one word per chunk");
}

#[tokio::test]
async fn a_configured_answer_writer_replaces_the_steady_sentence() {
    let mock = start(|c| c.answers = Some(|q: &str| format!("You asked: {q}"))).await;
    let (frames, _) = read_frames(post(&mock, ask("opening hours", true)).await).await;
    let chunks: Vec<Value> = frames.iter().filter(|f| *f != "[DONE]").map(|f| json_of(f)).collect();
    assert_eq!(content_of(&chunks), "You asked: opening hours");
}
