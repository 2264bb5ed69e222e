//! Every end-to-end test in one binary, so the AWS SDK is linked once (zero2prod's layout):
//! `support` is the harness, each other module one area.
//!
//! The world these tests run in is as strict as AWS where it matters: moto (SQS, EventBridge,
//! DynamoDB, CloudFormation) with `infra/flowpilot.yaml` deployed, and flowpilot's AppFlow +
//! Customer Profiles simulator, which also serves STS and enforces IAM on every call — its
//! own services' and, as a front, moto's — against the policies of the roles that deploying
//! the template created. Worker and CLI processes hold those roles' credentials.
//!
//! - [`cli_plan`]: `flowpilot workflow plan` (no AWS).
//! - [`contracts`]: what the template produces (schedules, rules, policies) fed through the
//!   real parser and the policy evaluator.
//! - [`iam`]: one deployment per statement of the worker role, that statement removed.
//! - [`managed_iam`]: the managed workflow run as `AppFlowExecutionRole`; one deployment per
//!   statement of its policy, that statement removed.
//! - [`lambda`]: `flowpilot lambda` through a local Runtime API, the test playing the SQS
//!   event source mapping.
//! - [`modes`]: the template in both worker modes (what moto could not create, listed), the
//!   ECS scaling and drain contract, the Lambda function's contract.
//! - [`sim`]: the simulator's wire conformance and IAM enforcement, through the real SDK clients.
//! - [`stack`]: the template deployed into moto, and the local stack script.
//! - [`worker`], [`reliability`], [`schemas`]: the worker end to end, under faults, and the
//!   health events it emits against their JSON Schemas.
//! - [`not_sent`]: when objects are not sent (issue 10): record-level failures, an expired
//!   connection reconnected, a spent SaaS API allowance.
//! - [`split`]: adaptive windows (issue 14): a window over the per-run record limit splits,
//!   recursively, and completes exactly once; at the split floor it is retried and fails.

//! - [`managed`]: `--engine managed` (issue 13): Customer Profiles' managed workflow runs
//!   flowpilot's batches; same events, redrive of the missing batches, its integration watched.
//! - [`budget`]: the shared run budget (issue 14): thirty workflows share five run slots on
//!   one connector profile across two workers and a `kill -9`.
//! - [`quota`]: AppFlow's account quotas (issue 14): a concurrent-run or flow quota below
//!   flowpilot's budget lowers it and nothing fails; `FLOWPILOT_FLOW_LIMIT` holds; a run over
//!   the per-run time limit splits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is its job
mod support;

mod budget;
mod cli_plan;
mod contracts;
mod iam;
mod lambda;
mod long;
mod managed;
mod managed_iam;
mod modes;
mod not_sent;
mod quota;
mod reliability;
mod schemas;
mod sim;
mod split;
mod stack;
mod worker;
