//! A worker process killed mid-job (SIGKILL, no shutdown): the job's lease passes and the next
//! process on the same database runs it to completion. The real binary, on SQLite.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The hub on `port` with the demo kinds and a one-second lease.
fn start(db: &str, port: u16) -> Child {
    Command::new(BIN)
        .arg("serve")
        .env("SWITCHBOARD_DATABASE_URL", db)
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_JOBS_DEMO_KINDS", "true")
        .env("SWITCHBOARD_JOBS_LEASE_MS", "1000")
        .env("SWITCHBOARD_JOBS_POLL_MS", "50")
        .env("SWITCHBOARD_LOG", "warn")
        .env_remove("SWITCHBOARD_CONFIG")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn until_up(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the hub did not come up at {base}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn job(http: &reqwest::Client, base: &str, token: &str, status: &str, id: &str) -> Option<Value> {
    let r = http.get(format!("{base}/api/admin/jobs?status={status}")).bearer_auth(token).send().await.ok()?;
    let body: Value = r.json().await.ok()?;
    body["jobs"].as_array()?.iter().find(|j| j["id"] == id).cloned()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_job_whose_process_was_killed_mid_run_is_completed_by_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let out =
        Command::new(BIN).args(["token", "create", "--role", "admin", "--org", "*"]).env("SWITCHBOARD_DATABASE_URL", &db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut first = Killed(start(&db, port));
    until_up(&http, &base).await;
    let r = http.post(format!("{base}/api/admin/jobs/run/sleep")).bearer_auth(&token).json(&json!({ "ms": 2500 })).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while job(&http, &base, &token, "running", &id).await.is_none() {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.0.kill().unwrap(); // SIGKILL: no shutdown, no chance to record anything
    first.0.wait().unwrap();
    let store = switchboard::store::connect(&db, 1).await.unwrap();
    let orphan = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!((orphan.status.as_str(), orphan.attempts), ("running", 1), "the killed process held it");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _second = Killed(start(&db, port));
    until_up(&http, &base).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = loop {
        if let Some(j) = job(&http, &base, &token, "done", &id).await {
            break j;
        }
        assert!(Instant::now() < deadline, "the job was not completed after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["attempts"], 2, "run again, as its second attempt");
    assert_ne!(done["locked_by"].as_str(), orphan.locked_by.as_deref(), "by the new process");
}
