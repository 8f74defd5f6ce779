//! In-memory reference lease store (placeholder).

/// In-memory lease store.
#[derive(Debug, Default)]
pub struct MemoryLeaseStore;
