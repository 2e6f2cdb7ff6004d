//! Command-line entry points: serve (default), migrate, token create, simulate, mock-llm, demo.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{Application, shutdown_signal};
use crate::auth::Role;
use crate::config::{ConfigArgs, LogFormat, Settings};
use crate::mockllm::{MockConfig, MockLlm, MockLlmArgs};

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "A real-time hub between VAPI voice assistants, browser chat and live supervisors.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub (the default)
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Apply database migrations and exit
    Migrate {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Manage API tokens
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Drive a hub with realistic VAPI call traffic
    Simulate(crate::simulate::SimulateArgs),
    /// The whole hub alive with no keys: hub, mock model, simulated calls, a demo site
    Demo(crate::demo::DemoArgs),
    /// Serve an OpenAI-compatible mock model (for tests, the demo and benchmarks)
    MockLlm(MockLlmArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (alone, on stdout); it is not shown again
    Create {
        /// supervisor or admin
        #[arg(long)]
        role: String,
        /// VAPI org id the token may see, or * for all (repeatable)
        #[arg(long = "org", required = true)]
        orgs: Vec<String>,
        /// A note on who or what the token is for
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "switchboard: {message}");
    ExitCode::FAILURE
}

fn settings(args: &ConfigArgs) -> Result<Settings, ExitCode> {
    Settings::load(args).map_err(fail)
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        None => serve(&cli.config).await,
        Some(Command::Serve { config }) => serve(&config).await,
        Some(Command::Migrate { config }) => migrate(&config).await,
        Some(Command::Token { command: TokenCommand::Create { role, orgs, label, config } }) => {
            token_create(&config, &role, &orgs, label.as_deref()).await
        }
        Some(Command::Simulate(args)) => crate::simulate::run(args).await,
        Some(Command::MockLlm(args)) => mock_llm(args).await,
        Some(Command::Demo(args)) => crate::demo::run(args).await,
    }
}

async fn serve(args: &ConfigArgs) -> ExitCode {
    let s = match settings(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    crate::telemetry::init(&s.log, s.log_format);
    if !s.vapi.auth_configured() {
        tracing::warn!(
            "NO VAPI SECRET IS CONFIGURED: /vapi/webhook accepts unsigned requests from anyone. Set SWITCHBOARD_VAPI_SECRET or [vapi.hmac]."
        );
    } else if s.vapi.hmac.as_ref().is_some_and(|h| !h.signs_timestamp()) || s.vapi.hmac.is_none() {
        tracing::info!("webhook authentication has no signed timestamp, so no replay window; redeliveries are absorbed by dedup keys");
    }
    let app = match Application::build(s).await {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let state = app.state();
    tracing::info!(
        listen = %app.local_addr(),
        store = state.store.backend(),
        broker = state.broker.name(),
        recordings = state.recordings.location(),
        functions = state.settings.functions.len(),
        "switchboard is serving"
    );
    app.run_until(shutdown_signal()).await;
    ExitCode::SUCCESS
}

async fn migrate(args: &ConfigArgs) -> ExitCode {
    let s = match settings(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    crate::telemetry::init(&s.log, s.log_format);
    let store = match crate::store::connect(&s.database_url, 1).await {
        Ok(st) => st,
        Err(e) => return fail(format!("cannot open the database: {e}")),
    };
    match store.migrate().await {
        Ok(()) => {
            tracing::info!(store = store.backend(), "migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn token_create(args: &ConfigArgs, role: &str, orgs: &[String], label: Option<&str>) -> ExitCode {
    let Some(role) = Role::parse(role) else { return fail(format!("--role {role:?} is not supervisor or admin")) };
    if orgs.iter().any(|o| o.trim().is_empty()) {
        return fail("--org must not be empty (use * for every org)");
    }
    let s = match settings(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let store = match crate::store::connect(&s.database_url, 1).await {
        Ok(st) => st,
        Err(e) => return fail(format!("cannot open the database: {e}")),
    };
    if let Err(e) = store.migrate().await {
        return fail(e);
    }
    match crate::auth::create(&store, role, orgs, label).await {
        Ok(token) => {
            let _ = writeln!(std::io::stdout(), "{token}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn mock_llm(args: MockLlmArgs) -> ExitCode {
    // The mock takes no config file, but logs like the hub so tools reading its JSON lines work.
    let format = if std::env::var("SWITCHBOARD_LOG_FORMAT").is_ok_and(|f| f == "json") { LogFormat::Json } else { LogFormat::Text };
    crate::telemetry::init("info", format);
    let cfg = MockConfig::from(args);
    let listen = cfg.listen;
    let mock = match MockLlm::start(cfg).await {
        Ok(m) => m,
        Err(e) => return fail(format!("mock-llm cannot listen on {listen}: {e}")),
    };
    tracing::info!(url = %mock.base_url(), "the mock model is serving");
    shutdown_signal().await;
    mock.shutdown().await;
    ExitCode::SUCCESS
}
