//! The command line: subcommands and their arguments (clap derive).

use clap::{Args, Parser, Subcommand};

use crate::position::Target;

/// Inspect and repair a kcl-rs (or Java KCL) lease table.
#[derive(Parser, Debug)]
#[command(name = "kcl-admin", version, about = "Inspect and repair a kcl-rs (or Java KCL) lease table")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Arguments every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The lease table: the application name of the workers.
    #[arg(long)]
    pub table: String,
    /// Print one JSON document on stdout instead of a table (errors too: `{"error": {...}}`).
    #[arg(long)]
    pub json: bool,
    /// Kinesis endpoint override, e.g. kinesis-mock's `http://127.0.0.1:4567`.
    #[arg(long, value_name = "URL")]
    pub kinesis_endpoint: Option<String>,
    /// DynamoDB endpoint override, e.g. DynamoDB Local's `http://127.0.0.1:8000`.
    #[arg(long, value_name = "URL")]
    pub dynamodb_endpoint: Option<String>,
    /// AWS region (default: the standard AWS configuration; `us-east-1` with endpoint overrides).
    #[arg(long)]
    pub region: Option<String>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Every lease: owner, checkpoint, pending checkpoint, parents, children, counter.
    Leases {
        #[command(flatten)]
        common: Common,
        /// Read the table twice this many seconds apart and report which leases' counters moved (a live owner
        /// renews its leases every few seconds; an owned lease whose counter stands still is expiring).
        #[arg(long, value_name = "SECONDS")]
        observe: Option<u64>,
    },
    /// Per shard of the stream: how far the checkpoint is behind the newest record.
    Lag {
        #[command(flatten)]
        common: Common,
        /// The stream the application consumes (in a multi-stream table: which of its streams).
        #[arg(long)]
        stream: String,
    },
    /// Moves a lease's checkpoint (and hands the lease back, unowned). Refuses an owned lease unless --force.
    ResetCheckpoint {
        #[command(flatten)]
        common: Common,
        /// The lease key (the shard id, or `account:stream:epoch:shardId` in a multi-stream table).
        lease_key: String,
        /// TRIM_HORIZON, LATEST, `AT_TIMESTAMP:<rfc3339>`, or a sequence number (optionally `<sequence>/<sub>`).
        #[arg(long, value_parser = Target::parse_arg)]
        to: Target,
        /// The stream of the lease's shard: needed for AT_TIMESTAMP, and checks a sequence number belongs to the
        /// shard. Multi-stream leases name their stream themselves.
        #[arg(long)]
        stream: Option<String>,
        /// Take the lease from its current owner (which stops processing the shard), or reset a finished shard.
        #[arg(long)]
        force: bool,
        /// Show what would be written, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Hands a lease back (clears its owner) so that a worker takes it, fenced by the owner and counter read.
    Release {
        #[command(flatten)]
        common: Common,
        /// The lease key.
        lease_key: String,
    },
    /// Rewrites (or, when the stream has no such shard, deletes) the items that cannot be read as leases, which
    /// workers do not process: a bad field is reset to a value that skips no record (an unreadable checkpoint
    /// becomes TRIM_HORIZON). Shows the plan unless --apply.
    Repair {
        #[command(flatten)]
        common: Common,
        /// The stream the application consumes: its shards decide between rewrite and delete.
        #[arg(long)]
        stream: String,
        /// Write the repairs (each conditional on the item as read); without it nothing is written.
        #[arg(long)]
        apply: bool,
    },
    /// Adopts the checkpoints of a Java KCL lease table into --table (created when missing).
    Import {
        #[command(flatten)]
        common: Common,
        /// The Java KCL lease table to read (its application name).
        #[arg(long, value_name = "TABLE")]
        from: String,
        /// Update leases that already exist in --table (by default they are skipped): their checkpoint is rewritten, or
        /// the whole lease replaced when its parents or hash range differ from the source's.
        #[arg(long)]
        overwrite: bool,
        /// With --overwrite: also update leases a worker owns in --table (it stops processing them).
        #[arg(long)]
        force: bool,
        /// Show what would be adopted, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serves a live web page of the application: lease map, lag per shard, workers, lease moves (read-only).
    Dashboard {
        #[command(flatten)]
        common: Common,
        /// The stream the application consumes (in a multi-stream table: which of its streams).
        #[arg(long)]
        stream: String,
        /// Address to listen on (port 0: any free port; the URL is printed on start). Loopback by default: the
        /// page shows worker ids and the table's contents to whoever can reach it.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9797")]
        bind: std::net::SocketAddr,
        /// Seconds between scans of the table and the stream (each costs a Scan and one read per shard).
        #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// Minutes of lag samples, lease moves and throughput kept.
        #[arg(long, value_name = "MINUTES", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        window: u64,
    },
}

impl Command {
    /// The arguments shared by every subcommand.
    pub fn common(&self) -> &Common {
        match self {
            Self::Leases { common, .. }
            | Self::Lag { common, .. }
            | Self::ResetCheckpoint { common, .. }
            | Self::Release { common, .. }
            | Self::Repair { common, .. }
            | Self::Import { common, .. }
            | Self::Dashboard { common, .. } => common,
        }
    }
}
