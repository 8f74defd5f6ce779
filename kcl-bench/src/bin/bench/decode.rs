//! `decode`: CPU per record of kcl-rs's own `GetRecords` decoders, in process (no emulators): a response of
//! `--records` records of `--record-bytes` bytes, encoded as JSON (base64 `Data`), as CBOR the way AWS sends it
//! (`Data` a byte string) and as CBOR the way kinesis-mock sends it (`Data` base64 text), each decoded `--repeat`
//! times; the figure per format is the median over those passes.

use std::hint::black_box;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use clap::Args;
use kcl_core::retrieve::WireFormat;

use crate::report::{Report, Usage, median};

/// Options of `bench decode`.
#[derive(Args, Debug, Clone)]
pub struct DecodeArgs {
    /// Records per response.
    #[arg(long, default_value_t = 5000)]
    records: usize,
    /// Bytes per record.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// Decoding passes per format; the printed value is the median.
    #[arg(long, default_value_t = 50)]
    repeat: usize,
}

fn record(i: usize, bytes: usize) -> (Vec<u8>, String, String) {
    let mut data = format!("shard-0-record-{i:08}-").into_bytes();
    data.resize(bytes, b'x');
    (data, format!("key-0-{i}"), format!("4959033827149025660855969253836157109592157598913658{i:04}"))
}

fn json_body(args: &DecodeArgs) -> Vec<u8> {
    let records: Vec<serde_json::Value> = (0..args.records)
        .map(|i| {
            let (data, key, sequence) = record(i, args.record_bytes);
            serde_json::json!({
                "Data": base64::engine::general_purpose::STANDARD.encode(data),
                "PartitionKey": key,
                "SequenceNumber": sequence,
                "ApproximateArrivalTimestamp": 1.7e9 + i as f64 / 1000.0,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"Records": records, "NextShardIterator": "AAAA", "MillisBehindLatest": 0}))
        .unwrap_or_default()
}

/// CBOR with `Data` as a byte string (AWS) or as base64 text (kinesis-mock).
fn cbor_body(args: &DecodeArgs, data_as_text: bool) -> Vec<u8> {
    fn head(out: &mut Vec<u8>, major: u8, value: u64) {
        let major = major << 5;
        match value {
            0..=23 => out.push(major | value as u8),
            24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
            0x100..=0xffff => {
                out.push(major | 25);
                out.extend_from_slice(&(value as u16).to_be_bytes());
            }
            _ => {
                out.push(major | 27);
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
    }
    fn text(out: &mut Vec<u8>, value: &str) {
        head(out, 3, value.len() as u64);
        out.extend_from_slice(value.as_bytes());
    }
    let mut out = Vec::new();
    head(&mut out, 5, 3);
    text(&mut out, "Records");
    head(&mut out, 4, args.records as u64);
    for i in 0..args.records {
        let (data, key, sequence) = record(i, args.record_bytes);
        head(&mut out, 5, 4);
        text(&mut out, "Data");
        if data_as_text {
            text(&mut out, &base64::engine::general_purpose::STANDARD.encode(data));
        } else {
            head(&mut out, 2, data.len() as u64);
            out.extend_from_slice(&data);
        }
        text(&mut out, "PartitionKey");
        text(&mut out, &key);
        text(&mut out, "SequenceNumber");
        text(&mut out, &sequence);
        text(&mut out, "ApproximateArrivalTimestamp");
        head(&mut out, 0, 1_700_000_000_000 + i as u64);
    }
    text(&mut out, "NextShardIterator");
    text(&mut out, "AAAA");
    text(&mut out, "MillisBehindLatest");
    head(&mut out, 0, 0);
    out
}

pub async fn run(args: DecodeArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let mut report = Report::new("decode");
    report.param("records_per_response", args.records as u64);
    report.param("record_bytes", args.record_bytes as u64);
    report.param("repeat", args.repeat as u64);
    report.note(
        "ns per record to decode one GetRecords response body into KinesisRecords: *_cpu_ns = process CPU (user + sys) \
         over all passes / records decoded (robust on a loaded machine); *_wall_ns = median pass, wall clock",
    );
    let bodies = [
        ("json", WireFormat::Json, json_body(&args)),
        ("cbor_bytes", WireFormat::Cbor, cbor_body(&args, false)),
        ("cbor_base64_text", WireFormat::Cbor, cbor_body(&args, true)),
    ];
    for (name, format, body) in bodies {
        report.metric(format!("decode_{name}_body_bytes_per_record"), body.len() as f64 / args.records as f64, "B");
        let body = Bytes::from(body);
        let mut samples = Vec::with_capacity(args.repeat);
        let before = Usage::this_process();
        for _ in 0..args.repeat {
            let started = Instant::now();
            let output = format.decode_get_records(body.clone())?;
            black_box(&output);
            drop(output);
            samples.push(started.elapsed().as_nanos() as f64 / args.records as f64);
        }
        let cpu = Usage::this_process().since(&before).cpu().as_nanos() as f64;
        report.metric(format!("decode_{name}_cpu_ns_per_record"), cpu / (args.repeat * args.records) as f64, "ns");
        report.metric(format!("decode_{name}_wall_ns_per_record"), median(&samples), "ns");
    }
    Ok(report)
}
