//! The `iot-postgres` example on the real PostgreSQL that `scripts/test` starts: two workers, worker-1 cut off from
//! the lease table after its first commit, and the table of readings per device and minute must equal the
//! generated traffic exactly — recomputed here from the same seed, and read from the database here, not taken from
//! the example's own verdict.

use std::collections::BTreeMap;
use std::process::Command;

use kcl_examples::iot::traffic::{TrafficConfig, generate};
use kcl_postgres_lease::tokio_postgres::{self, NoTls};

const URL_ENV: &str = "KCL_TEST_POSTGRES_URL";

#[tokio::test]
async fn device_minute_counts_are_exact_after_a_worker_is_cut_off() {
    let url = std::env::var(URL_ENV).unwrap_or_else(|_| {
        panic!("{URL_ENV} is not set: run this test through scripts/test (it installs and starts PostgreSQL)")
    });
    let prefix = format!("iot_test_{}", std::process::id());
    let (seed, devices, readings, interval_ms, start_ms) = (11u64, 8usize, 50usize, 7_000u64, 1_700_000_000_000u64);
    let output = Command::new(env!("CARGO_BIN_EXE_iot-postgres"))
        .args(["--postgres", &url, "--prefix", &prefix, "--crash"])
        .args(["--seed", &seed.to_string(), "--devices", &devices.to_string()])
        .args(["--readings", &readings.to_string(), "--interval-ms", &interval_ms.to_string()])
        .args(["--start-ms", &start_ms.to_string()])
        .output()
        .expect("run iot-postgres");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "iot-postgres failed:\n{stdout}\n{stderr}");
    assert!(stdout.starts_with("exactly-once:"), "{stdout}");
    assert!(stdout.contains("worker-1 was cut off"), "the crash happened: {stdout}");

    let traffic = generate(&TrafficConfig { seed, devices, readings_per_device: readings, start_ms, interval_ms });
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for reading in traffic.readings.iter().filter(|r| r.temp.is_some()) {
        *expected.entry((reading.device.clone(), (reading.timestamp_ms / 60_000) as i64)).or_default() += 1;
    }
    assert!(expected.len() > devices, "the readings span several minutes per device");

    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    let rows = client
        .query(&format!("SELECT device, minute, readings FROM {prefix}_minutes"), &[])
        .await
        .expect("the example's table");
    let stored: BTreeMap<(String, i64), i64> = rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
    assert_eq!(stored, expected, "every device-minute counted exactly once");
    let rejected: i64 =
        client.query_one(&format!("SELECT count(*) FROM {prefix}_rejected"), &[]).await.expect("rejected").get(0);
    assert_eq!(rejected, traffic.malformed.len() as i64, "every malformed record recorded once");
    client
        .batch_execute(&format!(
            "DROP TABLE {prefix}_minutes, {prefix}_rejected, {prefix}_leases, {prefix}_leases_heartbeats"
        ))
        .await
        .expect("drop the example's tables");
}
