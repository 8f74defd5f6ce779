//! The SQL of the SQLite lease store: the tables it creates, every statement it runs (built once per store for its
//! table name), and the conversions between a `Lease` and a row. The schema itself is documented in the
//! [module above](super).

use kcl_core::HashKeyRange;
use kcl_core::lease::{Lease, LeaseStoreError};
use kcl_core::types::ExtendedSequenceNumber;
use rusqlite::types::ValueRef;
use rusqlite::{Row, Statement, params};

use super::failure::Failure;

/// Every lease column, in the order rows are read and inserted.
const COLUMNS: &str = "lease_key, lease_owner, lease_counter, owner_switches_since_checkpoint, checkpoint, \
     checkpoint_sub_sequence, pending_checkpoint, pending_checkpoint_sub_sequence, pending_checkpoint_state, \
     parent_shard_ids, child_shard_ids, starting_hash_key, ending_hash_key, checkpoint_owner, stream_identifier, \
     shard_id";

/// Who may checkpoint: the handoff's previous owner while one is in progress, else the owner (the contract's
/// `Lease::checkpointing_owner`). `COALESCE(NULL, NULL)` is NULL, which equals nothing, so an unowned lease refuses.
const MAY_CHECKPOINT: &str = "lease_key = ?1 AND COALESCE(checkpoint_owner, lease_owner) = ?2 AND lease_counter = ?3";

/// The fence of a write made as the current owner.
const OWNED_AT: &str = "lease_key = ?1 AND lease_owner = ?2 AND lease_counter = ?3";

/// The statements of one store, with its table names filled in. `prepare_cached` keys its cache on the text, so
/// building them once keeps every call on a prepared statement.
pub(super) struct Statements {
    pub create_schema: String,
    pub create_index: String,
    pub check_schema: [String; 2],
    pub insert: String,
    pub get: String,
    pub list_first: String,
    pub list_after: String,
    pub list_by_owner: String,
    pub renew: String,
    pub take: String,
    pub release: String,
    pub evict: String,
    pub handoff: String,
    pub checkpoint: String,
    pub prepare: String,
    pub child_shards: String,
    pub delete: String,
    pub heartbeat_create: String,
    pub heartbeat_renew: String,
    pub heartbeat_list: String,
    pub heartbeat_delete: String,
}

impl Statements {
    /// `table` must already be a valid identifier (letters, digits, `_`); it is quoted anyway.
    pub fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        let hb = format!("\"{table}_heartbeats\"");
        let counted = "lease_counter = lease_counter + 1";
        Self {
            // STRICT: SQLite refuses values of the wrong type instead of storing them, so a reader never finds a
            // counter that is text. WITHOUT ROWID: the lease key is the primary key and the only lookup path.
            create_schema: format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    lease_key TEXT PRIMARY KEY NOT NULL,
                    lease_owner TEXT,
                    lease_counter INTEGER NOT NULL,
                    owner_switches_since_checkpoint INTEGER NOT NULL,
                    checkpoint TEXT NOT NULL,
                    checkpoint_sub_sequence INTEGER NOT NULL,
                    pending_checkpoint TEXT,
                    pending_checkpoint_sub_sequence INTEGER,
                    pending_checkpoint_state BLOB,
                    parent_shard_ids TEXT NOT NULL,
                    child_shard_ids TEXT NOT NULL,
                    starting_hash_key TEXT,
                    ending_hash_key TEXT,
                    checkpoint_owner TEXT,
                    stream_identifier TEXT,
                    shard_id TEXT NOT NULL
                ) STRICT, WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS {hb} (
                    worker_id TEXT PRIMARY KEY NOT NULL,
                    counter INTEGER NOT NULL
                ) STRICT, WITHOUT ROWID;"
            ),
            create_index: format!("CREATE INDEX IF NOT EXISTS \"{table}_by_owner\" ON {t} (lease_owner, lease_key)"),
            check_schema: [
                format!("SELECT {COLUMNS} FROM {t} LIMIT 0"),
                format!("SELECT worker_id, counter FROM {hb} LIMIT 0"),
            ],
            insert: format!(
                "INSERT INTO {t} ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                 ?16) ON CONFLICT (lease_key) DO NOTHING"
            ),
            get: format!("SELECT {COLUMNS} FROM {t} WHERE lease_key = ?1"),
            list_first: format!("SELECT {COLUMNS} FROM {t} ORDER BY lease_key LIMIT ?1"),
            list_after: format!("SELECT {COLUMNS} FROM {t} WHERE lease_key > ?1 ORDER BY lease_key LIMIT ?2"),
            list_by_owner: format!("SELECT {COLUMNS} FROM {t} WHERE lease_owner = ?1 ORDER BY lease_key"),
            renew: format!(
                "UPDATE {t} SET {counted} WHERE {OWNED_AT} AND checkpoint_owner IS NULL RETURNING lease_counter"
            ),
            // SET expressions all see the row as it was, so the switch count compares the old owner with the new.
            take: format!(
                "UPDATE {t} SET owner_switches_since_checkpoint = owner_switches_since_checkpoint + \
                 (lease_owner IS NOT ?3), lease_owner = ?3, checkpoint_owner = NULL, {counted} \
                 WHERE lease_key = ?1 AND lease_counter = ?2 RETURNING {COLUMNS}"
            ),
            release: format!(
                "UPDATE {t} SET lease_owner = NULL, checkpoint_owner = NULL, {counted} WHERE {OWNED_AT} \
                 RETURNING lease_counter"
            ),
            evict: format!(
                "UPDATE {t} SET lease_owner = NULL, checkpoint_owner = NULL, {counted} \
                 WHERE lease_key = ?1 AND lease_owner = ?2 RETURNING lease_counter"
            ),
            handoff: format!(
                "UPDATE {t} SET checkpoint_owner = lease_owner, lease_owner = ?4, {counted} WHERE {OWNED_AT} \
                 RETURNING lease_counter"
            ),
            checkpoint: format!(
                "UPDATE {t} SET checkpoint = ?4, checkpoint_sub_sequence = ?5, pending_checkpoint = NULL, \
                 pending_checkpoint_sub_sequence = NULL, pending_checkpoint_state = NULL, \
                 owner_switches_since_checkpoint = 0, checkpoint_owner = NULL, {counted} \
                 WHERE {MAY_CHECKPOINT} RETURNING lease_counter"
            ),
            prepare: format!(
                "UPDATE {t} SET pending_checkpoint = ?4, pending_checkpoint_sub_sequence = ?5, \
                 pending_checkpoint_state = ?6, {counted} WHERE {MAY_CHECKPOINT} RETURNING lease_counter"
            ),
            child_shards: format!(
                "UPDATE {t} SET child_shard_ids = ?4, {counted} WHERE {MAY_CHECKPOINT} RETURNING lease_counter"
            ),
            delete: format!("DELETE FROM {t} WHERE lease_key = ?1"),
            heartbeat_create: format!(
                "INSERT INTO {hb} (worker_id, counter) VALUES (?1, 1) ON CONFLICT (worker_id) DO NOTHING"
            ),
            heartbeat_renew: format!(
                "UPDATE {hb} SET counter = counter + 1 WHERE worker_id = ?1 AND counter = ?2 RETURNING counter"
            ),
            heartbeat_list: format!("SELECT worker_id, counter FROM {hb} ORDER BY worker_id"),
            heartbeat_delete: format!("DELETE FROM {hb} WHERE worker_id = ?1"),
        }
    }
}

/// A `u64` the contract uses (counter, switch count, sub-sequence number) as a SQLite INTEGER, which is an `i64`.
/// Values past `i64::MAX` (9.2 × 10¹⁸ writes) cannot be stored; saying so beats wrapping silently.
pub(super) fn to_sql_int(operation: &'static str, what: &str, value: u64) -> Result<i64, LeaseStoreError> {
    i64::try_from(value)
        .map_err(|_| LeaseStoreError::fatal(operation, format!("{what} {value} exceeds SQLite's INTEGER range")))
}

/// A JSON array of shard ids: the column type SQLite lacks for a string set.
pub(super) fn id_list(ids: &[String]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

/// The checkpoint text and sub-sequence number KCL stores for a position.
pub(super) fn position(
    operation: &'static str,
    position: &ExtendedSequenceNumber,
) -> Result<(String, i64), LeaseStoreError> {
    Ok((position.checkpoint_str().to_owned(), to_sql_int(operation, "sub-sequence number", position.sub_sequence())?))
}

/// Runs [`Statements::insert`] for `lease`; returns how many rows it inserted (0 when the key existed).
pub(super) fn insert(statement: &mut Statement<'_>, lease: &Lease) -> Result<usize, Failure> {
    const OP: &str = "create_lease_if_not_exists";
    let (checkpoint, sub) = position(OP, &lease.checkpoint)?;
    let pending = lease.pending_checkpoint.as_ref().map(|p| position(OP, p)).transpose()?;
    let (pending_checkpoint, pending_sub) = pending.unzip();
    Ok(statement.execute(params![
        lease.lease_key,
        lease.lease_owner,
        to_sql_int(OP, "lease_counter", lease.lease_counter)?,
        to_sql_int(OP, "owner_switches_since_checkpoint", lease.owner_switches_since_checkpoint)?,
        checkpoint,
        sub,
        pending_checkpoint,
        pending_sub,
        lease.pending_checkpoint_state.as_deref(),
        id_list(&lease.parent_shard_ids),
        id_list(&lease.child_shard_ids),
        lease.hash_key_range.map(|r| r.start.to_string()),
        lease.hash_key_range.map(|r| r.end.to_string()),
        lease.checkpoint_owner,
        lease.stream_identifier,
        lease.shard_id,
    ])?)
}

/// A row the store cannot turn into a lease: skipped with a warning, as the contract asks.
#[derive(Debug)]
pub(super) struct Unreadable {
    /// The row's key, when even that is unreadable `None`.
    pub lease_key: Option<String>,
    /// What is wrong, without the row's contents.
    pub problem: String,
}

/// Reads one row of [`COLUMNS`]. The outer error is SQLite's (the read itself failed); the inner one is a row that
/// is there but makes no sense as a lease.
pub(super) fn read_lease(row: &Row<'_>) -> rusqlite::Result<Result<Lease, Unreadable>> {
    let lease_key = match row.get_ref(0)? {
        ValueRef::Text(key) => String::from_utf8(key.to_vec()).ok(),
        _ => None,
    };
    let Some(lease_key) = lease_key else {
        return Ok(Err(Unreadable { lease_key: None, problem: "lease_key is not UTF-8 text".to_owned() }));
    };
    let columns = Columns { row };
    Ok(columns.lease(lease_key.clone()).map_err(|problem| Unreadable { lease_key: Some(lease_key), problem }))
}

/// Typed access to one row's columns, each failure a sentence naming the column.
struct Columns<'a, 'r> {
    row: &'a Row<'r>,
}

impl Columns<'_, '_> {
    fn lease(&self, lease_key: String) -> Result<Lease, String> {
        let checkpoint = self.position(4, 5, "checkpoint")?.ok_or("checkpoint is NULL")?;
        let hash_key_range = match (self.text(11)?, self.text(12)?) {
            (None, None) => None,
            (Some(start), Some(end)) => Some(
                HashKeyRange::parse(&start, &end)
                    .ok_or_else(|| format!("hash key range {start}..{end} is not two ordered u128 numbers"))?,
            ),
            _ => return Err("only one of starting_hash_key and ending_hash_key is set".to_owned()),
        };
        Ok(Lease {
            lease_key,
            lease_owner: self.text(1)?,
            lease_counter: self.unsigned(2, "lease_counter")?.ok_or("lease_counter is NULL")?,
            owner_switches_since_checkpoint: self.unsigned(3, "owner_switches_since_checkpoint")?.unwrap_or(0),
            checkpoint,
            pending_checkpoint: self.position(6, 7, "pending_checkpoint")?,
            pending_checkpoint_state: self.blob(8)?.map(bytes::Bytes::from),
            parent_shard_ids: self.ids(9, "parent_shard_ids")?,
            child_shard_ids: self.ids(10, "child_shard_ids")?,
            hash_key_range,
            checkpoint_owner: self.text(13)?,
            stream_identifier: self.text(14)?,
            shard_id: self.text(15)?.ok_or("shard_id is NULL")?,
        })
    }

    fn value(&self, index: usize) -> Result<ValueRef<'_>, String> {
        self.row.get_ref(index).map_err(|error| format!("column {index} cannot be read: {error}"))
    }

    fn text(&self, index: usize) -> Result<Option<String>, String> {
        match self.value(index)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(text) => {
                String::from_utf8(text.to_vec()).map(Some).map_err(|_| format!("column {index} is not UTF-8"))
            }
            other => Err(format!("column {index} holds {:?}, expected text", other.data_type())),
        }
    }

    fn blob(&self, index: usize) -> Result<Option<Vec<u8>>, String> {
        match self.value(index)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(blob) => Ok(Some(blob.to_vec())),
            other => Err(format!("column {index} holds {:?}, expected a blob", other.data_type())),
        }
    }

    fn unsigned(&self, index: usize, name: &str) -> Result<Option<u64>, String> {
        match self.value(index)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(n) => u64::try_from(n).map(Some).map_err(|_| format!("{name} is negative")),
            other => Err(format!("{name} holds {:?}, expected an integer", other.data_type())),
        }
    }

    fn position(&self, text: usize, sub: usize, name: &str) -> Result<Option<ExtendedSequenceNumber>, String> {
        let Some(checkpoint) = self.text(text)? else { return Ok(None) };
        let sub_sequence = self.unsigned(sub, name)?.unwrap_or(0);
        ExtendedSequenceNumber::parse(&checkpoint, sub_sequence)
            .map(Some)
            .map_err(|error| format!("{name} is neither a sentinel nor a sequence number: {error}"))
    }

    fn ids(&self, index: usize, name: &str) -> Result<Vec<String>, String> {
        let text = self.text(index)?.unwrap_or_else(|| "[]".to_owned());
        serde_json::from_str(&text).map_err(|_| format!("{name} is not a JSON array of strings"))
    }
}
