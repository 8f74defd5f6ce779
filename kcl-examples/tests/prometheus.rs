//! The `prometheus` example serves the framework's metrics: started in memory on an ephemeral port, it prints the
//! endpoint, and a plain HTTP/1.1 scrape of `/metrics` shows `kcl_records_processed_total` climbing above zero in
//! the Prometheus text format, next to the application's own histogram.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the example when the test ends, whichever way it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 GET over a fresh connection: (status line, headers, body).
fn get(address: &str, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/plain\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// The value of a sample whose name is `name` (any labels), summed over label sets.
fn sample(body: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = body
        .lines()
        .filter(|line| line.starts_with(name) && matches!(line.as_bytes().get(name.len()), Some(b'{' | b' ')))
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
fn prometheus_example_serves_records_processed() {
    let child = Command::new(env!("CARGO_BIN_EXE_prometheus"))
        .args(["--metrics-port", "0", "--rate", "500", "--duration-secs", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the prometheus example");
    let mut running = Running(child);
    let mut stdout = BufReader::new(running.0.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let address = first
        .trim()
        .strip_prefix("metrics: http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("the first line names the endpoint: {first:?}"))
        .to_owned();
    assert!(address.starts_with("127.0.0.1:"), "loopback only: {address}");
    assert_ne!(address, "127.0.0.1:0", "the bound port is printed, not the requested 0");

    // The workers need a moment to take leases and process their first batches; scrape until they have.
    let give_up = Instant::now() + Duration::from_secs(120);
    let (status, headers, body) = loop {
        let (status, headers, body) = get(&address, "/metrics");
        if sample(&body, "kcl_records_processed_total").is_some_and(|n| n > 0.0) || Instant::now() > give_up {
            break (status, headers, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("Content-Type: text/plain; version=0.0.4"), "{headers}");
    let processed = sample(&body, "kcl_records_processed_total");
    assert!(processed.is_some_and(|n| n > 0.0), "kcl_records_processed_total > 0 expected:\n{body}");
    assert!(body.contains("# TYPE kcl_records_processed_total counter"), "{body}");
    assert!(
        body.lines().any(|l| l.starts_with("kcl_records_processed_total{") && l.contains("stream=\"iot-telemetry\"")),
        "labelled by stream:\n{body}"
    );
    assert!(sample(&body, "kcl_leases_held").is_some_and(|held| held >= 1.0), "leases held:\n{body}");
    assert!(sample(&body, "iot_temperature_celsius_count").is_some_and(|n| n > 0.0), "app metric:\n{body}");

    let (status, _, _) = get(&address, "/nothing-here");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}
