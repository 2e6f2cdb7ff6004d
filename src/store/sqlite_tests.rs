use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;

use super::*;

async fn store(dir: &tempfile::TempDir, tuning: Tuning) -> SqliteStore {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = SqliteStore::connect_tuned(&url, 2, tuning).await.unwrap();
    store.write(|c| Box::pin(async move { sqlx::query("CREATE TABLE blobs (b BLOB)").execute(c).await.map(|_| ()) })).await.unwrap();
    store
}

async fn insert(store: &SqliteStore, bytes: usize) -> Result<()> {
    store
        .write(move |c| {
            Box::pin(async move { sqlx::query("INSERT INTO blobs (b) VALUES ($1)").bind(vec![7u8; bytes]).execute(c).await.map(|_| ()) })
        })
        .await
}

#[tokio::test]
async fn the_wal_starts_over_under_sustained_writes_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = Tuning { checkpoint_every: Duration::from_millis(5), wal_restart_frames: 64, ..TUNING };
    let store = Arc::new(store(&dir, tuning).await);
    // 24 MiB through the WAL with writers that never pause: without the writer's own pass the
    // passive checkpoints never reach the end, and the WAL holds all of it.
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..384 {
                    insert(&store, 8192).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("t.db-wal")).unwrap().len();
    assert!(wal < 8 << 20, "the WAL grew to {wal} bytes");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs").fetch_one(&mut *store.conn().await.unwrap()).await.unwrap();
    assert_eq!(rows, 8 * 384);
}

#[tokio::test]
async fn an_early_claim_is_seen_by_the_next_write_on_the_other_connection_and_lasts_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, TUNING).await;
    // Answered before its commit, on the writer's own connection…
    let claimed = store.write_direct(|c| c.execute("INSERT INTO blobs (b) VALUES (x'01')", []), Shape::Early).await.unwrap();
    assert_eq!(claimed, 1);
    // …and seen by the next write, which runs through sqlx.
    let seen: i64 = store
        .write(|c| Box::pin(async move { sqlx::query_scalar("SELECT count(*) FROM blobs WHERE b = x'01'").fetch_one(c).await }))
        .await
        .unwrap();
    assert_eq!(seen, 1);
    drop(store);
    // Reopened: the claim was committed with the write that followed it.
    let store = SqliteStore::connect_tuned(&format!("sqlite://{}", dir.path().join("t.db").display()), 1, TUNING).await.unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs").fetch_one(&mut *store.conn().await.unwrap()).await.unwrap();
    assert_eq!(kept, 1);
}

#[tokio::test]
async fn writes_on_both_connections_commit_in_the_order_they_were_queued() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store(&dir, TUNING).await);
    store.write(|c| Box::pin(async move { sqlx::query("CREATE TABLE log (n INTEGER)").execute(c).await.map(drop) })).await.unwrap();
    // Interleaved, so that batches mix the two kinds of job; each write appends its number.
    let mut writes: Vec<_> = (0..200i64)
        .map(|n| {
            let store = store.clone();
            async move {
                if n % 3 == 0 {
                    store
                        .write(move |c| {
                            Box::pin(async move { sqlx::query("INSERT INTO log (n) VALUES ($1)").bind(n).execute(c).await.map(drop) })
                        })
                        .await
                } else {
                    store.write_direct(move |c| c.execute("INSERT INTO log (n) VALUES (?1)", [n]).map(drop), Shape::Committed).await
                }
            }
            .boxed()
        })
        .collect();
    // Polled once each, in order, outside tokio's budget (which would defer sends after the
    // 128th): that queues them in order. Then wait for all.
    tokio::task::unconstrained(async {
        for w in &mut writes {
            assert!(futures::poll!(w.as_mut()).is_pending());
        }
    })
    .await;
    for outcome in futures::future::join_all(writes).await {
        outcome.unwrap();
    }
    let order: Vec<i64> =
        sqlx::query_scalar("SELECT n FROM log ORDER BY rowid").fetch_all(&mut *store.conn().await.unwrap()).await.unwrap();
    assert_eq!(order, (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_early_write_is_answered_before_the_rest_of_its_batch_has_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store(&dir, TUNING).await);
    // Hold the writer in a job of its own, so the next two land in one batch.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let s = store.clone();
    let holding = tokio::spawn(async move {
        s.write_direct(
            move |_| {
                let _ = started_tx.send(());
                let _ = gate_rx.recv_timeout(Duration::from_secs(10));
                Ok(())
            },
            Shape::Committed,
        )
        .await
    });
    started_rx.await.unwrap();
    // The claim, then a job that runs until the test lets it go.
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let s = store.clone();
    let mut claim = async move { s.write_direct(|c| c.execute("INSERT INTO blobs (b) VALUES (x'01')", []), Shape::Early).await }.boxed();
    let s = store.clone();
    let mut after = async move {
        s.write_direct(
            move |c| {
                let _ = release_rx.recv_timeout(Duration::from_secs(10));
                c.execute("INSERT INTO blobs (b) VALUES (x'02')", [])
            },
            Shape::Committed,
        )
        .await
    }
    .boxed();
    tokio::task::unconstrained(async {
        assert!(futures::poll!(claim.as_mut()).is_pending());
        assert!(futures::poll!(after.as_mut()).is_pending());
    })
    .await;
    gate_tx.send(()).unwrap();
    holding.await.unwrap().unwrap();
    // Answered while the job after it in its batch still runs: a write that waited for the
    // commit would wait for that job, which waits for this answer.
    let claimed = tokio::time::timeout(Duration::from_secs(5), claim).await.expect("the early write waited for its batch's commit");
    assert_eq!(claimed.unwrap(), 1);
    release_tx.send(()).unwrap();
    assert_eq!(after.await.unwrap(), 1);
}

fn blob(byte: u8) -> impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<usize> + Send + 'static {
    move |c| c.execute("INSERT INTO blobs (b) VALUES (?1)", [vec![byte]])
}

#[tokio::test]
async fn a_claim_and_the_result_it_announced_commit_together_with_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    // A long linger, so that a slow test machine cannot make the result miss the transaction.
    let store = store(&dir, Tuning { linger: Duration::from_secs(5), ..TUNING }).await;
    let before = store.commits.load(Ordering::Relaxed);
    let started = std::time::Instant::now();
    assert_eq!(store.write_direct(blob(1), Shape::ClaimThenResult).await.unwrap(), 1, "answered before its commit");
    // The message's record and the result, as a handler sends them: at once.
    let (record, result) = tokio::join!(store.write_direct(blob(2), Shape::Committed), store.write_direct(blob(3), Shape::Result));
    assert_eq!((record.unwrap(), result.unwrap()), (1, 1));
    assert!(started.elapsed() < Duration::from_secs(4), "the result ended the wait: {:?}", started.elapsed());
    assert_eq!(store.commits.load(Ordering::Relaxed) - before, 1, "claim, record and result shared one commit");
}

#[tokio::test]
async fn a_claim_whose_result_never_comes_commits_once_the_linger_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, Tuning { linger: Duration::from_millis(50), ..TUNING }).await;
    let before = store.commits.load(Ordering::Relaxed);
    store.write_direct(blob(1), Shape::ClaimThenResult).await.unwrap();
    // A write that needs the commit, while no result comes: it waits out the linger, no more.
    let started = std::time::Instant::now();
    store.write_direct(blob(2), Shape::Committed).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(store.commits.load(Ordering::Relaxed) - before, 1);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs").fetch_one(&mut *store.conn().await.unwrap()).await.unwrap();
    assert_eq!(kept, 2, "both committed");
}

#[tokio::test]
async fn a_write_for_the_other_connection_ends_the_wait_for_a_result_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, Tuning { linger: Duration::from_secs(30), ..TUNING }).await;
    store.write_direct(blob(1), Shape::ClaimThenResult).await.unwrap();
    // Through sqlx: it must run after the claim's commit, so the claim's transaction ends now.
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        store.write(|c| Box::pin(async move { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM blobs").fetch_one(c).await })),
    )
    .await
    .expect("the sqlx write waited out the linger");
    assert_eq!(seen.unwrap(), 1);
}

#[tokio::test]
async fn a_transaction_that_broke_while_waiting_for_a_result_takes_no_later_write_down_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir, Tuning { linger: Duration::from_secs(30), ..TUNING }).await;
    // A claim whose job ends the transaction under the writer: its savepoint cannot be released.
    let claimed = store
        .write_direct(
            |c| {
                c.execute("INSERT INTO blobs (b) VALUES (x'01')", [])?;
                c.execute_batch("ROLLBACK")
            },
            Shape::ClaimThenResult,
        )
        .await;
    assert!(claimed.is_ok(), "answered early: {claimed:?}");
    // The result it announced comes later; it must land in a transaction of its own.
    let later =
        tokio::time::timeout(Duration::from_secs(10), store.write_direct(blob(2), Shape::Result)).await.expect("waited out the linger");
    assert_eq!(later.unwrap(), 1);
    let kept: Vec<Vec<u8>> = sqlx::query_scalar("SELECT b FROM blobs").fetch_all(&mut *store.conn().await.unwrap()).await.unwrap();
    assert_eq!(kept, vec![vec![2u8]], "the broken transaction's claim is gone, the later write is stored");
}
