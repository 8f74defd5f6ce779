//! Lifecycle of one shard on one worker: wait for the parents to finish → initialize → read, de-aggregate and
//! process batches → shard end | shutdown | handoff | lease lost. [`ShardConsumer`] runs it; the worker starts one
//! per lease it acquires and stops it through a [`StopSignal`].

mod consumer;
mod dispatch;
mod lane;
mod pause;
mod retry;
mod stop;
#[cfg(all(test, feature = "test-util"))]
mod tests;
mod watermark;

pub(crate) use consumer::{ConsumerExit, ShardConsumer, ShardLeaseControl};
pub(crate) use pause::PauseGate;
pub(crate) use stop::{StopReason, StopSignal};
