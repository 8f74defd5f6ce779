//! Table tests of the load-aware decision: single runs with exact moves, and fleets simulated run after run (CPU
//! proportional to assigned throughput) to check where they settle.

use super::*;

fn worker(id: &str, utilization: Option<f64>) -> WorkerLoad {
    WorkerLoad { worker_id: id.to_owned(), utilization, max_utilization: 100.0 }
}

fn lease(key: &str, owner: Option<&str>, kbps: Option<f64>, expired: bool) -> LeaseLoad {
    LeaseLoad { lease_key: key.to_owned(), owner: owner.map(str::to_owned), throughput_kbps: kbps, expired }
}

fn moved(moves: &[Move]) -> Vec<(String, Option<String>, String)> {
    moves.iter().map(|m| (m.lease_key.clone(), m.from.clone(), m.to.clone())).collect()
}

fn expect(moves: &[(&str, Option<&str>, &str)]) -> Vec<(String, Option<String>, String)> {
    moves.iter().map(|(k, f, t)| (k.to_string(), f.map(str::to_owned), t.to_string())).collect()
}

/// (lease, from, to)
type Moves = Vec<(&'static str, Option<&'static str>, &'static str)>;
/// (what it shows, workers, leases, knobs, expected moves)
type Case = (&'static str, Vec<WorkerLoad>, Vec<LeaseLoad>, LoadKnobs, Moves);

#[test]
fn single_runs_move_exactly_these_leases() {
    let three_at_20: Vec<WorkerLoad> = ["w1", "w2", "w3"].iter().map(|w| worker(w, Some(20.0))).collect();
    let idle: Vec<WorkerLoad> = ["w1", "w2", "w3", "w4"].iter().map(|w| worker(w, None)).collect();
    let capped = LoadKnobs { max_throughput_per_host_kbps: Some(100.0), ..LoadKnobs::default() };
    let two_leases = LoadKnobs { max_leases_for_worker: Some(2), ..LoadKnobs::default() };
    let cases: Vec<Case> = vec![
        (
            "a dead worker's expired leases go to live workers, one each while they have the most room",
            three_at_20.clone(),
            vec![
                lease("a1", Some("w1"), Some(100.0), false),
                lease("a2", Some("w1"), Some(100.0), false),
                lease("b1", Some("w2"), Some(100.0), false),
                lease("b2", Some("w2"), Some(100.0), false),
                lease("c1", Some("w3"), Some(100.0), false),
                lease("c2", Some("w3"), Some(100.0), false),
                lease("d1", Some("dead"), Some(100.0), true),
                lease("d2", Some("dead"), Some(100.0), true),
            ],
            LoadKnobs::default(),
            vec![("d1", Some("dead"), "w1"), ("d2", Some("dead"), "w2")],
        ),
        (
            "a dead worker's lease that has not expired yet stays until it does",
            three_at_20,
            vec![lease("a1", Some("w1"), Some(100.0), false), lease("d1", Some("dead"), Some(100.0), false)],
            LoadKnobs::default(),
            vec![],
        ),
        (
            "start-up: unknown throughput, no utilization: dealt round",
            idle,
            (0..8).map(|i| lease(&format!("s{i}"), None, None, false)).collect(),
            LoadKnobs::default(),
            vec![
                ("s0", None, "w1"),
                ("s1", None, "w2"),
                ("s2", None, "w3"),
                ("s3", None, "w4"),
                ("s4", None, "w1"),
                ("s5", None, "w2"),
                ("s6", None, "w3"),
                ("s7", None, "w4"),
            ],
        ),
        (
            "maxThroughputPerHostKBps: a worker past it receives nothing more; the rest spills over",
            vec![worker("w1", Some(0.0))],
            (0..3).map(|i| lease(&format!("s{i}"), None, Some(60.0), false)).collect(),
            capped,
            vec![("s0", None, "w1"), ("s1", None, "w1")],
        ),
        (
            "maxLeasesForWorker caps receivers",
            vec![worker("w1", Some(0.0))],
            (0..3).map(|i| lease(&format!("s{i}"), None, Some(60.0), false)).collect(),
            two_leases,
            vec![("s0", None, "w1"), ("s1", None, "w1")],
        ),
        (
            "within reBalanceThresholdPercentage of the mean: no move, however uneven the lease counts",
            vec![worker("w1", Some(24.0)), worker("w2", Some(26.0))],
            vec![
                lease("a1", Some("w1"), Some(10.0), false),
                lease("b1", Some("w2"), Some(10.0), false),
                lease("b2", Some("w2"), Some(10.0), false),
                lease("b3", Some("w2"), Some(10.0), false),
            ],
            LoadKnobs::default(),
            vec![],
        ),
        (
            "a worker above its operating range gives up load even near the mean",
            vec![
                WorkerLoad { worker_id: "w1".into(), utilization: Some(85.0), max_utilization: 80.0 },
                worker("w2", Some(75.0)),
            ],
            vec![
                lease("a1", Some("w1"), Some(50.0), false),
                lease("a2", Some("w1"), Some(2.0), false),
                lease("b1", Some("w2"), Some(60.0), false),
            ],
            LoadKnobs::default(),
            vec![("a2", Some("w1"), "w2")],
        ),
    ];
    for (name, workers, leases, knobs, expected) in cases {
        assert_eq!(moved(&decide(&workers, &leases, &knobs, true)), expect(&expected), "{name}");
    }
}

/// A fleet run after run: each worker's CPU is its assigned throughput over a 1000 KBps capacity, the decision's
/// moves are applied to `leases`, and balancing runs every `variance_balancing_frequency`-th run. Returns how many
/// moves each run made.
fn simulate(workers: &[&str], leases: &mut [LeaseLoad], runs: u64) -> Vec<usize> {
    let knobs = LoadKnobs::default();
    let mut moves_per_run = Vec::new();
    for run in 0..runs {
        let loads: Vec<WorkerLoad> = workers
            .iter()
            .map(|w| {
                let kbps: f64 =
                    leases.iter().filter(|l| l.owner.as_deref() == Some(*w)).filter_map(|l| l.throughput_kbps).sum();
                worker(w, Some(kbps / 1000.0 * 100.0))
            })
            .collect();
        let moves = decide(&loads, leases, &knobs, knobs.balances_on(run));
        for m in &moves {
            let lease = leases.iter_mut().find(|l| l.lease_key == m.lease_key).unwrap();
            assert_eq!(lease.owner, m.from, "a move starts from the current owner");
            (lease.owner, lease.expired) = (Some(m.to.clone()), false);
        }
        moves_per_run.push(moves.len());
    }
    moves_per_run
}

fn loads(workers: &[&str], leases: &[LeaseLoad]) -> Vec<f64> {
    workers
        .iter()
        .map(|w| leases.iter().filter(|l| l.owner.as_deref() == Some(*w)).filter_map(|l| l.throughput_kbps).sum())
        .collect()
}

#[test]
fn simulated_fleets_settle_near_the_best_balance_and_then_stop_moving() {
    let workers = ["w1", "w2", "w3", "w4"];
    // (name, leases (key, first owner, KBps))
    let skewed: Vec<(&str, &str, f64)> = vec![
        ("hot1", "w1", 400.0),
        ("hot2", "w1", 400.0),
        ("c1", "w1", 200.0 / 6.0),
        ("c2", "w1", 200.0 / 6.0),
        ("c3", "w1", 200.0 / 6.0),
        ("c4", "w1", 200.0 / 6.0),
        ("c5", "w1", 200.0 / 6.0),
        ("c6", "w1", 200.0 / 6.0),
    ];
    let count_balanced_skew: Vec<(&str, &str, f64)> = vec![
        ("hot1", "w1", 400.0),
        ("hot2", "w1", 400.0),
        ("c1", "w2", 200.0 / 6.0),
        ("c2", "w2", 200.0 / 6.0),
        ("c3", "w3", 200.0 / 6.0),
        ("c4", "w3", 200.0 / 6.0),
        ("c5", "w4", 200.0 / 6.0),
        ("c6", "w4", 200.0 / 6.0),
    ];
    // 8 leases, 2 carrying 40 % of the bytes: a mean share (25 %) is reachable.
    let mild: Vec<(&str, &str, f64)> = vec![
        ("hot1", "w1", 200.0),
        ("hot2", "w1", 200.0),
        ("c1", "w1", 100.0),
        ("c2", "w1", 100.0),
        ("c3", "w1", 100.0),
        ("c4", "w1", 100.0),
        ("c5", "w2", 100.0),
        ("c6", "w2", 100.0),
    ];
    let even: Vec<(&str, &str, f64)> = ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"]
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, workers[i / 2], 50.0))
        .collect();
    for (name, spec) in [
        ("2 of 8 leases carry 80 % of the bytes, all on one worker", skewed),
        ("2 of 8 leases carry 80 % of the bytes, both hot ones on one worker", count_balanced_skew),
        ("2 of 8 leases carry 40 % of the bytes", mild),
        ("already even", even),
    ] {
        let mut leases: Vec<LeaseLoad> =
            spec.iter().map(|(key, owner, kbps)| lease(key, Some(owner), Some(*kbps), false)).collect();
        let moves = simulate(&workers, &mut leases, 30);
        let per_worker = loads(&workers, &leases);
        let mean = per_worker.iter().sum::<f64>() / workers.len() as f64;
        let largest = leases.iter().filter_map(|l| l.throughput_kbps).fold(0.0, f64::max);
        // No assignment can put less than the mean, or less than the largest lease, on its busiest worker.
        let best = mean.max(largest);
        let max = per_worker.iter().copied().fold(0.0, f64::max);
        assert!(max <= 1.25 * best, "{name}: loads {per_worker:?}, best possible max {best}");
        assert!(moves[moves.len() - 9..].iter().all(|&n| n == 0), "{name}: still moving after settling: {moves:?}");
    }
}
