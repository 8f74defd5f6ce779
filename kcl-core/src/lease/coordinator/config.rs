//! [`LeaseCoordinatorConfig`]: timing and balancing settings, with Java KCL's names and defaults.

use std::time::Duration;

use crate::error::KclError;

/// How a worker proves to the fleet that it is alive and still owns its leases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RenewalMode {
    /// Renew every held lease once per renewal interval (a conditional write that bumps its counter), exactly as
    /// Java KCL does. Others judge a lease expired when its counter has not changed for `lease_duration`.
    ///
    /// **Required when Java KCL workers share the lease table**: they understand nothing else. Costs one write per
    /// lease per renewal interval (≈ 1090 writes per lease-hour at KCL's 10 s failover time).
    #[default]
    PerLease,
    /// Renew one heartbeat item per worker per renewal interval; a worker's leases stay valid while its heartbeat
    /// does. Others judge a lease expired when its owner's heartbeat has not changed for `lease_duration` (or the owner
    /// has had no heartbeat at all for `lease_duration` since first seen) *and* the lease's own counter has not
    /// changed for `lease_duration`. Checkpoints are still fenced per lease by owner and counter.
    ///
    /// Writes drop from one per lease to one per worker per interval (20× fewer for 20 leases per worker, more with
    /// the longer default interval). The price: an old owner learns about a handoff by polling instead of from a
    /// failed renewal, and Java KCL workers must not share the table (they would see static counters and take
    /// every lease).
    WorkerHeartbeat,
}

/// Java KCL's `epsilonMillis`: slack subtracted from the renewal interval and added to the take interval.
pub const DEFAULT_EPSILON: Duration = Duration::from_millis(25);
/// Java KCL's `failoverTimeMillis` default.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(10);
/// Java KCL 3.x's graceful lease handoff timeout.
pub const DEFAULT_HANDOFF_TIMEOUT: Duration = Duration::from_secs(30);
/// The default (upper bound of the) assignment poll interval.
pub const DEFAULT_ASSIGNMENT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Settings of a [`LeaseCoordinator`](super::LeaseCoordinator). Build one with [`LeaseCoordinatorConfig::builder`];
/// [`Default`] gives Java KCL's defaults.
///
/// | setting | Java KCL name | default |
/// |---|---|---|
/// | [`lease_duration`](Self::lease_duration) | `failoverTimeMillis` | 10 s |
/// | [`epsilon`](Self::epsilon) | `epsilonMillis` | 25 ms |
/// | [`renewal_interval`](Self::renewal_interval) | `leaseRenewalIntervalMillis` = failover / 3 − epsilon | per-lease: 3308 ms; heartbeat: lease_duration / 2 − epsilon = 4975 ms |
/// | [`take_interval`](Self::take_interval) | `takerIntervalMillis` = 2 × (failover + epsilon) | 20050 ms |
/// | [`max_leases_for_worker`](Self::max_leases_for_worker) | `maxLeasesForWorker` | unlimited |
/// | [`max_leases_to_steal_at_one_time`](Self::max_leases_to_steal_at_one_time) | `maxLeasesToStealAtOneTime` | 1 |
/// | [`renewal_mode`](Self::renewal_mode) | — | [`RenewalMode::PerLease`] |
/// | [`safety_margin`](Self::safety_margin) | — (KCL does not self-fence) | lease_duration / 10 = 1 s |
/// | [`handoff_timeout`](Self::handoff_timeout) | 3.x graceful handoff timeout | 30 s |
/// | [`assignment_poll_interval`](Self::assignment_poll_interval) | — | min(500 ms, (lease_duration − safety_margin) / 2) |
///
/// Intervals not set follow the lease duration, as in Java KCL; inconsistent settings are refused:
///
/// ```
/// use std::time::Duration;
/// use kcl_core::lease::coordinator::{LeaseCoordinatorConfig, RenewalMode};
///
/// let config = LeaseCoordinatorConfig::builder()
///     .lease_duration(Duration::from_secs(3))
///     .renewal_mode(RenewalMode::WorkerHeartbeat)
///     .build()?;
/// assert_eq!(config.take_interval(), Duration::from_millis(6050)); // 2 × (3 s + 25 ms)
/// assert_eq!(config.renewal_interval(), Duration::from_millis(1475)); // heartbeat: 3 s / 2 − 25 ms
///
/// let too_slow = LeaseCoordinatorConfig::builder()
///     .lease_duration(Duration::from_secs(3))
///     .renewal_interval(Duration::from_secs(4))
///     .build();
/// assert!(too_slow.is_err(), "a renewal interval longer than the lease would let every lease expire");
/// # Ok::<(), kcl_core::KclError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseCoordinatorConfig {
    lease_duration: Duration,
    epsilon: Duration,
    renewal_interval: Duration,
    take_interval: Duration,
    max_leases_for_worker: Option<usize>,
    max_leases_to_steal_at_one_time: usize,
    renewal_mode: RenewalMode,
    safety_margin: Duration,
    handoff_timeout: Duration,
    assignment_poll_interval: Option<Duration>,
}

impl Default for LeaseCoordinatorConfig {
    fn default() -> Self {
        // The builder's defaults always validate; this cannot fail, but a fallback keeps `Default` panic-free.
        LeaseCoordinatorConfigBuilder::default().build().unwrap_or_else(|_| Self::unchecked_kcl_defaults())
    }
}

impl LeaseCoordinatorConfig {
    /// A builder starting from Java KCL's defaults.
    pub fn builder() -> LeaseCoordinatorConfigBuilder {
        LeaseCoordinatorConfigBuilder::default()
    }

    fn unchecked_kcl_defaults() -> Self {
        Self {
            lease_duration: DEFAULT_LEASE_DURATION,
            epsilon: DEFAULT_EPSILON,
            renewal_interval: Duration::from_millis(3308),
            take_interval: Duration::from_millis(20050),
            max_leases_for_worker: None,
            max_leases_to_steal_at_one_time: 1,
            renewal_mode: RenewalMode::PerLease,
            safety_margin: Duration::from_secs(1),
            handoff_timeout: DEFAULT_HANDOFF_TIMEOUT,
            assignment_poll_interval: Some(DEFAULT_ASSIGNMENT_POLL_INTERVAL),
        }
    }

    /// How long a lease stays valid without a sign of life from its owner (`failoverTimeMillis`). Others take a
    /// lease once they have seen no change for this long, measured on their own monotonic clock.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// Java KCL's `epsilonMillis`, used to derive the default intervals.
    pub fn epsilon(&self) -> Duration {
        self.epsilon
    }

    /// How often held leases (per-lease mode) or the worker heartbeat (heartbeat mode) are renewed.
    pub fn renewal_interval(&self) -> Duration {
        self.renewal_interval
    }

    /// How often the lease table is listed to take expired leases and balance the fleet (`takerIntervalMillis`).
    pub fn take_interval(&self) -> Duration {
        self.take_interval
    }

    /// The most leases this worker holds (`maxLeasesForWorker`); `None` means unlimited.
    pub fn max_leases_for_worker(&self) -> Option<usize> {
        self.max_leases_for_worker
    }

    /// The most leases stolen in one take cycle (`maxLeasesToStealAtOneTime`); 0 disables stealing.
    pub fn max_leases_to_steal_at_one_time(&self) -> usize {
        self.max_leases_to_steal_at_one_time
    }

    /// Per-lease (KCL-compatible) or worker-heartbeat renewal.
    pub fn renewal_mode(&self) -> RenewalMode {
        self.renewal_mode
    }

    /// How long before others may take a lease this worker declares it lost: the time its pipeline has to stop
    /// processing after a `Lost` event, and the allowance for clock-rate differences between hosts.
    pub fn safety_margin(&self) -> Duration {
        self.safety_margin
    }

    /// How long a graceful handoff may wait for the old owner's final checkpoint.
    pub fn handoff_timeout(&self) -> Duration {
        self.handoff_timeout
    }

    /// How often the worker lists the leases it owns, to notice leases handed to it and handoffs in flight;
    /// `None` when polling is disabled (per-lease mode only).
    pub fn assignment_poll_interval(&self) -> Option<Duration> {
        self.assignment_poll_interval
    }

    /// The timeout of one point call to the store (get, renew, take, checkpoint). A call that outlives it is
    /// treated as transient with an unknown outcome; a renewal that late is useless anyway.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.renewal_interval.max(Duration::from_millis(100))
    }

    /// The timeout of a listing, which may page through the whole table.
    pub(crate) fn list_timeout(&self) -> Duration {
        self.take_interval.max(self.call_timeout())
    }

    /// The local lower bound on how long after our last sign of life others may move a lease that is in a
    /// graceful handoff: a new owner forcibly takes it `min(lease_duration, handoff_timeout)` after stealing it
    /// in per-lease mode.
    pub(crate) fn per_lease_validity(&self) -> Duration {
        self.lease_duration.min(self.handoff_timeout)
    }
}

/// Builder for [`LeaseCoordinatorConfig`]. Settings left unset are derived from `lease_duration` (and the renewal
/// mode) exactly as the table on [`LeaseCoordinatorConfig`] says.
#[derive(Clone, Debug, Default)]
pub struct LeaseCoordinatorConfigBuilder {
    lease_duration: Option<Duration>,
    epsilon: Option<Duration>,
    renewal_interval: Option<Duration>,
    take_interval: Option<Duration>,
    max_leases_for_worker: Option<usize>,
    max_leases_to_steal_at_one_time: Option<usize>,
    renewal_mode: RenewalMode,
    safety_margin: Option<Duration>,
    handoff_timeout: Option<Duration>,
    assignment_poll_interval: Option<Option<Duration>>,
}

impl LeaseCoordinatorConfigBuilder {
    /// Sets [`lease_duration`](LeaseCoordinatorConfig::lease_duration) (`failoverTimeMillis`).
    pub fn lease_duration(mut self, value: Duration) -> Self {
        self.lease_duration = Some(value);
        self
    }

    /// Sets [`epsilon`](LeaseCoordinatorConfig::epsilon) (`epsilonMillis`).
    pub fn epsilon(mut self, value: Duration) -> Self {
        self.epsilon = Some(value);
        self
    }

    /// Sets [`renewal_interval`](LeaseCoordinatorConfig::renewal_interval).
    pub fn renewal_interval(mut self, value: Duration) -> Self {
        self.renewal_interval = Some(value);
        self
    }

    /// Sets [`take_interval`](LeaseCoordinatorConfig::take_interval).
    pub fn take_interval(mut self, value: Duration) -> Self {
        self.take_interval = Some(value);
        self
    }

    /// Sets [`max_leases_for_worker`](LeaseCoordinatorConfig::max_leases_for_worker).
    pub fn max_leases_for_worker(mut self, value: usize) -> Self {
        self.max_leases_for_worker = Some(value);
        self
    }

    /// Sets [`max_leases_to_steal_at_one_time`](LeaseCoordinatorConfig::max_leases_to_steal_at_one_time).
    pub fn max_leases_to_steal_at_one_time(mut self, value: usize) -> Self {
        self.max_leases_to_steal_at_one_time = Some(value);
        self
    }

    /// Sets [`renewal_mode`](LeaseCoordinatorConfig::renewal_mode).
    pub fn renewal_mode(mut self, value: RenewalMode) -> Self {
        self.renewal_mode = value;
        self
    }

    /// Sets [`safety_margin`](LeaseCoordinatorConfig::safety_margin).
    pub fn safety_margin(mut self, value: Duration) -> Self {
        self.safety_margin = Some(value);
        self
    }

    /// Sets [`handoff_timeout`](LeaseCoordinatorConfig::handoff_timeout).
    pub fn handoff_timeout(mut self, value: Duration) -> Self {
        self.handoff_timeout = Some(value);
        self
    }

    /// Sets [`assignment_poll_interval`](LeaseCoordinatorConfig::assignment_poll_interval).
    pub fn assignment_poll_interval(mut self, value: Duration) -> Self {
        self.assignment_poll_interval = Some(Some(value));
        self
    }

    /// Disables assignment polling (per-lease mode only): leases handed over by a stopping worker are then noticed
    /// at the next take cycle instead of within a poll interval, and the fleet saves one read per worker per poll.
    pub fn disable_assignment_polling(mut self) -> Self {
        self.assignment_poll_interval = Some(None);
        self
    }

    /// Derives unset settings and validates the result.
    pub fn build(self) -> Result<LeaseCoordinatorConfig, KclError> {
        let lease_duration = self.lease_duration.unwrap_or(DEFAULT_LEASE_DURATION);
        let epsilon = self.epsilon.unwrap_or(DEFAULT_EPSILON);
        if lease_duration.is_zero() {
            return Err(invalid("lease_duration must be positive"));
        }
        if epsilon >= lease_duration / 4 && self.renewal_interval.is_none() {
            return Err(invalid(format!(
                "epsilon ({epsilon:?}) must be under a quarter of lease_duration ({lease_duration:?}) to derive the \
                 renewal interval; set renewal_interval explicitly or shrink epsilon"
            )));
        }
        let renewal_mode = self.renewal_mode;
        // Heartbeat mode renews one item per worker and retries it with backoff up to the fencing deadline, so it
        // can afford half the lease duration; per-lease mode keeps KCL's third, which its Java peers expect.
        let renewal_interval = self.renewal_interval.unwrap_or(match renewal_mode {
            RenewalMode::PerLease => whole_ms_div(lease_duration, 3).saturating_sub(epsilon),
            RenewalMode::WorkerHeartbeat => whole_ms_div(lease_duration, 2).saturating_sub(epsilon),
        });
        let take_interval = self.take_interval.unwrap_or((lease_duration + epsilon) * 2);
        let safety_margin = self.safety_margin.unwrap_or(whole_ms_div(lease_duration, 10));
        let handoff_timeout = self.handoff_timeout.unwrap_or(DEFAULT_HANDOFF_TIMEOUT);
        let validity = lease_duration.saturating_sub(safety_margin);
        let assignment_poll_interval =
            self.assignment_poll_interval.unwrap_or(Some(DEFAULT_ASSIGNMENT_POLL_INTERVAL.min(validity / 2)));
        let config = LeaseCoordinatorConfig {
            lease_duration,
            epsilon,
            renewal_interval,
            take_interval,
            max_leases_for_worker: self.max_leases_for_worker,
            max_leases_to_steal_at_one_time: self.max_leases_to_steal_at_one_time.unwrap_or(1),
            renewal_mode,
            safety_margin,
            handoff_timeout,
            assignment_poll_interval,
        };
        config.validate()?;
        Ok(config)
    }
}

impl LeaseCoordinatorConfig {
    fn validate(&self) -> Result<(), KclError> {
        let ld = self.lease_duration;
        if self.safety_margin >= ld / 2 {
            return Err(invalid(format!(
                "safety_margin ({:?}) must be less than half of lease_duration ({ld:?})",
                self.safety_margin
            )));
        }
        let validity = ld - self.safety_margin;
        if self.renewal_interval.is_zero() {
            return Err(invalid("renewal_interval must be positive"));
        }
        if self.renewal_interval >= validity {
            return Err(invalid(format!(
                "renewal_interval ({:?}) must be shorter than lease_duration − safety_margin ({validity:?}): a worker \
                 that has not renewed for that long declares its leases lost",
                self.renewal_interval
            )));
        }
        if self.take_interval.is_zero() {
            return Err(invalid("take_interval must be positive"));
        }
        if self.handoff_timeout.is_zero() {
            return Err(invalid("handoff_timeout must be positive"));
        }
        if self.max_leases_for_worker == Some(0) {
            return Err(invalid("max_leases_for_worker must be at least 1 (leave it unset for unlimited)"));
        }
        match self.assignment_poll_interval {
            Some(poll) if poll.is_zero() => return Err(invalid("assignment_poll_interval must be positive")),
            Some(poll) if poll >= validity => {
                return Err(invalid(format!(
                    "assignment_poll_interval ({poll:?}) must be shorter than lease_duration − safety_margin \
                     ({validity:?})"
                )));
            }
            None if self.renewal_mode == RenewalMode::WorkerHeartbeat => {
                return Err(invalid(
                    "WorkerHeartbeat mode needs assignment polling: old owners learn about handoffs by polling, and \
                     a worker only renews its heartbeat while its polls succeed",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Divides in whole milliseconds, as Java KCL's `long` arithmetic does (10000 / 3 = 3333).
fn whole_ms_div(value: Duration, divisor: u64) -> Duration {
    Duration::from_millis(u64::try_from(value.as_millis()).unwrap_or(u64::MAX) / divisor)
}

fn invalid(message: impl Into<String>) -> KclError {
    KclError::InvalidConfig(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn defaults_are_kcl_defaults() {
        let config = LeaseCoordinatorConfig::default();
        assert_eq!(config.lease_duration(), ms(10_000));
        assert_eq!(config.renewal_interval(), ms(3308));
        assert_eq!(config.take_interval(), ms(20_050));
        assert_eq!(config.max_leases_to_steal_at_one_time(), 1);
        assert_eq!(config.max_leases_for_worker(), None);
        assert_eq!(config.safety_margin(), ms(1000));
        assert_eq!(config.handoff_timeout(), ms(30_000));
        assert_eq!(config.assignment_poll_interval(), Some(ms(500)));
        assert_eq!(config, LeaseCoordinatorConfig::unchecked_kcl_defaults());
    }

    #[test]
    fn heartbeat_mode_derives_a_longer_interval() {
        let config = LeaseCoordinatorConfig::builder().renewal_mode(RenewalMode::WorkerHeartbeat).build().unwrap();
        assert_eq!(config.renewal_interval(), ms(4975));
    }

    #[test]
    fn short_durations_derive_proportionally() {
        let config = LeaseCoordinatorConfig::builder().lease_duration(ms(600)).build().unwrap();
        assert_eq!(config.renewal_interval(), ms(175));
        assert_eq!(config.take_interval(), ms(1250));
        assert_eq!(config.safety_margin(), ms(60));
        assert_eq!(config.assignment_poll_interval(), Some(ms(270)));
    }

    #[test]
    fn bad_values_are_rejected_with_the_setting_named() {
        let cases = [
            (LeaseCoordinatorConfig::builder().renewal_interval(ms(10_000)), "renewal_interval"),
            (LeaseCoordinatorConfig::builder().renewal_interval(ms(9_500)), "renewal_interval"),
            (LeaseCoordinatorConfig::builder().lease_duration(Duration::ZERO), "lease_duration"),
            (LeaseCoordinatorConfig::builder().safety_margin(ms(5_000)), "safety_margin"),
            (LeaseCoordinatorConfig::builder().take_interval(Duration::ZERO), "take_interval"),
            (LeaseCoordinatorConfig::builder().handoff_timeout(Duration::ZERO), "handoff_timeout"),
            (LeaseCoordinatorConfig::builder().max_leases_for_worker(0), "max_leases_for_worker"),
            (LeaseCoordinatorConfig::builder().assignment_poll_interval(ms(9_500)), "assignment_poll_interval"),
            (
                LeaseCoordinatorConfig::builder()
                    .renewal_mode(RenewalMode::WorkerHeartbeat)
                    .disable_assignment_polling(),
                "polling",
            ),
            (LeaseCoordinatorConfig::builder().lease_duration(ms(80)), "epsilon"),
        ];
        for (builder, needle) in cases {
            let message = builder.build().unwrap_err().to_string();
            assert!(message.contains(needle), "{message:?} should mention {needle}");
        }
    }
}
