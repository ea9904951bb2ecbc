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
