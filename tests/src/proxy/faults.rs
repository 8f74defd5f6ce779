//! What the proxy injects and when: [`FaultKind`], a [`FaultPlan`] (how often, which kinds, how long a delay), and
//! the [`FaultControl`] switch a test flips at run time, which draws each request's fate from a seeded generator and
//! counts what it injected.
//!
//! The draws are a fixed sequence for a seed; which request gets which draw depends on the order requests arrive,
//! which concurrent clients make nondeterministic. A seed therefore fixes the fault mix, not the exact victims.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Which service the proxy stands in front of: decides the error bodies' shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Kinesis (awsJson 1.1).
    Kinesis,
    /// DynamoDB (awsJson 1.0).
    DynamoDb,
}

/// One kind of injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// HTTP 400 `ProvisionedThroughputExceededException` (Kinesis and DynamoDB), not forwarded.
    ProvisionedThroughputExceeded,
    /// HTTP 400 `ThrottlingException` (DynamoDB's request-rate throttle), not forwarded.
    Throttling,
    /// HTTP 500 internal failure, not forwarded.
    InternalError,
    /// HTTP 503 service unavailable, not forwarded.
    ServiceUnavailable,
    /// Forwarded (so it takes effect), but the answer is held back for the plan's delay: beyond the client's timeout,
    /// the client sees a timeout for a request that was carried out.
    Delay,
    /// Forwarded, then the connection is closed half-way through the response body.
    DropMidResponse,
    /// Forwarded; a successful answer's `Records` list loses its last entry before it is passed on: a `PutRecords`
    /// answer with fewer results than entries sent (answers without such a list pass untouched). Never drawn by
    /// [`FaultPlan::mixed`]: ask for it with [`FaultPlan::always`].
    ShortRecordsAnswer,
    /// HTTP 400 `ConditionalCheckFailedException` for a DynamoDB request with a `ConditionExpression`, not forwarded:
    /// a conditional write refused although nothing changed (what a worker sees when it loses a race, or a
    /// conditional-check storm). Other requests pass untouched. Never drawn by [`FaultPlan::mixed`]:
    /// see [`FaultPlan::condition_storm`].
    ConditionalCheckFailed,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 8] = [
        Self::ProvisionedThroughputExceeded,
        Self::Throttling,
        Self::InternalError,
        Self::ServiceUnavailable,
        Self::Delay,
        Self::DropMidResponse,
        Self::ShortRecordsAnswer,
        Self::ConditionalCheckFailed,
    ];

    /// Whether the proxy answers itself, without forwarding the request.
    pub fn answers_itself(self) -> bool {
        !matches!(self, Self::Delay | Self::DropMidResponse | Self::ShortRecordsAnswer)
    }

    /// The synthetic response for a kind that [answers itself](Self::answers_itself).
    pub(crate) fn response(self, flavor: Flavor, n: u64) -> Vec<u8> {
        let (status, kinesis_type, dynamo_type, message) = match self {
            Self::ProvisionedThroughputExceeded => (
                "400 Bad Request",
                "ProvisionedThroughputExceededException",
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "Rate exceeded (injected by the test proxy)",
            ),
            Self::Throttling => (
                "400 Bad Request",
                "ThrottlingException",
                "com.amazon.coral.availability#ThrottlingException",
                "Rate of requests exceeds the allowed throughput (injected by the test proxy)",
            ),
            Self::InternalError => (
                "500 Internal Server Error",
                "InternalFailure",
                "com.amazonaws.dynamodb.v20120810#InternalServerError",
                "Internal failure (injected by the test proxy)",
            ),
            Self::ConditionalCheckFailed => (
                "400 Bad Request",
                "ConditionalCheckFailedException",
                "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                "The conditional request failed (injected by the test proxy)",
            ),
            Self::ServiceUnavailable | Self::Delay | Self::DropMidResponse | Self::ShortRecordsAnswer => (
                "503 Service Unavailable",
                "ServiceUnavailable",
                "com.amazonaws.dynamodb.v20120810#ServiceUnavailable",
                "Service unavailable (injected by the test proxy)",
            ),
        };
        let (content_type, error_type) = match flavor {
            Flavor::Kinesis => ("application/x-amz-json-1.1", kinesis_type),
            Flavor::DynamoDb => ("application/x-amz-json-1.0", dynamo_type),
        };
        let body = serde_json::json!({"__type": error_type, "message": message}).to_string();
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             x-amzn-RequestId: injected-{n}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// What marks a DynamoDB request as a conditional write (its JSON field name, quoted).
const CONDITION: &[u8] = b"\"ConditionExpression\"";

/// How often and how a proxy misbehaves while its faults are switched on.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultPlan {
    /// Probability (0..=1) that a request gets a fault.
    pub rate: f64,
    /// The kinds to choose from, with weights.
    pub kinds: Vec<(FaultKind, u32)>,
    /// How long a [`FaultKind::Delay`] holds the response back.
    pub delay: Duration,
    /// How many faults to inject before passing everything again; `None`: no limit.
    pub budget: Option<u64>,
}

impl FaultPlan {
    /// Every request gets `kind`.
    pub fn always(kind: FaultKind, delay: Duration) -> Self {
        Self { rate: 1.0, kinds: vec![(kind, 1)], delay, budget: None }
    }

    /// The same plan, for the next `faults` faults only.
    pub fn limited(self, faults: u64) -> Self {
        Self { budget: Some(faults), ..self }
    }

    /// A share `rate` of requests get a fault of any kind: throttling most often, as in real life.
    pub fn mixed(rate: f64, delay: Duration) -> Self {
        use FaultKind::*;
        let kinds = vec![
            (ProvisionedThroughputExceeded, 4),
            (Throttling, 2),
            (InternalError, 2),
            (ServiceUnavailable, 2),
            (Delay, 1),
            (DropMidResponse, 1),
        ];
        Self { rate, kinds, delay, budget: None }
    }

    /// A share `rate` of DynamoDB conditional writes refused with `ConditionalCheckFailedException` although their
    /// condition held; everything else passes.
    pub fn condition_storm(rate: f64) -> Self {
        Self { rate, kinds: vec![(FaultKind::ConditionalCheckFailed, 1)], delay: Duration::ZERO, budget: None }
    }
}

/// What a proxy has seen and done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests received.
    pub requests: u64,
    /// Faults injected, by kind.
    pub injected: BTreeMap<FaultKind, u64>,
}

impl FaultStats {
    /// Faults injected, all kinds together.
    pub fn total_injected(&self) -> u64 {
        self.injected.values().sum()
    }
}

struct State {
    plan: Option<FaultPlan>,
    rng: SplitMix64,
    stats: FaultStats,
}

/// The run-time switch of one proxy: which plan applies (none = pass everything through), and the counts.
pub struct FaultControl {
    state: Mutex<State>,
}

impl FaultControl {
    /// Faults off; draws seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: Mutex::new(State { plan: None, rng: SplitMix64(seed), stats: FaultStats::default() }) }
    }

    /// Switches faults on with `plan`, or off with `None`.
    pub fn set(&self, plan: Option<FaultPlan>) {
        self.lock().plan = plan;
    }

    /// The plan in force.
    pub fn plan(&self) -> Option<FaultPlan> {
        self.lock().plan.clone()
    }

    /// The counts so far.
    pub fn stats(&self) -> FaultStats {
        self.lock().stats.clone()
    }

    /// Decides the fate of the next request: `None` to forward it untouched. Counts it.
    pub fn decide(&self) -> Option<(FaultKind, Duration, u64)> {
        self.decide_for(&[])
    }

    /// [`decide`](Self::decide) for a request with this body: [`FaultKind::ConditionalCheckFailed`] applies only to
    /// a body holding a `ConditionExpression` (others pass untouched, and are not counted as injected).
    pub fn decide_for(&self, body: &[u8]) -> Option<(FaultKind, Duration, u64)> {
        let mut state = self.lock();
        state.stats.requests += 1;
        let n = state.stats.requests;
        let plan = state.plan.clone()?;
        let total: u64 = plan.kinds.iter().map(|(_, w)| u64::from(*w)).sum();
        // Draw both numbers on every request, so a seed gives the same sequence whatever the plan.
        let hit = state.rng.unit() < plan.rate;
        let mut pick = if total == 0 { 0 } else { state.rng.next() % total };
        if !hit || total == 0 || plan.budget == Some(0) {
            return None;
        }
        let kind = plan.kinds.iter().find_map(|(kind, weight)| {
            let chosen = pick < u64::from(*weight);
            pick = pick.saturating_sub(u64::from(*weight));
            chosen.then_some(*kind)
        })?;
        // Only a conditional write can fail its condition; the body is searched only when that is the fault drawn.
        if kind == FaultKind::ConditionalCheckFailed && !body.windows(CONDITION.len()).any(|w| w == CONDITION) {
            return None;
        }
        if let Some(budget) = state.plan.as_mut().and_then(|p| p.budget.as_mut()) {
            *budget -= 1;
        }
        *state.stats.injected.entry(kind).or_default() += 1;
        Some((kind, plan.delay, n))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// SplitMix64: tiny and reproducible; enough for fault schedules.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `[0, n)` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_schedule_and_off_means_nothing_injected() {
        let draw = |seed| {
            let control = FaultControl::new(seed);
            control.set(Some(FaultPlan::mixed(0.5, Duration::from_secs(1))));
            (0..200).map(|_| control.decide().map(|(kind, _, _)| kind)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let faults = draw(7).iter().flatten().count();
        assert!((60..140).contains(&faults), "about half of 200 requests get a fault, got {faults}");
        assert_eq!(draw(7).iter().flatten().collect::<std::collections::HashSet<_>>().len(), 6, "all kinds occur");

        let control = FaultControl::new(1);
        assert!((0..50).all(|_| control.decide().is_none()));
        control.set(Some(FaultPlan::always(FaultKind::Throttling, Duration::ZERO)));
        assert!((0..50).all(|_| control.decide().map(|d| d.0) == Some(FaultKind::Throttling)));
        control.set(None);
        assert!(control.decide().is_none());
        let stats = control.stats();
        assert_eq!((stats.requests, stats.total_injected()), (101, 50));
        control.set(Some(FaultPlan::always(FaultKind::InternalError, Duration::ZERO).limited(2)));
        let decided: Vec<bool> = (0..4).map(|_| control.decide().is_some()).collect();
        assert_eq!(decided, [true, true, false, false], "a limited plan stops after its budget");
    }

    #[test]
    fn a_condition_storm_refuses_only_conditional_writes() {
        let control = FaultControl::new(3);
        control.set(Some(FaultPlan::condition_storm(1.0)));
        let write = br##"{"TableName":"t","ConditionExpression":"#c = :c","UpdateExpression":"SET #c = :n"}"##;
        let read = br#"{"TableName":"t","ConsistentRead":true}"#;
        assert_eq!(control.decide_for(write).map(|d| d.0), Some(FaultKind::ConditionalCheckFailed));
        assert_eq!(control.decide_for(read), None);
        assert_eq!(control.decide(), None);
        let stats = control.stats();
        assert_eq!((stats.requests, stats.total_injected()), (3, 1));
        let text = String::from_utf8(FaultKind::ConditionalCheckFailed.response(Flavor::DynamoDb, 1)).unwrap();
        assert!(text.contains("#ConditionalCheckFailedException"), "{text}");
    }

    #[test]
    fn synthetic_responses_carry_the_service_error_type() {
        let text = String::from_utf8(FaultKind::Throttling.response(Flavor::DynamoDb, 3)).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("ThrottlingException"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let text = String::from_utf8(FaultKind::InternalError.response(Flavor::Kinesis, 4)).unwrap();
        assert!(text.starts_with("HTTP/1.1 500 "));
    }
}
