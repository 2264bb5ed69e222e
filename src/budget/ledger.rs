//! One limit's slots and waiters: the pure half of the run budget, stored as one item.
//!
//! Answers are fixed per question: a batch's StartFlow may be executed by two workers at once
//! (both drain the same outbox), and both must hear the same answer, or one would start the
//! run while the other tells `decide` it was refused (and the batch would run again under a
//! new attempt). So the ledger remembers the attempt it granted (holders) and the last one it
//! refused (waiters): the same attempt asking again gets the same answer, an older attempt is
//! refused (it is stale), a newer one is a new question.
//!
//! Serving order: a free slot goes to the batch that has waited longest (the earliest first
//! refusal among waiters that asked again recently), whichever worker or workflow asks. A
//! batch asking for the first time is the newest waiter, so it never jumps the queue; a
//! waiter that stopped asking (its workflow was cancelled or failed) is dropped after
//! `waiter_ttl` and blocks no one. No workflow starves: each waiter only moves forward.
//!
//! A lowered limit: when AppFlow itself refuses (`ServiceQuotaExceededException` on StartFlow
//! or CreateFlow), the real limit is below what flowpilot was configured with (other tenants of
//! the account, a lower quota). [`Ledger::shrink`] stores a cap at the slots the others hold
//! then, with an expiry after which the configured limit applies again; it lives in the item,
//! so every worker replica obeys it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Times are Unix milliseconds: the ledger is compared across processes and machines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Holder (`{workflow}/b{batch}`) → its lease.
    #[serde(default)]
    pub holders: BTreeMap<String, Lease>,
    #[serde(default)]
    pub waiters: BTreeMap<String, Waiter>,
    /// The effective limit AppFlow's refusal set, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Cap>,
}

/// A limit lowered below the configured one until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cap {
    pub limit: u32,
    pub until: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub expires: i64,
    /// The batch attempt the slot was granted to.
    pub attempt: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// The first refusal: the waiter's place in the queue.
    pub since: i64,
    /// The last time it asked.
    pub seen: i64,
    /// The last attempt refused: asking again for it is refused again.
    pub refused: u32,
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
    /// Every slot is held, or the free ones belong to longer waiters; `limit` is the effective
    /// one (lowered by a [`Cap`]).
    Denied { in_use: u32, limit: u32 },
}

impl Ledger {
    /// Drops expired leases and waiters that stopped asking.
    pub fn prune(&mut self, now: i64, ttls: Ttls) {
        self.holders.retain(|_, lease| lease.expires > now);
        self.waiters
            .retain(|_, w| w.seen.saturating_add(ttls.waiter) > now);
        if self.cap.is_some_and(|c| c.until <= now) {
            self.cap = None;
        }
    }

    /// `limit` as lowered by a cap in force at `now`.
    pub fn effective(&self, limit: u32, now: i64) -> u32 {
        match self.cap {
            Some(c) if c.until > now => c.limit.min(limit),
            _ => limit,
        }
    }

    /// AppFlow refused `holder` for a quota: its slot is given back and the limit is lowered to
    /// the slots the others hold (at least 1, so work goes on one at a time; never above a
    /// lower cap still in force) until `now + recover`. Returns the lowered limit.
    pub fn shrink(
        &mut self,
        holder: &str,
        attempt: u32,
        limit: u32,
        now: i64,
        recover: i64,
    ) -> u32 {
        self.refuse(holder, attempt, now);
        let lowered = self.in_use().max(1).min(self.effective(limit, now));
        self.cap = Some(Cap {
            limit: lowered,
            until: now.saturating_add(recover),
        });
        lowered
    }

    /// Takes back the slot granted to `holder`'s `attempt` (not a newer attempt's) and
    /// remembers the refusal, as [`Ledger::ask`] would have refused: a StartFlow of that attempt
    /// executed again (a second worker, a redrain) is refused too, instead of taking a slot for
    /// a batch that has moved on and would never give it back.
    pub fn refuse(&mut self, holder: &str, attempt: u32, now: i64) {
        if self
            .holders
            .get(holder)
            .is_some_and(|lease| lease.attempt > attempt)
        {
            return;
        }
        self.holders.remove(holder);
        let w = self.waiters.get(holder).copied();
        self.waiters.insert(
            holder.to_owned(),
            Waiter {
                since: w.map_or(now, |w| w.since),
                seen: now,
                refused: w.map_or(attempt, |w| w.refused.max(attempt)),
            },
        );
    }

    pub fn in_use(&self) -> u32 {
        u32::try_from(self.holders.len()).unwrap_or(u32::MAX)
    }

    /// `holder`'s `attempt` asks for one of `limit` slots at `now`. The ledger changes either
    /// way (a grant takes or renews a slot, a refusal records or refreshes the waiter).
    pub fn ask(&mut self, holder: &str, attempt: u32, limit: u32, now: i64, ttls: Ttls) -> Answer {
        self.prune(now, ttls);
        let limit = self.effective(limit, now);
        let expires = now.saturating_add(ttls.lease);
        let in_use = self.in_use();
        if let Some(lease) = self.holders.get_mut(holder) {
            if attempt < lease.attempt {
                return Answer::Denied { in_use, limit };
            }
            *lease = Lease { expires, attempt };
            self.waiters.remove(holder);
            return Answer::Granted;
        }
        let waiting = self.waiters.get(holder).copied();
        if let Some(w) = waiting.filter(|w| attempt <= w.refused) {
            self.waiters
                .insert(holder.to_owned(), Waiter { seen: now, ..w });
            return Answer::Denied { in_use, limit };
        }
        let mine = waiting.map_or(now, |w| w.since);
        let ahead = self
            .waiters
            .iter()
            .filter(|(k, w)| k.as_str() != holder && (w.since, k.as_str()) < (mine, holder))
            .count();
        let free = (limit as usize).saturating_sub(self.holders.len());
        if free > ahead {
            self.waiters.remove(holder);
            self.holders
                .insert(holder.to_owned(), Lease { expires, attempt });
            return Answer::Granted;
        }
        self.waiters.insert(
            holder.to_owned(),
            Waiter {
                since: mine,
                seen: now,
                refused: attempt,
            },
        );
        Answer::Denied { in_use, limit }
    }

    /// Like [`Ledger::ask`], but a refusal does not queue `holder` (unless it waits already):
    /// for an opportunistic question (a flow created ahead of its batch's turn), which is not
    /// asked again until the turn comes and so must not hold a place in the queue meanwhile.
    pub fn ask_unqueued(
        &mut self,
        holder: &str,
        attempt: u32,
        limit: u32,
        now: i64,
        ttls: Ttls,
    ) -> Answer {
        let queued = self.waiters.contains_key(holder);
        let answer = self.ask(holder, attempt, limit, now, ttls);
        if !queued && answer != Answer::Granted {
            self.waiters.remove(holder);
        }
        answer
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
        assert_eq!(l.ask("a", 1, 2, 0, TTLS), Answer::Granted);
        assert_eq!(l.ask("a", 1, 2, 1, TTLS), Answer::Granted);
        assert_eq!(l.ask("b", 1, 2, 2, TTLS), Answer::Granted);
        assert_eq!(
            l.ask("c", 1, 2, 3, TTLS),
            Answer::Denied {
                in_use: 2,
                limit: 2
            }
        );
        assert!(l.release("a"));
        assert!(!l.release("a"));
        assert_eq!(l.ask("c", 2, 2, 4, TTLS), Answer::Granted);
    }

    #[test]
    fn a_freed_slot_goes_to_the_longest_waiter_not_the_first_to_ask() {
        let mut l = Ledger::default();
        assert_eq!(l.ask("a", 1, 1, 0, TTLS), Answer::Granted);
        assert!(matches!(l.ask("old", 1, 1, 1, TTLS), Answer::Denied { .. }));
        assert!(matches!(l.ask("new", 1, 1, 2, TTLS), Answer::Denied { .. }));
        l.release("a");
        // `new` asks first after the release, but `old` has waited longer.
        assert!(matches!(l.ask("new", 2, 1, 3, TTLS), Answer::Denied { .. }));
        assert!(matches!(
            l.ask("fresh", 1, 1, 3, TTLS),
            Answer::Denied { .. }
        ));
        assert_eq!(l.ask("old", 2, 1, 4, TTLS), Answer::Granted);
        l.release("old");
        assert_eq!(l.ask("new", 3, 1, 5, TTLS), Answer::Granted);
    }

    #[test]
    fn the_same_question_gets_the_same_answer() {
        let mut l = Ledger::default();
        assert_eq!(l.ask("a", 1, 1, 0, TTLS), Answer::Granted);
        assert!(matches!(l.ask("b", 3, 1, 1, TTLS), Answer::Denied { .. }));
        l.release("a");
        // A second worker executing the same StartFlow (attempt 3) is refused like the first,
        // though a slot is free now; the next attempt is a new question.
        assert!(matches!(l.ask("b", 3, 1, 2, TTLS), Answer::Denied { .. }));
        assert_eq!(l.ask("b", 4, 1, 3, TTLS), Answer::Granted);
        // Granted stays granted for that attempt; an older attempt is stale.
        assert_eq!(l.ask("b", 4, 1, 4, TTLS), Answer::Granted);
        assert!(matches!(l.ask("b", 3, 1, 5, TTLS), Answer::Denied { .. }));
    }

    #[test]
    fn expired_leases_and_silent_waiters_come_back() {
        let mut l = Ledger::default();
        assert_eq!(l.ask("crashed", 1, 1, 0, TTLS), Answer::Granted);
        assert!(matches!(
            l.ask("gone", 1, 1, 10, TTLS),
            Answer::Denied { .. }
        ));
        assert!(matches!(l.ask("b", 1, 1, 20, TTLS), Answer::Denied { .. }));
        // The lease expires at 1000; `gone` stopped asking at 10 and lapsed at 110.
        assert!(matches!(l.ask("b", 2, 1, 999, TTLS), Answer::Denied { .. }));
        assert_eq!(l.ask("b", 3, 1, 1_000, TTLS), Answer::Granted);
        assert!(l.waiters.is_empty());
    }

    #[test]
    fn a_quota_refusal_lowers_the_limit_until_it_recovers() {
        let mut l = Ledger::default();
        for (h, t) in [("a", 0), ("b", 1), ("c", 2)] {
            assert_eq!(l.ask(h, 1, 5, t, TTLS), Answer::Granted);
        }
        // AppFlow refused `c`'s run: the others hold 2, so the limit is 2 for 500 ms.
        assert_eq!(l.shrink("c", 1, 5, 10, 500), 2);
        assert!(!l.holders.contains_key("c"));
        assert_eq!(
            l.ask("c", 2, 5, 20, TTLS),
            Answer::Denied {
                in_use: 2,
                limit: 2
            }
        );
        l.release("a");
        assert_eq!(l.ask("c", 3, 5, 30, TTLS), Answer::Granted);
        assert_eq!(
            l.ask("d", 1, 5, 40, TTLS),
            Answer::Denied {
                in_use: 2,
                limit: 2
            }
        );
        // A second refusal never raises a lower cap, and never goes below 1.
        l.release("b");
        l.release("c");
        assert_eq!(l.shrink("d", 1, 5, 50, 500), 1);
        // Past the expiry the configured limit applies again.
        assert_eq!(l.effective(5, 549), 1);
        assert_eq!(l.ask("d", 2, 5, 550, TTLS), Answer::Granted);
        assert_eq!(l.cap, None);
        assert_eq!(l.effective(5, 550), 5);
    }

    #[test]
    fn an_unqueued_question_takes_a_free_slot_but_never_a_place_in_line() {
        let mut l = Ledger::default();
        assert_eq!(l.ask("a", 1, 1, 0, TTLS), Answer::Granted);
        assert!(matches!(
            l.ask_unqueued("ahead", 1, 1, 1, TTLS),
            Answer::Denied { .. }
        ));
        assert!(l.waiters.is_empty());
        assert!(matches!(l.ask("b", 1, 1, 2, TTLS), Answer::Denied { .. }));
        l.release("a");
        // `b` waits: the free slot is its, not the opportunist's.
        assert!(matches!(
            l.ask_unqueued("ahead", 2, 1, 3, TTLS),
            Answer::Denied { .. }
        ));
        assert_eq!(l.ask("b", 2, 1, 4, TTLS), Answer::Granted);
        l.release("b");
        assert_eq!(l.ask_unqueued("ahead", 3, 1, 5, TTLS), Answer::Granted);
    }

    #[test]
    fn a_quota_refused_attempt_asking_again_is_refused_even_with_a_free_slot() {
        let mut l = Ledger::default();
        assert_eq!(l.ask("a", 1, 5, 0, TTLS), Answer::Granted);
        // AppFlow refused a's run: nobody else holds a slot, so the limit goes down to 1.
        assert_eq!(l.shrink("a", 1, 5, 1, 500), 1);
        // The same StartFlow executed again (a second worker, a redrain) must not take a slot
        // its batch, moved on, would never give back.
        assert!(matches!(l.ask("a", 1, 5, 2, TTLS), Answer::Denied { .. }));
        assert_eq!(l.ask("a", 2, 5, 3, TTLS), Answer::Granted);
        // A refusal of an older attempt never takes a newer attempt's slot.
        l.refuse("a", 1, 4);
        assert!(l.holders.contains_key("a"));
    }
}
