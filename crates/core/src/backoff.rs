//! Retry delays: exponential backoff (`base × 2^(n−1)`, capped) with full jitter.
//!
//! The exponential step comes from `backon` (jitter off); the jitter is a fraction in `[0, 1]`
//! derived from a stable hash of (workflow, batch, attempt), so `decide` stays pure and a
//! replayed transition computes the same delay. The hash is FNV-1a followed by a splitmix64
//! finaliser, both fixed algorithms: std's `DefaultHasher` may change between Rust releases.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::ids::WorkflowId;
use crate::spec::RetryPolicy;

/// Delay before retry number `attempt` (1 = first retry) of `batch`, in whole milliseconds (so
/// the due time serializes exactly).
pub fn retry_delay(
    policy: &RetryPolicy,
    workflow: &WorkflowId,
    batch: u32,
    attempt: u32,
) -> Duration {
    let full = exponential(policy, attempt).as_millis() as f64;
    Duration::from_millis((full * jitter_fraction(workflow, batch, attempt)).floor() as u64)
}

/// `min(base × 2^(attempt−1), cap)` without jitter. Base and cap are clamped to the maxima
/// validation allows today: a spec stored before those bounds existed may hold more.
pub fn exponential(policy: &RetryPolicy, attempt: u32) -> Duration {
    let base = Duration::from_millis(policy.base_ms.min(RetryPolicy::MAX_BASE_MS));
    let cap = Duration::from_millis(policy.cap_ms.min(RetryPolicy::MAX_CAP_MS));
    let step = ExponentialBuilder::new()
        .with_min_delay(base)
        .with_max_delay(cap)
        .with_factor(2.0)
        .without_max_times()
        .build()
        // Past ~64 doublings the cap is reached anyway; don't iterate further.
        .nth(attempt.saturating_sub(1).min(64) as usize)
        .unwrap_or(cap);
    step.min(cap)
}

/// A stable fraction in `[0, 1]`.
pub fn jitter_fraction(workflow: &WorkflowId, batch: u32, attempt: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = workflow
        .as_str()
        .bytes()
        .chain([0u8])
        .chain(batch.to_le_bytes())
        .chain(attempt.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finaliser: spreads FNV's weak low bits over the whole word.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    // Top 53 bits → an exactly representable f64 in [0, 1].
    (h >> 11) as f64 / ((1u64 << 53) - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_ms: 30_000,
            cap_ms: 900_000,
        }
    }

    #[test]
    fn exponential_doubles_from_base_up_to_the_cap() {
        let steps: Vec<u64> = (1..=8)
            .map(|n| exponential(&policy(), n).as_secs())
            .collect();
        assert_eq!(steps, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(exponential(&policy(), u32::MAX).as_secs(), 900);
    }

    #[test]
    fn base_above_cap_is_capped() {
        let p = RetryPolicy {
            max_retries: 3,
            base_ms: 10_000,
            cap_ms: 5_000,
        };
        assert_eq!(exponential(&p, 1), Duration::from_secs(5));
    }

    #[test]
    fn unbounded_legacy_policies_are_clamped_to_todays_maxima() {
        let p = RetryPolicy {
            max_retries: u32::MAX,
            base_ms: u64::MAX,
            cap_ms: u64::MAX,
        };
        let cap = Duration::from_millis(RetryPolicy::MAX_CAP_MS);
        assert_eq!(
            exponential(&p, 1),
            Duration::from_millis(RetryPolicy::MAX_BASE_MS)
        );
        assert_eq!(exponential(&p, u32::MAX), cap);
        let wf = WorkflowId::new("acme").unwrap();
        assert!(retry_delay(&p, &wf, u32::MAX, u32::MAX) <= cap);
    }

    #[test]
    fn jitter_is_deterministic_bounded_and_varied() {
        let wf = WorkflowId::new("acme").unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for batch in 0..50 {
            for attempt in 1..5 {
                let d = retry_delay(&policy(), &wf, batch, attempt);
                assert_eq!(d, retry_delay(&policy(), &wf, batch, attempt));
                assert!(d <= exponential(&policy(), attempt));
                seen.insert(d.as_millis() / 1000);
            }
        }
        assert!(seen.len() > 50, "jitter barely varies: {}", seen.len());
    }

    #[test]
    fn jitter_is_pinned() {
        // Changing the hash would change every in-flight retry's schedule: keep it fixed.
        let wf = WorkflowId::new("acme").unwrap();
        let f = jitter_fraction(&wf, 3, 2);
        assert!((0.0..=1.0).contains(&f));
        assert_eq!(
            retry_delay(&policy(), &wf, 3, 2),
            Duration::from_millis(41_437)
        );
        assert_eq!(f, jitter_fraction(&wf, 3, 2));
        assert_ne!(f, jitter_fraction(&wf, 2, 3));
    }
}
