//! The binary's own interface: token creation and start-up validation.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

#[test]
fn token_create_prints_the_token_alone_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let out = Command::new(BIN)
        .args(["token", "create", "--role", "supervisor", "--org", "org-a"])
        .env("SWITCHBOARD_DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("sb_") && lines[0].len() > 40);
}

#[test]
fn a_bad_setting_stops_start_up_with_its_name() {
    let out = Command::new(BIN).args(["serve"]).env("SWITCHBOARD_LISTEN", "not-an-address").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SWITCHBOARD_LISTEN"), "{stderr}");
}

#[test]
fn an_unknown_role_is_refused() {
    let out = Command::new(BIN).args(["token", "create", "--role", "root", "--org", "*"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role"));
}

#[test]
fn demo_refuses_more_simulated_calls_than_it_allows_naming_the_flag() {
    let out = Command::new(BIN).args(["demo", "--calls", "500", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--calls"), "{}", String::from_utf8_lossy(&out.stderr));
}
