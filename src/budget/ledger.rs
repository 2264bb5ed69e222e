//! One limit's slots and waiters: the pure half of the run budget, stored as one item.
//!
//! Serving order: a free slot goes to the batch that has waited longest (the earliest first
//! refusal among waiters that asked again recently), whichever worker or workflow asks. A
//! batch asking for the first time is the newest waiter, so it never jumps the queue; a
//! waiter that stopped asking (its workflow was cancelled or failed) is dropped after
//! `waiter_ttl` and blocks no one. No workflow starves: each waiter only moves forward.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Times are Unix milliseconds: the ledger is compared across processes and machines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Holder (`{workflow}/b{batch}`) → when its lease expires.
    #[serde(default)]
    pub holders: BTreeMap<String, i64>,
    #[serde(default)]
    pub waiters: BTreeMap<String, Waiter>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// The first refusal: the waiter's place in the queue.
    pub since: i64,
    /// The last time it asked.
    pub seen: i64,
}

/// How long leases and waiters last, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttls {
    pub lease: i64,
    pub waiter: i64,
}

/// What asking for a slot came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `holder` holds a slot (granted now, or it held one already: asking again is
    /// idempotent, so a StartFlow repeated after a crash reuses its lease).
    Granted,
    /// Every slot is held, or the free ones belong to longer waiters.
    Denied { in_use: u32 },
}

impl Ledger {
    /// Drops expired leases and waiters that stopped asking.
    pub fn prune(&mut self, now: i64, ttls: Ttls) {
        self.holders.retain(|_, expires| *expires > now);
        self.waiters
            .retain(|_, w| w.seen.saturating_add(ttls.waiter) > now);
    }

    pub fn in_use(&self) -> u32 {
        u32::try_from(self.holders.len()).unwrap_or(u32::MAX)
    }

    /// `holder` asks for one of `limit` slots at `now`. The ledger changes either way (a
    /// grant takes a slot, a refusal records or refreshes the waiter).
    pub fn ask(&mut self, holder: &str, limit: u32, now: i64, ttls: Ttls) -> Answer {
        self.prune(now, ttls);
        let expires = now.saturating_add(ttls.lease);
        if let Some(lease) = self.holders.get_mut(holder) {
            *lease = expires;
            self.waiters.remove(holder);
            return Answer::Granted;
        }
        let mine = self.waiters.get(holder).map_or(now, |w| w.since);
        let ahead = self
            .waiters
            .iter()
            .filter(|(k, w)| k.as_str() != holder && (w.since, k.as_str()) < (mine, holder))
            .count();
        let free = (limit as usize).saturating_sub(self.holders.len());
        if free > ahead {
            self.waiters.remove(holder);
            self.holders.insert(holder.to_owned(), expires);
            return Answer::Granted;
        }
        self.waiters.insert(
            holder.to_owned(),
            Waiter {
                since: mine,
                seen: now,
            },
        );
        Answer::Denied {
            in_use: self.in_use(),
        }
    }

    /// Gives `holder`'s slot back; `false` if it held none (nothing to write).
    pub fn release(&mut self, holder: &str) -> bool {
        self.holders.remove(holder).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTLS: Ttls = Ttls {
        lease: 1_000,
        waiter: 100,
    };

    #[test]
    fn grants_up_to_the_limit_and_asking_again_is_idempotent() {
        let mut l = Ledger::default();
        assert_eq!(l.ask("a", 2, 0, TTLS), Answer::Granted);
        assert_eq!(l.ask("a", 2, 1, TTLS), Answer::Granted);
        assert_eq!(l.ask("b", 2, 2, TTLS), Answer::Granted);
        assert_eq!(l.ask("c", 2, 3, TTLS), Answer::Denied { in_use: 2 });
        assert!(l.release("a"));
        assert!(!l.release("a"));
        assert_eq!(l.ask("c", 2, 4, TTLS), Answer::Granted);
    }

    #[test]
    fn a_freed_slot_goes_to_the_longest_waiter_not_the_first_to_ask() {
        let mut l = Ledger::default();
        assert_eq!(l.ask("a", 1, 0, TTLS), Answer::Granted);
        assert!(matches!(l.ask("old", 1, 1, TTLS), Answer::Denied { .. }));
        assert!(matches!(l.ask("new", 1, 2, TTLS), Answer::Denied { .. }));
        l.release("a");
        // `new` asks first after the release, but `old` has waited longer.
        assert!(matches!(l.ask("new", 1, 3, TTLS), Answer::Denied { .. }));
        assert!(matches!(l.ask("fresh", 1, 3, TTLS), Answer::Denied { .. }));
        assert_eq!(l.ask("old", 1, 4, TTLS), Answer::Granted);
        l.release("old");
        assert_eq!(l.ask("new", 1, 5, TTLS), Answer::Granted);
    }

    #[test]
    fn expired_leases_and_silent_waiters_come_back() {
        let mut l = Ledger::default();
        assert_eq!(l.ask("crashed", 1, 0, TTLS), Answer::Granted);
        assert!(matches!(l.ask("gone", 1, 10, TTLS), Answer::Denied { .. }));
        assert!(matches!(l.ask("b", 1, 20, TTLS), Answer::Denied { .. }));
        // The lease expires at 1000; `gone` stopped asking at 10 and lapsed at 110.
        assert!(matches!(l.ask("b", 1, 999, TTLS), Answer::Denied { .. }));
        assert_eq!(l.ask("b", 1, 1_000, TTLS), Answer::Granted);
        assert!(l.waiters.is_empty());
    }
}
