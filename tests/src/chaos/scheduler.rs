//! The seeded chaos scheduler: every few seconds one action — SIGKILL a worker (restarted a few seconds later),
//! SIGTERM one (restarted after its graceful exit), SIGSTOP one for longer than a lease (a zombie when it wakes),
//! split or merge a shard, or switch a proxy's faults on for a few seconds. The first actions are one of each kind
//! in seeded order, so even a short run exercises them all; the rest are drawn by weight. A worker is only taken
//! away while at least one other is running.

use std::time::Duration;

use tokio::time::Instant;

use super::fleet::{Fleet, SlotState};
use super::reshard;
use crate::proxy::{FaultControl, FaultPlan, SplitMix64};

/// Kinds of action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Kill,
    Term,
    Pause,
    Split,
    Merge,
    Faults,
    /// Half the lease table's conditional writes refused for a few seconds although their conditions held.
    ConditionStorm,
}

const WEIGHTS: [(Action, u64); 7] = [
    (Action::Kill, 3),
    (Action::Term, 2),
    (Action::Pause, 2),
    (Action::Split, 1),
    (Action::Merge, 1),
    (Action::Faults, 3),
    (Action::ConditionStorm, 1),
];

/// The proxy in front of the lease table (DynamoDB) in [`Scheduler::proxies`].
const LEASE_TABLE_PROXY: usize = 1;

/// Open shards are kept within these bounds.
const MIN_OPEN: usize = 3;
const MAX_OPEN: usize = 6;

/// What the scheduler did. Times are on the journals' clock ([`crate::verify::evidence_now_us`]).
#[derive(Clone, Debug, Default)]
pub struct ChaosLog {
    /// Worker id and time of each SIGKILL.
    pub kills: Vec<(String, u64)>,
    /// Worker id and time of each SIGTERM.
    pub terms: Vec<(String, u64)>,
    /// Worker id and time of each SIGSTOP.
    pub pauses: Vec<(String, u64)>,
    /// Splits done.
    pub splits: usize,
    /// Merges done.
    pub merges: usize,
    /// Fault windows opened (per proxy).
    pub fault_windows: usize,
    /// Conditional-check storms on the lease table.
    pub condition_storms: usize,
    /// Actions that could not be carried out (e.g. a reshard refused), for the summary.
    pub skipped: Vec<String>,
}

/// Now, on the journals' clock ([`crate::verify::evidence_now_us`]).
pub fn now_us() -> u64 {
    crate::verify::evidence_now_us()
}

/// Follow-ups of actions, due at a time.
enum FollowUp {
    Restart(usize),
    Resume(usize),
    FaultsOff(usize),
}

/// What the scheduler acts on.
pub struct Scheduler<'a> {
    /// The workers.
    pub fleet: &'a mut Fleet,
    /// The proxies' switches.
    pub proxies: Vec<&'a FaultControl>,
    /// A direct Kinesis client, for resharding.
    pub kinesis: &'a aws_sdk_kinesis::Client,
    /// The stream.
    pub stream: &'a str,
    /// The workers' lease duration.
    pub lease: Duration,
    /// How long [`FaultKind::Delay`](crate::proxy::FaultKind::Delay) holds answers back.
    pub delay: Duration,
    /// The seeded generator.
    pub rng: SplitMix64,
}

impl Scheduler<'_> {
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = high.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(self.rng.below(span + 1))
    }

    fn pick_running(&mut self) -> Option<usize> {
        let running = self.fleet.in_state(SlotState::Running);
        (running.len() >= 2).then(|| running[self.rng.below(running.len() as u64) as usize])
    }

    /// Runs actions until `until`, then undoes what is pending: faults off, paused workers resumed, every slot
    /// running again.
    pub async fn run(&mut self, until: Instant) -> Result<ChaosLog, String> {
        let mut log = ChaosLog::default();
        let mut forced: Vec<Action> = WEIGHTS.iter().map(|(a, _)| *a).collect();
        for i in (1..forced.len()).rev() {
            forced.swap(i, self.rng.below(i as u64 + 1) as usize);
        }
        let mut pending: Vec<(Instant, FollowUp)> = Vec::new();
        let mut next = Instant::now() + self.between(Duration::from_secs(2), Duration::from_secs(4));
        while Instant::now() < until {
            let wake = pending.iter().map(|(at, _)| *at).chain([next, until]).min().unwrap_or(until);
            tokio::time::sleep_until(wake).await;
            let now = Instant::now();
            let due: Vec<FollowUp> = {
                let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(at, _)| *at <= now);
                pending = later;
                due.into_iter().map(|(_, f)| f).collect()
            };
            for follow_up in due {
                if let Some(again) = self.follow_up(follow_up).await? {
                    pending.push((now + Duration::from_secs(1), again));
                }
            }
            if now >= next && now < until {
                let action = forced.pop().unwrap_or_else(|| self.draw());
                self.act(action, now, &mut log, &mut pending).await?;
                next = now + self.between(Duration::from_secs(2), Duration::from_secs(6));
            }
        }
        for proxy in &self.proxies {
            proxy.set(None);
        }
        for slot in 0..self.fleet.len() {
            self.fleet.resume(slot);
        }
        // Restart everything that is down; a worker still stopping gracefully is waited for.
        let deadline = Instant::now() + Duration::from_secs(90);
        while (0..self.fleet.len()).any(|s| self.fleet.state(s) != SlotState::Running) && Instant::now() < deadline {
            for slot in 0..self.fleet.len() {
                self.fleet.start(slot).await?;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(log)
    }

    fn draw(&mut self) -> Action {
        let total: u64 = WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.below(total);
        for (action, weight) in WEIGHTS {
            if pick < weight {
                return action;
            }
            pick -= weight;
        }
        Action::Faults
    }

    async fn follow_up(&mut self, follow_up: FollowUp) -> Result<Option<FollowUp>, String> {
        match follow_up {
            FollowUp::Restart(slot) => {
                // Still shutting down gracefully: try again a bit later.
                if !self.fleet.start(slot).await? && self.fleet.state(slot) == SlotState::Stopping {
                    return Ok(Some(FollowUp::Restart(slot)));
                }
            }
            FollowUp::Resume(slot) => self.fleet.resume(slot),
            FollowUp::FaultsOff(proxy) => self.proxies[proxy].set(None),
        }
        Ok(None)
    }

    async fn act(
        &mut self,
        action: Action,
        now: Instant,
        log: &mut ChaosLog,
        pending: &mut Vec<(Instant, FollowUp)>,
    ) -> Result<(), String> {
        let restart_after = self.between(Duration::from_secs(1), Duration::from_secs(5));
        match action {
            Action::Kill | Action::Term | Action::Pause => {
                let Some(slot) = self.pick_running() else {
                    log.skipped.push(format!("{action:?}: fewer than two workers running"));
                    return Ok(());
                };
                let worker = self.fleet.id(slot).to_owned();
                eprintln!("chaos: {action:?} {worker}");
                match action {
                    Action::Kill => {
                        log.kills.push((worker, now_us()));
                        self.fleet.kill(slot).await;
                        pending.push((now + restart_after, FollowUp::Restart(slot)));
                    }
                    Action::Term => {
                        log.terms.push((worker, now_us()));
                        self.fleet.term(slot);
                        pending.push((now + restart_after, FollowUp::Restart(slot)));
                    }
                    _ => {
                        log.pauses.push((worker, now_us()));
                        self.fleet.pause(slot);
                        let pause = self.between(self.lease * 6 / 5, self.lease * 5 / 2);
                        pending.push((now + pause, FollowUp::Resume(slot)));
                    }
                }
            }
            Action::Split | Action::Merge => {
                let open = match reshard::open_shards(self.kinesis, self.stream).await {
                    Ok(open) => open.len(),
                    Err(error) => {
                        log.skipped.push(error);
                        return Ok(());
                    }
                };
                let split = match action {
                    Action::Split if open < MAX_OPEN => true,
                    Action::Merge if open > MIN_OPEN => false,
                    // At a bound: do the other one.
                    _ => open <= MIN_OPEN,
                };
                let done = if split {
                    reshard::split(self.kinesis, self.stream, &mut self.rng).await.map(|p| format!("split {p}"))
                } else {
                    reshard::merge(self.kinesis, self.stream, &mut self.rng)
                        .await
                        .map(|(a, b)| format!("merge {a} {b}"))
                };
                match done {
                    Ok(what) => {
                        eprintln!("chaos: {what}");
                        if split {
                            log.splits += 1;
                        } else {
                            log.merges += 1;
                        }
                    }
                    Err(error) => log.skipped.push(error),
                }
            }
            Action::Faults => {
                let choice = self.rng.below(3) as usize;
                let targets: Vec<usize> = match choice {
                    2 => (0..self.proxies.len()).collect(),
                    one => vec![one.min(self.proxies.len() - 1)],
                };
                let rate = [0.15, 0.4, 1.0][self.rng.below(3) as usize];
                let window = self.between(Duration::from_secs(2), Duration::from_secs(if rate < 1.0 { 10 } else { 5 }));
                for proxy in targets {
                    eprintln!("chaos: faults on proxy {proxy} at rate {rate} for {window:?}");
                    self.proxies[proxy].set(Some(FaultPlan::mixed(rate, self.delay)));
                    log.fault_windows += 1;
                    pending.push((now + window, FollowUp::FaultsOff(proxy)));
                }
            }
            Action::ConditionStorm => {
                let window = self.between(Duration::from_secs(2), Duration::from_secs(6));
                let Some(proxy) = self.proxies.get(LEASE_TABLE_PROXY) else {
                    log.skipped.push("condition storm: no lease-table proxy".to_owned());
                    return Ok(());
                };
                eprintln!("chaos: conditional-check storm on the lease table for {window:?}");
                // A window already open on that proxy ends when this one does.
                proxy.set(Some(FaultPlan::condition_storm(0.5)));
                log.condition_storms += 1;
                pending.push((now + window, FollowUp::FaultsOff(LEASE_TABLE_PROXY)));
            }
        }
        Ok(())
    }
}
