//! Shared simulator state. One `std::sync::Mutex` guards all of it: operations are short and
//! never hold the lock across an `.await`, so a single lock keeps every invariant (e.g. "a
//! run's counters and its flow's counters change together") trivially true.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SimConfig;
use crate::connector::SaasState;
use crate::events::EventSink;
use crate::faults::FaultPlan;
use crate::flow::FlowSpec;
use crate::iam::Iam;
use crate::ledger::Ledger;
use crate::source::{MsWindow, Source};

pub struct Sim {
    pub config: SimConfig,
    pub source: Source,
    state: Mutex<State>,
    faults: Mutex<FaultPlan>,
    /// Seeded so fault decisions and durations replay for a given seed.
    rng: Mutex<fastrand::Rng>,
    pub events: EventSink,
    /// Identities, sessions and policy evaluation (survives `/_sim/reset`).
    pub iam: Iam,
    /// Cancelled on shutdown; run timers and schedulers select on it.
    pub shutdown: CancellationToken,
    /// Every background task, so shutdown can wait for them to finish.
    pub tasks: TaskTracker,
}

impl Sim {
    pub fn new(
        config: SimConfig,
        events: EventSink,
        iam: Iam,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let source = Source::new(&config.source, config.seed);
        let rng = fastrand::Rng::with_seed(config.seed);
        let faults = config.faults.clone();
        Arc::new(Self {
            config,
            source,
            state: Mutex::new(State::default()),
            faults: Mutex::new(faults),
            rng: Mutex::new(rng),
            events,
            iam,
            shutdown,
            tasks: TaskTracker::new(),
        })
    }

    /// A panic while holding the lock only poisons it; the data is still consistent enough for
    /// a test double, so keep serving rather than cascading panics.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn faults(&self) -> FaultPlan {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Install a new plan. Connector profiles restart counting runs toward
    /// `expire_credentials` (see [`crate::connector::SaasState::plan_replaced`]).
    pub fn set_faults(&self, plan: FaultPlan) {
        // Lock order everywhere: state, then faults.
        let mut st = self.state();
        for p in st.profiles.values_mut() {
            p.saas.plan_replaced();
        }
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = plan;
    }

    /// Uniform in [0, 1).
    pub fn roll(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).f64()
    }

    pub fn rand_range(&self, min: u64, max: u64) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .u64(min..=max)
    }

    pub fn flow_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:appflow:{}:{}:flow/{name}",
            self.config.region, self.config.account_id
        )
    }

    pub fn profile_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:appflow:{}:{}:connectorprofile/{name}",
            self.config.region, self.config.account_id
        )
    }

    pub fn caller_arn(&self) -> String {
        format!(
            "arn:aws:sts::{}:assumed-role/flowpilot-sim/sim",
            self.config.account_id
        )
    }
}

#[derive(Default)]
pub struct State {
    pub profiles: BTreeMap<String, ConnectorProfile>,
    pub flows: BTreeMap<String, Flow>,
    pub runs: HashMap<String, Run>,
    /// Execution ids in start order, for `/_sim/runs`.
    pub run_order: Vec<String>,
    pub create_tokens: HashMap<String, CreateToken>,
    /// UpdateConnectorProfile idempotency tokens (same shape as CreateFlow's).
    pub profile_tokens: HashMap<String, CreateToken>,
    /// Keyed by (flow uid, clientToken): a recreated flow does not replay an old flow's run.
    pub start_tokens: HashMap<(String, String), StartToken>,
    pub domains: BTreeMap<String, Domain>,
    pub ledger: Ledger,
    /// Max concurrent runs ever seen per flow name; survives flow deletion.
    pub max_concurrent: BTreeMap<String, u32>,
    /// Max concurrent runs ever seen per connector profile (every flow reading through it):
    /// what a shared run budget must keep at or under its limit.
    pub max_concurrent_per_profile: BTreeMap<String, u32>,
    /// Max concurrent runs ever seen in the account (every flow).
    pub max_concurrent_account: u32,
    /// Max flows that ever existed at once.
    pub max_flows_at_once: u32,
    /// CreateFlow / StartFlow calls refused with `ServiceQuotaExceededException`.
    pub quota_refusals: BTreeMap<&'static str, u32>,
    pub emitted_events: Vec<Value>,
    /// Customer Profiles managed workflows (CreateIntegrationWorkflow), by workflow id.
    pub workflows: BTreeMap<String, crate::workflows::Workflow>,
}

pub struct ConnectorProfile {
    pub name: String,
    pub arn: String,
    pub connector_type: String,
    pub connector_label: Option<String>,
    pub connection_mode: String,
    pub properties: Value,
    pub created_at: DateTime<Utc>,
    /// Bumped by UpdateConnectorProfile.
    pub updated_at: DateTime<Utc>,
    /// Credentials and API allowance as the fault plan drives them.
    pub saas: SaasState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStatus {
    Active,
    Draft,
    Suspended,
    Errored,
}

impl FlowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowStatus::Active => "Active",
            FlowStatus::Draft => "Draft",
            FlowStatus::Suspended => "Suspended",
            FlowStatus::Errored => "Errored",
        }
    }
}

pub struct Flow {
    pub name: String,
    pub arn: String,
    /// Distinguishes incarnations of the same name (delete + recreate).
    pub uid: String,
    pub spec: FlowSpec,
    /// Request members echoed by DescribeFlow (description, kmsArn, configs, tasks, ...).
    pub definition: Map<String, Value>,
    pub tags: BTreeMap<String, String>,
    pub status: FlowStatus,
    pub status_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_run: Option<LastRun>,
    /// Runs started so far: the next run is attempt `runs_started + 1`.
    pub runs_started: u32,
    pub consecutive_failures: u32,
    /// Scheduled flows: sim-time end of the last successfully pulled window.
    pub cursor: Option<DateTime<Utc>>,
    /// Bumped on activation changes so an old scheduler task notices it is stale.
    pub activation: u64,
    pub running: u32,
}

pub struct LastRun {
    pub status: ExecStatus,
    pub time: DateTime<Utc>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStatus {
    InProgress,
    Successful,
    Error,
    CancelStarted,
    Canceled,
}

impl ExecStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::InProgress => "InProgress",
            ExecStatus::Successful => "Successful",
            ExecStatus::Error => "Error",
            ExecStatus::CancelStarted => "CancelStarted",
            ExecStatus::Canceled => "Canceled",
        }
    }
}

pub struct CreateToken {
    pub request: Map<String, Value>,
    pub response: Value,
    pub at: DateTime<Utc>,
}

pub struct StartToken {
    pub response: Value,
    pub at: DateTime<Utc>,
}

pub struct Run {
    pub execution_id: String,
    pub flow_name: String,
    pub flow_arn: String,
    pub flow_uid: String,
    pub spec: FlowSpec,
    pub attempt: u32,
    pub status: ExecStatus,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub planned_ms: u64,
    /// Effective record window (filter ∩ incremental range).
    pub window: MsWindow,
    /// Scheduled runs: the sim-time range pulled.
    pub incremental: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub records_processed: u64,
    pub records_written: u64,
    /// Records read but not written (`num-of-record-failures`, `putFailuresCount`).
    pub record_failures: u64,
    pub error: Option<String>,
    /// `errorInfo.executionMessage` of a successful run with record failures.
    pub record_failure_message: Option<String>,
    pub pull_first: Option<i64>,
    pub pull_last: Option<i64>,
    /// Cancelled by CancelFlowExecutions (or shutdown) to end the run timer early.
    pub cancel: CancellationToken,
}

pub struct Domain {
    pub name: String,
    pub default_expiration_days: u64,
    pub request: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub object_types: BTreeMap<String, ObjectType>,
    /// Keyed by Uri.
    pub integrations: BTreeMap<String, Integration>,
}

pub struct ObjectType {
    pub created_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Integration {
    pub uri: String,
    pub domain: String,
    pub object_type_name: Option<String>,
    pub object_type_names: Option<Value>,
    pub tags: Option<Value>,
    pub role_arn: Option<String>,
    /// The managed workflow that created this (continuous) integration.
    pub workflow_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
