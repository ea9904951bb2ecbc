//! The contract between the protocol layer and an API family: a service names its model and
//! answers operations with JSON it has already typed and checked.

use crate::AwsError;
use crate::model::ServiceModel;
use serde_json::Value;
use std::future::Future;

/// Who is calling and where: everything a handler may know about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub account_id: String,
    /// From the SigV4 credential scope; the server's default region when unsigned.
    pub region: String,
    pub request_id: String,
    pub access_key_id: Option<String>,
}

impl RequestContext {
    /// The store partition that scopes this request's resources, as AWS scopes them: one
    /// account in one region.
    pub fn partition(&self) -> String {
        format!("{}/{}", self.account_id, self.region)
    }
}

/// An API family served over awsJson (1.0 or 1.1).
pub trait JsonService: Send + Sync + 'static {
    fn model(&self) -> &ServiceModel;

    /// The error code this service answers for a constraint the model declares (ECS says
    /// `InvalidParameterException`; newer services say `ValidationException`).
    fn validation_error_code(&self) -> &'static str;

    /// Whether berth implements `operation` (the rest answer `UnsupportedOperation`-style errors
    /// and are listed in the service's ledger).
    fn implements(&self, operation: &str) -> bool;

    /// Runs one operation on an input that already passed model validation. Returns the
    /// response body.
    fn call(
        &self,
        ctx: RequestContext,
        operation: &str,
        input: Value,
    ) -> impl Future<Output = Result<Vec<u8>, AwsError>> + Send;
}

/// What [`json_service!`] expands to needs, reachable through `$crate` so API-family crates
/// need not depend on these themselves.
#[doc(hidden)]
pub mod __private {
    pub use serde_json::Value;
}

/// Declares an API family's implemented operations once, and from that list generates the
/// dispatch, the [`JsonService`] impl, and `implemented_operations()` (which the operation
/// ledger and the conformance suite read). Each handler is `async fn(&Service,
/// &RequestContext, TypedRequest) -> Result<TypedResponse, AwsError>`. As `berth-ecs` uses it
/// (shown, not compiled: it needs a service crate around it; every service crate compiles a
/// real one):
///
/// ```text
/// berth_aws::json_service! {
///     service: Ecs,
///     title: "ECS",
///     validation_error: "InvalidParameterException",
///     model: |ecs| &ecs.inner.model,
///     operations: { "ListClusters" => clusters::list_clusters }
/// }
/// ```
#[macro_export]
macro_rules! json_service {
    (
        service: $service:ty,
        title: $title:literal,
        validation_error: $code:literal,
        model: |$this:ident| $model:expr,
        operations: { $($name:literal => $module:ident :: $func:ident),* $(,)? } $(,)?
    ) => {
        const IMPLEMENTED: &[&str] = &[$($name),*];

        /// Every operation berth implements, for the ledger and the conformance suite.
        pub fn implemented_operations() -> &'static [&'static str] {
            IMPLEMENTED
        }

        impl $crate::JsonService for $service {
            fn model(&self) -> &$crate::model::ServiceModel {
                let $this = self;
                $model
            }

            fn validation_error_code(&self) -> &'static str {
                $code
            }

            fn implements(&self, operation: &str) -> bool {
                IMPLEMENTED.contains(&operation)
            }

            async fn call(
                &self,
                ctx: $crate::RequestContext,
                operation: &str,
                input: $crate::service::__private::Value,
            ) -> Result<Vec<u8>, $crate::AwsError> {
                let ctx = &ctx;
                match operation {
                    $($name => $crate::json::output(
                        &$module::$func(self, ctx, $crate::json::input(input)?).await?,
                    ),)*
                    _ => Err($crate::AwsError::client(
                        "UnsupportedOperationException",
                        format!(
                            concat!("berth does not support the ", $title, " operation {} yet."),
                            operation
                        ),
                    )),
                }
            }
        }
    };
}
