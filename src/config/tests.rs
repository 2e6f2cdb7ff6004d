//! Settings: precedence of flags over file, and errors that name the bad setting.

use super::*;

fn file(toml_text: &str) -> FileConfig {
    toml::from_str(toml_text).unwrap()
}

#[test]
fn defaults_match_the_documented_ones() {
    let s = Settings::from_sources(FileConfig::default(), &ConfigArgs::default()).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.database_url, "sqlite://switchboard.db");
    assert_eq!(s.broker_url, "memory");
    assert_eq!(s.vapi.body_limit, 1024 * 1024);
    assert_eq!(s.vapi.tool_timeout, Duration::from_secs(10));
    assert_eq!(s.functions.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), vec!["lookupCustomer", "bookAppointment", "transferCall"]);
    assert!(!s.vapi.auth_configured());
}

#[test]
fn flags_and_environment_win_over_the_file() {
    let f = file("listen = \"127.0.0.1:9000\"\n[vapi]\nsecret = \"from-file\"\n");
    let args = ConfigArgs { listen: Some("0.0.0.0:7000".into()), vapi_secret: Some("from-env".into()), ..ConfigArgs::default() };
    let s = Settings::from_sources(f, &args).unwrap();
    assert_eq!(s.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(s.vapi.secrets.iter().map(|s| s.expose()).collect::<Vec<_>>(), vec!["from-env"]);
}

#[test]
fn a_bad_value_is_reported_with_the_setting_name() {
    let args = ConfigArgs { listen: Some("nowhere".into()), ..ConfigArgs::default() };
    let e = Settings::from_sources(FileConfig::default(), &args).unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_LISTEN"), "{e}");
    let args = ConfigArgs { vapi_hmac_secret: Some("k".into()), vapi_hmac_algorithm: Some("md5".into()), ..ConfigArgs::default() };
    let e = Settings::from_sources(FileConfig::default(), &args).unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_VAPI_HMAC_ALGORITHM"), "{e}");
}

#[test]
fn unknown_keys_in_the_file_are_refused() {
    assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
}

#[test]
fn hmac_options_from_the_file_are_applied_and_base64_secrets_decoded() {
    let f = file(
        "[vapi.hmac]\nsecret = \"c2VjcmV0\"\nsecret_is_base64 = true\nalgorithm = \"sha512\"\nsignature_header = \"X-Sig\"\nsignature_encoding = \"base64\"\nsignature_prefix = \"v1=\"\ntolerance_secs = 60\n",
    );
    let h = Settings::from_sources(f, &ConfigArgs::default()).unwrap().vapi.hmac.unwrap();
    assert_eq!(h.keys, vec![b"secret".to_vec()]);
    assert_eq!(
        (h.algorithm, h.encoding, h.signature_header.as_str(), h.prefix.as_str()),
        (HmacAlgorithm::Sha512, Encoding::Base64, "x-sig", "v1=")
    );
    assert_eq!(h.tolerance, Duration::from_secs(60));
}

#[test]
fn include_timestamp_false_signs_the_body_alone() {
    let args =
        ConfigArgs { vapi_hmac_secret: Some("k".into()), vapi_hmac_include_timestamp: Some("false".into()), ..ConfigArgs::default() };
    let h = Settings::from_sources(FileConfig::default(), &args).unwrap().vapi.hmac.unwrap();
    assert_eq!(h.payload_format, "{body}");
    assert!(!h.signs_timestamp());
}

#[test]
fn an_assistant_answer_must_be_exactly_one_kind() {
    let f = file("[vapi.assistant_request]\nassistant_id = \"a\"\nerror = \"closed\"\n");
    let e = Settings::from_sources(f, &ConfigArgs::default()).unwrap_err();
    assert!(e.setting.contains("vapi.assistant_request"), "{e}");
}

#[test]
fn declared_functions_replace_the_builtins_and_are_validated() {
    let f = file(
        "[[functions]]\nname = \"check_availability\"\nurl = \"http://127.0.0.1:9/f\"\ntimeout_ms = 500\n[functions.parameters]\ntype = \"object\"\n",
    );
    let s = Settings::from_sources(f, &ConfigArgs::default()).unwrap();
    assert_eq!(s.functions.len(), 1);
    assert!(matches!(s.functions[0].handler, FunctionHandler::Http { .. }));
    assert_eq!(s.functions[0].timeout, Duration::from_millis(500));
    let bad = file("[[functions]]\nname = \"x\"\nbuiltin = \"nope\"\n");
    assert!(Settings::from_sources(bad, &ConfigArgs::default()).unwrap_err().to_string().contains("functions[0]"));
}

#[test]
fn unsupported_brokers_are_refused_at_start_up() {
    let args = ConfigArgs { broker_url: Some("nats://127.0.0.1".into()), ..ConfigArgs::default() };
    assert!(Settings::from_sources(FileConfig::default(), &args).unwrap_err().to_string().contains("SWITCHBOARD_BROKER_URL"));
    let redis = ConfigArgs { broker_url: Some("redis://127.0.0.1:6379/0".into()), ..ConfigArgs::default() };
    assert_eq!(Settings::from_sources(FileConfig::default(), &redis).unwrap().broker_url, "redis://127.0.0.1:6379/0");
}

#[test]
fn websocket_limits_come_from_the_file_and_the_environment_wins() {
    let file: FileConfig = toml::from_str("[ws]\nmax_subscriptions = 4\nallowed_origins = [\"https://Board.example\"]\n").unwrap();
    let args = ConfigArgs { ws_max_subscriptions: Some("7".into()), ..ConfigArgs::default() };
    let s = Settings::from_sources(file, &args).unwrap();
    assert_eq!(s.live.ws.max_subscriptions, 7);
    assert_eq!(s.live.ws.allowed_origins, vec!["https://board.example".to_string()]);
}

#[test]
fn an_idle_timeout_shorter_than_the_ping_interval_is_refused() {
    let args = ConfigArgs { ws_idle_timeout_ms: Some("1000".into()), ws_ping_interval_ms: Some("2000".into()), ..ConfigArgs::default() };
    let e = Settings::from_sources(FileConfig::default(), &args).unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_WS_IDLE_TIMEOUT_MS"), "{e}");
}

#[test]
fn an_allowed_origin_with_a_path_is_refused() {
    let args = ConfigArgs { ws_allowed_origins: Some("https://a.example/app".into()), ..ConfigArgs::default() };
    assert!(Settings::from_sources(FileConfig::default(), &args).unwrap_err().to_string().contains("allowed_origins"));
}

#[test]
fn a_zero_read_timeout_is_refused_with_its_name() {
    let args = ConfigArgs { body_read_timeout_ms: Some("0".into()), ..ConfigArgs::default() };
    let e = Settings::from_sources(FileConfig::default(), &args).unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_BODY_READ_TIMEOUT_MS"), "{e}");
}

#[test]
fn the_keep_alive_timeout_is_its_own_setting_and_outlasts_common_client_pools_by_default() {
    let s = Settings::from_sources(FileConfig::default(), &ConfigArgs::default()).unwrap();
    assert!(s.keep_alive_timeout > std::time::Duration::from_secs(90) && s.header_read_timeout < s.keep_alive_timeout);
    let file = FileConfig { keep_alive_timeout_ms: Some(5_000), ..FileConfig::default() };
    assert_eq!(Settings::from_sources(file, &ConfigArgs::default()).unwrap().keep_alive_timeout, std::time::Duration::from_secs(5));
    let args = ConfigArgs { keep_alive_timeout_ms: Some("0".into()), ..ConfigArgs::default() };
    let e = Settings::from_sources(FileConfig::default(), &args).unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_KEEP_ALIVE_TIMEOUT_MS"), "{e}");
}

#[test]
fn the_broker_prefix_comes_from_the_file_or_the_environment_and_is_validated() {
    assert_eq!(Settings::from_sources(FileConfig::default(), &ConfigArgs::default()).unwrap().live.broker_prefix, "switchboard");
    let s = Settings::from_sources(file("broker_prefix = \"hub-eu.1\"\n"), &ConfigArgs::default()).unwrap();
    assert_eq!(s.live.broker_prefix, "hub-eu.1");
    let args = ConfigArgs { broker_prefix: Some("hub:b".into()), ..ConfigArgs::default() };
    assert_eq!(Settings::from_sources(file("broker_prefix = \"hub-a\"\n"), &args).unwrap().live.broker_prefix, "hub:b");
    for bad in ["has space", "a{b}", &"x".repeat(65)] {
        let args = ConfigArgs { broker_prefix: Some(bad.to_string()), ..ConfigArgs::default() };
        let e = Settings::from_sources(FileConfig::default(), &args).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_BROKER_PREFIX"), "{bad:?}: {e}");
    }
    let e = Settings::from_sources(file("broker_prefix = \"\"\n"), &ConfigArgs::default()).unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_BROKER_PREFIX"), "an empty prefix in the file is refused: {e}");
}

#[test]
fn the_web_folder_and_the_vapi_api_url_are_checked_naming_the_setting() {
    let args = ConfigArgs { web_dir: Some("/no/such/folder".into()), ..ConfigArgs::default() };
    let e = Settings::from_sources(FileConfig::default(), &args).unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_WEB_DIR"), "{e}");
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
    let args = ConfigArgs { web_dir: Some(web.into()), ..ConfigArgs::default() };
    assert!(Settings::from_sources(FileConfig::default(), &args).unwrap().web_dir.is_some());

    let args = ConfigArgs { vapi_api_url: Some("ftp://api.vapi.ai".into()), ..ConfigArgs::default() };
    let e = Settings::from_sources(FileConfig::default(), &args).unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_VAPI_API_URL"), "{e}");
    let e = Settings::from_sources(file("[reconcile]\nafter_ms = 0\n"), &ConfigArgs::default()).unwrap_err();
    assert!(e.to_string().contains("reconcile.after_ms"), "{e}");
    let args = ConfigArgs { vapi_api_key: Some("k".into()), vapi_api_url: Some("http://127.0.0.1:9/".into()), ..ConfigArgs::default() };
    let s = Settings::from_sources(FileConfig::default(), &args).unwrap();
    assert_eq!((s.reconcile.api_key.map(|k| k.expose().to_string()), s.reconcile.api_url), (Some("k".into()), "http://127.0.0.1:9".into()));
}

#[test]
fn retention_ages_beyond_a_century_are_refused_naming_the_setting() {
    let e = Settings::from_sources(file("[retention]\nchats_days = 40000\n"), &ConfigArgs::default()).unwrap_err();
    assert!(e.to_string().contains("retention.chats_days"), "{e}");
}

#[test]
fn the_listen_backlog_comes_from_the_file_or_the_environment_and_zero_is_refused() {
    assert_eq!(Settings::from_sources(FileConfig::default(), &ConfigArgs::default()).unwrap().listen_backlog, 4096);
    let s = Settings::from_sources(file("listen_backlog = 512\n"), &ConfigArgs::default()).unwrap();
    assert_eq!(s.listen_backlog, 512);
    let args = ConfigArgs { listen_backlog: Some("8192".into()), ..ConfigArgs::default() };
    assert_eq!(Settings::from_sources(file("listen_backlog = 512\n"), &args).unwrap().listen_backlog, 8192);
    let args = ConfigArgs { listen_backlog: Some("0".into()), ..ConfigArgs::default() };
    let e = Settings::from_sources(FileConfig::default(), &args).unwrap_err();
    assert!(e.to_string().contains("SWITCHBOARD_LISTEN_BACKLOG"), "{e}");
}
