//! The store's write path: one failing write never takes its neighbours down with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

fn user_message(id: &str, at: i64) -> switchboard::store::NewChatMessage {
    switchboard::store::NewChatMessage::from_user(id.into(), format!("message {id}"), None, at)
}

#[tokio::test]
async fn a_chat_run_holds_its_session_until_its_lease_runs_out_and_a_refusal_stores_nothing() {
    use switchboard::store::{FollowUps, NewChatSession, RunStart, StartRun};
    let app = spawn_app().await;
    let store = app.state.store.clone();
    let now = switchboard::clock::now_ms();
    let session = NewChatSession { id: "s-lease".into(), org_id: ORG.into(), site_key: None, created_at: now, metadata: None };
    store.create_chat_session(session).await.unwrap();
    let start = |run: &str, at: i64, max_messages: i64| StartRun {
        session_id: "s-lease".into(),
        run_id: run.into(),
        message: user_message(&format!("m-{run}"), at),
        now: at,
        lease_until: at + 1_000,
        max_messages,
        // The message's delivery, named by the run and the position the transaction gave it.
        follow_ups: Some(FollowUps(Arc::new({
            let run = run.to_string();
            move |seq: &i64| vec![follow_up_job(&format!("job-{run}-{seq}"), &format!("fu:{run}"))]
        }))),
    };
    assert_eq!(store.start_chat_run(start("r1", now, 10)).await.unwrap(), RunStart::Started { message_seq: 1 });
    assert_eq!(store.start_chat_run(start("r2", now + 10, 10)).await.unwrap(), RunStart::Busy { run_id: "r1".into() });
    // r1's instance died: once its lease has run out, the session takes the next message.
    assert_eq!(store.start_chat_run(start("r3", now + 1_001, 10)).await.unwrap(), RunStart::Started { message_seq: 2 });
    let r1 = store.chat_run("r1").await.unwrap().unwrap();
    assert_eq!((r1.status.as_str(), r1.error_code.as_deref()), ("failed", Some("abandoned")));
    assert!(store.chat_run("r2").await.unwrap().is_none(), "the refused run was not stored");
    // Full: two messages stored, a third plus its answer would pass a maximum of 3.
    let done = switchboard::store::FinishRun {
        session_id: "s-lease".into(),
        site_key: None,
        charged_tokens: 0,
        run_id: "r3".into(),
        status: "done".into(),
        finish_reason: Some("stop".into()),
        prompt_tokens: None,
        completion_tokens: None,
        error_code: None,
        error: None,
        finished_at: now + 1_100,
        messages: Vec::new(),
        announce: vec![follow_up_job("job-answer-r3", "fu:answer-r3")],
    };
    assert!(store.finish_chat_run(done).await.unwrap());
    assert!(store.get_job("job-answer-r3").await.unwrap().is_some(), "the answer's delivery was written with it");
    assert_eq!(store.start_chat_run(start("r4", now + 1_200, 3)).await.unwrap(), RunStart::Full);
    let ids: Vec<(i64, String)> = store.chat_messages("s-lease").await.unwrap().into_iter().map(|m| (m.seq, m.id)).collect();
    assert_eq!(ids, vec![(1, "m-r1".to_string()), (2, "m-r3".to_string())], "refusals took no position");
    assert_eq!(store.start_chat_run(start("r5", now + 1_300, 4)).await.unwrap(), RunStart::Started { message_seq: 3 });
    for (job, written) in [("job-r1-1", true), ("job-r3-2", true), ("job-r5-3", true), ("job-r2-2", false), ("job-r4-3", false)] {
        assert_eq!(store.get_job(job).await.unwrap().is_some(), written, "{job}: only a started run's message is announced");
    }
}

#[tokio::test]
async fn a_tool_call_result_and_its_deliveries_are_stored_only_by_the_claim_that_still_holds_it() {
    use switchboard::store::{Claim, Finished, NewInvocation};
    let app = spawn_app().await;
    let store = app.state.store.clone();
    let now = switchboard::clock::now_ms();
    let claim = |at: i64| NewInvocation {
        tool_call_id: "tc-held".into(),
        call_id: Some("c-held".into()),
        org_id: ORG.into(),
        name: "lookupCustomer".into(),
        arguments: "{}".into(),
        started_at: at,
        lease_until: at + 100,
        result_soon: true,
    };
    let finish = |claimed_at: i64, result: &str| Finished {
        claim: claim(claimed_at),
        ok: true,
        result: Some(result.into()),
        error: None,
        latency_ms: 1.0,
        finished_at: claimed_at + 1,
        announce: vec![follow_up_job(&format!("job-{result}"), &format!("fu:{result}"))],
    };
    assert!(matches!(store.claim_invocation(claim(now)).await.unwrap(), Claim::Claimed));
    // The first claimant went quiet past its lease; a redelivery took the call over.
    assert!(matches!(store.claim_invocation(claim(now + 200)).await.unwrap(), Claim::Claimed));
    assert!(!store.finish_invocation(finish(now, "late")).await.unwrap(), "the first claimant's result is refused");
    assert!(store.finish_invocation(finish(now + 200, "current")).await.unwrap());
    let row = store.get_invocation("tc-held").await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.result.as_deref()), ("ok", Some("current")));
    assert!(!store.finish_invocation(finish(now + 200, "again")).await.unwrap(), "a finished call is not written twice");
    assert!(store.get_job("job-current").await.unwrap().is_some(), "the stored result's deliveries were written with it");
    for refused in ["job-late", "job-again"] {
        assert!(store.get_job(refused).await.unwrap().is_none(), "{refused}: a refused result announces nothing");
    }
}

#[tokio::test]
async fn a_result_whose_claim_was_lost_is_stored_whole() {
    use switchboard::store::{Finished, NewInvocation};
    let app = spawn_app().await;
    let store = app.state.store.clone();
    let now = switchboard::clock::now_ms();
    // No claim row: as after a batch that failed once later writes had seen the claim.
    let claim = NewInvocation {
        tool_call_id: "tc-lost".into(),
        call_id: Some("c-lost".into()),
        org_id: ORG.into(),
        name: "lookupCustomer".into(),
        arguments: "{\"phone\":\"+1\"}".into(),
        started_at: now,
        lease_until: now + 100,
        result_soon: true,
    };
    let done = Finished {
        claim,
        ok: false,
        result: None,
        error: Some("not found".into()),
        latency_ms: 2.0,
        finished_at: now + 2,
        announce: Vec::new(),
    };
    assert!(store.finish_invocation(done).await.unwrap());
    let row = store.get_invocation("tc-lost").await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.error.as_deref(), row.name.as_str(), row.arguments.as_str(), row.call_id.as_deref()),
        ("error", Some("not found"), "lookupCustomer", "{\"phone\":\"+1\"}", Some("c-lost"))
    );
    assert_eq!((row.started_at, row.finished_at), (now, Some(now + 2)));
}

#[tokio::test]
async fn a_finished_runs_tokens_count_for_its_session_its_site_and_all_chat_on_its_day() {
    use switchboard::store::{ChatUsage, FinishRun, NewChatSession, RunStart, StartRun};
    let app = spawn_app().await;
    let store = app.state.store.clone();
    let now = switchboard::clock::now_ms();
    for (id, site, tokens) in
        [("s-a", Some("pk_a"), Some((10, 5))), ("s-b", Some("pk_a"), Some((20, 0))), ("s-c", None, Some((60, 40))), ("s-d", None, None)]
    {
        let session = NewChatSession { id: id.into(), org_id: ORG.into(), site_key: site.map(Into::into), created_at: now, metadata: None };
        store.create_chat_session(session).await.unwrap();
        let run = format!("r-{id}");
        let start = StartRun {
            session_id: id.into(),
            run_id: run.clone(),
            message: user_message(&format!("m-{id}"), now),
            now,
            lease_until: now + 60_000,
            max_messages: 10,
            follow_ups: None,
        };
        assert!(matches!(store.start_chat_run(start).await.unwrap(), RunStart::Started { .. }));
        let done = FinishRun {
            session_id: id.into(),
            site_key: site.map(Into::into),
            charged_tokens: tokens.map_or(0, |t: (i64, i64)| t.0 + t.1),
            run_id: run,
            status: "done".into(),
            finish_reason: Some("stop".into()),
            prompt_tokens: tokens.map(|t| t.0),
            completion_tokens: tokens.map(|t| t.1),
            error_code: None,
            error: None,
            finished_at: now,
            messages: Vec::new(),
            announce: Vec::new(),
        };
        assert!(store.finish_chat_run(done).await.unwrap());
    }
    let today = ChatUsage::day(now);
    assert_eq!(store.chat_usage(today, "s-a").await.unwrap(), ChatUsage { session: 15, site: 35, all: 135 });
    // Sessions of no widget count as the site "".
    assert_eq!(store.chat_usage(today, "s-c").await.unwrap(), ChatUsage { session: 100, site: 100, all: 135 });
    assert_eq!(
        store.chat_usage(today, "s-d").await.unwrap(),
        ChatUsage { session: 0, site: 100, all: 135 },
        "nothing charged, nothing counted"
    );
    assert_eq!(store.chat_usage(today + 1, "s-a").await.unwrap(), ChatUsage::default(), "a new day starts from zero");
    // A run declared abandoned (its lease ran out, another message took the session) is not
    // finished any more, but what it spent still counts.
    let session = NewChatSession { id: "s-e".into(), org_id: ORG.into(), site_key: None, created_at: now, metadata: None };
    store.create_chat_session(session).await.unwrap();
    let start = |run: &str, at: i64| StartRun {
        session_id: "s-e".into(),
        run_id: run.into(),
        message: user_message(&format!("m-{run}"), at),
        now: at,
        lease_until: at + 10,
        max_messages: 10,
        follow_ups: None,
    };
    assert!(matches!(store.start_chat_run(start("r-e1", now)).await.unwrap(), RunStart::Started { .. }));
    assert!(matches!(store.start_chat_run(start("r-e2", now + 20)).await.unwrap(), RunStart::Started { .. }));
    let late = FinishRun {
        session_id: "s-e".into(),
        site_key: None,
        charged_tokens: 7,
        run_id: "r-e1".into(),
        status: "done".into(),
        finish_reason: Some("stop".into()),
        prompt_tokens: Some(5),
        completion_tokens: Some(2),
        error_code: None,
        error: None,
        finished_at: now + 30,
        messages: Vec::new(),
        announce: vec![follow_up_job("job-late-answer", "fu:late-answer")],
    };
    assert!(!store.finish_chat_run(late).await.unwrap(), "no longer running");
    assert!(store.get_job("job-late-answer").await.unwrap().is_none(), "an answer not stored is not announced");
    assert_eq!(store.chat_usage(today, "s-e").await.unwrap(), ChatUsage { session: 7, site: 107, all: 142 });
    // Retention keeps the counts as long as the chats: a cutoff a day ahead takes both.
    store.prune_chats(now + 86_400_000, 100).await.unwrap();
    assert_eq!(store.chat_usage(today, "s-c").await.unwrap(), ChatUsage::default());
}

/// A status update that puts `call` in progress, as the VAPI handler would store it.
fn in_progress(call: &str, follow_ups: Option<switchboard::store::FollowUps>) -> switchboard::store::Ingest {
    use switchboard::store::{CallChange, CallSeen, Ingest, RawEvent, StatusChange};
    let now = switchboard::clock::now_ms();
    Ingest {
        raw: RawEvent {
            call_id: Some(call.into()),
            org_id: ORG.into(),
            kind: "status-update".into(),
            received_at: now,
            message_ts: Some(now),
            dedup_key: format!("status:{call}:in-progress"),
            payload: "{}".into(),
        },
        call: Some(CallSeen { id: call.into(), org_id: ORG.into(), created_at: now, seen_at: now, ..CallSeen::default() }),
        change: CallChange::Status(StatusChange { status: "in-progress".into(), at: now, ended_reason: None }),
        follow_ups,
    }
}

fn follow_up_job(id: &str, dedup_key: &str) -> switchboard::store::NewJob {
    let now = switchboard::clock::now_ms();
    switchboard::store::NewJob {
        id: id.into(),
        kind: "test.follow-up".into(),
        payload: "{}".into(),
        max_attempts: 1,
        run_at: now + 3_600_000,
        dedup_key: Some(dedup_key.into()),
        now,
    }
}

#[tokio::test]
async fn a_messages_follow_up_jobs_commit_with_it_and_its_redelivery_makes_none() {
    use switchboard::store::{FollowUps, IngestOutcome};
    let app = spawn_app().await;
    let store = app.state.store.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let follow_ups = FollowUps(Arc::new(move |a: &switchboard::store::Applied| {
        counted.fetch_add(1, Ordering::SeqCst);
        let moved = a.call.as_ref().is_some_and(|c| c.status == "in-progress") && a.status_changed;
        if moved { vec![follow_up_job("job-fu-1", "fu:c-outbox")] } else { Vec::new() }
    }));
    let IngestOutcome::Applied(applied) = store.ingest(in_progress("c-outbox", Some(follow_ups.clone()))).await.unwrap() else {
        panic!("the first delivery is applied");
    };
    assert_eq!(applied.jobs_created, ["test.follow-up"], "the follow-up saw the applied change");
    let job = store.get_job("job-fu-1").await.unwrap().expect("the job was stored with the message");
    assert_eq!((job.kind.as_str(), job.dedup_key.as_deref()), ("test.follow-up", Some("fu:c-outbox")));
    let again = store.ingest(in_progress("c-outbox", Some(follow_ups))).await.unwrap();
    assert!(matches!(again, IngestOutcome::Duplicate), "{again:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "a redelivery derives no follow-ups");
}

#[tokio::test]
async fn a_message_whose_follow_up_cannot_be_written_is_not_stored_either() {
    use switchboard::store::{FollowUps, IngestOutcome};
    let app = spawn_app().await;
    let store = app.state.store.clone();
    store.enqueue_job(follow_up_job("job-taken", "fu:first")).await.unwrap();
    // Same id, another dedup key: the insert finds neither a new row nor its key, and fails.
    let clashing = FollowUps(Arc::new(|_: &switchboard::store::Applied| vec![follow_up_job("job-taken", "fu:second")]));
    assert!(store.ingest(in_progress("c-rolled-back", Some(clashing))).await.is_err());
    assert!(store.get_call("c-rolled-back").await.unwrap().is_none(), "the call was not written");
    // Nor was the message's dedup record: its redelivery is applied, not taken for a duplicate.
    let retried = store.ingest(in_progress("c-rolled-back", None)).await.unwrap();
    assert!(matches!(retried, IngestOutcome::Applied(_)), "{retried:?}");
    assert_eq!(store.get_call("c-rolled-back").await.unwrap().map(|c| c.status).as_deref(), Some("in-progress"));
}

/// An end-of-call report for `call` under `dedup_key`, naming one recording of each kind.
fn end_report(call: &str, dedup_key: &str, kinds: &[&str], follow_ups: switchboard::store::FollowUps) -> switchboard::store::Ingest {
    use switchboard::store::{CallChange, EndReport, NewRecording};
    let mut ingest = in_progress(call, Some(follow_ups));
    ingest.raw.kind = "end-of-call-report".into();
    ingest.raw.dedup_key = dedup_key.into();
    let recordings =
        kinds.iter().map(|k| NewRecording { kind: (*k).into(), source_url: format!("https://storage.vapi.ai/{call}-{k}.wav") }).collect();
    ingest.change = CallChange::Ended(EndReport { ended_at: ingest.raw.received_at, recordings, ..EndReport::default() });
    ingest
}

#[tokio::test]
async fn a_reports_follow_ups_see_the_recordings_it_added_and_a_later_report_adds_only_the_kinds_the_call_lacked() {
    use switchboard::store::{FollowUps, IngestOutcome};
    let app = spawn_app().await;
    let store = app.state.store.clone();
    // One job per added recording, as the VAPI handler queues their downloads.
    let downloads = FollowUps(Arc::new(|a: &switchboard::store::Applied| {
        a.recordings.iter().map(|id| follow_up_job(&format!("job-rec-{id}"), &format!("fu:rec:{id}"))).collect()
    }));
    let IngestOutcome::Applied(first) =
        store.ingest(end_report("c-recs", "end:c-recs", &["mono", "stereo"], downloads.clone())).await.unwrap()
    else {
        panic!("the first report is applied");
    };
    let stored = store.recordings("c-recs").await.unwrap();
    let mut ids: Vec<i64> = stored.iter().map(|r| r.id).collect();
    let mut added = first.recordings.clone();
    ids.sort();
    added.sort();
    assert_eq!((added.len(), &added), (2, &ids), "the report names exactly the rows it inserted");
    for id in &ids {
        assert!(store.get_job(&format!("job-rec-{id}")).await.unwrap().is_some(), "the download committed with the report");
    }
    // VAPI's legacy report of the same call (another dedup key) repeats `mono` and adds `video`.
    let IngestOutcome::Applied(later) =
        store.ingest(end_report("c-recs", "end-legacy:c-recs", &["mono", "video"], downloads)).await.unwrap()
    else {
        panic!("the legacy report is applied");
    };
    let video = store.recordings("c-recs").await.unwrap().into_iter().find(|r| r.kind == "video").expect("video stored");
    assert_eq!(later.recordings, [video.id], "only the new kind counts as added");
    assert_eq!(later.jobs_created, ["test.follow-up"]);
}
