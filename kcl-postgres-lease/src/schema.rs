//! The SQL of the PostgreSQL lease store: the tables it creates, every statement it runs (built once per store for
//! its table name), and the conversions between a `Lease` and a row. The schema is documented in the crate docs.

use kcl_core::HashKeyRange;
use kcl_core::lease::Lease;
use kcl_core::types::ExtendedSequenceNumber;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::PostgresLeaseError;

/// Every lease column, in the order rows are read and inserted.
const COLUMNS: &str = "lease_key, lease_owner, lease_counter, owner_switches_since_checkpoint, checkpoint, \
     checkpoint_sub_sequence, pending_checkpoint, pending_checkpoint_sub_sequence, pending_checkpoint_state, \
     parent_shard_ids, child_shard_ids, starting_hash_key, ending_hash_key, checkpoint_owner, stream_identifier, \
     shard_id";

/// Who may checkpoint: the handoff's previous owner while one is in progress, else the owner (the contract's
/// `Lease::checkpointing_owner`). `COALESCE(NULL, NULL)` is NULL, which equals nothing, so an unowned lease refuses.
const MAY_CHECKPOINT: &str = "lease_key = $1 AND COALESCE(checkpoint_owner, lease_owner) = $2 AND lease_counter = $3";

/// The fence of a write made as the current owner.
const OWNED_AT: &str = "lease_key = $1 AND lease_owner = $2 AND lease_counter = $3";

/// The statements of one store, with its table names filled in.
pub(crate) struct Statements {
    pub create_schema: String,
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
    pub transactional_checkpoint: String,
    pub prepare: String,
    pub child_shards: String,
    pub delete: String,
    pub heartbeat_create: String,
    pub heartbeat_renew: String,
    pub heartbeat_list: String,
    pub heartbeat_delete: String,
}

impl Statements {
    /// `table` must already be a valid identifier (see [`valid_table_name`]); it is quoted anyway.
    pub fn new(table: &str) -> Self {
        let t = format!("\"{table}\"");
        let hb = format!("\"{table}_heartbeats\"");
        let counted = "lease_counter = lease_counter + 1";
        Self {
            // Counters are BIGINT (PostgreSQL has no unsigned type; 9.2 × 10¹⁸ writes is out of reach). Shard-id
            // sets are TEXT[]; application state BYTEA; hash keys TEXT (u128 does not fit a BIGINT, and NUMERIC
            // would only be compared, never computed with). The advisory lock serialises concurrent first uses:
            // CREATE TABLE IF NOT EXISTS alone can still fail on the catalog's unique index when two race.
            create_schema: format!(
                "SELECT pg_advisory_xact_lock(hashtext('kcl-postgres-lease:{table}'));
                CREATE TABLE IF NOT EXISTS {t} (
                    lease_key TEXT PRIMARY KEY,
                    lease_owner TEXT,
                    lease_counter BIGINT NOT NULL CHECK (lease_counter >= 0),
                    owner_switches_since_checkpoint BIGINT NOT NULL DEFAULT 0,
                    checkpoint TEXT NOT NULL,
                    checkpoint_sub_sequence BIGINT NOT NULL DEFAULT 0,
                    pending_checkpoint TEXT,
                    pending_checkpoint_sub_sequence BIGINT,
                    pending_checkpoint_state BYTEA,
                    parent_shard_ids TEXT[] NOT NULL DEFAULT '{{}}',
                    child_shard_ids TEXT[] NOT NULL DEFAULT '{{}}',
                    starting_hash_key TEXT,
                    ending_hash_key TEXT,
                    checkpoint_owner TEXT,
                    stream_identifier TEXT,
                    shard_id TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS \"{table}_by_owner\" ON {t} (lease_owner, lease_key);
                CREATE TABLE IF NOT EXISTS {hb} (
                    worker_id TEXT PRIMARY KEY,
                    counter BIGINT NOT NULL
                );"
            ),
            check_schema: [
                format!("SELECT {COLUMNS} FROM {t} LIMIT 0"),
                format!("SELECT worker_id, counter FROM {hb} LIMIT 0"),
            ],
            insert: format!(
                "INSERT INTO {t} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16) ON CONFLICT (lease_key) DO NOTHING"
            ),
            get: format!("SELECT {COLUMNS} FROM {t} WHERE lease_key = $1"),
            // COLLATE "C": byte order, so paging by `lease_key > $1` agrees with the ORDER BY whatever the
            // database's collation.
            list_first: format!("SELECT {COLUMNS} FROM {t} ORDER BY lease_key COLLATE \"C\" LIMIT $1"),
            list_after: format!(
                "SELECT {COLUMNS} FROM {t} WHERE lease_key COLLATE \"C\" > $1 ORDER BY lease_key COLLATE \"C\" \
                 LIMIT $2"
            ),
            list_by_owner: format!("SELECT {COLUMNS} FROM {t} WHERE lease_owner = $1 ORDER BY lease_key"),
            renew: format!(
                "UPDATE {t} SET {counted} WHERE {OWNED_AT} AND checkpoint_owner IS NULL RETURNING lease_counter"
            ),
            // SET expressions all see the row as it was, so the switch count compares the old owner with the new.
            take: format!(
                "UPDATE {t} SET owner_switches_since_checkpoint = owner_switches_since_checkpoint + \
                 (lease_owner IS DISTINCT FROM $3)::int, lease_owner = $3, checkpoint_owner = NULL, {counted} \
                 WHERE lease_key = $1 AND lease_counter = $2 RETURNING {COLUMNS}"
            ),
            release: format!(
                "UPDATE {t} SET lease_owner = NULL, checkpoint_owner = NULL, {counted} WHERE {OWNED_AT} \
                 RETURNING lease_counter"
            ),
            evict: format!(
                "UPDATE {t} SET lease_owner = NULL, checkpoint_owner = NULL, {counted} \
                 WHERE lease_key = $1 AND lease_owner = $2 RETURNING lease_counter"
            ),
            handoff: format!(
                "UPDATE {t} SET checkpoint_owner = lease_owner, lease_owner = $4, {counted} WHERE {OWNED_AT} \
                 RETURNING lease_counter"
            ),
            checkpoint: format!(
                "UPDATE {t} SET checkpoint = $4, checkpoint_sub_sequence = $5, pending_checkpoint = NULL, \
                 pending_checkpoint_sub_sequence = NULL, pending_checkpoint_state = NULL, \
                 owner_switches_since_checkpoint = 0, checkpoint_owner = NULL, {counted} \
                 WHERE {MAY_CHECKPOINT} RETURNING lease_counter"
            ),
            // In the application's transaction (see `transactional`): fenced by the checkpointing owner and the
            // checkpoint the worker expects; neither the counter nor checkpoint_owner change (the framework's own
            // write of the same position follows and does both).
            transactional_checkpoint: format!(
                "UPDATE {t} SET checkpoint = $3, checkpoint_sub_sequence = $4, pending_checkpoint = NULL, \
                 pending_checkpoint_sub_sequence = NULL, pending_checkpoint_state = NULL, \
                 owner_switches_since_checkpoint = 0 WHERE lease_key = $1 AND \
                 COALESCE(checkpoint_owner, lease_owner) = $2 AND checkpoint = $5 AND checkpoint_sub_sequence = $6 \
                 RETURNING lease_counter"
            ),
            prepare: format!(
                "UPDATE {t} SET pending_checkpoint = $4, pending_checkpoint_sub_sequence = $5, \
                 pending_checkpoint_state = $6, {counted} WHERE {MAY_CHECKPOINT} RETURNING lease_counter"
            ),
            child_shards: format!(
                "UPDATE {t} SET child_shard_ids = $4, {counted} WHERE {MAY_CHECKPOINT} RETURNING lease_counter"
            ),
            delete: format!("DELETE FROM {t} WHERE lease_key = $1"),
            heartbeat_create: format!(
                "INSERT INTO {hb} (worker_id, counter) VALUES ($1, 1) ON CONFLICT (worker_id) DO NOTHING"
            ),
            heartbeat_renew: format!(
                "UPDATE {hb} SET counter = counter + 1 WHERE worker_id = $1 AND counter = $2 RETURNING counter"
            ),
            heartbeat_list: format!("SELECT worker_id, counter FROM {hb} ORDER BY worker_id"),
            heartbeat_delete: format!("DELETE FROM {hb} WHERE worker_id = $1"),
        }
    }
}

/// Whether `name` can name the lease table: 1 to 48 ASCII letters, digits or `_`, not starting with a digit (the
/// heartbeat table and index names add a suffix, and PostgreSQL cuts identifiers at 63 bytes).
pub(crate) fn valid_table_name(name: &str) -> bool {
    (1..=48).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// A `u64` the contract uses (counter, switch count, sub-sequence number) as a BIGINT. Values past `i64::MAX` cannot
/// be stored; saying so beats wrapping silently.
pub(crate) fn to_bigint(operation: &'static str, what: &str, value: u64) -> Result<i64, PostgresLeaseError> {
    i64::try_from(value).map_err(|_| PostgresLeaseError::Unusable {
        operation,
        message: format!("{what} {value} exceeds PostgreSQL's BIGINT range"),
    })
}

/// The checkpoint text and sub-sequence number KCL stores for a position.
pub(crate) fn position(
    operation: &'static str,
    position: &ExtendedSequenceNumber,
) -> Result<(String, i64), PostgresLeaseError> {
    Ok((position.checkpoint_str().to_owned(), to_bigint(operation, "sub-sequence number", position.sub_sequence())?))
}

/// The values of [`Statements::insert`] for a lease that are not plain fields of it, owned.
pub(crate) struct InsertValues {
    counter: i64,
    switches: i64,
    checkpoint: String,
    sub: i64,
    pending: Option<String>,
    pending_sub: Option<i64>,
    state: Option<Vec<u8>>,
    start: Option<String>,
    end: Option<String>,
}

impl InsertValues {
    pub fn new(lease: &Lease) -> Result<Self, PostgresLeaseError> {
        const OP: &str = "create_lease_if_not_exists";
        let (checkpoint, sub) = position(OP, &lease.checkpoint)?;
        let (pending, pending_sub) = lease.pending_checkpoint.as_ref().map(|p| position(OP, p)).transpose()?.unzip();
        Ok(Self {
            counter: to_bigint(OP, "lease_counter", lease.lease_counter)?,
            switches: to_bigint(OP, "owner_switches_since_checkpoint", lease.owner_switches_since_checkpoint)?,
            checkpoint,
            sub,
            pending,
            pending_sub,
            state: lease.pending_checkpoint_state.as_ref().map(|state| state.to_vec()),
            start: lease.hash_key_range.map(|r| r.start.to_string()),
            end: lease.hash_key_range.map(|r| r.end.to_string()),
        })
    }

    /// The sixteen parameters, in [`COLUMNS`] order.
    pub fn params<'a>(&'a self, lease: &'a Lease) -> [&'a (dyn ToSql + Sync); 16] {
        [
            &lease.lease_key,
            &lease.lease_owner,
            &self.counter,
            &self.switches,
            &self.checkpoint,
            &self.sub,
            &self.pending,
            &self.pending_sub,
            &self.state,
            &lease.parent_shard_ids,
            &lease.child_shard_ids,
            &self.start,
            &self.end,
            &lease.checkpoint_owner,
            &lease.stream_identifier,
            &lease.shard_id,
        ]
    }
}

/// A row the store cannot turn into a lease: skipped with a warning, as the contract asks.
#[derive(Debug)]
pub(crate) struct Unreadable {
    /// The row's key.
    pub lease_key: String,
    /// What is wrong, without the row's contents.
    pub problem: String,
}

/// Reads one row of [`COLUMNS`]; a row that makes no sense as a lease is [`Unreadable`].
pub(crate) fn read_lease(row: &Row) -> Result<Lease, Unreadable> {
    let lease_key: String = match row.try_get(0) {
        Ok(key) => key,
        Err(error) => return Err(Unreadable { lease_key: String::new(), problem: format!("lease_key: {error}") }),
    };
    lease_from(row).map_err(|problem| Unreadable { lease_key: lease_key.clone(), problem })
}

fn lease_from(row: &Row) -> Result<Lease, String> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, String> {
        row.try_get(index).map_err(|error| format!("column {index}: {error}"))
    }
    fn unsigned(value: i64, name: &str) -> Result<u64, String> {
        u64::try_from(value).map_err(|_| format!("{name} is negative"))
    }
    fn at(checkpoint: Option<String>, sub: Option<i64>, name: &str) -> Result<Option<ExtendedSequenceNumber>, String> {
        let Some(checkpoint) = checkpoint else { return Ok(None) };
        let sub = unsigned(sub.unwrap_or(0), name)?;
        ExtendedSequenceNumber::parse(&checkpoint, sub)
            .map(Some)
            .map_err(|error| format!("{name} is neither a sentinel nor a sequence number: {error}"))
    }
    let hash_key_range = match (get::<Option<String>>(row, 11)?, get::<Option<String>>(row, 12)?) {
        (None, None) => None,
        (Some(start), Some(end)) => Some(
            HashKeyRange::parse(&start, &end)
                .ok_or_else(|| format!("hash key range {start}..{end} is not two ordered u128 numbers"))?,
        ),
        _ => return Err("only one of starting_hash_key and ending_hash_key is set".to_owned()),
    };
    Ok(Lease {
        lease_key: get(row, 0)?,
        lease_owner: get(row, 1)?,
        lease_counter: unsigned(get(row, 2)?, "lease_counter")?,
        owner_switches_since_checkpoint: unsigned(get(row, 3)?, "owner_switches_since_checkpoint")?,
        checkpoint: at(get(row, 4)?, get(row, 5)?, "checkpoint")?.ok_or("checkpoint is NULL")?,
        pending_checkpoint: at(get(row, 6)?, get(row, 7)?, "pending_checkpoint")?,
        pending_checkpoint_state: get::<Option<Vec<u8>>>(row, 8)?.map(bytes::Bytes::from),
        parent_shard_ids: get(row, 9)?,
        child_shard_ids: get(row, 10)?,
        hash_key_range,
        checkpoint_owner: get(row, 13)?,
        stream_identifier: get(row, 14)?,
        shard_id: get(row, 15)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        for (name, valid) in [
            ("kcl_leases", true),
            ("App_1", true),
            ("", false),
            ("1app", false),
            ("x\"; DROP TABLE y; --", false),
            ("a-b", false),
            (&"a".repeat(48), true),
            (&"a".repeat(49), false),
        ] {
            assert_eq!(valid_table_name(name), valid, "{name:?}");
        }
    }

    #[test]
    fn counters_past_bigint_are_refused() {
        assert_eq!(to_bigint("op", "lease_counter", 7).unwrap(), 7);
        assert!(to_bigint("op", "lease_counter", u64::MAX).is_err());
    }
}
