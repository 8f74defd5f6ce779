//! Transactional checkpoints (to come).
