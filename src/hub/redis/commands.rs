//! The command connection. redis-rs's `ConnectionManager` reconnects when a command fails on a
//! dropped connection, but when that reconnection itself fails with anything but an I/O error
//! (Redis refusing the login while an ACL is being changed, say), every later command gets the
//! same error and it never tries again (redis 1.8: `reconnect_if_io_error!` only reconnects on
//! I/O errors). Such an error makes this wrapper open a new manager in the background, one
//! attempt at a time, so the hub recovers once Redis accepts it again instead of staying
//! unready until it is restarted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError};

use super::CONNECT_TIMEOUT;

pub(super) struct Commands {
    client: Client,
    config: ConnectionManagerConfig,
    current: RwLock<ConnectionManager>,
    renewing: AtomicBool,
}

impl Commands {
    /// Opens the first manager; an error when Redis cannot be reached within `CONNECT_TIMEOUT`.
    pub async fn connect(client: Client, config: ConnectionManagerConfig) -> Result<Arc<Self>, String> {
        let first = open(&client, &config).await?;
        Ok(Arc::new(Self { client, config, current: RwLock::new(first), renewing: AtomicBool::new(false) }))
    }

    /// A handle for one command (cheap: managers share their connection).
    pub fn get(&self) -> ConnectionManager {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Looks at a command's error: one the manager will not recover from by itself starts a
    /// renewal, unless one is under way.
    pub fn check(self: &Arc<Self>, e: &RedisError) {
        if e.is_io_error() || !e.is_unrecoverable_error() || self.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match open(&this.client, &this.config).await {
                Ok(fresh) => {
                    *this.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
                    tracing::info!("redis: command connection renewed");
                }
                Err(e) => tracing::debug!(error = %e, "redis: cannot renew the command connection yet"),
            }
            this.renewing.store(false, Ordering::Release);
        });
    }
}

async fn open(client: &Client, config: &ConnectionManagerConfig) -> Result<ConnectionManager, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_connection_manager_with_config(config.clone())).await {
        Ok(Ok(con)) => Ok(con),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}
