//! The ECR API over awsJson 1.1 (`AmazonEC2ContainerRegistry_V20150921`) on berth's OCI
//! registry: repositories (with tag mutability, repository policies and lifecycle policies),
//! images, layers, tags on repositories, and the 12-hour tokens `docker login` uses. The server
//! runs [`Ecr::lifecycle_sweep`] to apply lifecycle policies on a schedule. One file per
//! resource family, one function per action: typed request → ECR's rules → a [`Registry`] call
//! (one store commit) → typed response.
//!
//! **API Boundary:** handlers see a validated, typed request and a [`RequestContext`]; they know
//! nothing of HTTP or SigV4, and touch repositories and images only through [`Registry`]'s
//! accessors. berth serves one registry (the server's account and region): ARNs, registry ids
//! and repository URIs name it whatever region a request was signed for.

mod auth;
mod common;
mod images;
mod layers;
pub mod lifecycle;
mod lifecycle_policies;
mod repositories;
mod repository_policy;
mod tags;

pub use auth::{AuthTokens, PullCredentials};
pub use lifecycle_policies::LifecycleReport;

use berth_aws::model::ServiceModel;
use berth_aws::token::TokenCodec;
pub use berth_model::clock::{Clock, system_clock};
use berth_registry::Registry;
use std::sync::Arc;

/// Operations berth does not serve yet, one per line as `Name: reason`. The operation ledger
/// test checks that every operation of the model is either implemented or listed here.
pub const UNSUPPORTED: &str = include_str!("../unsupported-operations.txt");

/// Where the one registry berth serves lives, as ECR names it.
#[derive(Debug, Clone)]
pub struct RegistryPlace {
    pub account_id: String,
    pub region: String,
    /// `host:port` clients reach the registry at: the prefix of every `repositoryUri`.
    pub host: String,
}

/// The ECR API family.
#[derive(Clone)]
pub struct Ecr {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    model: ServiceModel,
    tokens: TokenCodec,
    auth: AuthTokens,
    place: RegistryPlace,
    clock: Clock,
}

impl Ecr {
    /// `token_key` signs pagination tokens and registry auth tokens (each with its own domain
    /// separation); it must be stable across restarts so both stay valid.
    pub fn new(
        registry: Registry,
        token_key: [u8; 32],
        place: RegistryPlace,
        clock: Clock,
    ) -> Self {
        let model = ServiceModel::lazy(berth_shapes::models::ECR);
        Ecr {
            inner: Arc::new(Inner {
                registry,
                model,
                tokens: TokenCodec::new(token_key),
                auth: AuthTokens::new(token_key),
                place,
                clock,
            }),
        }
    }

    /// Forgets what the registry cached from the store: after the store was reset under it.
    pub fn forget_cached(&self) {
        self.inner.registry.forget_cached();
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub(crate) fn place(&self) -> &RegistryPlace {
        &self.inner.place
    }

    pub(crate) fn now_ms(&self) -> i64 {
        (self.inner.clock)()
    }

    pub(crate) fn tokens(&self) -> &TokenCodec {
        &self.inner.tokens
    }

    pub(crate) fn auth(&self) -> &AuthTokens {
        &self.inner.auth
    }
}

berth_aws::json_service! {
    service: Ecr,
    title: "ECR",
    validation_error: "InvalidParameterException",
    model: |this| &this.inner.model,
    operations: {
    "CreateRepository" => repositories::create_repository,
    "DescribeRepositories" => repositories::describe_repositories,
    "DeleteRepository" => repositories::delete_repository,
    "DescribeRegistry" => repositories::describe_registry,
    "PutImageTagMutability" => repositories::put_image_tag_mutability,
    "SetRepositoryPolicy" => repository_policy::set_repository_policy,
    "GetRepositoryPolicy" => repository_policy::get_repository_policy,
    "DeleteRepositoryPolicy" => repository_policy::delete_repository_policy,
    "PutLifecyclePolicy" => lifecycle_policies::put_lifecycle_policy,
    "GetLifecyclePolicy" => lifecycle_policies::get_lifecycle_policy,
    "DeleteLifecyclePolicy" => lifecycle_policies::delete_lifecycle_policy,
    "StartLifecyclePolicyPreview" => lifecycle_policies::start_lifecycle_policy_preview,
    "GetLifecyclePolicyPreview" => lifecycle_policies::get_lifecycle_policy_preview,
    "GetAuthorizationToken" => auth::get_authorization_token,
    "ListImages" => images::list_images,
    "DescribeImages" => images::describe_images,
    "BatchGetImage" => images::batch_get_image,
    "BatchDeleteImage" => images::batch_delete_image,
    "PutImage" => images::put_image,
    "BatchCheckLayerAvailability" => layers::batch_check_layer_availability,
    "InitiateLayerUpload" => layers::initiate_layer_upload,
    "UploadLayerPart" => layers::upload_layer_part,
    "CompleteLayerUpload" => layers::complete_layer_upload,
    "GetDownloadUrlForLayer" => layers::get_download_url_for_layer,
    "TagResource" => tags::tag_resource,
    "UntagResource" => tags::untag_resource,
    "ListTagsForResource" => tags::list_tags_for_resource,
    }
}
