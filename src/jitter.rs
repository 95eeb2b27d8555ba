//! Randomness for spreading reconnects and for the hub's epochs. None of it
//! needs to be cryptographic: std's randomly keyed hasher over a counter is
//! enough, and adds no dependency.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// 64 random bits, different on every call.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A duration drawn at random between `min` and `max` (inclusive of `min`).
pub(crate) fn random_between(min: Duration, max: Duration) -> Duration {
    // 53 random bits as a fraction in [0, 1).
    let fraction = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    min + (max.saturating_sub(min)).mul_f64(fraction)
}
