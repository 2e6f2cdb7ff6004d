//! Building the application from settings: open the store, migrate, wire the broker, the
//! function executor and the VAPI service, bind the listener. Tests build it on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chat::{ChatDeps, ChatService};
use crate::config::Settings;
use crate::functions::{Executor, Registry};
use crate::http::{ServeOptions, serve};
use crate::hub::{BrokerError, BrokerLimits, DynBroker};
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::store::{DynStore, StoreError};
use crate::vapi::VapiService;
use crate::webhooks::Webhooks;

/// Cheap handles shared by every handler.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: DynStore,
    pub broker: DynBroker,
    pub metrics: Arc<Metrics>,
    pub vapi: Arc<VapiService>,
    /// Cancelled when shutdown starts: readiness fails and long-lived work winds down.
    pub shutdown: CancellationToken,
    /// Background tasks shutdown waits for.
    pub tasks: TaskTracker,
    /// Open supervisor sockets, counted for the limits.
    pub sockets: Arc<crate::live::Sockets>,
    /// The client for VAPI control URLs (no redirects, no proxy), shared for its connection pool.
    pub control_http: reqwest::Client,
    pub chat: Arc<ChatService>,
    /// Durable jobs: the registry of kinds and this instance's worker.
    pub jobs: Arc<Jobs>,
    /// The widget, dashboard and demo files.
    pub assets: crate::web::Assets,
    /// Outgoing webhooks: the enabled endpoints (cached) and their deliveries.
    pub webhooks: Arc<Webhooks>,
    /// Recording files: the local folder or the S3-compatible bucket.
    pub recordings: Arc<crate::recordings::Storage>,
}

#[derive(Debug)]
pub enum StartError {
    Store(StoreError),
    Broker(BrokerError),
    Bind(std::io::Error),
    Recordings(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Store(e) => write!(f, "cannot open the database: {e}"),
            StartError::Broker(e) => write!(f, "cannot reach the event broker: {e}"),
            StartError::Bind(e) => write!(f, "cannot listen: {e}"),
            StartError::Recordings(e) => write!(f, "cannot open the recordings storage: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let store = crate::store::connect(&settings.database_url, settings.database_max_connections).await.map_err(StartError::Store)?;
        store.migrate().await.map_err(StartError::Store)?;
        let live = &settings.live;
        let limits = BrokerLimits {
            history_size: live.history_size,
            history_age: live.history_age,
            max_total_events: live.max_total_events,
            ..BrokerLimits::default()
        };
        let broker = crate::hub::connect(&settings.broker_url, &live.broker_prefix, limits).await.map_err(StartError::Broker)?;
        let metrics = Arc::new(Metrics::new());
        let tasks = TaskTracker::new();
        let registry = Arc::new(Registry::new(&settings.functions, store.clone()));
        let executor = Executor::new(registry.clone(), store.clone(), metrics.clone(), settings.vapi.tool_timeout);
        let shutdown = CancellationToken::new();
        let jobs = Arc::new(Jobs::new(settings.jobs.clone(), store.clone()));
        let webhooks = Arc::new(Webhooks::new(settings.webhooks.clone(), store.clone(), jobs.clone()));
        webhooks.load().await.map_err(StartError::Store)?;
        let chat = Arc::new(ChatService::new(
            settings.chat.clone(),
            ChatDeps {
                store: store.clone(),
                broker: broker.clone(),
                metrics: metrics.clone(),
                registry,
                functions: settings.functions.clone(),
                tasks: tasks.clone(),
                shutdown: shutdown.clone(),
                history_limit: live.history_size,
                webhooks: webhooks.clone(),
            },
        ));
        let recordings = Arc::new(crate::recordings::Storage::open(&settings.recordings).map_err(StartError::Recordings)?);
        crate::recordings::register(
            &jobs,
            crate::recordings::RecordingDeps {
                settings: Arc::new(settings.recordings.clone()),
                storage: recordings.clone(),
                store: store.clone(),
                broker: broker.clone(),
                webhooks: webhooks.clone(),
            },
        );
        crate::retention::register(
            &jobs,
            crate::retention::RetentionDeps { settings: settings.retention.clone(), store: store.clone(), recordings: recordings.clone() },
        );
        let vapi = Arc::new(VapiService {
            cfg: Arc::new(settings.vapi.clone()),
            public_url: settings.public_url.clone(),
            body_read_timeout: settings.body_read_timeout,
            store: store.clone(),
            broker: broker.clone(),
            executor,
            metrics: metrics.clone(),
            tasks: tasks.clone(),
            jobs: jobs.clone(),
            webhooks: webhooks.clone(),
        });
        crate::reconcile::register(
            &jobs,
            crate::reconcile::ReconcileDeps {
                settings: settings.reconcile.clone(),
                store: store.clone(),
                vapi: vapi.clone(),
                http: crate::http::direct_client(),
            },
        );
        let control_http = crate::http::public_only_client(settings.live.control.allow_loopback);
        let listener = crate::http::listen(settings.listen, settings.listen_backlog).map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let assets = crate::web::Assets::new(settings.web_dir.clone());
        let state = Arc::new(AppState {
            settings: Arc::new(settings),
            store,
            broker,
            metrics,
            vapi,
            shutdown,
            tasks,
            sockets: Arc::default(),
            control_http,
            chat,
            jobs,
            assets,
            webhooks,
            recordings,
        });
        Ok(Self { listener, addr, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `signal` resolves, then drains: in-flight requests finish (up to the
    /// shutdown timeout) and background tasks complete.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send) {
        let state = self.state.clone();
        let s = &state.settings;
        let opts = ServeOptions {
            header_read_timeout: s.header_read_timeout,
            keep_alive_timeout: s.keep_alive_timeout,
            shutdown_timeout: s.shutdown_timeout,
            max_connections: s.max_connections,
        };
        let sweeper = spawn_sweeper(state.broker.clone(), state.shutdown.clone());
        // Stops claiming when shutdown starts; jobs already running share the deadline below.
        state.jobs.start(state.shutdown.clone(), state.tasks.clone());
        state.webhooks.start(state.shutdown.clone(), &state.tasks);
        let server = tokio::spawn(serve(self.listener, crate::http::router(state.clone()), state.shutdown.clone(), opts));
        signal.await;
        tracing::info!("shutting down: draining in-flight requests");
        let deadline = tokio::time::Instant::now() + opts.shutdown_timeout;
        state.shutdown.cancel();
        let _ = server.await;
        sweeper.abort();
        state.tasks.close();
        // One deadline for the whole shutdown: connections and background work share it.
        if tokio::time::timeout_at(deadline, state.tasks.wait()).await.is_err() {
            tracing::warn!("background tasks did not finish before the deadline");
        }
        state.jobs.forget_kinds();
    }
}

/// Idle topics (ended calls nobody watches) are dropped once their history has expired.
fn spawn_sweeper(broker: DynBroker, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => { broker.maintain().await; }
                _ = stop.cancelled() => break,
            }
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
