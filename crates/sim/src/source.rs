//! Deterministic synthetic SaaS objects: nothing is stored, every record is computed.
//!
//! Record `k` of day `d` (days since `start`) of object `O` in profile `P` has id
//! `P/O/d/k` and a modification time inside day `d` derived from a hash of
//! (seed, P, O, d, k). Counting a window is O(days) because whole days contribute
//! `records_per_day` without being enumerated.

use chrono::{DateTime, Utc};

use crate::config::SourceConfig;

const DAY_MS: i64 = 86_400_000;

/// A half-open millisecond window `[lo, hi)`; `None` means unbounded on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsWindow {
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

impl MsWindow {
    pub fn intersect(self, other: MsWindow) -> MsWindow {
        MsWindow {
            lo: max_opt(self.lo, other.lo),
            hi: min_opt(self.hi, other.hi),
        }
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) | (None, x) => x,
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub ts_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Source {
    seed: u64,
    per_day: u32,
    start_ms: i64,
}

impl Source {
    pub fn new(cfg: &SourceConfig, seed: u64) -> Self {
        Self {
            seed,
            per_day: cfg.records_per_day,
            start_ms: cfg.start.timestamp_millis(),
        }
    }

    fn offset_in_day(&self, profile: &str, object: &str, day: i64, k: u32) -> i64 {
        let mut h = Fnv::new(self.seed);
        h.write(profile.as_bytes());
        h.write(&[0]);
        h.write(object.as_bytes());
        h.write(&[0]);
        h.write(&day.to_le_bytes());
        h.write(&k.to_le_bytes());
        // Bounded by DAY_MS (< i64::MAX), so the cast cannot truncate.
        (splitmix(h.finish()) % DAY_MS as u64) as i64
    }

    /// Clamp a window to what exists: from `start` up to (exclusive) `now_ms + 1`.
    fn clamp(&self, w: MsWindow, now_ms: i64) -> (i64, i64) {
        let lo = w.lo.unwrap_or(self.start_ms).max(self.start_ms);
        let hi = w.hi.unwrap_or(i64::MAX).min(now_ms.saturating_add(1));
        (lo, hi)
    }

    fn day_bounds(&self, lo: i64, hi: i64) -> (i64, i64) {
        let first = (lo - self.start_ms).div_euclid(DAY_MS);
        let last = (hi - 1 - self.start_ms).div_euclid(DAY_MS);
        (first, last)
    }

    /// Number of records of (profile, object) with a timestamp in `w` that exist at `now_ms`.
    pub fn count(&self, profile: &str, object: &str, w: MsWindow, now_ms: i64) -> u64 {
        let (lo, hi) = self.clamp(w, now_ms);
        if lo >= hi || self.per_day == 0 {
            return 0;
        }
        let (first, last) = self.day_bounds(lo, hi);
        let mut n = 0u64;
        for day in first..=last {
            let day_start = self.start_ms + day * DAY_MS;
            if day_start >= lo && day_start + DAY_MS <= hi {
                n += u64::from(self.per_day);
            } else {
                n += (0..self.per_day)
                    .filter(|&k| {
                        let ts = day_start + self.offset_in_day(profile, object, day, k);
                        ts >= lo && ts < hi
                    })
                    .count() as u64;
            }
        }
        n
    }

    /// The records themselves, ordered by timestamp (ties by id).
    pub fn records(&self, profile: &str, object: &str, w: MsWindow, now_ms: i64) -> Vec<Record> {
        let (lo, hi) = self.clamp(w, now_ms);
        if lo >= hi || self.per_day == 0 {
            return Vec::new();
        }
        let (first, last) = self.day_bounds(lo, hi);
        let mut out = Vec::new();
        for day in first..=last {
            let day_start = self.start_ms + day * DAY_MS;
            for k in 0..self.per_day {
                let ts = day_start + self.offset_in_day(profile, object, day, k);
                if ts >= lo && ts < hi {
                    out.push(Record {
                        id: format!("{profile}/{object}/{day}/{k}"),
                        ts_ms: ts,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.ts_ms.cmp(&b.ts_ms).then_with(|| a.id.cmp(&b.id)));
        out
    }
}

/// A hash of `bytes` under `seed` that is the same in every process and Rust version.
pub(crate) fn stable_hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = Fnv::new(seed);
    h.write(bytes);
    splitmix(h.finish())
}

pub fn ms_to_datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

/// FNV-1a: stable across processes and Rust versions, unlike `std`'s randomly keyed hasher.
struct Fnv(u64);

impl Fnv {
    fn new(seed: u64) -> Self {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.write(&seed.to_le_bytes());
        h
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV's low bits are weak; a finaliser spreads them before the modulo.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Source {
        Source::new(&SourceConfig::default(), 7)
    }

    const JAN1_2020: i64 = 1_577_836_800_000;

    #[test]
    fn count_matches_enumeration_on_ragged_windows() {
        let s = src();
        let now = JAN1_2020 + 400 * DAY_MS;
        for (lo, hi) in [
            (JAN1_2020 + 12_345, JAN1_2020 + 3 * DAY_MS + 999),
            (JAN1_2020 - DAY_MS, JAN1_2020 + 10 * DAY_MS),
            (JAN1_2020 + 5 * DAY_MS, JAN1_2020 + 5 * DAY_MS),
            (JAN1_2020 + 399 * DAY_MS + 7, JAN1_2020 + 500 * DAY_MS),
        ] {
            let w = MsWindow {
                lo: Some(lo),
                hi: Some(hi),
            };
            let n = s.count("p", "Account", w, now);
            assert_eq!(
                n,
                s.records("p", "Account", w, now).len() as u64,
                "{lo}..{hi}"
            );
        }
        let whole = MsWindow {
            lo: Some(JAN1_2020),
            hi: Some(JAN1_2020 + 10 * DAY_MS),
        };
        assert_eq!(s.count("p", "Account", whole, now), 500);
    }

    #[test]
    fn records_are_deterministic_and_depend_on_profile() {
        let w = MsWindow {
            lo: Some(JAN1_2020),
            hi: Some(JAN1_2020 + DAY_MS),
        };
        let now = JAN1_2020 + 2 * DAY_MS;
        let a = src().records("p", "Account", w, now);
        assert_eq!(a, src().records("p", "Account", w, now));
        let b = src().records("q", "Account", w, now);
        assert_ne!(
            a.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
            b.iter().map(|r| r.ts_ms).collect::<Vec<_>>()
        );
    }

    #[test]
    fn nothing_exists_after_now() {
        let s = src();
        let now = JAN1_2020 + DAY_MS / 2;
        let w = MsWindow { lo: None, hi: None };
        let recs = s.records("p", "o", w, now);
        assert!(recs.iter().all(|r| r.ts_ms <= now));
        assert!(recs.len() < 50);
    }
}
