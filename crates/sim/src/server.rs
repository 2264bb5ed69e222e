//! One axum router for both services plus `/_sim/`; IAM (gateway, caller) and API faults as
//! middleware.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::workflows::api as workflows;

use crate::error::{ApiError, ErrorKind, Service};
use crate::state::Sim;
use crate::{admin, appflow, appflow_profiles, iam, profiles};

pub fn router(sim: Arc<Sim>) -> Router {
    let api = Router::new()
        .route(
            "/create-connector-profile",
            post(appflow_profiles::create_connector_profile),
        )
        .route(
            "/describe-connector-profiles",
            post(appflow_profiles::describe_connector_profiles),
        )
        .route(
            "/update-connector-profile",
            post(appflow_profiles::update_connector_profile),
        )
        .route("/create-flow", post(appflow::create_flow))
        .route("/describe-flow", post(appflow::describe_flow))
        .route("/list-flows", post(appflow::list_flows))
        .route("/update-flow", post(appflow::update_flow))
        .route("/delete-flow", post(appflow::delete_flow))
        .route("/start-flow", post(appflow::start_flow))
        .route("/stop-flow", post(appflow::stop_flow))
        .route(
            "/cancel-flow-executions",
            post(appflow::cancel_flow_executions),
        )
        .route(
            "/describe-flow-execution-records",
            post(appflow::describe_flow_execution_records),
        )
        .route(
            "/tags/{arn}",
            get(appflow::list_tags)
                .post(appflow::tag_resource)
                .delete(appflow::untag_resource),
        )
        .route(
            "/domains/{domain}",
            post(profiles::create_domain).get(profiles::get_domain),
        )
        .route(
            "/domains/{domain}/object-types/{object_type}",
            put(profiles::put_profile_object_type),
        )
        .route(
            "/domains/{domain}/integrations",
            put(profiles::put_integration)
                .post(profiles::get_integration)
                .get(profiles::list_integrations),
        )
        .route(
            "/domains/{domain}/integrations/delete",
            post(profiles::delete_integration),
        )
        .route(
            "/domains/{domain}/workflows/integrations",
            post(workflows::create_integration_workflow),
        )
        .route(
            "/domains/{domain}/workflows",
            post(workflows::list_workflows),
        )
        .route(
            "/domains/{domain}/workflows/{workflow_id}",
            get(workflows::get_workflow).delete(workflows::delete_workflow),
        )
        .route(
            "/domains/{domain}/workflows/{workflow_id}/steps",
            get(workflows::get_workflow_steps),
        )
        .fallback(unknown_operation)
        .layer(middleware::from_fn_with_state(sim.clone(), api_faults))
        .layer(middleware::from_fn_with_state(sim.clone(), authenticate));

    let admin = Router::new()
        .route("/ledger", get(admin::ledger))
        .route("/source", get(admin::source))
        .route("/runs", get(admin::runs))
        .route("/flows", get(admin::flows))
        .route("/profiles", get(admin::profiles))
        .route("/events", get(admin::events))
        .route("/faults", get(admin::get_faults).post(admin::put_faults))
        .route("/iam", get(admin::get_iam).post(admin::put_iam))
        .route("/reset", post(admin::reset));

    Router::new()
        .nest("/_sim", admin)
        .merge(api)
        // Outermost: STS and the SQS / DynamoDB / EventBridge front never reach the restJson
        // routes (nor their fault plan).
        .layer(middleware::from_fn_with_state(sim.clone(), iam::gateway))
        .with_state(sim)
}

fn service_of(path: &str) -> Service {
    if path.starts_with("/domains/") {
        Service::Profiles
    } else {
        Service::AppFlow
    }
}

async fn unknown_operation(req: Request) -> Response {
    ApiError::new(
        service_of(req.uri().path()),
        ErrorKind::UnknownOperation,
        format!(
            "the simulator does not implement {} {}",
            req.method(),
            req.uri().path()
        ),
    )
    .into_response()
}

/// Resolve who signed the request (SigV4 signatures themselves are not verified) and hand it
/// to the handlers, which authorize their own actions.
async fn authenticate(State(sim): State<Arc<Sim>>, mut req: Request, next: Next) -> Response {
    match sim.iam.resolve(req.headers()) {
        Ok((caller, _)) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => ApiError::unauthenticated(service_of(req.uri().path()), &e).into_response(),
    }
}

async fn api_faults(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let plan = sim.faults();
    let service = service_of(req.uri().path());
    if plan.throttle_rate > 0.0 && sim.roll() < plan.throttle_rate {
        tracing::debug!(path = req.uri().path(), "fault plan: throttling");
        return ApiError::new(service, ErrorKind::Throttling, "Rate exceeded").into_response();
    }
    if plan.server_error_rate > 0.0 && sim.roll() < plan.server_error_rate {
        tracing::debug!(path = req.uri().path(), "fault plan: internal error");
        return ApiError::new(
            service,
            ErrorKind::Internal,
            "An internal error occurred. Try again later.",
        )
        .into_response();
    }
    next.run(req).await
}
