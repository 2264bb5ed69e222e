//! The simulator's account quotas through the real AppFlow client (part of the `sim` test
//! binary): the flow-count quota on CreateFlow and the concurrent-run limit on StartFlow answer
//! `ServiceQuotaExceededException` (402, `message`), the SDK's typed variant.

use super::*;

#[tokio::test]
async fn account_quotas_answer_service_quota_exceeded_through_the_sdk() -> anyhow::Result<()> {
    let mut config = quiet_config();
    config.faults.max_flows = Some(2);
    config.faults.max_concurrent_runs_per_account = Some(1);
    // Runs last long enough for the second StartFlow to find the first in progress.
    config.faults.run_duration_ms = flowpilot_sim::DurationRange {
        min: 5_000,
        max: 5_000,
    };
    let env = env_with(config).await?;
    let (lo, hi) = (ms(2024, 1, 1), ms(2024, 1, 2));
    create_batch_flow(&env, "fp-q-b0000", lo, hi).await?;
    create_batch_flow(&env, "fp-q-b0001", lo, hi).await?;
    let err = service_error(batch_flow(&env.appflow, "fp-q-b0002", lo, hi).send()).await;
    assert!(err.is_service_quota_exceeded_exception(), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("maximum number of flows (2)"),
        "{err:?}"
    );
    let flows = env.admin("flows").await?;
    assert_eq!(flows["max_flows_at_once"], 2, "{flows}");

    start_run(&env, "fp-q-b0000").await?;
    let err = service_error(env.appflow.start_flow().flow_name("fp-q-b0001").send()).await;
    assert!(err.is_service_quota_exceeded_exception(), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("maximum number of concurrent flow runs (1)"),
        "{err:?}"
    );
    let runs = env.admin("runs").await?;
    assert_eq!(runs["max_concurrent_account"], 1, "{runs}");
    assert_eq!(runs["quota_refusals"]["start_flow"], 1, "{runs}");
    assert_eq!(runs["quota_refusals"]["create_flow"], 1, "{runs}");
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");
    Ok(())
}
