//! The store's one connection: opened from a `tokio_postgres::Config`, its I/O driven by a spawned task, and opened
//! anew by the next call after it broke. Every lease-store call is one statement, and tokio-postgres pipelines
//! concurrent statements on one connection, so no pool is needed.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_postgres::{Client, Config, NoTls};

use crate::error::PostgresLeaseError;

/// A shared client that reconnects when it finds its connection closed.
pub(crate) struct Connection {
    config: Config,
    current: Mutex<Arc<Client>>,
    /// Held while reconnecting, so that concurrent callers make one new connection, not one each.
    reconnecting: tokio::sync::Mutex<()>,
}

impl Connection {
    pub async fn open(config: Config) -> Result<Self, PostgresLeaseError> {
        let client = connect(&config, "open").await?;
        Ok(Self { config, current: Mutex::new(Arc::new(client)), reconnecting: tokio::sync::Mutex::new(()) })
    }

    /// The current client, reconnecting first when its connection is closed.
    pub async fn client(&self, operation: &'static str) -> Result<Arc<Client>, PostgresLeaseError> {
        let current = self.current();
        if !current.is_closed() {
            return Ok(current);
        }
        let _reconnecting = self.reconnecting.lock().await;
        let current = self.current();
        if !current.is_closed() {
            return Ok(current);
        }
        tracing::info!(operation, "the PostgreSQL connection of the lease store closed; reconnecting");
        let fresh = Arc::new(connect(&self.config, operation).await?);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = fresh.clone();
        Ok(fresh)
    }

    fn current(&self) -> Arc<Client> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Opens a connection and spawns the task that drives it; that task ends (and logs why) when the connection does.
pub(crate) async fn connect(config: &Config, operation: &'static str) -> Result<Client, PostgresLeaseError> {
    let (client, connection) =
        config.connect(NoTls).await.map_err(|error| PostgresLeaseError::database(operation, error))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            // The next call reconnects; the error says why this one ended (never the password: not in the error).
            tracing::warn!(%error, "the lease store's PostgreSQL connection ended");
        }
    });
    Ok(client)
}
