//! What the dashboard shows, and how it is kept: each scan of the lease table and the stream (an [`Observation`])
//! is folded into a [`History`] that remembers what one scan cannot tell — lag samples over the last minutes, owner
//! changes between scans, records counted per worker — and renders a [`Dashboard`], the document both the HTML page
//! and `/state.json` are made from. No I/O here: the sampler (`sample.rs`) makes observations.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use kcl_core::lease::Lease;
use serde::Serialize;

use crate::kinesis::stream_name_of;
use crate::lag::LagReport;

/// How many lease moves the dashboard remembers.
pub const MOVES_KEPT: usize = 50;

/// Records counted between two checkpoints of one lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    /// How many Kinesis records lie between the previous checkpoint and the new one.
    pub records: u64,
    /// The count stopped at its page limit: the true number is larger.
    pub capped: bool,
}

/// Something that went wrong during a scan, shown on the page.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What was being read: `lease table` or `Kinesis`.
    pub source: &'static str,
    /// The error, with its remedy.
    pub message: String,
}

/// One scan: what the lease table and Kinesis said at `at`.
#[derive(Debug)]
pub struct Observation {
    /// When the scan started.
    pub at: SystemTime,
    /// The leases; `None` when the table could not be read.
    pub leases: Option<Vec<Lease>>,
    /// The lag per shard; `None` when Kinesis could not be read.
    pub lag: Option<LagReport>,
    /// Records between each lease's previous and current checkpoint, by lease key (only leases whose checkpoint
    /// moved since the previous scan).
    pub counted: BTreeMap<String, Counted>,
    /// What failed.
    pub problems: Vec<Problem>,
}

/// An owner change seen between two scans.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct LeaseMove {
    /// When the scan that saw it ran (milliseconds since the Unix epoch).
    pub seen_at_ms: u64,
    /// The lease.
    pub lease_key: String,
    /// The owner at the previous scan (`null`: unowned).
    pub from: Option<String>,
    /// The owner now (`null`: released or expired and not taken yet).
    pub to: Option<String>,
}

/// One shard (or lease) row of the dashboard.
#[derive(Serialize, Clone, Debug, Default)]
pub struct ShardView {
    /// The shard id.
    pub shard_id: String,
    /// Its lease; `null` when it has none yet.
    pub lease_key: Option<String>,
    /// The lease owner.
    pub owner: Option<String>,
    /// During a graceful handoff: the previous owner, still allowed to checkpoint.
    pub checkpoint_owner: Option<String>,
    /// Whether Kinesis lists the shard as open; `null` when Kinesis could not be read or no longer lists it.
    pub open: Option<bool>,
    /// Parent shards.
    pub parent_shard_ids: Vec<String>,
    /// Child shards (written when the shard ended).
    pub child_shard_ids: Vec<String>,
    /// The checkpoint.
    pub checkpoint: Option<String>,
    /// The lease counter.
    pub lease_counter: Option<u64>,
    /// `lag`'s status (`behind`, `caught_up`, `finished`, `no_lease`, `unknown`, `error`), or `lease_only` when
    /// Kinesis could not be read or no longer has the shard.
    pub status: String,
    /// `MillisBehindLatest` right after the checkpoint.
    pub millis_behind_latest: Option<u64>,
    /// Age of the first record after the checkpoint.
    pub next_record_age_millis: Option<u64>,
    /// Why the status is what it is, when that needs saying.
    pub note: Option<String>,
    /// `millis_behind_latest` of each scan in the window, oldest first (`null`: not measured in that scan).
    pub lag_history: Vec<Option<u64>>,
}

/// One worker row.
#[derive(Serialize, Clone, Debug)]
pub struct WorkerView {
    /// The worker id as written in the lease table.
    pub worker_id: String,
    /// Its colour on the lease map (CSS).
    pub colour: String,
    /// Leases it owns now.
    pub leases: usize,
    /// Records its leases' checkpoints advanced by over the window, per second; `null` before two scans.
    pub records_per_second: Option<f64>,
    /// Records counted over the window.
    pub records_in_window: u64,
    /// Some count stopped at its page limit: the figures are lower bounds.
    pub lower_bound: bool,
}

/// Everything the page shows.
#[derive(Serialize, Clone, Debug, Default)]
pub struct Dashboard {
    /// The lease table (application name).
    pub table: String,
    /// The stream.
    pub stream: String,
    /// Seconds between scans.
    pub interval_secs: u64,
    /// How far back lag samples, moves and throughput go, in seconds.
    pub window_secs: u64,
    /// Scans made so far.
    pub scans: u64,
    /// When the latest scan ran (milliseconds since the Unix epoch); `null` before the first.
    pub last_scan_ms: Option<u64>,
    /// What failed in the latest scan.
    pub problems: Vec<Problem>,
    /// Shards and leases, sorted by shard id.
    pub shards: Vec<ShardView>,
    /// Workers owning leases now or seen owning one within the window.
    pub workers: Vec<WorkerView>,
    /// Owner changes, newest first.
    pub moves: Vec<LeaseMove>,
    /// Lease table items the store could not read (`key: reason`); `null` until a scan has read the table.
    pub unreadable_items: Option<Vec<String>>,
}

/// The owner change of every lease present in both scans whose owner differs; leases that appeared or vanished
/// between them are not moves. Sorted by lease key.
pub fn lease_moves(
    before: &BTreeMap<String, Option<String>>,
    after: &BTreeMap<String, Option<String>>,
) -> Vec<(String, Option<String>, Option<String>)> {
    after
        .iter()
        .filter_map(|(key, to)| match before.get(key) {
            Some(from) if from != to => Some((key.clone(), from.clone(), to.clone())),
            _ => None,
        })
        .collect()
}

/// The colour of the `index`-th worker seen: ten well-separated colours, then hues a golden angle apart.
pub fn worker_colour(index: usize) -> String {
    const PALETTE: [&str; 10] =
        ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
    match PALETTE.get(index) {
        Some(colour) => (*colour).to_owned(),
        None => format!("hsl({}, 55%, 55%)", (index * 137) % 360),
    }
}

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The memory of the dashboard across scans.
#[derive(Debug)]
pub struct History {
    window: Duration,
    /// Scan times in the window, oldest first.
    scan_times: VecDeque<SystemTime>,
    /// Per shard: `millis_behind_latest` per scan, aligned with `scan_times`.
    lag: BTreeMap<String, VecDeque<Option<u64>>>,
    moves: VecDeque<LeaseMove>,
    /// Owners at the previous readable scan.
    owners: Option<BTreeMap<String, Option<String>>>,
    /// Every worker ever seen, in order of first sighting (their colours), with when they last owned a lease.
    workers: Vec<(String, SystemTime)>,
    /// Per scan in the window: (records, capped) counted per worker.
    counts: VecDeque<(SystemTime, HashMap<String, Counted>)>,
    view: Dashboard,
}

impl History {
    /// An empty history keeping `window` of samples.
    pub fn new(table: &str, stream: &str, interval: Duration, window: Duration) -> Self {
        let view = Dashboard {
            table: table.to_owned(),
            stream: stream.to_owned(),
            interval_secs: interval.as_secs(),
            window_secs: window.as_secs(),
            ..Dashboard::default()
        };
        Self {
            window,
            scan_times: VecDeque::new(),
            lag: BTreeMap::new(),
            moves: VecDeque::new(),
            owners: None,
            workers: Vec::new(),
            counts: VecDeque::new(),
            view,
        }
    }

    /// What the page shows now.
    pub fn view(&self) -> &Dashboard {
        &self.view
    }

    /// Folds one scan in and renders the new view.
    pub fn record(&mut self, observation: Observation, unreadable_items: Option<Vec<String>>) {
        let at = observation.at;
        self.scan_times.push_back(at);
        while self.scan_times.front().is_some_and(|t| at.duration_since(*t).is_ok_and(|age| age > self.window)) {
            self.scan_times.pop_front();
        }
        let kept = self.scan_times.len();

        let mut lag_now: HashMap<&str, Option<u64>> = HashMap::new();
        if let Some(report) = &observation.lag {
            for shard in &report.shards {
                lag_now.insert(&shard.shard_id, shard.millis_behind_latest);
            }
        }
        for shard in lag_now.keys() {
            self.lag.entry((*shard).to_owned()).or_default();
        }
        for (shard, samples) in &mut self.lag {
            samples.push_back(lag_now.get(shard.as_str()).copied().flatten());
            while samples.len() > kept {
                samples.pop_front();
            }
        }
        self.lag.retain(|_, samples| samples.iter().any(Option::is_some));

        let mut counted_by_worker: HashMap<String, Counted> = HashMap::new();
        if let Some(leases) = &observation.leases {
            let owners: BTreeMap<String, Option<String>> =
                leases.iter().map(|l| (l.lease_key.clone(), l.lease_owner.clone())).collect();
            if let Some(before) = &self.owners {
                for (lease_key, from, to) in lease_moves(before, &owners) {
                    self.moves.push_front(LeaseMove { seen_at_ms: epoch_ms(at), lease_key, from, to });
                }
                self.moves.truncate(MOVES_KEPT);
            }
            self.owners = Some(owners);
            for lease in leases {
                // A handoff's final checkpoint is written by the previous owner: its records are its work.
                let worker = lease.checkpoint_owner.as_ref().or(lease.lease_owner.as_ref());
                if let (Some(worker), Some(count)) = (worker, observation.counted.get(&lease.lease_key)) {
                    let total =
                        counted_by_worker.entry(worker.clone()).or_insert(Counted { records: 0, capped: false });
                    total.records += count.records;
                    total.capped |= count.capped;
                }
                if let Some(owner) = &lease.lease_owner {
                    match self.workers.iter_mut().find(|(id, _)| id == owner) {
                        Some(seen) => seen.1 = at,
                        None => self.workers.push((owner.clone(), at)),
                    }
                }
            }
        }
        self.counts.push_back((at, counted_by_worker));
        while self.counts.len() > kept {
            self.counts.pop_front();
        }

        self.view.scans += 1;
        self.view.last_scan_ms = Some(epoch_ms(at));
        self.view.problems = observation.problems.clone();
        self.view.unreadable_items = unreadable_items;
        self.view.moves = self.moves.iter().cloned().collect();
        self.view.workers = self.workers_view(observation.leases.as_deref(), at);
        self.view.shards = self.shards_view(&observation);
    }

    fn workers_view(&self, leases: Option<&[Lease]>, now: SystemTime) -> Vec<WorkerView> {
        // The window's first scan only marks where counting starts: its counts cover the time before it.
        let span = match (self.counts.front(), self.counts.back()) {
            (Some((first, _)), Some((last, _))) => last.duration_since(*first).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, (_, last_owned))| now.duration_since(*last_owned).is_ok_and(|age| age <= self.window))
            .map(|(index, (worker_id, _))| {
                let mut total = Counted { records: 0, capped: false };
                for (_, counts) in self.counts.iter().skip(1) {
                    if let Some(count) = counts.get(worker_id) {
                        total.records += count.records;
                        total.capped |= count.capped;
                    }
                }
                WorkerView {
                    worker_id: worker_id.clone(),
                    colour: worker_colour(index),
                    leases: leases.map_or(0, |all| {
                        all.iter().filter(|l| l.lease_owner.as_deref() == Some(worker_id.as_str())).count()
                    }),
                    records_per_second: (!span.is_zero()).then(|| total.records as f64 / span.as_secs_f64()),
                    records_in_window: total.records,
                    lower_bound: total.capped,
                }
            })
            .collect()
    }

    fn shards_view(&self, observation: &Observation) -> Vec<ShardView> {
        let leases = observation.leases.as_deref().unwrap_or_default();
        let mut rows: BTreeMap<String, ShardView> = BTreeMap::new();
        if let Some(report) = &observation.lag {
            for shard in &report.shards {
                rows.insert(
                    shard.shard_id.clone(),
                    ShardView {
                        shard_id: shard.shard_id.clone(),
                        lease_key: shard.lease_key.clone(),
                        owner: shard.owner.clone(),
                        open: Some(shard.open),
                        parent_shard_ids: shard.parent_shard_ids.clone(),
                        checkpoint: shard.checkpoint.clone(),
                        status: shard.status.to_owned(),
                        millis_behind_latest: shard.millis_behind_latest,
                        next_record_age_millis: shard.next_record_age_millis,
                        note: shard.note.clone(),
                        ..ShardView::default()
                    },
                );
            }
        }
        let stream = self.view.stream.as_str();
        let stream_leases = leases
            .iter()
            .filter(|l| l.stream_identifier.as_deref().is_none_or(|id| stream_name_of(id) == Some(stream)));
        for lease in stream_leases {
            let row = rows.entry(lease.shard_id.clone()).or_insert_with(|| ShardView {
                shard_id: lease.shard_id.clone(),
                status: "lease_only".to_owned(),
                checkpoint: Some(lease.checkpoint.checkpoint_str().to_owned()),
                parent_shard_ids: lease.parent_shard_ids.clone(),
                ..ShardView::default()
            });
            // The lease scan is the owner's source of truth; lag read the table a moment later.
            row.lease_key = Some(lease.lease_key.clone());
            row.owner = lease.lease_owner.clone();
            row.checkpoint_owner = lease.checkpoint_owner.clone();
            row.child_shard_ids = lease.child_shard_ids.clone();
            row.lease_counter = Some(lease.lease_counter);
        }
        for row in rows.values_mut() {
            row.lag_history = self.lag.get(&row.shard_id).map(|s| s.iter().copied().collect()).unwrap_or_default();
        }
        rows.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{lease_moves, worker_colour};

    fn owners(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs.iter().map(|(k, o)| ((*k).to_owned(), o.map(str::to_owned))).collect()
    }

    #[test]
    fn a_move_is_an_owner_change_of_a_lease_seen_in_both_scans() {
        type Case<'a> = (&'a str, &'a [(&'a str, Option<&'a str>)], &'a [(&'a str, Option<&'a str>)], &'a [&'a str]);
        let cases: &[Case] = &[
            ("nothing changed", &[("a", Some("w1"))], &[("a", Some("w1"))], &[]),
            ("taken by another", &[("a", Some("w1"))], &[("a", Some("w2"))], &["a:w1->w2"]),
            ("expired and unowned", &[("a", Some("w1"))], &[("a", None)], &["a:w1->-"]),
            ("first taken", &[("a", None)], &[("a", Some("w2"))], &["a:-->w2"]),
            ("new lease is not a move", &[], &[("b", Some("w1"))], &[]),
            ("vanished lease is not a move", &[("a", Some("w1"))], &[], &[]),
            (
                "several, sorted by key",
                &[("b", Some("w3")), ("a", Some("w3")), ("c", Some("w1"))],
                &[("a", Some("w1")), ("b", Some("w2")), ("c", Some("w1"))],
                &["a:w3->w1", "b:w3->w2"],
            ),
        ];
        for (name, before, after, expected) in cases {
            let got: Vec<String> = lease_moves(&owners(before), &owners(after))
                .into_iter()
                .map(|(k, from, to)| {
                    format!("{k}:{}->{}", from.as_deref().unwrap_or("-"), to.as_deref().unwrap_or("-"))
                })
                .collect();
            assert_eq!(got, *expected, "{name}");
        }
    }

    #[test]
    fn worker_colours_are_distinct_well_past_the_palette() {
        let colours: Vec<String> = (0..40).map(worker_colour).collect();
        let unique: std::collections::HashSet<&String> = colours.iter().collect();
        assert_eq!(unique.len(), colours.len());
    }
}
