//! [`JsonLinesDestination`]: failed records appended to a local JSON-lines file, fsynced before `send` returns,
//! rotated by size.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;

use super::{FailedRecords, FailureDestination};
use crate::process::ProcessorError;

/// Appends one JSON object per failed record to a file:
///
/// ```json
/// {"stream":"s","shard":"shardId-000000000000","seq":"4959…","sub":0,"pk":"device-7","data_b64":"eyJ0…",
///  "arrival_ms":1700000000000,"attempts":3,"error":"bad payload","first_failure_ms":1700000000100,
///  "reason":"attempts_exhausted"}
/// ```
///
/// Each `send` writes its lines and `fsync`s the file before returning, so the checkpoint never passes a record
/// that is not on disk. When the file exceeds [`max_file_bytes`](Self::max_file_bytes) (default 64 MiB) it is
/// renamed to `<name>.<unix-millis>` and a new file is started.
#[derive(Clone, Debug)]
pub struct JsonLinesDestination {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    max_file_bytes: u64,
    file: Option<File>,
    size: u64,
}

impl JsonLinesDestination {
    /// Appends to `path` (created if missing; its directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { inner: Arc::new(Mutex::new(Inner { path: path.into(), max_file_bytes: 64 << 20, file: None, size: 0 })) }
    }

    /// Rotate once the file is larger than this.
    pub fn max_file_bytes(self, bytes: u64) -> Self {
        if let Ok(mut inner) = self.inner.lock() {
            inner.max_file_bytes = bytes.max(1);
        }
        self
    }

    /// The file currently written.
    pub fn path(&self) -> PathBuf {
        self.inner.lock().map(|inner| inner.path.clone()).unwrap_or_default()
    }
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn lines(failed: &FailedRecords) -> Vec<u8> {
    let mut out = Vec::new();
    for record in &failed.records {
        let line = serde_json::json!({
            "stream": &*failed.stream,
            "shard": &*failed.shard_id,
            "seq": record.sequence_number.as_str(),
            "sub": record.sub_sequence_number,
            "pk": &*record.partition_key,
            "data_b64": base64::engine::general_purpose::STANDARD.encode(&record.data),
            "arrival_ms": record.approximate_arrival_timestamp.map(millis),
            "attempts": failed.attempts,
            "error": failed.last_error,
            "first_failure_ms": millis(failed.first_failure),
            "reason": failed.reason.as_str(),
        });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

impl Inner {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_some() && self.size >= self.max_file_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
            sync_dir(&self.path)?;
        }
        let Some(file) = self.file.as_mut() else { return Err(std::io::Error::other("file not open")) };
        let written = file.write_all(bytes).and_then(|()| file.sync_data());
        if written.is_err() {
            // Reopen next time: a partial line may be followed by a fresh one, never lost ones.
            self.file = None;
        }
        written?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{}", millis(SystemTime::now())));
        std::fs::rename(&self.path, &rotated)?;
        sync_dir(&self.path)
    }
}

/// Makes a created or renamed file's directory entry durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

#[async_trait]
impl FailureDestination for JsonLinesDestination {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        let bytes = lines(failed);
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().map_err(|_| std::io::Error::other("destination lock poisoned"))?;
            inner.append(&bytes)
        })
        .await
        .map_err(|error| -> ProcessorError { format!("failure destination task: {error}").into() })??;
        Ok(())
    }
}
