//! The HTTP endpoint: berth's own routes (`/_berth/health`, `/_berth/reset`) and the AWS
//! protocols on `POST /` and `POST /service/<name>/operation/<op>`. Each AWS request goes: read
//! the body (bounded) → verify SigV4 → pick the service (awsJson by `X-Amz-Target`; rpc-v2-cbor
//! by the path's service name, which is the same target prefix; awsQuery — a form body without
//! a target — by the credential scope's service, or the form's `Version` when unsigned) →
//! validate against the model → call the service → encode in the protocol it came in.

use crate::identity::Identity;
use crate::{AuthMode, Config};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_autoscaling::Autoscaling;
use berth_aws::model::ServiceModel;
use berth_aws::sigv4::{self, Mode, Secret, SecretSource, Verifier};
use berth_aws::validate::Patterns;
use berth_aws::{AwsError, JsonService, RequestContext, cbor, json, query};
use berth_cloudwatch::Cloudwatch;
use berth_ecr::Ecr;
use berth_ecs::Ecs;
use berth_elbv2::Elbv2;
use berth_logs::Logs;
use berth_secretsmanager::SecretsManager;
use berth_store::{AnyStore, Store};
use http_body_util::BodyExt;
use std::sync::Arc;
use tracing::Instrument;

/// The X-Amz-Target prefix of each awsJson service berth serves.
const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113";
const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const LOGS_TARGET: &str = "Logs_20140328";
const AUTOSCALING_TARGET: &str = "AnyScaleFrontendService";
const SECRETSMANAGER_TARGET: &str = "secretsmanager";
/// CloudWatch speaks awsJson 1.0 (botocore), rpc-v2-cbor (the AWS SDK for Rust) and awsQuery.
const CLOUDWATCH_TARGET: &str = "GraniteServiceVersion20100801";

/// The awsQuery services: the SigV4 service name a signed request names, the API version an
/// unsigned one (`--auth open`) names in `Version`, and the family that answers.
const QUERY_SERVICES: &[(&str, &str, QueryFamily)] = &[
    ("elasticloadbalancing", "2015-12-01", QueryFamily::Elbv2),
    ("monitoring", "2010-08-01", QueryFamily::Cloudwatch),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryFamily {
    Elbv2,
    Cloudwatch,
}

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
    cloudwatch: Cloudwatch,
    autoscaling: Autoscaling,
    /// Secrets Manager; other server code reads secrets through its `resolve`.
    pub secrets: SecretsManager,
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
    #[allow(clippy::too_many_arguments)] // one per API family, each handed in by `run`
    pub fn new(
        config: &Config,
        identity: &Identity,
        store: AnyStore,
        ecs: Ecs,
        ecr: Ecr,
        logs: Logs,
        elbv2: Elbv2,
        cloudwatch: Cloudwatch,
        autoscaling: Autoscaling,
        secrets: SecretsManager,
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
            cloudwatch,
            autoscaling,
            secrets,
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
        .route("/service/{service}/operation/{operation}", post(aws))
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
        && let Ok(v) = HeaderValue::from_str(&berth_aws::new_request_id())
    {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

async fn health() -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        r#"{"status":"ready","services":["ecs","ecr","logs","elbv2","cloudwatch","autoscaling","secretsmanager"]}"#,
    )
        .into_response()
}

async fn reset(AxState(state): AxState<Arc<State>>) -> Response {
    // Without --allow-reset the route does not exist, as far as a client can tell.
    if !state.allow_reset {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut result = state.store.reset().await.map_err(|e| e.to_string());
    // The registry's manifest cache holds copies of records the reset just removed.
    state.ecr.forget_cached();
    if result.is_ok() {
        result = state.cloudwatch.reset().map_err(|e| e.to_string());
    }
    if result.is_ok() && state.default_cluster {
        let ctx = RequestContext {
            account_id: state.account_id.clone(),
            region: state.default_region.clone(),
            request_id: berth_aws::new_request_id(),
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
    let request_id = berth_aws::new_request_id();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    if query::is_query(content_type, req.headers().contains_key("x-amz-target")) {
        return aws_query(&state, req, request_id).await;
    }
    // rpc-v2-cbor names service and operation in the path; awsJson in `X-Amz-Target`.
    let (wire, target) = match cbor::parse_path(req.uri().path()) {
        Some((service, op)) => (Wire::Cbor, format!("{service}.{op}")),
        None => (
            Wire::Json,
            req.headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        ),
    };
    let span = tracing::info_span!("aws", request_id = %request_id, target = %target);
    let mut response = handle(&state, req, &request_id, wire, &target)
        .instrument(span)
        .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

/// How an awsJson-family request travels: JSON bodies and `X-Amz-Target`, or CBOR bodies and
/// the rpc-v2-cbor path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Json,
    Cbor,
}

/// An answer in `wire`'s format. `model` is the service's, once known: it names a
/// query-compatible service's errors (`__type` and `x-amzn-query-error`).
fn answer(
    wire: Wire,
    json_version: &'static str,
    model: Option<&ServiceModel>,
    result: Result<Vec<u8>, AwsError>,
) -> Response {
    let mut response = match result {
        Ok(body) => (StatusCode::OK, body).into_response(),
        Err(err) => {
            if err.status.is_server_error() {
                tracing::warn!(code = %err.code, "request failed");
            }
            let (body, type_name) = match (wire, model) {
                (Wire::Json, Some(m)) => (json::error_body_for(m, &err), json::error_type(m, &err)),
                (Wire::Json, None) => (json::error_body(&err), &*err.code),
                (Wire::Cbor, Some(m)) => (cbor::error_body(m, &err), json::error_type(m, &err)),
                (Wire::Cbor, None) => (cbor::plain_error_body(&err), &*err.code),
            };
            let mut r = (err.status, body).into_response();
            if let Ok(v) = HeaderValue::from_str(type_name) {
                r.headers_mut().insert("x-amzn-errortype", v);
            }
            if let Some(v) = model
                .and_then(|m| json::query_error_header(m, &err))
                .and_then(|v| HeaderValue::from_str(&v).ok())
            {
                r.headers_mut().insert("x-amzn-query-error", v);
            }
            r
        }
    };
    let headers: &mut HeaderMap = response.headers_mut();
    match wire {
        Wire::Json => {
            headers.insert(
                "content-type",
                HeaderValue::from_static(json::content_type(json_version)),
            );
        }
        Wire::Cbor => {
            headers.insert("content-type", HeaderValue::from_static(cbor::CONTENT_TYPE));
            headers.insert(
                cbor::PROTOCOL_HEADER,
                HeaderValue::from_static(cbor::PROTOCOL),
            );
        }
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
    // Signed as sent; decompressed after (CloudWatch's PutMetricData is gzipped by botocore).
    let bytes = decode_content_encoding(&parts.headers, bytes)?;
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

/// A `Content-Encoding: gzip` body inflated, within the same size limit as any body: botocore
/// compresses the bodies of operations whose model asks for it (`requestCompression`, CloudWatch's
/// PutMetricData) once they pass 10 KiB.
fn decode_content_encoding(headers: &http::HeaderMap, bytes: Bytes) -> Result<Bytes, AwsError> {
    let gzip = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(bytes);
    }
    use std::io::Read;
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .take(json::MAX_BODY as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|_| AwsError::serialization("The gzip request body could not be decompressed."))?;
    if inflated.len() > json::MAX_BODY {
        return Err(json::too_large());
    }
    Ok(Bytes::from(inflated))
}

/// One awsQuery request: the service is the one the signature was made for (or, unsigned under
/// `--auth open`, the one whose API version the form names); the answer is XML either way.
async fn aws_query(state: &State, req: Request, request_id: String) -> Response {
    let span = tracing::info_span!("aws", request_id = %request_id, protocol = "query");
    let result = async {
        let (bytes, ctx, signed_service) = admit(state, req, &request_id).await?;
        let params = query::parse_form(&bytes);
        let action = params.get("Action").cloned().unwrap_or_default();
        let family = QUERY_SERVICES
            .iter()
            .find(
                |(signing_name, version, _)| match signed_service.as_deref() {
                    Some(s) => s == *signing_name,
                    None => params.get("Version").map(String::as_str) == Some(*version),
                },
            )
            .map(|(_, _, family)| *family);
        match family {
            Some(QueryFamily::Elbv2) => {
                query::serve(&state.elbv2, &state.patterns, ctx, &params).await
            }
            Some(QueryFamily::Cloudwatch) => {
                query::serve_json(&state.cloudwatch, &state.patterns, ctx, &params).await
            }
            None => Err(query::invalid_action(&action)),
        }
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

/// Runs one awsJson or rpc-v2-cbor request and answers in its wire format.
async fn handle(
    state: &State,
    req: Request,
    request_id: &str,
    wire: Wire,
    target: &str,
) -> Response {
    let (bytes, ctx, signed_service) = match admit(state, req, request_id).await {
        Ok(x) => x,
        Err(e) => return answer(wire, "1.1", None, Err(e)),
    };
    let Some((prefix, operation)) = json::parse_target(target) else {
        return answer(wire, "1.1", None, Err(AwsError::unknown_operation(target)));
    };
    let call = Call {
        wire,
        patterns: &state.patterns,
        ctx,
        signed_service: signed_service.as_deref(),
        operation,
        body: &bytes,
    };
    // The one table of awsJson services: target prefix → family and awsJson version. A service
    // whose model lists `smithy-rpc-v2-cbor` is reached by the same prefix over CBOR.
    match prefix {
        ECS_TARGET => call.to(&state.ecs, "1.1").await,
        ECR_TARGET => call.to(&state.ecr, "1.1").await,
        LOGS_TARGET => call.to(&state.logs, "1.1").await,
        AUTOSCALING_TARGET => call.to(&state.autoscaling, "1.1").await,
        SECRETSMANAGER_TARGET => call.to(&state.secrets, "1.1").await,
        CLOUDWATCH_TARGET => call.to(&state.cloudwatch, "1.0").await,
        _ => answer(wire, "1.1", None, Err(AwsError::unknown_operation(target))),
    }
}

/// One admitted awsJson or CBOR request, before its service is known.
struct Call<'a> {
    wire: Wire,
    patterns: &'a Patterns,
    ctx: RequestContext,
    signed_service: Option<&'a str>,
    operation: &'a str,
    body: &'a [u8],
}

impl Call<'_> {
    async fn to<S: JsonService>(self, service: &S, json_version: &'static str) -> Response {
        let wire = self.wire;
        let result = self.serve(service).await;
        answer(wire, json_version, Some(service.model()), result)
    }

    async fn serve<S: JsonService>(self, service: &S) -> Result<Vec<u8>, AwsError> {
        let operation = self.operation;
        // The target picks the service; the signature must have been made for that same
        // service, as AWS's per-service endpoints insist.
        let model = service.model();
        let meta = &model.metadata;
        let expected = meta
            .signing_name
            .as_deref()
            .unwrap_or(&meta.endpoint_prefix);
        if let Some(signed) = self.signed_service
            && signed != expected
        {
            return Err(AwsError::client(
                "InvalidSignatureException",
                format!("Credential should be scoped to correct service: '{expected}'. "),
            ));
        }
        if !model.operations.contains_key(operation)
            || (self.wire == Wire::Cbor && !model.speaks("smithy-rpc-v2-cbor"))
        {
            return Err(AwsError::unknown_operation(operation));
        }
        // An operation berth does not serve says so, whatever its input: that is the more
        // useful answer than a validation error about a request that could never succeed.
        if !service.implements(operation) {
            return Err(AwsError::client(
                "UnsupportedOperationException",
                format!("berth does not support the operation {operation} yet."),
            ));
        }
        let code = service.validation_error_code();
        let input = match self.wire {
            Wire::Json => json::decode(model, self.patterns, code, operation, self.body)?,
            Wire::Cbor => cbor::decode(model, self.patterns, code, operation, self.body)?,
        };
        tracing::debug!(operation, "dispatch");
        let output = service.call(self.ctx, operation, input).await?;
        match self.wire {
            Wire::Json => Ok(output),
            Wire::Cbor => {
                let value: serde_json::Value = if output.is_empty() {
                    serde_json::Value::Object(Default::default())
                } else {
                    serde_json::from_slice(&output).map_err(AwsError::internal)?
                };
                cbor::encode(model, operation, &value)
            }
        }
    }
}
