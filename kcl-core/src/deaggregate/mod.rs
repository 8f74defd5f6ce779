//! KPL de-aggregation (placeholder; filled by the foundation issue).
