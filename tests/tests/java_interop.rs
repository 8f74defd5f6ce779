//! kcl-rs beside the real Java KCL (amazon-kinesis-client 2.7.2 and 3.5.1, the peer in `interop/java-kcl/`, built
//! by Maven): migration both ways, a mixed fleet, a Java 3.x fleet that kcl-rs must refuse to join, and `kcl-admin`
//! on a table a live Java fleet writes. Every run is judged by the chaos verifier's delivery rules (every record
//! delivered, first deliveries in order per key, every duplicate explained, final checkpoints right). Needs Maven and
//! Java 17 (scripts/test builds the peer); never skipped.

#[path = "java_interop/admin.rs"]
mod admin;
#[path = "java_interop/common.rs"]
mod common;
#[path = "java_interop/fleet_3x.rs"]
mod fleet_3x;
#[path = "java_interop/migration.rs"]
mod migration;
#[path = "java_interop/mixed_fleet.rs"]
mod mixed_fleet;
