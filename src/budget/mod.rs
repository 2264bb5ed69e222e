//! The shared run budget (issue 14): concurrent runs per connector profile
//! (`FLOWPILOT_PROFILE_RUN_LIMIT`) and per account (`FLOWPILOT_ACCOUNT_RUN_LIMIT`), and live
//! flows in the account (`FLOWPILOT_FLOW_LIMIT`), held across every workflow and worker replica
//! with leases in the state table.
//!
//! Layout: one item per limit, beside the workflows' items and never touching them:
//!
//! | attribute | type | content |
//! |---|---|---|
//! | `pk` | S | `budget#profile#{connector profile}`, `budget#account` or `budget#flows` |
//! | `version` | N | every write is conditional on it (created with `attribute_not_exists`) |
//! | `doc` | S | the [`Ledger`] as JSON: leases (holder → expiry), waiters and a lowered limit (`cap`) |
//! | `updated_at` | S | RFC 3339 time of the write |
//!
//! A holder is a batch (`{workflow}/b{index}`): one batch runs at most one run at a time, so a
//! StartFlow repeated after a crash asks again under the same name and keeps its lease. The
//! lease is released when a committed transition takes the batch out of `running` (its End
//! report, a reconciled run, a cancel); one that is never released (a worker killed between
//! that commit and the release) expires after `FLOWPILOT_MAX_RUN` plus 10 minutes, past
//! which reconcile has cancelled any run still going. A release is queued in this process
//! ([`RunBudget::queue_release`]) and written by the next update of its item, which is most
//! often the same workflow asking for its next batch's slot: one PutItem both frees the slot
//! and takes the next, instead of two on the way to the next StartFlow. What no update took
//! is written by [`RunBudget::flush_releases`] once the message is handled.
//!
//! Flows: a batch flow's holder is its flow name; its lease is taken before CreateFlow (a
//! refusal is a slot refusal: the batch waits) and released once DeleteFlow succeeds. It
//! expires after [`FLOW_LEASE_EXTRA`] beyond the run lease, in case that release is lost. A
//! live flow (scheduled, flowpilot's continuous integration) asks like a batch flow, in the same
//! queue, and its lease never expires: it is released when the live flow is deleted (the
//! DeleteFlow stays in the outbox until the release is written, so a crash between the two
//! repeats both rather than losing the slot). Its
//! question has no batch attempt, so each ask is a new one (numbered by the clock's seconds);
//! a refusal leaves its CreateFlow in the outbox for the next drain.
//!
//! AppFlow's own refusal (`ServiceQuotaExceededException` on StartFlow or CreateFlow) lowers the
//! limit in the item ([`Ledger::shrink`]) for [`QUOTA_RECOVERY`]: a StartFlow refusal lowers the
//! account limit (the profile's when no account limit is set), a CreateFlow refusal the flow
//! limit.
//!
//! Whether a refused batch waits, and how, is `decide`'s (`decide::slot`); the order in which
//! waiters are served is the ledger's ([`ledger`]).

pub mod ledger;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use flowpilot_core::effect::SlotDenial;

use crate::aws::error_chain;
pub use ledger::{Answer, Ledger, Ttls};

const FLOWS_KEY: &str = "budget#flows";

/// Conditional writes lost in a row before asking is given up for now (the StartFlow stays
/// in the outbox and the next drain asks again); with the jittered pauses between them, about
/// three seconds.
const MAX_CONFLICTS: u32 = 24;

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("run budget {operation} on {key} failed: {detail}")]
    Backend {
        operation: &'static str,
        key: String,
        detail: String,
    },
    #[error("run budget item {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("run budget item {key} kept changing under {MAX_CONFLICTS} attempts")]
    Contended { key: String },
}

/// How long a limit lowered by AppFlow's quota refusal stays lowered.
pub const QUOTA_RECOVERY: Duration = Duration::from_secs(600);

/// A batch flow's lease outlasts a run's by this much: a flow is created ahead of its run and
/// may wait for a run slot that long before its lease lapses.
pub const FLOW_LEASE_EXTRA: Duration = Duration::from_secs(24 * 3600);

/// The limits, as the worker was configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent runs per connector profile (`FLOWPILOT_PROFILE_RUN_LIMIT`, default 5); None:
    /// no run limits (the account's is not applied either).
    pub profile: Option<u32>,
    /// Concurrent runs over the whole account, if limited (`FLOWPILOT_ACCOUNT_RUN_LIMIT`).
    pub account: Option<u32>,
    /// Live flows flowpilot holds in the account (`FLOWPILOT_FLOW_LIMIT`, default 900).
    pub flows: Option<u32>,
    /// How long a lease lasts unless released.
    pub lease: Duration,
    /// How long a waiter keeps its place without asking again.
    pub waiter: Duration,
}

pub const DEFAULT_PROFILE_RUN_LIMIT: u32 = 5;
/// AppFlow's default quota is 1,000 flows per account: this leaves room for flows others own.
pub const DEFAULT_FLOW_LIMIT: u32 = 900;

impl Limits {
    /// Leases outlast the longest run reconcile lets go on; waiters ask every `slot_retry`
    /// (plus SQS and handling delays), so three missed questions drop them. `None` if every
    /// limit is off.
    pub fn new(
        profile: Option<u32>,
        account: Option<u32>,
        flows: Option<u32>,
        max_run: Duration,
        slot_retry: Duration,
    ) -> Option<Self> {
        if profile.is_none() && flows.is_none() {
            return None;
        }
        Some(Self {
            profile,
            account: account.filter(|_| profile.is_some()),
            flows,
            lease: max_run.saturating_add(Duration::from_secs(600)),
            waiter: slot_retry.saturating_mul(3).max(Duration::from_secs(60)),
        })
    }

    fn ttls(&self) -> Ttls {
        Ttls {
            lease: ms(self.lease),
            waiter: ms(self.waiter),
        }
    }
}

/// The holder name of batch `index` of workflow `workflow`.
pub fn holder(workflow: &str, index: u32) -> String {
    format!("{workflow}/b{index}")
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The scope of the flow limit, as status and metrics name it.
pub const FLOWS_SCOPE: &str = "flows";

/// What asking for a slot came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Granted,
    Denied(SlotDenial),
}

/// A refusal under a limit AppFlow's quota lowered says so (`quota`), so the wait shows why
/// the limit is below the configured `configured`.
fn slot(answer: Answer, scope: &str, configured: u32) -> Slot {
    match answer {
        Answer::Granted => Slot::Granted,
        Answer::Denied { in_use, limit } => Slot::Denied(SlotDenial {
            scope: scope.into(),
            in_use,
            limit,
            quota: limit < configured,
        }),
    }
}

/// A ledger item as this process last read or wrote it, and its version (`None`: absent).
type Cached = Option<(Ledger, Option<u64>)>;

/// The run budget over DynamoDB.
#[derive(Clone, Debug)]
pub struct RunBudget {
    client: Client,
    table: String,
    limits: Limits,
    /// Per ledger item: a lock that queues this process's updates of it (so they never race
    /// each other) and the item as last seen. An update writes conditionally on the cached
    /// version without reading first: one request instead of two, on the StartFlow's critical
    /// path. Another replica's write makes the condition fail, and the item is read again.
    cache: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cached>>>>>,
    /// Per ledger item: holders whose release is queued and not written yet.
    releasing: Arc<std::sync::Mutex<HashMap<String, Vec<String>>>>,
    /// Releases written, and releases given up on (their update failed), since
    /// [`take_released`](Self::take_released) last asked.
    released: Arc<std::sync::atomic::AtomicU64>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl RunBudget {
    pub fn new(client: Client, table: impl Into<String>, limits: Limits) -> Self {
        Self {
            client,
            table: table.into(),
            limits,
            cache: Arc::default(),
            releasing: Arc::default(),
            released: Arc::default(),
            dropped: Arc::default(),
        }
    }

    fn releasing(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        // Plain data: a panic elsewhere while holding the lock leaves a valid map.
        self.releasing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues the release of `holder`'s run slots; the next update of each item writes it
    /// (see the module's documentation).
    pub fn queue_release(&self, profile: &str, holder: &str) {
        let keys: Vec<String> = self.scopes(profile).into_iter().map(|(k, ..)| k).collect();
        let mut releasing = self.releasing();
        for key in keys {
            let holders = releasing.entry(key).or_default();
            if !holders.iter().any(|h| h == holder) {
                holders.push(holder.to_owned());
            }
        }
    }

    /// Writes the queued releases no update has taken. Releases whose write failed are not
    /// tried again: their leases expire, as they did when a release was its own write. (Kept,
    /// a release could be written after the same batch was granted its next attempt on
    /// another replica, and take that lease away.)
    pub async fn flush_releases(&self) -> Result<(), BudgetError> {
        // An update removes its item's entry, so every entry left holds a release.
        let keys: Vec<String> = self.releasing().keys().cloned().collect();
        // Every item is tried: nothing stays queued past the message that queued it.
        let mut first_error = None;
        for key in keys {
            if let Err(e) = self.update(&key, |_| ((), false)).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// How many queued releases were written, and how many were given up on, since the last
    /// call.
    pub fn take_released(&self) -> (u64, u64) {
        (
            self.released.swap(0, std::sync::atomic::Ordering::SeqCst),
            self.dropped.swap(0, std::sync::atomic::Ordering::SeqCst),
        )
    }
    fn cached(&self, key: &str) -> Arc<tokio::sync::Mutex<Cached>> {
        // A poisoned map only means another thread panicked while inserting; the map itself
        // is still a valid map of locks.
        let mut map = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(key.to_owned()).or_default())
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The run limits in the order a slot is taken: the profile's, then the account's.
    fn scopes(&self, profile: &str) -> Vec<(String, String, u32)> {
        let Some(per_profile) = self.limits.profile else {
            return Vec::new();
        };
        let mut v = vec![(
            format!("budget#profile#{profile}"),
            format!("profile {profile}"),
            per_profile,
        )];
        if let Some(limit) = self.limits.account {
            v.push(("budget#account".into(), "account".into(), limit));
        }
        v
    }

    /// Takes a flow slot for batch flow `flow` before its CreateFlow (granted when the flow
    /// limit is off).
    /// `ahead`: the flow is created ahead of its batch's turn; refused, it does not queue.
    pub async fn acquire_flow(
        &self,
        flow: &str,
        attempt: u32,
        ahead: bool,
    ) -> Result<Slot, BudgetError> {
        let Some(limit) = self.limits.flows else {
            return Ok(Slot::Granted);
        };
        let mut ttls = self.limits.ttls();
        ttls.lease = ttls.lease.saturating_add(ms(FLOW_LEASE_EXTRA));
        let answer = self
            .update(FLOWS_KEY, |l| {
                let now = Utc::now().timestamp_millis();
                let answer = if ahead {
                    l.ask_unqueued(flow, attempt, limit, now, ttls)
                } else {
                    l.ask(flow, attempt, limit, now, ttls)
                };
                (answer, true)
            })
            .await?;
        Ok(slot(answer, FLOWS_SCOPE, limit))
    }

    /// Asks a flow slot for live flow `flow`, held until it is deleted (granted when the
    /// flow limit is off).
    pub async fn acquire_live_flow(&self, flow: &str) -> Result<Slot, BudgetError> {
        let Some(limit) = self.limits.flows else {
            return Ok(Slot::Granted);
        };
        let mut ttls = self.limits.ttls();
        ttls.lease = i64::MAX;
        let answer = self
            .update(FLOWS_KEY, |l| {
                let now = Utc::now().timestamp_millis();
                let attempt = u32::try_from(now / 1000).unwrap_or(u32::MAX);
                (l.ask(flow, attempt, limit, now, ttls), true)
            })
            .await?;
        Ok(slot(answer, FLOWS_SCOPE, limit))
    }

    /// Gives `flow`'s slot back once it is deleted (idempotent).
    pub async fn release_flow(&self, flow: &str) -> Result<(), BudgetError> {
        if self.limits.flows.is_none() {
            return Ok(());
        }
        self.update(FLOWS_KEY, |l| ((), l.release(flow))).await
    }

    /// AppFlow refused `holder`'s StartFlow for a quota: its run slots go back and the
    /// account's limit (the profile's when no account limit is set) is lowered. None when the
    /// run limits are off (nothing to lower; the batch still waits).
    pub async fn shrink_runs(
        &self,
        profile: &str,
        holder: &str,
        attempt: u32,
    ) -> Result<Option<SlotDenial>, BudgetError> {
        let scopes = self.scopes(profile);
        let Some((key, scope, limit)) = scopes.last().cloned() else {
            return Ok(None);
        };
        for (taken, _, _) in scopes.iter().take(scopes.len().saturating_sub(1)) {
            self.update(taken, |l| {
                l.refuse(holder, attempt, Utc::now().timestamp_millis());
                ((), true)
            })
            .await?;
        }
        let (in_use, lowered) = self.shrink(&key, holder, attempt, limit).await?;
        Ok(Some(SlotDenial {
            scope,
            in_use,
            limit: lowered,
            quota: true,
        }))
    }

    /// AppFlow refused CreateFlow of `flow` (for a batch's `attempt`; 0 for a live flow) for a
    /// quota: the flow limit is lowered. None when the flow limit is off.
    pub async fn shrink_flows(
        &self,
        flow: &str,
        attempt: u32,
    ) -> Result<Option<SlotDenial>, BudgetError> {
        let Some(limit) = self.limits.flows else {
            return Ok(None);
        };
        let (in_use, lowered) = self.shrink(FLOWS_KEY, flow, attempt, limit).await?;
        Ok(Some(SlotDenial {
            scope: FLOWS_SCOPE.into(),
            in_use,
            limit: lowered,
            quota: true,
        }))
    }

    async fn shrink(
        &self,
        key: &str,
        holder: &str,
        attempt: u32,
        limit: u32,
    ) -> Result<(u32, u32), BudgetError> {
        let ttls = self.limits.ttls();
        self.update(key, |l| {
            let now = Utc::now().timestamp_millis();
            l.prune(now, ttls);
            let lowered = l.shrink(holder, attempt, limit, now, ms(QUOTA_RECOVERY));
            ((l.in_use(), lowered), true)
        })
        .await
    }

    /// Takes a slot on every limit for `holder`, or none: a refusal by the account limit
    /// gives back the profile slot just taken.
    pub async fn acquire(
        &self,
        profile: &str,
        holder: &str,
        attempt: u32,
    ) -> Result<Slot, BudgetError> {
        let ttls = self.limits.ttls();
        let scopes = self.scopes(profile);
        for (n, (key, scope, limit)) in scopes.iter().enumerate() {
            let limit = *limit;
            let answer = self
                .update(key, |l| {
                    let now = Utc::now().timestamp_millis();
                    let a = l.ask(holder, attempt, limit, now, ttls);
                    (a, true)
                })
                .await?;
            if let Slot::Denied(denial) = slot(answer, scope, limit) {
                for (taken, _, _) in scopes.iter().take(n) {
                    self.update(taken, |l| ((), l.release(holder))).await?;
                }
                return Ok(Slot::Denied(denial));
            }
        }
        Ok(Slot::Granted)
    }

    /// Applies the releases queued for `key` and `change` (which says whether it changed
    /// anything) to the ledger at `key` and writes it back conditionally on the version it was
    /// read at, again on a lost race. The ledger comes from this process's cache when it has
    /// one; only a fresh read may conclude that nothing changes (a stale copy could lack
    /// another replica's lease). Failing, the releases it took are given up (see
    /// [`flush_releases`](Self::flush_releases)).
    async fn update<T>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut Ledger) -> (T, bool),
    ) -> Result<T, BudgetError> {
        let slot = self.cached(key);
        let mut cached = slot.lock().await;
        // Taken under the item's lock, so two updates never write the same release.
        let releases = self.releasing().remove(key).unwrap_or_default();
        let result = self
            .update_locked(key, &mut cached, &releases, &mut change)
            .await;
        let counter = if result.is_ok() {
            &self.released
        } else {
            &self.dropped
        };
        counter.fetch_add(releases.len() as u64, std::sync::atomic::Ordering::SeqCst);
        result
    }

    async fn update_locked<T>(
        &self,
        key: &str,
        cached: &mut Cached,
        releases: &[String],
        change: &mut impl FnMut(&mut Ledger) -> (T, bool),
    ) -> Result<T, BudgetError> {
        let mut pause_ms = 5u64;
        let mut lost = 0u32;
        while lost < MAX_CONFLICTS {
            let (fresh, (mut ledger, version)) = match cached.take() {
                Some(seen) => (false, seen),
                None => (true, self.read(key).await?),
            };
            let before = ledger.clone();
            let mut released = false;
            for holder in releases {
                released |= ledger.release(holder);
            }
            let (answer, changed) = change(&mut ledger);
            let changed = changed || released;
            if !changed {
                if fresh {
                    *cached = Some((before, version));
                    return Ok(answer);
                }
                continue;
            }
            if self.write(key, &ledger, version).await? {
                *cached = Some((ledger, Some(version.map_or(1, |v| v.saturating_add(1)))));
                return Ok(answer);
            }
            lost += 1;
            if !fresh {
                // The copy was stale: read again at once, nobody is racing this read.
                continue;
            }
            // Every worker's handlers of every workflow on the profile write this one item:
            // a lost race backs off with full jitter so the next try is not the same
            // collision again.
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=pause_ms))).await;
            pause_ms = (pause_ms * 2).min(200);
        }
        Err(BudgetError::Contended {
            key: key.to_owned(),
        })
    }

    async fn read(&self, key: &str) -> Result<(Ledger, Option<u64>), BudgetError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| BudgetError::Backend {
                operation: "GetItem",
                key: key.to_owned(),
                detail: error_chain(&e),
            })?;
        let Some(item) = out.item else {
            return Ok((Ledger::default(), None));
        };
        let corrupt = |reason: String| BudgetError::Corrupt {
            key: key.to_owned(),
            reason,
        };
        let version = match item.get("version") {
            Some(AttributeValue::N(n)) => n.parse::<u64>().map_err(|e| corrupt(e.to_string()))?,
            _ => return Err(corrupt("no numeric `version`".into())),
        };
        let ledger = match item.get("doc") {
            Some(AttributeValue::S(doc)) => {
                serde_json::from_str(doc).map_err(|e| corrupt(e.to_string()))?
            }
            _ => return Err(corrupt("no `doc`".into())),
        };
        Ok((ledger, Some(version)))
    }

    /// `false`: someone else wrote the item since it was read.
    async fn write(
        &self,
        key: &str,
        ledger: &Ledger,
        version: Option<u64>,
    ) -> Result<bool, BudgetError> {
        let doc = serde_json::to_string(ledger).map_err(|e| BudgetError::Corrupt {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        let next = version.map_or(1, |v| v.saturating_add(1));
        let item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S(key.to_owned())),
            ("version".to_owned(), AttributeValue::N(next.to_string())),
            ("doc".to_owned(), AttributeValue::S(doc)),
            (
                "updated_at".to_owned(),
                AttributeValue::S(Utc::now().to_rfc3339()),
            ),
        ]);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match version {
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(BudgetError::Backend {
                operation: "PutItem",
                key: key.to_owned(),
                detail: error_chain(&e),
            }),
        }
    }
}
