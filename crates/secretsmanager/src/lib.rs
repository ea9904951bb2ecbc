//! AWS Secrets Manager over awsJson 1.1 (target prefix `secretsmanager`): secrets with
//! versions and staging labels (`AWSCURRENT`, `AWSPREVIOUS`, custom ones, moved with new values
//! or by UpdateSecretVersionStage), deletion with a
//! recovery window, tags, listing with filters, batch reads and random passwords; and
//! [`SecretsManager::resolve`], the in-process accessor ECS uses for a container's `secrets`
//! and `repositoryCredentials`. One file per resource family, one function per action: typed
//! request → Secrets Manager's rules → store transaction → typed response.
//!
//! **API Boundary:** handlers see a validated, typed request and a [`RequestContext`]; they
//! know nothing of HTTP or SigV4. Other crates reach secrets only through
//! [`SecretsManager::resolve`].
//!
//! **Architecture Invariant:** one `secretsmanager.secret` record per secret (its versions
//! inside), changed only by read-modify-write through `retry_on_conflict`, so a staging label
//! is on exactly one version and bad input writes nothing. Values are stored as given: berth
//! has no KMS, and `KmsKeyId` is only echoed. A secret past its recovery window is treated as
//! absent and its record replaced by the next CreateSecret of its name.

mod common;
mod filter;
mod records;
mod resolve;
mod secrets;
mod tags;
mod values;

use berth_aws::model::ServiceModel;
use berth_aws::token::TokenCodec;
pub use berth_model::clock::{Clock, system_clock};
use berth_store::AnyStore;
use std::sync::Arc;

pub use resolve::ResolveError;

/// Operations berth does not serve yet, one per line as `Name: reason`. The operation ledger
/// test checks that every operation of the model is either implemented or listed here.
pub const UNSUPPORTED: &str = include_str!("../unsupported-operations.txt");

/// The Secrets Manager API family.
#[derive(Clone)]
pub struct SecretsManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: AnyStore,
    model: ServiceModel,
    tokens: TokenCodec,
    clock: Clock,
}

impl SecretsManager {
    /// `token_key` signs pagination tokens; it must be stable across restarts so tokens stay
    /// valid.
    pub fn new(store: AnyStore, token_key: [u8; 32], clock: Clock) -> Self {
        let model = ServiceModel::lazy(berth_shapes::models::SECRETSMANAGER);
        SecretsManager {
            inner: Arc::new(Inner {
                store,
                model,
                tokens: TokenCodec::new(token_key),
                clock,
            }),
        }
    }

    pub(crate) fn store(&self) -> &AnyStore {
        &self.inner.store
    }

    pub(crate) fn now_ms(&self) -> i64 {
        (self.inner.clock)()
    }

    pub(crate) fn tokens(&self) -> &TokenCodec {
        &self.inner.tokens
    }
}

berth_aws::json_service! {
    service: SecretsManager,
    title: "Secrets Manager",
    validation_error: "ValidationException",
    model: |this| &this.inner.model,
    operations: {
    "CreateSecret" => secrets::create_secret,
    "DescribeSecret" => secrets::describe_secret,
    "UpdateSecret" => secrets::update_secret,
    "DeleteSecret" => secrets::delete_secret,
    "RestoreSecret" => secrets::restore_secret,
    "ListSecrets" => secrets::list_secrets,
    "GetSecretValue" => values::get_secret_value,
    "PutSecretValue" => values::put_secret_value,
    "ListSecretVersionIds" => values::list_secret_version_ids,
    "UpdateSecretVersionStage" => values::update_secret_version_stage,
    "BatchGetSecretValue" => values::batch_get_secret_value,
    "GetRandomPassword" => values::get_random_password,
    "TagResource" => tags::tag_resource,
    "UntagResource" => tags::untag_resource,
    }
}
