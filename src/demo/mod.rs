//! `switchboard demo`: the whole hub alive with one command and no keys. It starts the hub on
//! the embedded default (SQLite in a fresh folder, in-process broker, local recordings), the
//! mock model with a dental clinic's answers, a fake recording host, a "customer site" on a
//! second origin that embeds the widget, and a few simulated calls that never stop; then it
//! prints the dashboard's URL with a ready admin token and the demo page's URL.

mod answers;
mod site;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::app::{Application, shutdown_signal};
use crate::auth::Role;
use crate::config::{LogFormat, Secret, Settings, Widget};
use crate::mockllm::{MockConfig, MockLlm};
use crate::simulate::{Line, Poster, Tally};

/// The demo's org: simulated calls and the widget's chats both belong to it.
const ORG: &str = "demo-org";
/// The site key the demo page's script tag names.
const SITE_KEY: &str = "demo";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Address of the hub (dashboard, widget, API)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the demo "customer site", a second origin that embeds the widget
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub site_listen: SocketAddr,
    /// Simulated calls in progress at once
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=50))]
    pub calls: u64,
    /// Pace of the simulated conversations (2 = twice real time)
    #[arg(long, default_value_t = 1.5)]
    pub speed: f64,
    /// Folder for the database and recordings [default: a new temporary folder, removed at exit]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Serve the web assets from this folder instead of the embedded copies
    #[arg(long, env = "SWITCHBOARD_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
}

pub async fn run(args: DemoArgs) -> ExitCode {
    crate::telemetry::init("warn,switchboard=info", LogFormat::Text);
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("switchboard-demo-{}", std::process::id())), true),
    };
    let code = match start(&args, &dir).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "switchboard demo: {message}");
            ExitCode::FAILURE
        }
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    code
}

async fn start(args: &DemoArgs, dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mock = MockLlm::start(MockConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ttft: Duration::from_millis(350),
        chunk_delay: Duration::from_millis(45),
        answers: Some(answers::answer),
        ..MockConfig::default()
    })
    .await
    .map_err(|e| format!("the mock model cannot listen: {e}"))?;
    let recordings = site::recording_host().await.map_err(|e| format!("the recording host cannot listen: {e}"))?;
    let site_listener =
        TcpListener::bind(args.site_listen).await.map_err(|e| format!("the demo site cannot listen on {}: {e}", args.site_listen))?;
    let site_origin = format!("http://{}", site_listener.local_addr().map_err(|e| e.to_string())?);

    let secret = random_secret()?;
    let settings = settings(args, dir, &mock.base_url(), &site_origin, &secret);
    let app = Application::build(settings).await.map_err(|e| e.to_string())?;
    let hub = format!("http://{}", app.local_addr());
    let state = app.state();
    // Every org (the demo's database holds only its own): the admin views include the job
    // queue, which needs an admin of every org.
    let token = crate::auth::create(&state.store, Role::Admin, &["*".to_string()], Some("demo supervisor"))
        .await
        .map_err(|e| format!("cannot create the demo token: {e}"))?;
    let site = tokio::spawn(site::serve_site(site_listener, state.clone(), hub.clone()));

    let poster = Arc::new(Poster::new(&format!("{hub}/vapi/webhook"), Some(secret), None));
    let tally = Arc::new(Tally::default());
    let mut lines = Vec::new();
    for line in 0..args.calls {
        let (poster, tally) = (poster.clone(), tally.clone());
        let l = Line { line, rounds: None, speed: args.speed, org: ORG.into(), recording_base: recordings.base.clone(), seed: 42 };
        // Staggered, so calls are at different points of their conversations; the first starts
        // at once so the dashboard has a live call within a second.
        let delay = Duration::from_secs_f64(line as f64 * 7.0 / args.speed.max(0.1));
        lines.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            crate::simulate::drive(poster, tally, l).await;
        }));
    }

    let mut out = std::io::stdout();
    let _ = writeln!(out, "\nswitchboard demo is running — Ctrl-C stops it\n");
    let _ = writeln!(out, "  Dashboard: {hub}/dashboard/#token={token}");
    let _ = writeln!(out, "  Demo page: {site_origin}/");
    let _ = writeln!(out, "\n  Hub {hub} · mock model {} · data in {}", mock.base_url(), dir.display());
    let _ = writeln!(
        out,
        "  ({} simulated calls at once, {}× real time; the token is an admin token for every org; the calls are org {ORG}'s)\n",
        args.calls, args.speed
    );
    let _ = out.flush();

    app.run_until(shutdown_signal()).await;
    for l in lines {
        l.abort();
    }
    site.abort();
    recordings.task.abort();
    mock.shutdown().await;
    Ok(())
}

fn settings(args: &DemoArgs, dir: &std::path::Path, model_url: &str, site_origin: &str, secret: &str) -> Settings {
    let mut s = Settings::defaults();
    s.listen = args.listen;
    s.database_url = format!("sqlite://{}", dir.join("switchboard.db").display());
    s.web_dir = args.web_dir.clone();
    s.shutdown_timeout = Duration::from_secs(3);
    s.vapi.secrets = vec![Secret::new(secret)];
    s.vapi.default_org = ORG.into();
    s.chat.base_url = model_url.trim_end_matches('/').to_string();
    s.chat.model = "demo-model".into();
    s.chat.system_prompt = "You are the friendly assistant of Riverside Dental.".into();
    s.chat.org = ORG.into();
    s.chat.widgets = vec![Widget {
        site_key: SITE_KEY.into(),
        name: "Riverside Dental".into(),
        allowed_origins: vec![site_origin.to_string()],
        org: ORG.into(),
    }];
    s.recordings.dir = dir.join("recordings");
    s.recordings.allow_http = true;
    s.recordings.allowed_hosts = vec!["127.0.0.1".into()];
    s.recordings.allow_loopback = true;
    s
}

fn random_secret() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(hex::encode(bytes))
}
