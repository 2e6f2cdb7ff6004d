//! The store's write path: one failing write never takes its neighbours down with it.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_failing_write_does_not_undo_the_writes_batched_with_it() {
    let app = spawn_app().await;
    let store = app.state.store.clone();
    store.insert_token("tok-1", "hash-1", "supervisor", "[\"*\"]", None, 1).await.unwrap();
    // Many writes at once share SQLite transactions; the duplicate id fails inside one of them.
    let mut writes = Vec::new();
    for i in 0..20 {
        let (app_url, http) = (app.url("/vapi/webhook"), app.http.clone());
        let body = message(&format!("c-batch-{i}"), ORG, json!({ "type": "status-update", "status": "queued" }));
        writes.push(tokio::spawn(async move {
            http.post(app_url).header("content-type", "application/json").body(body.to_string()).send().await.unwrap().status().as_u16()
        }));
    }
    let duplicate = store.insert_token("tok-1", "hash-2", "admin", "[\"*\"]", None, 2).await;
    assert!(duplicate.is_err(), "a duplicate primary key fails");
    for w in writes {
        assert_eq!(w.await.unwrap(), 200);
    }
    assert_eq!(app.call_count().await, 20, "every other write committed");
    assert!(store.find_token("hash-1").await.unwrap().is_some());
    assert!(store.find_token("hash-2").await.unwrap().is_none(), "the failed write left nothing behind");
}
