//! The HTTP endpoint: berth's own routes (`/_berth/health`, `/_berth/reset`) and the AWS
//! protocols on `POST /`. Each AWS request goes: read the body (bounded) → verify SigV4 → pick
//! the service (awsJson by `X-Amz-Target`; awsQuery — a form body without a target — by the
//! credential scope's service, or the form's `Version` when unsigned) → validate against the
//! model → call the service → encode in the protocol it came in.

use crate::identity::Identity;
use crate::{AuthMode, Config};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_aws::sigv4::{self, Mode, Secret, SecretSource, Verifier};
use berth_aws::validate::Patterns;
use berth_aws::{AwsError, JsonService, RequestContext, json, query};
use berth_ecr::Ecr;
use berth_ecs::Ecs;
use berth_elbv2::Elbv2;
use berth_logs::Logs;
use berth_store::{AnyStore, Store};
use http_body_util::BodyExt;
use std::sync::Arc;
use tracing::Instrument;

/// The X-Amz-Target prefix of each awsJson service berth serves.
const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113";
const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const LOGS_TARGET: &str = "Logs_20140328";

/// The SigV4 service name and API version of each awsQuery service berth serves.
const ELBV2_SERVICE: &str = "elasticloadbalancing";
const ELBV2_VERSION: &str = "2015-12-01";

pub struct State {
    verifier: Verifier,
    auth: AuthMode,
    account_id: String,
    default_region: String,
    allow_reset: bool,
    /// `berth up` has a `default` cluster from the start, and again after a reset.
    default_cluster: bool,
    store: AnyStore,
    patterns: Patterns,
    ecs: Ecs,
    ecr: Ecr,
    logs: Logs,
    elbv2: Elbv2,
}

/// The keys SigV4 verification accepts: the root key for now; IAM users come later.
struct Keys {
    access_key_id: String,
    secret: Secret,
}

impl SecretSource for Keys {
    fn secret(&self, access_key_id: &str) -> Option<Secret> {
        (access_key_id == self.access_key_id).then(|| self.secret.clone())
    }
}

impl State {
    pub fn new(
        config: &Config,
        identity: &Identity,
        store: AnyStore,
        ecs: Ecs,
        ecr: Ecr,
        logs: Logs,
        elbv2: Elbv2,
    ) -> Self {
        let keys = Keys {
            access_key_id: identity.root.access_key_id.clone(),
            secret: Secret {
                secret_access_key: identity.root.secret_access_key.clone(),
                account_id: identity.root.account_id.clone(),
            },
        };
        let mode = match config.auth {
            AuthMode::Sigv4 => Mode::Verify,
            AuthMode::Open => Mode::Open,
        };
        State {
            verifier: Verifier::new(mode, Arc::new(keys)),
            auth: config.auth,
            account_id: config.account_id.clone(),
            default_region: config.region.clone(),
            allow_reset: config.allow_reset,
            default_cluster: config.role == crate::Role::Up,
            store,
            patterns: Patterns::default(),
            ecs,
            ecr,
            logs,
            elbv2,
        }
    }
}

/// The route table and the layers around it, outermost last:
/// - `request_id` stamps `x-amzn-RequestId` on every response that lacks one (the AWS handler
///   sets its own, so it can log it);
/// - `CatchPanicLayer` turns a handler bug into a 500 `ServerException` instead of a dropped
///   connection, and sits inside `request_id` so that answer carries an id too.
///
/// The registry's `/v2/` routes are merged in before the layers, so they get both.
pub fn router(state: Arc<State>, registry: &berth_registry::Registry) -> Router {
    Router::new()
        .route("/_berth/health", get(health))
        .route("/_berth/reset", post(reset))
        .route("/", post(aws))
        .with_state(state)
        .merge(registry.router())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::map_response(request_id))
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let err = AwsError::internal("a request handler panicked");
    let mut r = (err.status, json::error_body(&err)).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(json::content_type("1.1")),
    );
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_static("ServerException"),
    );
    r
}

async fn request_id(mut response: Response) -> Response {
    if !response.headers().contains_key("x-amzn-requestid")
        && let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
    {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

async fn health() -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        r#"{"status":"ready","services":["ecs","ecr","logs","elbv2"]}"#,
    )
        .into_response()
}

async fn reset(AxState(state): AxState<Arc<State>>) -> Response {
    // Without --allow-reset the route does not exist, as far as a client can tell.
    if !state.allow_reset {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut result = state.store.reset().await.map_err(|e| e.to_string());
    if result.is_ok() && state.default_cluster {
        let ctx = RequestContext {
            account_id: state.account_id.clone(),
            region: state.default_region.clone(),
            request_id: uuid::Uuid::new_v4().to_string(),
            access_key_id: None,
        };
        result = state
            .ecs
            .call(
                ctx,
                "CreateCluster",
                serde_json::json!({"clusterName": "default"}),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
    }
    match result {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"reset":true}"#,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("reset failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn aws(AxState(state): AxState<Arc<State>>, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    if query::is_query(content_type, req.headers().contains_key("x-amz-target")) {
        return aws_query(&state, req, request_id).await;
    }
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let span = tracing::info_span!("aws", request_id = %request_id, target = %target);
    let (result, version) = handle(&state, req, &request_id, &target)
        .instrument(span)
        .await;
    let content_type = json::content_type(version);
    let mut response = match result {
        Ok(body) => (StatusCode::OK, body).into_response(),
        Err(err) => {
            if err.status.is_server_error() {
                tracing::warn!(code = %err.code, "request failed");
            }
            let mut r = (err.status, json::error_body(&err)).into_response();
            if let Ok(v) = HeaderValue::from_str(&err.code) {
                r.headers_mut().insert("x-amzn-errortype", v);
            }
            r
        }
    };
    let headers: &mut HeaderMap = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

/// What every AWS request goes through before its protocol matters: the body read (bounded),
/// the signature verified, and the caller's context. Also returns the service the signature was
/// made for.
async fn admit(
    state: &State,
    req: Request,
    request_id: &str,
) -> Result<(Bytes, RequestContext, Option<String>), AwsError> {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match http_body_util::Limited::new(body, json::MAX_BODY)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(json::too_large());
        }
        Err(_) => {
            return Err(AwsError::serialization(
                "The request body could not be read.",
            ));
        }
    };
    let principal = state
        .verifier
        .verify(&parts, &bytes, std::time::SystemTime::now())
        .map_err(|e| e.into_aws())?;
    if principal.is_none() && state.auth == AuthMode::Sigv4 {
        return Err(sigv4::AuthError::missing().into_aws());
    }
    let signed_service = principal.as_ref().map(|p| p.service.clone());
    let ctx = RequestContext {
        account_id: principal
            .as_ref()
            .and_then(|p| p.account_id.clone())
            .unwrap_or_else(|| state.account_id.clone()),
        region: principal
            .as_ref()
            .map(|p| p.region.clone())
            .unwrap_or_else(|| state.default_region.clone()),
        request_id: request_id.to_string(),
        access_key_id: principal.map(|p| p.access_key_id),
    };
    Ok((bytes, ctx, signed_service))
}

/// One awsQuery request: the service is the one the signature was made for (or, unsigned under
/// `--auth open`, the one whose API version the form names); the answer is XML either way.
async fn aws_query(state: &State, req: Request, request_id: String) -> Response {
    let span = tracing::info_span!("aws", request_id = %request_id, protocol = "query");
    let result = async {
        let (bytes, ctx, signed_service) = admit(state, req, &request_id).await?;
        let params = query::parse_form(&bytes);
        let action = params.get("Action").cloned().unwrap_or_default();
        let service = match signed_service.as_deref() {
            Some(s) => s == ELBV2_SERVICE,
            None => params.get("Version").map(String::as_str) == Some(ELBV2_VERSION),
        };
        if !service {
            return Err(query::invalid_action(&action));
        }
        query::serve(&state.elbv2, &state.patterns, ctx, &params).await
    }
    .instrument(span)
    .await;
    let mut response = match result {
        Ok(body) => (StatusCode::OK, body).into_response(),
        Err(err) => {
            if err.status.is_server_error() {
                tracing::warn!(code = %err.code, "request failed");
            }
            (err.status, query::error_body(&err, &request_id)).into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static(query::CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

/// Runs one AWS request; also returns the awsJson version to answer in.
async fn handle(
    state: &State,
    req: Request,
    request_id: &str,
    target: &str,
) -> (Result<Vec<u8>, AwsError>, &'static str) {
    let (bytes, ctx, signed_service) = match admit(state, req, request_id).await {
        Ok(x) => x,
        Err(e) => return (Err(e), "1.1"),
    };
    let Some((prefix, operation)) = json::parse_target(target) else {
        return (Err(AwsError::unknown_operation(target)), "1.1");
    };
    match prefix {
        ECS_TARGET => (
            serve(
                &state.ecs,
                &state.patterns,
                ctx,
                signed_service.as_deref(),
                operation,
                &bytes,
            )
            .await,
            "1.1",
        ),
        ECR_TARGET => (
            serve(
                &state.ecr,
                &state.patterns,
                ctx,
                signed_service.as_deref(),
                operation,
                &bytes,
            )
            .await,
            "1.1",
        ),
        LOGS_TARGET => (
            serve(
                &state.logs,
                &state.patterns,
                ctx,
                signed_service.as_deref(),
                operation,
                &bytes,
            )
            .await,
            "1.1",
        ),
        _ => (Err(AwsError::unknown_operation(target)), "1.1"),
    }
}

async fn serve<S: JsonService>(
    service: &S,
    patterns: &Patterns,
    ctx: RequestContext,
    signed_service: Option<&str>,
    operation: &str,
    body: &[u8],
) -> Result<Vec<u8>, AwsError> {
    // The target picks the service; the signature must have been made for that same service,
    // as AWS's per-service endpoints insist.
    let meta = &service.model().metadata;
    let expected = meta
        .signing_name
        .as_deref()
        .unwrap_or(&meta.endpoint_prefix);
    if let Some(signed) = signed_service
        && signed != expected
    {
        return Err(AwsError::client(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{expected}'. "),
        ));
    }
    if !service.model().operations.contains_key(operation) {
        return Err(AwsError::unknown_operation(operation));
    }
    // An operation berth does not serve says so, whatever its input: that is the more useful
    // answer than a validation error about a request that could never succeed.
    if !service.implements(operation) {
        return Err(AwsError::client(
            "UnsupportedOperationException",
            format!("berth does not support the operation {operation} yet."),
        ));
    }
    let input = json::decode(
        service.model(),
        patterns,
        service.validation_error_code(),
        operation,
        body,
    )?;
    tracing::debug!(operation, "dispatch");
    service.call(ctx, operation, input).await
}
