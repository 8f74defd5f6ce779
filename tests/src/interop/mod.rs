//! Interop with the real Java KCL: the Java KCL peer application (`interop/java-kcl/`, built by Maven), a fleet of
//! worker processes mixing it with kcl-rs's `verify-worker`, a producer of (mostly KPL-aggregated) records, and the
//! judge that feeds everything they left to the chaos verifier ([`crate::verify`]).
//!
//! Both kinds of worker write the same evidence: one output line per processed user record, fsynced before the
//! checkpoint that covers it, and a lifecycle journal (`init`, `cp`/`cp_done`, `end`, `start`/`exit`). Java KCL's
//! lease writes happen inside its lease coordinator and are not journaled, so a mixed fleet is judged on deliveries
//! and final checkpoints ([`crate::verify::verify_deliveries`]), not on the rebuilt lease history.

mod fleet;
mod judge;
mod peer;
mod producer;

pub use fleet::{Fleet, Kind, Spec};
pub use judge::{Judged, judge, lease_owners, leases, wait_all_delivered, wait_deliveries};
pub use peer::{JavaBuild, java_peer};
pub use producer::Producer;
