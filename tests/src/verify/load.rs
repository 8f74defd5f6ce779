//! Reading the evidence: output files and journals written by `verify-worker` (formats in its `processor.rs` and
//! `journal.rs`), the put log the chaos producer writes ([`write_put_line`]), and the shards from Kinesis.
//!
//! A process killed in the middle of a `write(2)` can leave a torn last line; such a line (no final newline) is
//! skipped: it was neither fsynced nor checkpointed, so its records are delivered again. Every other malformed line
//! is an error.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kcl_core::{ExtendedSequenceNumber, SequenceNumber};
use serde::Deserialize;
use serde_json::Value;

use kcl_core::lease::Lease;

use super::{Delivery, EndReason, Entry, Event, History, Op, Outcome, Put, ShardState, Write};

type Error = String;

/// Parses `SEQUENCE/SUB` or a sentinel name.
pub(crate) fn parse_position(text: &str) -> Result<ExtendedSequenceNumber, Error> {
    let (checkpoint, sub) = match text.split_once('/') {
        Some((seq, sub)) => (seq, sub.parse::<u64>().map_err(|e| format!("bad sub-sequence in {text:?}: {e}"))?),
        None => (text, 0),
    };
    ExtendedSequenceNumber::parse(checkpoint, sub).map_err(|e| format!("bad position {text:?}: {e}"))
}

/// The lines of a file, without a torn (unterminated) last line. A missing file has none: a worker killed right
/// after it was started may not have created its files yet.
fn lines(path: &Path) -> Result<Vec<String>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    Ok(complete.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

#[derive(Deserialize)]
struct OutputLine {
    worker: String,
    shard: String,
    seq: String,
    sub: u64,
    pk: String,
    data_b64: String,
    epoch: String,
    t: u64,
}

/// Reads output files; `file` in each delivery is the index of its file in `paths`.
pub fn load_outputs(paths: &[impl AsRef<Path>]) -> Result<Vec<Delivery>, Error> {
    let mut deliveries = Vec::new();
    for (file, path) in paths.iter().enumerate() {
        let path = path.as_ref();
        for (line, text) in lines(path)?.iter().enumerate() {
            let at = || format!("{}:{}", path.display(), line + 1);
            let l: OutputLine = serde_json::from_str(text).map_err(|e| format!("{}: {e}", at()))?;
            deliveries.push(Delivery {
                worker: l.worker,
                shard: l.shard,
                seq: SequenceNumber::parse(&l.seq).map_err(|e| format!("{}: {e}", at()))?,
                sub: l.sub,
                pk: l.pk,
                data: B64.decode(&l.data_b64).map_err(|e| format!("{}: {e}", at()))?,
                epoch: l.epoch,
                t: l.t,
                file,
                line,
            });
        }
    }
    Ok(deliveries)
}

#[derive(Deserialize)]
struct PutLine {
    shard: String,
    seq: String,
    sub: u64,
    pk: String,
    data_b64: String,
}

/// One put-log line for `put`.
pub fn write_put_line(put: &Put) -> String {
    serde_json::json!({
        "shard": put.shard, "seq": put.seq.as_str(), "sub": put.sub, "pk": put.pk, "data_b64": B64.encode(&put.data),
    })
    .to_string()
}

/// Reads a put log (one [`write_put_line`] per line, in put order).
pub fn load_puts(path: &Path) -> Result<Vec<Put>, Error> {
    lines(path)?
        .iter()
        .enumerate()
        .map(|(n, text)| {
            let at = || format!("{}:{}", path.display(), n + 1);
            let l: PutLine = serde_json::from_str(text).map_err(|e| format!("{}: {e}", at()))?;
            Ok(Put {
                shard: l.shard,
                seq: SequenceNumber::parse(&l.seq).map_err(|e| format!("{}: {e}", at()))?,
                sub: l.sub,
                pk: l.pk,
                data: B64.decode(&l.data_b64).map_err(|e| format!("{}: {e}", at()))?,
            })
        })
        .collect()
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, Error> {
    v.get(name).ok_or_else(|| format!("missing `{name}`"))
}

fn text_field(v: &Value, name: &str) -> Result<String, Error> {
    field(v, name)?.as_str().map(str::to_owned).ok_or_else(|| format!("`{name}` is not a string"))
}

fn opt_text(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn number(v: &Value, name: &str) -> Result<u64, Error> {
    field(v, name)?.as_u64().ok_or_else(|| format!("`{name}` is not a number"))
}

fn op(name: &str) -> Result<Op, Error> {
    Ok(match name {
        "create" => Op::Create,
        "take" => Op::Take,
        "renew" => Op::Renew,
        "release" => Op::Release,
        "evict" => Op::Evict,
        "handoff" => Op::Handoff,
        "checkpoint" => Op::Checkpoint,
        "prepare" => Op::Prepare,
        "children" => Op::Children,
        "delete" => Op::Delete,
        other => return Err(format!("unknown op {other:?}")),
    })
}

/// Reads the journals of every worker process. Entries keep each file's order; a `call` becomes a [`Write`] at the
/// call's position, completed by its `ret` (or [`Outcome::Unknown`] without one), and a `cp` is completed by its
/// `cp_done` likewise.
pub fn load_journal(paths: &[impl AsRef<Path>]) -> Result<Vec<Entry>, Error> {
    let mut entries: Vec<Entry> = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let (mut worker, mut pid) = (String::new(), 0u32);
        // Open calls and checkpoints of the current process: id or (epoch, pos) -> index in `entries`.
        let mut calls: HashMap<u64, usize> = HashMap::new();
        let mut cps: HashMap<(String, String), usize> = HashMap::new();
        for (n, line) in lines(path)?.iter().enumerate() {
            let at = |e: String| format!("{}:{}: {e}", path.display(), n + 1);
            let v: Value = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            let t = number(&v, "t").map_err(at)?;
            let event = match text_field(&v, "ev").map_err(at)?.as_str() {
                "start" => {
                    worker = text_field(&v, "worker").map_err(at)?;
                    pid = number(&v, "pid").map_err(at)? as u32;
                    calls.clear();
                    cps.clear();
                    Event::Start
                }
                "exit" => Event::Exit { ok: field(&v, "ok").map_err(at)?.as_bool().unwrap_or(false) },
                "init" => Event::Init {
                    epoch: text_field(&v, "epoch").map_err(at)?,
                    shard: text_field(&v, "shard").map_err(at)?,
                    checkpoint: parse_position(&text_field(&v, "checkpoint").map_err(at)?).map_err(at)?,
                },
                "end" => Event::End {
                    epoch: text_field(&v, "epoch").map_err(at)?,
                    shard: text_field(&v, "shard").map_err(at)?,
                    why: match text_field(&v, "why").map_err(at)?.as_str() {
                        "lease_lost" => EndReason::LeaseLost,
                        "shutdown" => EndReason::Shutdown,
                        "shard_ended" => EndReason::ShardEnded,
                        other => return Err(at(format!("unknown end reason {other:?}"))),
                    },
                },
                "cp" => {
                    let (epoch, pos) = (text_field(&v, "epoch").map_err(at)?, text_field(&v, "pos").map_err(at)?);
                    cps.insert((epoch.clone(), pos.clone()), entries.len());
                    let shard = text_field(&v, "shard").map_err(at)?;
                    let pos = parse_position(&pos).map_err(at)?;
                    Event::Checkpoint { epoch, shard, pos, ok: None, done: None }
                }
                "cp_done" => {
                    let key = (text_field(&v, "epoch").map_err(at)?, text_field(&v, "pos").map_err(at)?);
                    let index = cps.remove(&key).ok_or_else(|| at("cp_done without its cp".to_owned()))?;
                    if let Event::Checkpoint { ok, done, .. } = &mut entries[index].event {
                        *ok = field(&v, "ok").map_err(at)?.as_bool();
                        *done = Some(t);
                    }
                    continue;
                }
                "call" => {
                    calls.insert(number(&v, "id").map_err(at)?, entries.len());
                    let checkpoint = opt_text(&v, "checkpoint").map(|c| parse_position(&c)).transpose().map_err(at)?;
                    Event::Write(Write {
                        op: op(&text_field(&v, "op").map_err(at)?).map_err(at)?,
                        lease: text_field(&v, "lease").map_err(at)?,
                        owner: opt_text(&v, "owner"),
                        counter: v.get("counter").and_then(Value::as_u64),
                        to: opt_text(&v, "to"),
                        checkpoint,
                        outcome: Outcome::Unknown,
                    })
                }
                "ret" => {
                    let id = number(&v, "id").map_err(at)?;
                    let index = calls.remove(&id).ok_or_else(|| at(format!("ret {id} without its call")))?;
                    let outcome = match text_field(&v, "result").map_err(at)?.as_str() {
                        "ok" => Outcome::Accepted(v.get("counter").and_then(Value::as_u64)),
                        "condition" => Outcome::Refused,
                        _ => Outcome::Unknown,
                    };
                    if let Event::Write(write) = &mut entries[index].event {
                        write.outcome = outcome;
                    }
                    continue;
                }
                "slow" => {
                    Event::SlowBatch { epoch: text_field(&v, "epoch").map_err(at)?, ms: number(&v, "ms").map_err(at)? }
                }
                other => return Err(at(format!("unknown event {other:?}"))),
            };
            entries.push(Entry { t, worker: worker.clone(), pid, event });
        }
    }
    Ok(entries)
}

/// Every shard of `stream` and whether it is closed.
pub async fn fetch_shards(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<Vec<ShardState>, Error> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match &token {
            Some(token) => kinesis.list_shards().next_token(token),
            None => kinesis.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .map_err(|e| format!("ListShards: {}", aws_sdk_kinesis::error::DisplayErrorContext(e)))?;
        for shard in page.shards() {
            let closed = shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some();
            shards.push(ShardState { shard: shard.shard_id().to_owned(), closed });
        }
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => return Ok(shards),
        }
    }
}

/// Saves the end state a run was judged on (`leases.jsonl`, `shards.jsonl`), so that [`load_run`] can judge it again
/// after the stream and table are gone.
pub fn save_end_state(dir: &Path, leases: &[Lease], shards: &[ShardState]) -> Result<(), Error> {
    let mut text = String::new();
    for lease in leases {
        let line = serde_json::json!({
            "lease": lease.lease_key, "shard": lease.shard_id, "owner": lease.lease_owner,
            "counter": lease.lease_counter, "checkpoint": position_text(&lease.checkpoint),
        });
        text.push_str(&format!("{line}\n"));
    }
    write(&dir.join("leases.jsonl"), &text)?;
    let mut text = String::new();
    for shard in shards {
        text.push_str(&format!("{}\n", serde_json::json!({"shard": shard.shard, "closed": shard.closed})));
    }
    write(&dir.join("shards.jsonl"), &text)
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn position_text(position: &ExtendedSequenceNumber) -> String {
    match position.sequence_number() {
        Some(seq) => format!("{seq}/{}", position.sub_sequence()),
        None => position.checkpoint_str().to_owned(),
    }
}

/// Loads a kept chaos run directory: `*.out.jsonl`, `*.journal.jsonl`, `puts.jsonl` and the saved end state.
pub fn load_run(dir: &Path) -> Result<History, Error> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let ending =
        |suffix: &str| files.iter().filter(|p| p.to_string_lossy().ends_with(suffix)).cloned().collect::<Vec<_>>();
    let mut leases = Vec::new();
    for text in lines(&dir.join("leases.jsonl"))? {
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let mut lease = Lease::new_for_shard(text_field(&v, "shard")?, parse_position(&text_field(&v, "checkpoint")?)?);
        lease.lease_key = text_field(&v, "lease")?;
        lease.lease_owner = opt_text(&v, "owner");
        lease.lease_counter = number(&v, "counter")?;
        leases.push(lease);
    }
    let mut shards = Vec::new();
    for text in lines(&dir.join("shards.jsonl"))? {
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        shards.push(ShardState {
            shard: text_field(&v, "shard")?,
            closed: v.get("closed").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(History {
        puts: load_puts(&dir.join("puts.jsonl"))?,
        deliveries: load_outputs(&ending(".out.jsonl"))?,
        journal: load_journal(&ending(".journal.jsonl"))?,
        leases,
        shards,
    })
}
