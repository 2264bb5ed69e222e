//! State-machine property test: `decide` driven by a fake AppFlow / Customer Profiles and a
//! hostile scheduler (duplicates, reordering, late events of old attempts, early and duplicated
//! retry timers, crashes between commit and effects, Applied delivered twice, flaky AWS calls).
//!
//! The fake shell executes the outbox through the worker's own contract
//! (`effect::outcome_of`, `Executed::push`): a transient failure stops execution and leaves the
//! effect in the outbox for a later drain, exactly as in production.
//!
//! Invariants checked after every committed transition, then after a fair drain:
//! - never more than K batches running (or holding a retry slot);
//! - never more than 1 + max_retries counted starts of a batch per redrive round (an attempt
//!   the SaaS API limit refused is a pause and does not count); AppFlow never sees more runs of
//!   a batch than starts issued (client tokens make repeats harmless);
//! - while a batch waits for the SaaS API allowance, no pending batch starts (but on a redrive);
//!   an expired connection (reconnect) is never retried; a batch never succeeds with more
//!   record failures than `max_record_failures`;
//! - after the drain, every record failure kept on a batch or the live integration has been
//!   reported (`Records Not Sent`, with AppFlow's message when the execution record has one);
//! - a succeeded batch is never started again; a split batch never runs again, and the windows
//!   that run tile `[from, to)` exactly, no half below the split floor (runs fail for size or
//!   time too, which splits them);
//! - PutIntegration once per link generation, generation 1 from `to` (or `from` without bulk);
//! - live generations: no new generation's flow is created while a run of an older live flow is
//!   still in progress (unless that run was cancelled), and its `firstExecutionFrom` covers
//!   every successful run of the older flows; an End report or a deactivation of a flow that is
//!   not the current generation's (or is retiring) never touches the streak or the status;
//! - each health event_id in at most one transition;
//! - the outbox contract (minus applied keys, plus new effects; version + 1);
//! - an effect that failed transiently is still in the outbox after its results were applied,
//!   and a later drain executes it to an outcome;
//! - eventually failed, cancelled, live or degraded;
//! - no panic and a persisted form that loads back, also for extreme specs: every validated
//!   maximum over a ten-thousand-year range, retry policies stored before the bounds existed,
//!   and a clock at the end of chrono's range.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use flowpilot_core::classify::Verdict;
use flowpilot_core::decide::{Policy, decide};
use flowpilot_core::effect::{
    Effect, EffectError, EffectKey, EffectKind, Executed, LiveStep, Outcome, SlotDenial, Step,
    Trigger, outcome_of,
};
use flowpilot_core::ids::{FlowRole, WorkflowId};
use flowpilot_core::input::{ActiveRun, FlowRuns, Input, RunReport};
use flowpilot_core::model::{BatchStatus, Workflow, WorkflowStatus};
use flowpilot_core::spec::{SpecInput, parse_timestamp};
use proptest::prelude::*;

/// Salesforce's answer once the rolling API allowance is spent (source budget: a pause).
const LIMIT: &str = "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.";
/// A source query time-out (adaptive windows: the window is split in two down to the floor).
const TOO_BIG: &str = "QUERY_TIMEOUT: Your query request was running for too long.";
/// Salesforce's answer to an expired session (reconnect: never retried).
const EXPIRED: &str = "INVALID_SESSION_ID: Session expired or invalid";

/// Adaptive windows: batches only ever get appended; the windows that run (every batch but the
/// split ones) tile `[from, to)` exactly; a split batch's halves are its window; no half is
/// shorter than the floor.
fn check_windows(wf: &Workflow) {
    if !wf.bulk {
        return;
    }
    let mut windows: Vec<_> = wf.runnable_batches().map(|b| b.window).collect();
    windows.sort_by_key(|w| w.start);
    assert_eq!(windows.first().map(|w| w.start), Some(wf.spec.from));
    assert_eq!(windows.last().map(|w| w.end), Some(wf.spec.to));
    for pair in windows.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "gap or overlap: {pair:?}");
    }
    for (pos, b) in wf.batches.iter().enumerate() {
        assert_eq!(b.index as usize, pos);
        if b.split_from.is_some() {
            let len = (b.window.end - b.window.start).num_milliseconds();
            assert!(
                len >= wf.spec.split_floor_ms as i64,
                "{b:?} below the floor"
            );
        }
        if let [a, c] = b.split_into[..] {
            let (a, c) = (&wf.batches[a as usize], &wf.batches[c as usize]);
            assert_eq!(
                (a.window.start, a.window.end, c.window.end),
                (b.window.start, c.window.start, b.window.end)
            );
        }
    }
}

/// splitmix64: the fake's own randomness, seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn pct(&mut self) -> u64 {
        self.next() % 100
    }
}

#[derive(Clone, Debug)]
enum Action {
    Deliver(usize),
    Duplicate(usize),
    Execute { crash: bool, applied_twice: bool },
    Advance(u32),
    Reconcile,
    Redrive,
    Rebuild,
    LiveRun,
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        30 => any::<usize>().prop_map(Action::Deliver),
        6 => any::<usize>().prop_map(Action::Duplicate),
        25 => (prop::bool::weighted(0.2), prop::bool::weighted(0.2))
            .prop_map(|(crash, applied_twice)| Action::Execute { crash, applied_twice }),
        8 => (1u32..2000).prop_map(Action::Advance),
        4 => Just(Action::Reconcile),
        4 => Just(Action::Redrive),
        2 => Just(Action::Rebuild),
        8 => Just(Action::LiveRun),
    ]
}

/// Specs and clocks at the edges of what the core accepts (docs/architecture.md, "The functional core": input must never make
/// `decide` panic).
#[derive(Clone, Copy, Debug, Default)]
struct Extreme {
    /// Every validated maximum: retry base and cap, retries, concurrency, degraded threshold,
    /// batch size and bulk threshold, over years 0001-9999.
    maxima: bool,
    /// Retry base and cap of `u64::MAX` ms and `u32::MAX` retries, as a spec stored before the
    /// bounds existed may hold (bypasses validation).
    legacy_retry: bool,
    /// `now` a day before chrono's last instant, so every `now + delay` would overflow.
    far_future: bool,
}

fn arb_extreme() -> impl Strategy<Value = Extreme> {
    prop_oneof![
        85 => Just(Extreme::default()),
        15 => (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(maxima, legacy_retry, far_future)| Extreme {
                maxima,
                legacy_retry,
                far_future,
            }
        ),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    batches: u32,
    concurrency: u32,
    max_retries: u32,
    bulk: bool,
    auto_rebuild: bool,
    seed: u64,
    actions: Vec<Action>,
    /// Cancel after this many actions (in some cases only, so most runs reach the end).
    cancel_at: Option<usize>,
    extreme: Extreme,
    /// A maximum run duration of 30 minutes instead of 6 hours, so stuck runs (batches, and
    /// live runs a rebuild waits for) are cancelled within a case.
    short_max_run: bool,
    /// The spec's `max_record_failures`.
    max_record_failures: u32,
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        1u32..=30,
        1u32..=4,
        0u32..=3,
        prop::bool::weighted(0.85),
        any::<bool>(),
        any::<u64>(),
        prop::collection::vec(arb_action(), 20..160),
        prop::option::weighted(0.15, 0usize..160),
        arb_extreme(),
        prop::bool::weighted(0.3),
        0u32..=4,
    )
        .prop_map(
            |(
                batches,
                concurrency,
                max_retries,
                bulk,
                auto_rebuild,
                seed,
                actions,
                cancel_at,
                extreme,
                short_max_run,
                max_record_failures,
            )| {
                Case {
                    batches,
                    concurrency,
                    max_retries,
                    bulk,
                    auto_rebuild,
                    seed,
                    actions,
                    cancel_at,
                    extreme,
                    short_max_run,
                    max_record_failures,
                }
            },
        )
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The fake AWS side plus the message pool and every invariant's bookkeeping.
struct World {
    wf: Workflow,
    now: DateTime<Utc>,
    rng: Rng,
    policy: Policy,
    /// Undelivered queue messages (reordered and duplicated at will).
    pool: Vec<Input>,
    /// AppFlow client tokens seen → execution id.
    tokens: BTreeMap<String, String>,
    /// Finished runs by execution id (for DescribeRun).
    runs: BTreeMap<String, RunReport>,
    runs_per_batch: BTreeMap<u32, u32>,
    next_exec: u64,
    event_ids: BTreeSet<String>,
    put_generations: BTreeSet<u32>,
    ever_succeeded: BTreeSet<u32>,
    transitions: u64,
    /// Effects whose execution stopped on a transient failure at least once.
    stopped: BTreeSet<EffectKey>,
    /// Effects whose outcome was applied.
    recorded: BTreeSet<EffectKey>,
    /// Live flows AppFlow holds, by name: whether the schedule is active.
    live_flows: BTreeMap<String, bool>,
    /// Every run of a live flow, by execution id.
    live_runs: BTreeMap<String, LiveRun>,
    /// Live flows that were deleted (their names, for late reports).
    deleted_live: BTreeSet<String>,
    /// Runs `decide` asked to cancel: they may still finish, even successfully, and the new
    /// generation pulls their window again (duplicates, not gaps).
    cancel_asked: BTreeSet<String>,
}

/// A run of a scheduled live flow in the fake.
#[derive(Clone, Debug)]
struct LiveRun {
    flow: String,
    started: DateTime<Utc>,
    state: RunState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Running,
    /// CancelFlowExecutions asked; still in progress (and may still write) until it ends.
    CancelStarted,
    Done {
        ok: bool,
        pull_end: DateTime<Utc>,
        ended: DateTime<Utc>,
    },
}

impl World {
    fn new(case: &Case) -> Self {
        let from = t0();
        let to = from + TimeDelta::days(30 * i64::from(case.batches));
        let mut input = SpecInput {
            domain: Some("acme".into()),
            object_type: Some("Account".into()),
            connector: Some("salesforce".into()),
            connector_profile: Some("sf".into()),
            object: Some("Account".into()),
            from: Some(from.to_rfc3339()),
            to: Some(to.to_rfc3339()),
            batch_size: Some("P30D".into()),
            bulk_threshold: Some(if case.bulk { "PT1H" } else { "P100Y" }.into()),
            concurrency: Some(case.concurrency),
            max_retries: Some(case.max_retries),
            retry_base: Some("30s".into()),
            retry_cap: Some("5m".into()),
            auto_rebuild: Some(case.auto_rebuild),
            degraded_threshold: Some(2),
            max_record_failures: Some(case.max_record_failures),
            ..Default::default()
        };
        let x = case.extreme;
        if x.maxima {
            // 100 windows of a century; bulk, as the range is longer than the threshold.
            input.from = Some("0001-01-01".into());
            input.to = Some("9999-12-31T23:59:59.999Z".into());
            input.batch_size = Some("P100Y".into());
            input.bulk_threshold = Some(if case.bulk { "PT1H" } else { "P100Y" }.into());
            input.concurrency = Some(100);
            input.max_retries = Some(20);
            input.retry_base = Some("1h".into());
            input.retry_cap = Some("24h".into());
            input.degraded_threshold = Some(100);
        }
        let now = if x.far_future {
            DateTime::<Utc>::MAX_UTC - TimeDelta::days(1)
        } else {
            to.max(input.to.as_deref().and_then(parse_timestamp).unwrap_or(to))
        };
        let mut spec = input.validate(now).unwrap();
        if x.legacy_retry {
            spec.retry.base_ms = u64::MAX;
            spec.retry.cap_ms = u64::MAX;
            spec.retry.max_retries = u32::MAX;
        }
        let wf = Workflow::new(WorkflowId::new("wf-1").unwrap(), spec, now);
        Self {
            wf,
            now,
            rng: Rng(case.seed),
            policy: Policy {
                max_run_duration: if case.short_max_run {
                    std::time::Duration::from_secs(30 * 60)
                } else {
                    Policy::default().max_run_duration
                },
                // Half the cases pause shorter than a reconcile's grace, half the default hour.
                source_budget_wait: if case.seed.is_multiple_of(2) {
                    std::time::Duration::from_secs(120)
                } else {
                    Policy::default().source_budget_wait
                },
                ..Policy::default()
            },
            pool: vec![Input::Start],
            tokens: BTreeMap::new(),
            runs: BTreeMap::new(),
            runs_per_batch: BTreeMap::new(),
            next_exec: 0,
            event_ids: BTreeSet::new(),
            put_generations: BTreeSet::new(),
            ever_succeeded: BTreeSet::new(),
            transitions: 0,
            stopped: BTreeSet::new(),
            recorded: BTreeSet::new(),
            live_flows: BTreeMap::new(),
            live_runs: BTreeMap::new(),
            deleted_live: BTreeSet::new(),
            cancel_asked: BTreeSet::new(),
        }
    }

    /// Feeds one input and checks every per-transition invariant. Returns whether it changed.
    fn feed(&mut self, input: Input) -> bool {
        let applied: BTreeSet<EffectKey> = match &input {
            Input::Applied(o) => o.iter().map(|o| o.key().clone()).collect(),
            _ => BTreeSet::new(),
        };
        let before = self.wf.clone();
        let foreign = foreign_live_input(&before, &input);
        let redrive = matches!(input, Input::Redrive);
        let t = decide(&before, input, self.now, &self.policy);
        if t.is_noop(&before) {
            assert_eq!(
                t.workflow, before,
                "unchanged transition changed the workflow"
            );
            assert!(t.effects.is_empty());
            return false;
        }
        self.transitions += 1;
        let next = &t.workflow;
        if let Some(retired) = foreign {
            let (b, n) = (before.live.as_ref(), next.live.as_ref());
            assert_eq!(
                (next.status, n.map(|l| l.consecutive_failures)),
                (before.status, b.map(|l| l.consecutive_failures)),
                "a run or deactivation of a flow that is not the current generation's changed \
                 its status or streak"
            );
            if retired {
                assert_eq!(
                    n.and_then(|l| l.last_good_pull_end),
                    b.and_then(|l| l.last_good_pull_end),
                    "a retired generation's run moved the fixed resume point"
                );
            }
        }
        assert_eq!(next.version, before.version + 1);
        let mut want: Vec<_> = before
            .outbox
            .iter()
            .filter(|e| !applied.contains(&e.key))
            .cloned()
            .collect();
        want.extend(t.effects.iter().cloned());
        assert_eq!(next.outbox, want, "outbox contract");

        let k = before.spec.concurrency as usize;
        let running = next
            .batches
            .iter()
            .filter(|b| b.status == BatchStatus::Running)
            .count();
        let in_flight = next
            .batches
            .iter()
            .filter(|b| matches!(b.status, BatchStatus::Running | BatchStatus::RetryWait))
            .count();
        assert!(
            running <= k && in_flight <= k,
            "{in_flight} in flight, K = {k}"
        );
        let max_starts = before.spec.retry.max_retries.saturating_add(1);
        for (b, prev) in next.batches.iter().zip(&before.batches) {
            assert!(
                b.attempt - b.budget_base <= max_starts,
                "batch {} started too often: {b:?}",
                b.index
            );
            if prev.status == BatchStatus::Succeeded {
                assert_eq!(
                    b.status,
                    BatchStatus::Succeeded,
                    "succeeded batch {} changed",
                    b.index
                );
            }
            if b.status == BatchStatus::Succeeded {
                self.ever_succeeded.insert(b.index);
            }
            if prev.status == BatchStatus::Split {
                assert_eq!(b.status, BatchStatus::Split, "split batch {} ran", b.index);
            }
        }
        check_windows(next);
        self.check_verdicts(&before, &t.effects, next, redrive);
        for e in &t.effects {
            if let EffectKind::CancelRun { execution_id, .. } = &e.kind {
                self.cancel_asked.insert(execution_id.clone());
            }
        }
        let mut ids_here = BTreeSet::new();
        for e in &t.effects {
            match &e.kind {
                EffectKind::Publish { event } => {
                    assert!(ids_here.insert(event.detail.event_id.clone()));
                    assert!(
                        self.event_ids.insert(event.detail.event_id.clone()),
                        "event id {} in two transitions",
                        event.detail.event_id
                    );
                }
                EffectKind::PutIntegration {
                    flow_name,
                    generation,
                    ..
                } => {
                    assert!(
                        self.put_generations.insert(*generation),
                        "generation {generation} linked twice"
                    );
                    // The flow it links is created by the same transition, just before.
                    let created_first = t.effects.iter().take_while(|x| x.key != e.key).any(|x| {
                        matches!(&x.kind, EffectKind::CreateFlow { flow }
                            if flow.name == *flow_name
                                && matches!(flow.trigger, Trigger::Scheduled { .. }))
                    });
                    assert!(
                        created_first,
                        "generation {generation} links a flow it did not create"
                    );
                }
                EffectKind::CreateFlow { flow } if matches!(e.key, EffectKey::Live { .. }) => {
                    let Trigger::Scheduled {
                        first_execution_from,
                        ..
                    } = flow.trigger
                    else {
                        panic!("live flow must be scheduled")
                    };
                    let base = if next.bulk {
                        next.spec.to
                    } else {
                        next.spec.from
                    };
                    if e.key == EffectKey::live(1, LiveStep::Create) {
                        assert_eq!(first_execution_from, base);
                    } else {
                        assert!(first_execution_from >= base);
                    }
                    self.check_new_generation(&flow.name, first_execution_from);
                }
                _ => {}
            }
            if let EffectKind::StartFlow {
                role: FlowRole::Batch(i),
                ..
            } = &e.kind
            {
                assert!(
                    !self.ever_succeeded_before(&before, *i),
                    "succeeded batch {i} restarted"
                );
            }
        }
        self.wf = t.workflow;
        true
    }

    /// The decisions about pauses, reconnects and record failures, per transition.
    fn check_verdicts(
        &self,
        before: &Workflow,
        effects: &[Effect],
        next: &Workflow,
        redrive: bool,
    ) {
        let holding = before.paused_until().is_some_and(|until| until > self.now);
        for e in effects {
            match &e.kind {
                EffectKind::StartFlow {
                    role: FlowRole::Batch(i),
                    ..
                } if holding && !redrive => {
                    let was = before.batches.get(*i as usize).map(|b| b.status);
                    assert_ne!(
                        was,
                        Some(BatchStatus::Pending),
                        "batch {i} started while the workflow was paused until {:?}",
                        before.paused_until()
                    );
                }
                EffectKind::ScheduleRetry { batch, .. } => {
                    let b = &next.batches[*batch as usize];
                    // Waiting for a run slot is not a retry of the error before it.
                    let denials = |w: &Workflow| {
                        w.batches
                            .get(*batch as usize)
                            .and_then(|b| b.slot_wait.as_ref())
                            .map_or(0, |s| s.denials)
                    };
                    if denials(next) > denials(before) {
                        continue;
                    }
                    let verdict = b.last_error.as_ref().map(|e| e.verdict());
                    assert_ne!(
                        verdict,
                        Some(Verdict::Reconnect),
                        "an expired connection was retried: {b:?}"
                    );
                }
                _ => {}
            }
        }
        let max = u64::from(next.spec.max_record_failures);
        for (b, prev) in next.batches.iter().zip(&before.batches) {
            if b.paused {
                assert_eq!(b.status, BatchStatus::RetryWait, "{b:?}");
            }
            let newly_paused = b.paused && !(prev.paused && prev.attempt == b.attempt);
            if newly_paused {
                // The refused attempt's start no longer counts against the budget.
                assert_eq!(
                    (b.attempt, b.budget_base, b.budget_waits),
                    (prev.attempt, prev.budget_base + 1, prev.budget_waits + 1),
                    "a refused attempt counted: {prev:?} -> {b:?}"
                );
            }
            if b.status == BatchStatus::Succeeded {
                assert!(b.records_failed() <= max, "succeeded beyond budget: {b:?}");
            }
        }
    }

    /// A new live generation's CreateFlow, as `decide` asks for it: every successful run of
    /// an older live flow is covered by the new start, and none of their runs is still in
    /// progress — except runs `decide` asked to cancel (by this transition or before), which
    /// may still finish and whose window the new generation pulls again.
    fn check_new_generation(&self, name: &str, first_execution_from: DateTime<Utc>) {
        for (id, run) in &self.live_runs {
            if run.flow == name || self.cancel_asked.contains(id) {
                continue;
            }
            match run.state {
                RunState::Done {
                    ok: true, pull_end, ..
                } => assert!(
                    pull_end <= first_execution_from,
                    "{name} starts at {first_execution_from}, before the end of {id}'s pull \
                     ({pull_end}) of {}",
                    run.flow
                ),
                RunState::Running | RunState::CancelStarted => {
                    panic!("{name} created while {id} of {} is still running", run.flow)
                }
                RunState::Done { .. } => {}
            }
        }
    }

    /// Moves the clock on, stopping at chrono's last instant.
    fn advance(&mut self, by: TimeDelta) {
        self.now = self
            .now
            .checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    fn ever_succeeded_before(&self, before: &Workflow, i: u32) -> bool {
        before
            .batches
            .get(i as usize)
            .is_some_and(|b| b.status == BatchStatus::Succeeded)
    }

    /// The shell: executes the outbox in order against the fake, stopping at the first
    /// transient failure, through the same contract as the worker's shell.
    fn execute(&mut self) -> Executed {
        let mut executed = Executed::default();
        for e in self.wf.outbox.clone() {
            let step = self.call(&e);
            if !executed.push(&e.key, step) {
                break;
            }
        }
        executed
    }

    /// Executes the outbox and, unless the shell "crashes" first, applies the outcomes
    /// (twice if asked); then checks the transient-failure half of the protocol.
    fn execute_and_apply(&mut self, crash: bool, applied_twice: bool) {
        let Executed { outcomes, stopped } = self.execute();
        if !crash && !outcomes.is_empty() {
            self.recorded
                .extend(outcomes.iter().map(|o| o.key().clone()));
            self.feed(Input::Applied(outcomes.clone()));
            if applied_twice {
                self.feed(Input::Applied(outcomes));
            }
        }
        if let Some((key, error)) = stopped {
            assert!(!error.permanent, "{key} stopped on a permanent error");
            assert!(
                self.wf.outbox.iter().any(|e| e.key == key),
                "{key} failed transiently but left the outbox"
            );
            self.stopped.insert(key.clone());
            if !crash {
                self.report_stuck(key, error);
            }
        }
    }

    /// What the handler does after a stop: `Input::Stuck`, and the drain message if the
    /// transition scheduled a new one. At most one drain per workflow may be pending: a new
    /// one is scheduled only once the previous one's message arrived, or it is overdue (lost).
    fn report_stuck(&mut self, key: EffectKey, error: EffectError) {
        let before = self.wf.drain.clone();
        self.feed(Input::Stuck { key, error });
        let Some(after) = self.wf.drain.clone() else {
            return;
        };
        let new = before.as_ref().is_none_or(|b| b.attempts != after.attempts);
        if !new {
            return;
        }
        if let Some(due) = before.as_ref().and_then(|b| b.due_at) {
            let grace = TimeDelta::from_std(self.policy.retry_grace).unwrap();
            assert!(
                self.now > due + grace,
                "a second drain was scheduled while drain {} (due {due}) was still pending",
                before.as_ref().map_or(0, |b| b.attempts)
            );
        }
        assert!(after.due_at.is_some_and(|d| d >= self.now), "{after:?}");
        self.pool.push(Input::Drain {
            attempt: after.attempts,
        });
    }

    /// An AWS failure that retrying can fix, `pct` percent of the time.
    fn flaky(&mut self, pct: u64) -> Result<(), EffectError> {
        if self.rng.pct() < pct {
            return Err(EffectError {
                code: "InternalServerException".into(),
                message: "fake: try again".into(),
                permanent: false,
            });
        }
        Ok(())
    }

    /// A failure retrying cannot fix, `pct` percent of the time.
    fn broken(&mut self, pct: u64, code: &str) -> Result<(), EffectError> {
        if self.rng.pct() < pct {
            return Err(EffectError {
                code: code.into(),
                message: "fake".into(),
                permanent: true,
            });
        }
        Ok(())
    }

    /// One adapter call against the fake AWS, its answer mapped by `outcome_of`.
    fn call(&mut self, e: &Effect) -> Step {
        let key = &e.key;
        let done = |()| Outcome::Done { key: key.clone() };
        match &e.kind {
            EffectKind::CreateFlow { flow } if matches!(key, EffectKey::Live { .. }) => {
                // What AppFlow sees: no older live flow still runs (a cancelled run may still be
                // finishing: its records are pulled again, as the Integration Rebuilt says).
                for (id, run) in &self.live_runs {
                    assert!(
                        run.flow == flow.name
                            || matches!(run.state, RunState::Done { .. })
                            || self.cancel_asked.contains(id),
                        "{} created while {id} of {} is still running",
                        flow.name,
                        run.flow
                    );
                }
                let r = self
                    .broken(2, "ResourceNotFoundException")
                    .and_then(|()| self.flaky(5));
                if r.is_ok() {
                    self.live_flows.entry(flow.name.clone()).or_insert(false);
                }
                outcome_of(key, r, done)
            }
            EffectKind::CreateFlow { .. } => {
                let r = self
                    .broken(2, "ResourceNotFoundException")
                    .and_then(|()| self.flaky(5));
                outcome_of(key, r, done)
            }
            EffectKind::StopFlow { flow_name } => {
                let r = self.flaky(4);
                if r.is_ok()
                    && let Some(active) = self.live_flows.get_mut(flow_name)
                {
                    *active = false;
                }
                outcome_of(key, r, done)
            }
            EffectKind::DescribeRuns { flow_name } => {
                let r = self.flaky(4).map(|()| self.flow_runs(flow_name));
                outcome_of(key, r, |runs| Outcome::Runs {
                    key: key.clone(),
                    runs,
                })
            }
            EffectKind::DeleteFlow { flow_name } if self.live_flows.contains_key(flow_name) => {
                let r = self.flaky(4);
                if r.is_ok() {
                    // Forced: runs in progress go on (and report) without their flow.
                    self.live_flows.remove(flow_name);
                    self.deleted_live.insert(flow_name.clone());
                }
                outcome_of(key, r, done)
            }
            EffectKind::CancelRun { execution_id, .. }
                if self.live_runs.contains_key(execution_id) =>
            {
                let r = self.flaky(4);
                if r.is_ok()
                    && let Some(run) = self.live_runs.get_mut(execution_id)
                    && run.state == RunState::Running
                {
                    run.state = RunState::CancelStarted;
                }
                outcome_of(key, r, done)
            }
            EffectKind::StartFlow {
                flow_name,
                client_token,
                role: FlowRole::Batch(i),
                attempt,
            } => {
                // The shared run budget: every slot on the profile is held by other workflows.
                if self.rng.pct() < 10 {
                    return Step::Record(Outcome::SlotDenied {
                        key: key.clone(),
                        attempt: *attempt,
                        denial: SlotDenial {
                            scope: "profile fake".into(),
                            in_use: 5,
                            limit: 5,
                            quota: false,
                        },
                    });
                }
                let r = self.flaky(4).and_then(|()| {
                    let exec = self.start_run(flow_name, client_token.clone(), *i);
                    // The run started but the answer was lost: the drain starts it again
                    // with the same client token.
                    self.flaky(3).map(|()| exec)
                });
                outcome_of(key, r, |exec| Outcome::Started {
                    key: key.clone(),
                    role: FlowRole::Batch(*i),
                    attempt: *attempt,
                    execution_id: Some(exec),
                })
            }
            EffectKind::StartFlow {
                flow_name,
                role,
                attempt,
                ..
            } => {
                let r = self.flaky(4);
                // Activates the scheduled flow (if it exists: a failed CreateFlow left none).
                if r.is_ok()
                    && let Some(active) = self.live_flows.get_mut(flow_name)
                {
                    *active = true;
                }
                outcome_of(key, r, |()| Outcome::Started {
                    key: key.clone(),
                    role: *role,
                    attempt: *attempt,
                    execution_id: None,
                })
            }
            EffectKind::PutIntegration { generation, .. } => {
                let r = self
                    .broken(2, "AccessDeniedException")
                    .and_then(|()| self.flaky(5));
                outcome_of(key, r, |()| Outcome::Linked {
                    key: key.clone(),
                    generation: *generation,
                    uri: format!("arn:live:{generation}"),
                })
            }
            EffectKind::DescribeRun {
                role,
                attempt,
                execution_id,
                ..
            } => {
                let r = self.flaky(4).map(|()| {
                    execution_id
                        .as_ref()
                        .and_then(|id| self.runs.get(id).cloned())
                });
                outcome_of(key, r, |run| Outcome::Described {
                    key: key.clone(),
                    role: *role,
                    attempt: *attempt,
                    run,
                })
            }
            EffectKind::ScheduleRetry {
                batch,
                attempt,
                due_at,
            } => {
                let r = self.flaky(4).and_then(|()| {
                    self.pool.push(Input::RetryDue {
                        batch: *batch,
                        attempt: *attempt,
                        due_at: *due_at,
                    });
                    // Sent, but the answer was lost: the timer is sent twice.
                    self.flaky(2)
                });
                outcome_of(key, r, done)
            }
            EffectKind::CancelRun { .. }
            | EffectKind::DeleteFlow { .. }
            | EffectKind::DeleteIntegration { .. }
            | EffectKind::DeleteManaged { .. }
            | EffectKind::Publish { .. } => {
                let r = self.flaky(4);
                outcome_of(key, r, done)
            }
            // The machine is flowpilot's own engine; the managed engine has its own tests
            // (`decide::managed`).
            EffectKind::CreateIntegrationWorkflow { .. }
            | EffectKind::WatchManaged { .. }
            | EffectKind::FindManagedIntegration { .. } => {
                panic!("a flowpilot-engine workflow asked for {key}")
            }
        }
    }

    /// AppFlow StartFlow: the same client token never launches a second run.
    fn start_run(&mut self, flow_name: &str, token: String, batch: u32) -> String {
        if let Some(exec) = self.tokens.get(&token) {
            return exec.clone();
        }
        self.next_exec += 1;
        let exec = format!("e{}", self.next_exec);
        self.tokens.insert(token, exec.clone());
        *self.runs_per_batch.entry(batch).or_default() += 1;
        let roll = self.rng.pct();
        let (succeeded, error, failures) = match roll {
            0..62 => (true, None, 0),
            // Records not written: within or beyond the workflow's budget.
            62..70 => (true, None, 1 + self.rng.next() % 6),
            70..84 => (false, Some("Rate exceeded".to_owned()), 0),
            // Too big for one run: split in two (or retried at the floor).
            84..88 => (false, Some(TOO_BIG.to_owned()), 0),
            88..93 => (false, Some(LIMIT.to_owned()), 0),
            93..96 => (false, Some(EXPIRED.to_owned()), 0),
            _ => (false, Some("INVALID_FIELD: no such column".to_owned()), 0),
        };
        // The execution record says why records failed; the End report only sometimes does.
        let record = RunReport {
            flow_name: flow_name.to_owned(),
            role: FlowRole::Batch(batch),
            execution_id: Some(exec.clone()),
            succeeded,
            error,
            records_processed: Some(100),
            record_failures: Some(failures),
            record_failure_message: (failures > 0).then(|| format!("{failures} records failed")),
            pull_start: None,
            pull_end: None,
            ended_at: Some(self.now),
        };
        let mut report = record.clone();
        if self.rng.pct() < 70 {
            report.record_failure_message = None;
        }
        self.runs.insert(exec.clone(), record);
        // Best effort: sometimes the end event never arrives (the reconciler must find it).
        if self.rng.pct() < 90 {
            self.pool.push(Input::RunEnded(report));
        }
        exec
    }

    fn deliver(&mut self, i: usize, keep: bool) {
        if self.pool.is_empty() {
            return;
        }
        let i = i % self.pool.len();
        let input = if keep {
            self.pool[i].clone()
        } else {
            self.pool.remove(i)
        };
        // The shell re-delays a retry timer that fired early.
        if let Input::RetryDue { due_at, .. } = &input
            && *due_at > self.now
            && !keep
        {
            self.pool.push(input.clone());
        }
        self.feed(input);
    }

    /// DescribeFlowExecutionRecords of a live flow, as the shell reports it.
    fn flow_runs(&self, flow_name: &str) -> FlowRuns {
        let mut runs = FlowRuns::default();
        if !self.live_flows.contains_key(flow_name) {
            return runs; // deleted or never created: ResourceNotFound, nothing runs
        }
        for (id, run) in self.live_runs.iter().filter(|(_, r)| r.flow == flow_name) {
            match run.state {
                RunState::Running | RunState::CancelStarted => runs.in_progress.push(ActiveRun {
                    execution_id: id.clone(),
                    started_at: Some(run.started),
                }),
                RunState::Done {
                    ok: true,
                    pull_end,
                    ended,
                } => {
                    let further = runs
                        .furthest_success
                        .as_ref()
                        .is_none_or(|b| b.pull_end < Some(pull_end));
                    if further {
                        runs.furthest_success =
                            Some(live_report(flow_name, id, true, Some(pull_end), ended));
                    }
                }
                RunState::Done { .. } => {}
            }
        }
        runs
    }

    /// AppFlow's scheduler and runs of live flows: start a run of an active flow, end one in
    /// progress, deactivate a flow, or deliver a made-up late failure of a deleted flow.
    fn live_tick(&mut self) {
        let roll = self.rng.pct();
        if roll < 5 {
            let retired: Vec<String> = self.deleted_live.iter().cloned().collect();
            if !retired.is_empty() {
                let i = (self.rng.next() % retired.len() as u64) as usize;
                self.next_exec += 1;
                let id = format!("late{}", self.next_exec);
                let report = live_report(&retired[i], &id, false, None, self.now);
                self.pool.push(Input::RunEnded(report));
            }
            return;
        }
        if roll < 10 {
            let active: Vec<String> = self
                .live_flows
                .iter()
                .filter(|(_, a)| **a)
                .map(|(n, _)| n.clone())
                .collect();
            if let Some(name) = active.first() {
                self.live_flows.insert(name.clone(), false);
                self.pool.push(Input::FlowDeactivated {
                    role: FlowRole::Live,
                    flow_name: name.clone(),
                    reason: "fake: too many failures".into(),
                });
            }
            return;
        }
        let running: Vec<String> = self
            .live_runs
            .iter()
            .filter(|(_, r)| matches!(r.state, RunState::Running | RunState::CancelStarted))
            .map(|(id, _)| id.clone())
            .collect();
        if !running.is_empty() && roll < 60 {
            let i = (self.rng.next() % running.len() as u64) as usize;
            self.end_live_run(&running[i]);
            return;
        }
        // One run at a time per scheduled flow.
        let idle: Vec<String> = self
            .live_flows
            .iter()
            .filter(|(name, active)| {
                **active
                    && !self.live_runs.values().any(|r| {
                        r.flow == **name
                            && matches!(r.state, RunState::Running | RunState::CancelStarted)
                    })
            })
            .map(|(n, _)| n.clone())
            .collect();
        if let Some(flow) = idle.first() {
            self.next_exec += 1;
            let id = format!("live{}", self.next_exec);
            self.live_runs.insert(
                id,
                LiveRun {
                    flow: flow.clone(),
                    started: self.now,
                    state: RunState::Running,
                },
            );
        }
    }

    /// A live run ends now: its End report (best effort) joins the pool.
    fn end_live_run(&mut self, id: &str) {
        let ok = self.rng.pct() < 60;
        let now = self.now;
        let Some(run) = self.live_runs.get_mut(id) else {
            return;
        };
        let ok = ok && run.state == RunState::Running;
        run.state = RunState::Done {
            ok,
            pull_end: now,
            ended: now,
        };
        let mut report = live_report(&run.flow, id, ok, ok.then_some(now), now);
        if ok && self.rng.pct() < 15 {
            report.record_failures = Some(2);
            report.record_failure_message = Some("2 records failed".into());
        }
        self.runs.insert(id.to_owned(), report.clone());
        if self.rng.pct() < 50 {
            report.record_failure_message = None;
        }
        if self.rng.pct() < 90 {
            self.pool.push(Input::RunEnded(report));
        }
    }

    fn settled(&self) -> bool {
        matches!(
            self.wf.status,
            WorkflowStatus::Failed
                | WorkflowStatus::Cancelled
                | WorkflowStatus::Live
                | WorkflowStatus::Degraded
        ) && self.wf.outbox.is_empty()
    }

    /// Fair drain: no crashes, every message delivered, time moves, reconcile ticks.
    fn drain(&mut self) {
        for _ in 0..5_000 {
            if self.settled()
                && self
                    .pool
                    .iter()
                    .all(|m| !matches!(m, Input::RetryDue { .. } | Input::Start))
            {
                return;
            }
            self.execute_and_apply(false, false);
            // Runs end by themselves: a rebuild waiting for one is not waiting forever.
            let running: Vec<String> = self
                .live_runs
                .iter()
                .filter(|(_, r)| matches!(r.state, RunState::Running | RunState::CancelStarted))
                .map(|(id, _)| id.clone())
                .collect();
            for id in running {
                self.end_live_run(&id);
            }
            let pool = std::mem::take(&mut self.pool);
            for input in pool {
                if let Input::RetryDue { due_at, .. } = &input
                    && *due_at > self.now
                {
                    self.pool.push(input);
                    continue;
                }
                self.feed(input);
            }
            self.advance(TimeDelta::minutes(2));
            // Nothing happens between now and the next retry timer but reconcile ticks:
            // skipping there keeps day-long backoffs within the drain's bound.
            let next_due = self
                .pool
                .iter()
                .filter_map(|m| match m {
                    Input::RetryDue { due_at, .. } => Some(*due_at),
                    _ => None,
                })
                .min();
            if let Some(due) = next_due
                && due > self.now
                && self.wf.outbox.is_empty()
            {
                self.now = due;
            }
            self.feed(Input::Reconcile);
        }
        panic!(
            "did not settle: {:?}, outbox {:?}",
            self.wf.status, self.wf.outbox
        );
    }
}

/// One live run's End report (or its DescribeRuns record).
fn live_report(
    flow_name: &str,
    id: &str,
    ok: bool,
    pull_end: Option<DateTime<Utc>>,
    ended: DateTime<Utc>,
) -> RunReport {
    RunReport {
        flow_name: flow_name.to_owned(),
        role: FlowRole::Live,
        execution_id: Some(id.to_owned()),
        succeeded: ok,
        error: (!ok).then(|| "Connection reset".into()),
        records_processed: Some(3),
        record_failures: None,
        record_failure_message: None,
        pull_start: None,
        pull_end,
        ended_at: Some(ended),
    }
}

/// For a live run report or deactivation: `None` if it is about the current generation's flow
/// (and no rebuild retires it), else `Some(retired)`: `true` for a flow older than the one
/// being retired (or the current one), whose runs must not even move the resume point.
fn foreign_live_input(wf: &Workflow, input: &Input) -> Option<bool> {
    let name = match input {
        Input::RunEnded(r) if r.role == FlowRole::Live => &r.flow_name,
        Input::FlowDeactivated { flow_name, .. } => flow_name,
        _ => return None,
    };
    let live = wf.live.as_ref()?;
    if live.flow_name != *name {
        Some(true)
    } else if live.retiring.is_some() {
        Some(false)
    } else {
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn machine_invariants_hold_under_a_hostile_scheduler(case in arb_case()) {
        let mut w = World::new(&case);
        for (n, action) in case.actions.iter().enumerate() {
            if case.cancel_at == Some(n) {
                w.feed(Input::Cancel { reason: None });
            }
            match action {
                Action::Deliver(i) => w.deliver(*i, false),
                Action::Duplicate(i) => w.deliver(*i, true),
                Action::Execute { crash, applied_twice } => w.execute_and_apply(*crash, *applied_twice),
                Action::Advance(s) => w.advance(TimeDelta::seconds(i64::from(*s))),
                Action::Reconcile => { w.feed(Input::Reconcile); }
                Action::Redrive => { w.feed(Input::Redrive); }
                Action::Rebuild => { w.feed(Input::Rebuild { reason: None }); }
                Action::LiveRun => w.live_tick(),
            }
        }
        w.drain();
        for b in &w.wf.batches {
            let runs = w.runs_per_batch.get(&b.index).copied().unwrap_or(0);
            prop_assert!(runs <= b.attempt, "batch {} ran {} times for {} starts", b.index, runs, b.attempt);
        }
        if w.wf.status == WorkflowStatus::Live || w.wf.status == WorkflowStatus::Degraded {
            // Every window that runs succeeded (split ones ran as their halves).
            prop_assert!(w.wf.runnable_batches().all(|b| b.status == BatchStatus::Succeeded));
            prop_assert!(w.put_generations.contains(&1));
        }
        // Every record failure kept was reported, with AppFlow's message (the fake's execution
        // records always have one, and the drain answered every DescribeRun) — unless the
        // workflow was cancelled first: a cancelled workflow records no more outcomes.
        let cancelled = w.wf.status == WorkflowStatus::Cancelled;
        for b in w.wf.batches.iter().filter(|_| !cancelled) {
            if let Some(ns) = &b.not_sent {
                prop_assert!(
                    ns.reported && ns.message.is_some(),
                    "batch {}: {:?} ({:?}, outbox {:?})",
                    b.index,
                    ns,
                    w.wf.status,
                    w.wf.outbox
                );
                let id = format!("wf-1/records-not-sent/b{}/a{}", b.index, ns.attempt);
                prop_assert!(w.event_ids.contains(&id), "no {}", id);
            }
        }
        if let Some(live) = w.wf.live.as_ref().filter(|_| !cancelled) {
            let kept: u64 = live.not_sent.iter().map(|n| n.records_failed).sum();
            prop_assert!(kept <= live.records_failed);
            for ns in &live.not_sent {
                prop_assert!(ns.reported, "live run not reported: {:?}", ns);
            }
        }
        // Every effect that failed transiently was executed again, to an outcome.
        let never_rerun: Vec<_> = w.stopped.difference(&w.recorded).collect();
        prop_assert!(never_rerun.is_empty(), "never executed again: {:?}", never_rerun);
        // What the store writes reads back as the same workflow, whatever the extremes.
        let stored = serde_json::to_string(&w.wf).unwrap();
        let loaded: Workflow = serde_json::from_str(&stored).unwrap();
        prop_assert_eq!(loaded, w.wf);
    }
}
