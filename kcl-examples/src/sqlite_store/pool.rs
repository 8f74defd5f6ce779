//! Connections of the SQLite lease store: a small pool, the blocking-thread hop every call makes, and transactions.
//!
//! rusqlite is blocking, so every call runs on tokio's blocking pool (`spawn_blocking`) and never on a runtime
//! thread. A semaphore bounds how many calls run at once (each on its own connection); the permit travels into the
//! blocking closure, so a call whose caller gave up (the coordinator's call timeout drops the future) still holds
//! its connection until SQLite returns.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::lease::LeaseStoreError;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::Semaphore;

use super::failure::Failure;
use super::schema::Statements;

/// How each connection is set up.
#[derive(Clone, Debug)]
pub(super) struct ConnectionSettings {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    pub durable_commits: bool,
}

impl ConnectionSettings {
    /// Opens a connection in WAL mode with the busy timeout set: readers never wait for the writer, and a writer
    /// waits (sleeping, up to the timeout) for another connection's write transaction instead of failing at once.
    fn open(&self) -> Result<Connection, Failure> {
        let connection = Connection::open_with_flags(&self.path, OpenFlags::default())?;
        connection.busy_timeout(self.busy_timeout)?;
        let mode: String = connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Failure::Store(LeaseStoreError::fatal(
                "open",
                format!(
                    "{} cannot use write-ahead logging (journal mode stays `{mode}`): the lease store needs a database \
                     file on a local file system",
                    self.path.display()
                ),
            )));
        }
        // NORMAL (the default) syncs the WAL at checkpoints, not at every commit: a committed write survives a crash
        // of any process, and a power cut may roll back the last commits. Every worker sharing the file runs on this
        // host and dies with it, so that only replays records since an earlier checkpoint (at-least-once holds).
        connection.pragma_update(None, "synchronous", if self.durable_commits { "FULL" } else { "NORMAL" })?;
        connection.set_prepared_statement_cache_capacity(32);
        Ok(connection)
    }
}

/// The connections of one store and the statements they run.
pub(super) struct Pool {
    settings: ConnectionSettings,
    statements: Statements,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    /// Opens the first connection, creates the tables when missing and checks their columns.
    ///
    /// Processes that open a new file at the same moment race to switch it to WAL and to create the tables. SQLite
    /// does not call the busy handler where waiting could deadlock (upgrading a read lock to the exclusive lock the
    /// journal-mode switch needs, or while another connection recovers the WAL) and answers `SQLITE_BUSY` at once,
    /// so a busy answer is retried here until the busy timeout has passed since the first try.
    pub fn open(settings: ConnectionSettings, statements: Statements, max_connections: usize) -> Result<Self, Failure> {
        let deadline = std::time::Instant::now() + settings.busy_timeout;
        let mut pause = Duration::from_millis(5);
        let connection = loop {
            match Self::open_and_create(&settings, &statements) {
                Err(Failure::Sql(error)) if is_busy(&error) && std::time::Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        Ok(Self {
            settings,
            statements,
            idle: Mutex::new(vec![connection]),
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
        })
    }

    fn open_and_create(settings: &ConnectionSettings, statements: &Statements) -> Result<Connection, Failure> {
        let mut connection = settings.open()?;
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(&statements.create_schema)?;
        for check in &statements.check_schema {
            if let Err(error) = tx.prepare(check) {
                return Err(Failure::Store(LeaseStoreError::Fatal {
                    operation: "open",
                    message: format!(
                        "{} holds a lease or heartbeat table with other columns than this store's schema: {error}",
                        settings.path.display()
                    ),
                    source: Some(Box::new(error)),
                }));
            }
        }
        // After the check, so that a foreign table is reported as such rather than as a column the index lacks.
        tx.execute_batch(&statements.create_index)?;
        tx.commit()?;
        Ok(connection)
    }

    pub fn path(&self) -> &Path {
        &self.settings.path
    }

    fn checkout(&self) -> Result<Connection, Failure> {
        let pooled = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        match pooled {
            Some(connection) => Ok(connection),
            None => self.settings.open(),
        }
    }

    fn checkin(&self, connection: Connection) {
        // A connection left inside a transaction (a rollback that failed) would break the next BEGIN: drop it.
        if connection.is_autocommit() {
            self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(connection);
        }
    }

    /// Runs `f` on a pooled connection on the blocking pool.
    async fn run<T, F>(self: &Arc<Self>, operation: &'static str, f: F) -> Result<T, LeaseStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Statements) -> Result<T, Failure> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LeaseStoreError::fatal(operation, "the store's connection pool is closed"))?;
        let pool = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut connection = pool.checkout()?;
            let result = f(&mut connection, &pool.statements);
            pool.checkin(connection);
            result
        });
        match task.await {
            Ok(result) => result.map_err(|failure| failure.into_store_error(operation)),
            Err(join) if join.is_panic() => {
                Err(LeaseStoreError::fatal(operation, "the SQLite call panicked (a bug in the store)"))
            }
            Err(_) => Err(LeaseStoreError::transient(operation, "the runtime is shutting down; outcome unknown")),
        }
    }

    /// A read on its own snapshot (WAL readers see every commit made before they start and block nobody).
    pub async fn read<T, F>(self: &Arc<Self>, operation: &'static str, f: F) -> Result<T, LeaseStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Statements) -> Result<T, Failure> + Send + 'static,
    {
        self.run(operation, move |connection, statements| f(connection, statements)).await
    }

    /// A write inside `BEGIN IMMEDIATE … COMMIT`. IMMEDIATE takes the database's write lock before the first
    /// statement, where the busy timeout applies; a deferred transaction that upgrades from reading to writing can
    /// instead fail at once with SQLITE_BUSY when another process committed in between. Nothing is committed when
    /// `f` fails (a lost condition changed nothing anyway).
    pub async fn write<T, F>(self: &Arc<Self>, operation: &'static str, f: F) -> Result<T, LeaseStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &Statements) -> Result<T, Failure> + Send + 'static,
    {
        self.run(operation, move |connection, statements| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx, statements)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }
}

/// Whether SQLite answered that another connection holds the lock it needs.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}
