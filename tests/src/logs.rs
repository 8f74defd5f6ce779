//! Capturing what the code under test logs, to assert on it: [`CapturedLogs::install`] sets a `tracing` subscriber
//! for the current thread (in a current-thread test runtime, every task runs there) that writes into a buffer.

use std::sync::{Arc, Mutex, PoisonError};

/// Formatted log output (no ANSI colours), collected in memory.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Starts capturing on this thread until the returned guard is dropped.
    pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let subscriber = tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).finish();
        (captured.clone(), tracing::subscriber::set_default(subscriber))
    }

    /// Captures for the whole process (a test binary of its own: there is one global subscriber).
    ///
    /// # Panics
    /// When a global subscriber is already installed.
    pub fn install_global() -> Self {
        Self::install_global_at(tracing::Level::INFO)
    }

    /// Captures for the whole process at `level` and above ([`install_global`](Self::install_global): INFO).
    ///
    /// # Panics
    /// When a global subscriber is already installed.
    pub fn install_global_at(level: tracing::Level) -> Self {
        let captured = Self::default();
        let subscriber =
            tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).with_max_level(level).finish();
        tracing::subscriber::set_global_default(subscriber).expect("the first global subscriber of this binary");
        captured
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
