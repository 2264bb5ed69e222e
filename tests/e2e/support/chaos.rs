//! Fault injection for the reliability tests: the simulator's fault plan (what AWS and
//! EventBridge do wrong) plus [`WorkerPool::chaos`], which `kill -9`s worker processes at
//! random moments and restarts them (what hosts and orchestrators do wrong).
//!
//! Randomness comes from one seeded RNG per test, so a failing schedule can be replayed by
//! re-running with the seed it printed.

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use flowpilot_sim::{DurationRange, FaultPlan, RunFailure};

use super::e2e::{Env, Worker};

/// Runs of 100–300 ms: short enough for tight tests, long enough to overlap other work.
pub fn short_runs() -> FaultPlan {
    FaultPlan {
        run_duration_ms: DurationRange { min: 100, max: 300 },
        ..FaultPlan::default()
    }
}

/// `rate` of AppFlow End reports never published.
pub fn dropped_end_events(rate: f64) -> FaultPlan {
    FaultPlan {
        drop_end_event_rate: rate,
        ..short_runs()
    }
}

/// Every event published twice, the copy `delay_ms` later.
pub fn duplicated_events(delay_ms: u64) -> FaultPlan {
    FaultPlan {
        duplicate_event_rate: 1.0,
        duplicate_event_delay_ms: delay_ms,
        ..short_runs()
    }
}

/// API calls to AppFlow and Customer Profiles answer 429 / 500 at these rates.
pub fn flaky_apis(throttle_rate: f64, server_error_rate: f64) -> FaultPlan {
    FaultPlan {
        throttle_rate,
        server_error_rate,
        ..short_runs()
    }
}

/// Runs `attempts` of every flow ending in `suffix` fail with `message`, writing nothing.
pub fn failing_runs(suffix: &str, attempts: Vec<u32>, message: &str) -> RunFailure {
    RunFailure {
        flow_suffix: suffix.to_owned(),
        attempts,
        from_attempt: None,
        to_attempt: None,
        message: message.to_owned(),
        partial_fraction: 0.0,
    }
}

/// A test's seed: `FLOWPILOT_CHAOS_SEED` if set (to replay a failure), else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("FLOWPILOT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Worker processes in numbered slots; a killed slot is refilled with a fresh process.
pub struct WorkerPool {
    pub slots: Vec<Worker>,
    /// Killed workers, kept for their logs.
    pub dead: Vec<Worker>,
    extra: Vec<(String, String)>,
    restarts: usize,
}

/// What a chaos run did.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub kills: usize,
    /// Slots killed, in order.
    pub victims: Vec<usize>,
    /// When each kill happened.
    pub at: Vec<chrono::DateTime<chrono::Utc>>,
}

impl WorkerPool {
    pub fn start(env: &Env, n: usize, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut pool = Self {
            slots: Vec::new(),
            dead: Vec::new(),
            extra,
            restarts: 0,
        };
        for i in 0..n {
            let w = pool.spawn(env, i)?;
            pool.slots.push(w);
        }
        Ok(pool)
    }

    fn spawn(&mut self, env: &Env, slot: usize) -> anyhow::Result<Worker> {
        let label = format!("w{slot}-r{}", self.restarts);
        self.restarts += 1;
        let extra: Vec<(&str, &str)> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.spawn_worker(&label, &extra)
    }

    /// `kill -9` slot `slot`, then start a replacement at once.
    pub async fn kill_and_restart(&mut self, env: &Env, slot: usize) -> anyhow::Result<()> {
        self.slots[slot].kill9().await?;
        let mut fresh = self.spawn(env, slot)?;
        std::mem::swap(&mut fresh, &mut self.slots[slot]);
        self.dead.push(fresh);
        Ok(())
    }

    /// Kills `kills` workers (a random slot each time, restarting each) at random moments:
    /// each kill first waits a random gap drawn from `gap`. Bounded: `kills` iterations, each
    /// wait at most `gap.end`.
    pub async fn chaos(
        &mut self,
        env: &Env,
        rng: &mut fastrand::Rng,
        kills: usize,
        gap: Range<Duration>,
    ) -> anyhow::Result<ChaosReport> {
        let mut report = ChaosReport::default();
        let span = gap.end.saturating_sub(gap.start).as_millis() as u64;
        for _ in 0..kills {
            // The random gap *is* the fault schedule (when to strike), not a wait for a
            // condition; nothing is synchronised by it.
            let wait = gap.start + Duration::from_millis(rng.u64(0..=span));
            tokio::time::sleep(wait).await;
            let slot = rng.usize(0..self.slots.len());
            self.kill_and_restart(env, slot)
                .await
                .with_context(|| format!("kill {} (slot {slot})", report.kills + 1))?;
            report.kills += 1;
            report.victims.push(slot);
            report.at.push(chrono::Utc::now());
        }
        Ok(report)
    }

    /// Every current worker is alive and no worker (current or killed) logged a panic.
    pub fn ensure_healthy(&mut self) -> anyhow::Result<()> {
        for w in &mut self.slots {
            if !w.alive() {
                bail!(
                    "worker {} exited:\n{}",
                    w.label,
                    super::e2e::tail(&w.log_text(), 40)
                );
            }
        }
        for w in self.slots.iter().chain(&self.dead) {
            w.assert_no_panic()?;
        }
        Ok(())
    }

    /// Sum of a counter over the live workers' /metrics.
    pub async fn counter_total(&self, env: &Env, name: &str) -> anyhow::Result<u64> {
        let mut total = 0;
        for w in &self.slots {
            total += super::e2e::counter(&w.metrics(&env.http).await?, name);
        }
        Ok(total)
    }
}

/// Seconds since `start`, for the results table.
pub fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
