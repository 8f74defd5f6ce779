//! The IoT telemetry the examples consume: devices publish over MQTT and a broker (for example EMQX) forwards each
//! message into Kinesis as JSON, with the device's MQTT client id as the partition key. Besides the [`Reading`] the
//! quickstart uses, this module holds the domain logic of the `iot-consumer` example: parsing EMQX readings and
//! MODE events ([`parse`](mod@parse)), per-device rolling windows and alert rules ([`window`]) and a seeded traffic generator
//! with its ground truth ([`traffic`]).

pub mod parse;
pub mod traffic;
pub mod window;

use serde::{Deserialize, Serialize};

pub use parse::{Measurement, ParseError, parse, wanted};
pub use traffic::{Traffic, TrafficConfig};
pub use window::{Alert, AlertKind, AlertRules, DeviceSummary, Monitor, Stats};

/// One temperature/humidity reading, as the broker forwards it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Milliseconds since the Unix epoch, set by the device.
    pub timestamp: u64,
    /// The MQTT client id of the device (also the partition key).
    pub client_id: String,
    /// Temperature in °C.
    pub temp: f64,
    /// Relative humidity in %.
    pub hum: f64,
    /// A per-device message counter (lets the examples check order and completeness).
    pub seq: u64,
}

impl Reading {
    /// A deterministic synthetic reading for device `device` and message number `seq`.
    pub fn synthetic(device: usize, seq: u64, timestamp: u64) -> Self {
        let phase = (seq as f64 / 10.0) + device as f64;
        Self {
            timestamp,
            client_id: format!("device-{device:03}"),
            temp: 21.0 + 4.0 * phase.sin(),
            hum: 45.0 + 10.0 * phase.cos(),
            seq,
        }
    }
}
