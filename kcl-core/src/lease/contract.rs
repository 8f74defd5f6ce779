//! Contract suite placeholder.
