//! Retry backoff (to be written).
