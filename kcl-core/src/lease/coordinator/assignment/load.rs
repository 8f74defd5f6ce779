//! [`decide`]: the load-aware assignment decision of Java KCL 3.x (`LeaseAssignmentManager` with its
//! `VarianceBasedLeaseAssignmentDecider`), as a pure function over per-worker utilization and per-lease throughput.
//!
//! One run, as in KCL 3.x:
//! 1. **Expired or unowned leases** are assigned, in the order given, each to the worker with the most room below
//!    the fleet's mean utilization (`(mean − u) / u`, a worker at 0 % counting as room 1); a worker leaves the pool
//!    once it reaches `max_throughput_per_host_kbps` or `max_leases_for_worker`. Each assignment raises the
//!    receiver's utilization by the lease's share of it (see [`Run::extrapolate`]), so one run spreads many leases.
//! 2. **Variance balancing** (every `variance_balancing_frequency`-th run): when any worker is more than
//!    `re_balance_threshold_percentage` from the mean, or above its operating range, every worker at or above the
//!    upper bound (or, if none, the hottest) gives up `assigned KBps × (u − mean) / u × dampening_percentage %`: the
//!    leases that fit under that amount, or with `allow_throughput_overshoot` the smallest one when none fits. Each
//!    goes to the worker with the most room, unless that worker would then exceed the mean or its operating range.
//!
//! Workers without a utilization metric are measured as KCL 3.x's default metric: assigned KBps relative to the
//! fleet's target KBps per worker, in percent, with an operating range of 100. A lease without a known throughput
//! counts as the mean of the known ones (0 at start-up, when load balancing has nothing to go on).
//!
//! Two deliberate differences from the Java code, both so a fleet settles instead of oscillating or sticking:
//! * The receiver guard also admits a move that leaves the receiver below the giver's current utilization (same
//!   metric): KCL 3.x refuses any lease that lifts the receiver above the mean, so a lease bigger than a mean share
//!   (2 of 8 leases carrying 80 % of the bytes) stays stuck on one worker with the other hot lease. Every admitted
//!   move then strictly lowers the sum of squared loads of the two workers (`r + s < d` ⇔ `(d−s)² + (r+s)² < d² +
//!   r²`), so repeated runs cannot cycle.
//! * Candidate leases are tried largest first (ties by key) instead of shuffled: the amount given up lands closer
//!   to the target, and every worker computing the decision from the same input gets the same answer.
//!
//! Not wired yet: the coordinator has no per-lease throughput or worker utilization to feed it (KCL 3.x keeps them
//! in the lease table's `throughput` attribute and the WorkerMetricStats table).
// Only the tests call it until the inputs exist (see above).
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::{BTreeSet, HashMap};

/// KCL 3.x's `WorkerUtilizationAwareAssignmentConfig` knobs that shape the decision, with its names and defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LoadKnobs {
    /// `dampeningPercentage`: the share of a hot worker's excess given up per run (critical dampening). Default 60.
    pub(crate) dampening_percentage: u32,
    /// `reBalanceThresholdPercentage`: balancing starts when a worker is more than this far (in percent of the mean)
    /// from the fleet's mean utilization. Default 10.
    pub(crate) re_balance_threshold_percentage: u32,
    /// `allowThroughputOvershoot`: when no lease fits under the amount to give up, give up the smallest one.
    /// Default true.
    pub(crate) allow_throughput_overshoot: bool,
    /// `maxThroughputPerHostKBps`: a worker with this much assigned throughput receives nothing more. Default
    /// unlimited (`None`).
    pub(crate) max_throughput_per_host_kbps: Option<f64>,
    /// `maxLeasesForWorker`: a worker with this many leases receives nothing more. Default unlimited (`None`).
    pub(crate) max_leases_for_worker: Option<usize>,
    /// `varianceBalancingFrequency`: variance balancing runs on every n-th run (expired leases are assigned on
    /// every run). Default 3.
    pub(crate) variance_balancing_frequency: u32,
}

impl Default for LoadKnobs {
    fn default() -> Self {
        Self {
            dampening_percentage: 60,
            re_balance_threshold_percentage: 10,
            allow_throughput_overshoot: true,
            max_throughput_per_host_kbps: None,
            max_leases_for_worker: None,
            variance_balancing_frequency: 3,
        }
    }
}

impl LoadKnobs {
    /// Whether run number `run` (counting from 0) balances variance, as KCL 3.x counts its runs.
    pub(crate) fn balances_on(&self, run: u64) -> bool {
        run.is_multiple_of(u64::from(self.variance_balancing_frequency.max(1)))
    }
}

/// One live worker: the receivers. Dead workers are left out; their leases show as expired.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WorkerLoad {
    pub(crate) worker_id: String,
    /// Smoothed CPU utilization in percent; `None` for a worker that reports none (measured by throughput then).
    pub(crate) utilization: Option<f64>,
    /// The operating range: above this utilization the worker gives leases up whatever the mean (100 for CPU).
    pub(crate) max_utilization: f64,
}

/// One lease.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LeaseLoad {
    pub(crate) lease_key: String,
    /// The worker processing it (the checkpoint owner during a handoff); `None` when unowned.
    pub(crate) owner: Option<String>,
    /// Recent throughput; `None` when unknown (a new lease).
    pub(crate) throughput_kbps: Option<f64>,
    /// Expired (its owner stopped renewing) or unowned: assigned in step 1.
    pub(crate) expired: bool,
}

/// One lease changing worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Move {
    pub(crate) lease_key: String,
    pub(crate) from: Option<String>,
    pub(crate) to: String,
}

/// Decides one run: the leases that change worker, in the order of `leases`. Expired and unowned leases are assigned
/// in that order too, so put the ones that waited longest first.
/// `balance` says whether this run balances variance (see [`LoadKnobs::balances_on`]).
pub(crate) fn decide(workers: &[WorkerLoad], leases: &[LeaseLoad], knobs: &LoadKnobs, balance: bool) -> Vec<Move> {
    if workers.is_empty() {
        return Vec::new();
    }
    let mut run = Run::new(workers, leases, knobs);
    let expired: Vec<usize> = (0..leases.len()).filter(|&l| leases[l].expired || leases[l].owner.is_none()).collect();
    for lease in expired {
        let Some(to) = run.pop_receiver() else { break };
        run.assign(lease, to, None);
    }
    if balance {
        run.balance();
    }
    run.moves()
}

/// The metric a worker is measured by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Metric {
    Cpu,
    /// KCL 3.x's default metric: assigned KBps as a percentage of the target KBps per worker.
    Throughput,
}

#[derive(Debug)]
struct Worker {
    id: String,
    metric: Metric,
    utilization: f64,
    max_utilization: f64,
    leases: BTreeSet<usize>,
    assigned_kbps: f64,
    /// Still in the receiver pool.
    pooled: bool,
}

/// The state of one run: KCL 3.x's in-memory view, updated as leases move.
struct Run<'a> {
    knobs: &'a LoadKnobs,
    workers: Vec<Worker>,
    leases: Vec<(&'a str, Option<usize>, f64)>,
    /// Each lease's owner before the run, by name (dead owners included).
    initial_owners: Vec<Option<&'a str>>,
    /// The fleet's mean utilization per metric, fixed at the start of the run.
    means: HashMap<Metric, f64>,
    /// Total throughput / workers.
    target_kbps: f64,
    /// max(leases / workers, 1): a lease's share of a worker when no throughput is known.
    target_leases: f64,
}

impl<'a> Run<'a> {
    fn new(inputs: &'a [WorkerLoad], leases: &'a [LeaseLoad], knobs: &'a LoadKnobs) -> Self {
        let known: Vec<f64> = leases.iter().filter_map(|l| l.throughput_kbps).collect();
        let mean_lease = if known.is_empty() { 0.0 } else { known.iter().sum::<f64>() / known.len() as f64 };
        let index: HashMap<&str, usize> = inputs.iter().enumerate().map(|(i, w)| (w.worker_id.as_str(), i)).collect();
        let lease_rows: Vec<(&str, Option<usize>, f64)> = leases
            .iter()
            .map(|l| {
                let owner = l.owner.as_deref().and_then(|o| index.get(o).copied());
                (l.lease_key.as_str(), owner, l.throughput_kbps.unwrap_or(mean_lease))
            })
            .collect();
        let target_kbps = mean_lease * leases.len() as f64 / inputs.len() as f64;
        let mut workers: Vec<Worker> = inputs
            .iter()
            .map(|w| Worker {
                id: w.worker_id.clone(),
                metric: if w.utilization.is_some() { Metric::Cpu } else { Metric::Throughput },
                utilization: w.utilization.unwrap_or(0.0),
                max_utilization: if w.utilization.is_some() { w.max_utilization } else { 100.0 },
                leases: BTreeSet::new(),
                assigned_kbps: 0.0,
                pooled: false,
            })
            .collect();
        for (l, &(_, owner, kbps)) in lease_rows.iter().enumerate() {
            if let Some(w) = owner {
                workers[w].leases.insert(l);
                workers[w].assigned_kbps += kbps;
            }
        }
        for worker in &mut workers {
            if worker.metric == Metric::Throughput {
                worker.utilization = if target_kbps > 0.0 { worker.assigned_kbps / target_kbps * 100.0 } else { 0.0 };
            }
        }
        let mut sums: HashMap<Metric, (f64, usize)> = HashMap::new();
        for worker in &workers {
            let sum = sums.entry(worker.metric).or_default();
            *sum = (sum.0 + worker.utilization, sum.1 + 1);
        }
        let means = sums.into_iter().map(|(metric, (sum, n))| (metric, sum / n as f64)).collect();
        let mut run = Run {
            knobs,
            workers,
            leases: lease_rows,
            initial_owners: leases.iter().map(|l| l.owner.as_deref()).collect(),
            means,
            target_kbps,
            target_leases: (leases.len() / inputs.len()).max(1) as f64,
        };
        for w in 0..run.workers.len() {
            run.workers[w].pooled = run.has_room(w);
        }
        run
    }

    /// Every lease whose owner at the end differs from its owner before, in lease order (a lease moved twice in one
    /// run counts once; one moved back, not at all).
    fn moves(&self) -> Vec<Move> {
        self.leases
            .iter()
            .zip(&self.initial_owners)
            .filter_map(|(&(key, owner, _), &initial)| {
                let to = self.workers[owner?].id.as_str();
                (initial != Some(to)).then(|| Move {
                    lease_key: key.to_owned(),
                    from: initial.map(str::to_owned),
                    to: to.to_owned(),
                })
            })
            .collect()
    }

    fn mean(&self, metric: Metric) -> f64 {
        self.means.get(&metric).copied().unwrap_or(0.0)
    }

    /// Below both caps: may receive more.
    fn has_room(&self, w: usize) -> bool {
        let worker = &self.workers[w];
        self.knobs.max_throughput_per_host_kbps.is_none_or(|max| worker.assigned_kbps <= max)
            && self.knobs.max_leases_for_worker.is_none_or(|max| worker.leases.len() < max)
    }

    /// How far below the mean a worker is, relative to its own utilization (KCL 3.x's "percentage to reach
    /// average"); an idle worker counts as 1.
    fn room(&self, w: usize) -> f64 {
        let worker = &self.workers[w];
        if worker.utilization == 0.0 {
            1.0
        } else {
            (self.mean(worker.metric) - worker.utilization) / worker.utilization
        }
    }

    /// The utilization worker `w` would have with a lease of `kbps` more (`direction` 1) or less (-1): the lease's
    /// share of the fleet's target throughput, scaled to the mean utilization; a lease's share of a worker when no
    /// throughput is known.
    fn extrapolate(&self, w: usize, kbps: f64, direction: f64) -> f64 {
        let worker = &self.workers[w];
        let mean = self.mean(worker.metric);
        let share = if self.target_kbps > 0.0 { kbps * mean / self.target_kbps } else { mean / self.target_leases };
        worker.utilization + direction * share
    }

    /// Takes the pooled worker with the most room out of the pool; ties go to the one with fewer leases, then by id
    /// (so leases of unknown throughput at start-up are dealt round, where KCL 3.x's heap picks arbitrarily).
    fn pop_receiver(&mut self) -> Option<usize> {
        let best = (0..self.workers.len()).filter(|&w| self.workers[w].pooled).max_by(|&a, &b| {
            let (wa, wb) = (&self.workers[a], &self.workers[b]);
            self.room(a)
                .total_cmp(&self.room(b))
                .then_with(|| wb.leases.len().cmp(&wa.leases.len()))
                .then_with(|| wb.id.cmp(&wa.id))
        })?;
        self.workers[best].pooled = false;
        Some(best)
    }

    /// Moves `lease` to worker `to` (popped from the pool) and puts `to` back while it has room. `giver` is the
    /// worker balancing gives it up from, whose utilization drops accordingly.
    fn assign(&mut self, lease: usize, to: usize, giver: Option<usize>) {
        let (_, owner, kbps) = self.leases[lease];
        if owner == Some(to) {
            self.workers[to].pooled = self.has_room(to);
            return;
        }
        self.workers[to].utilization = self.extrapolate(to, kbps, 1.0);
        if let Some(giver) = giver {
            self.workers[giver].utilization = self.extrapolate(giver, kbps, -1.0);
        }
        if let Some(from) = owner {
            self.workers[from].leases.remove(&lease);
            self.workers[from].assigned_kbps -= kbps;
        }
        self.workers[to].leases.insert(lease);
        self.workers[to].assigned_kbps += kbps;
        self.leases[lease].1 = Some(to);
        self.workers[to].pooled = self.has_room(to);
    }

    /// Step 2: gives load up from hot workers, in the metric whose imbalance asks to move the most throughput.
    fn balance(&mut self) {
        let mut givers: Vec<(usize, f64)> = Vec::new();
        let mut most = -1.0;
        for metric in [Metric::Cpu, Metric::Throughput] {
            let candidates = self.givers(metric);
            let total: f64 = candidates.iter().map(|(_, kbps)| kbps).sum();
            if !candidates.is_empty() && total > most {
                (givers, most) = (candidates, total);
            }
        }
        givers.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| self.workers[a.0].id.cmp(&self.workers[b.0].id)));
        for (giver, kbps) in givers {
            for lease in self.leases_to_give(giver, kbps) {
                let Some(to) = self.pop_receiver() else { return };
                if !self.admits(to, giver, self.leases[lease].2) {
                    self.workers[to].pooled = self.has_room(to);
                    break;
                }
                self.assign(lease, to, Some(giver));
            }
        }
    }

    /// The workers of `metric` that give load up, and how much throughput each gives; empty while every worker is
    /// within the threshold of the mean and its operating range.
    fn givers(&self, metric: Metric) -> Vec<(usize, f64)> {
        let mean = self.mean(metric);
        let threshold = f64::from(self.knobs.re_balance_threshold_percentage) / 100.0;
        let (upper, lower) = (mean * (1.0 + threshold), mean * (1.0 - threshold));
        let members: Vec<usize> = (0..self.workers.len()).filter(|&w| self.workers[w].metric == metric).collect();
        let over_range = |w: usize| self.workers[w].utilization > self.workers[w].max_utilization;
        let unbalanced = members.iter().any(|&w| {
            let u = self.workers[w].utilization;
            u > upper || u < lower || over_range(w)
        });
        if !unbalanced {
            return Vec::new();
        }
        let mut hot: Vec<usize> =
            members.iter().copied().filter(|&w| self.workers[w].utilization >= upper || over_range(w)).collect();
        if hot.is_empty() {
            hot.extend(
                members
                    .iter()
                    .copied()
                    .max_by(|&a, &b| self.workers[a].utilization.total_cmp(&self.workers[b].utilization)),
            );
        }
        let dampening = f64::from(self.knobs.dampening_percentage) / 100.0;
        hot.into_iter()
            .filter(|&w| self.workers[w].utilization > 0.0)
            .map(|w| {
                let worker = &self.workers[w];
                let share = (worker.utilization - mean) / worker.utilization;
                (w, worker.assigned_kbps * share * dampening)
            })
            .collect()
    }

    /// The leases worker `w` gives up to shed about `kbps`: largest first, each only if the total stays under
    /// `kbps`; with overshoot allowed, the smallest one when none fits. A worker with leases but no known
    /// throughput gives one up.
    fn leases_to_give(&self, w: usize, kbps: f64) -> Vec<usize> {
        let worker = &self.workers[w];
        let Some(&first) = worker.leases.first() else { return Vec::new() };
        if worker.assigned_kbps == 0.0 {
            return vec![first];
        }
        let mut by_size: Vec<usize> = worker.leases.iter().copied().collect();
        by_size.sort_by(|&a, &b| self.leases[b].2.total_cmp(&self.leases[a].2).then(a.cmp(&b)));
        let mut remaining = kbps;
        let mut give = Vec::new();
        for &lease in &by_size {
            let size = self.leases[lease].2;
            if remaining - size > 0.0 {
                remaining -= size;
                give.push(lease);
            }
        }
        if give.is_empty() && self.knobs.allow_throughput_overshoot {
            give.extend(by_size.last());
        }
        give
    }

    /// Whether receiver `to` may take `kbps` from `giver`: it stays within its operating range, and at or below the
    /// mean or (same metric) below what the giver has now.
    fn admits(&self, to: usize, giver: usize, kbps: f64) -> bool {
        let after = self.extrapolate(to, kbps, 1.0);
        let receiver = &self.workers[to];
        if after > receiver.max_utilization {
            return false;
        }
        let same_metric = receiver.metric == self.workers[giver].metric;
        after <= self.mean(receiver.metric) || same_metric && after < self.workers[giver].utilization
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
