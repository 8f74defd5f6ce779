//! Lease assignment: which leases this worker takes, which it steals toward a balanced fleet, and whom a stopping
//! worker hands its leases to. **Balancing is changed here and only here.**
//!
//! * [`seam`]: what a policy sees ([`Fleet`]: the listing with the fleet view's expiry verdicts, live workers, this
//!   worker's slots) and answers ([`Plan`], a receiver): the [`LeaseAssignment`] trait.
//! * [`count`]: [`CountBased`], Java KCL 2.x's take-expired-then-steal-toward-even-counts, the policy in use.
//! * [`for_config`] picks the policy a coordinator runs with.
//!
//! The taker and the shutdown hand-over call the policy; they keep only what is not a balancing choice (when to
//! look, how to write the takes and steals safely).

mod count;
mod load;
mod seam;

pub(crate) use self::seam::{Fleet, LeaseAssignment, Local};

use self::count::CountBased;
use super::config::LeaseCoordinatorConfig;

/// The policy a coordinator with `config` runs.
pub(crate) fn for_config(config: &LeaseCoordinatorConfig) -> Box<dyn LeaseAssignment> {
    Box::new(CountBased::new(config))
}
