//! The conformance suite (`berth-conformance`) against a real `berth up`: every implemented ECS,
//! ECR, ELBv2, CloudWatch, CloudWatch Logs, Application Auto Scaling and Secrets Manager
//! operation, generated from botocore's model, must conform.

use crate::harness::{Berth, Opts};
use berth_conformance::{Client, Config, Model, Profile, Suite, model::botocore_data_dir};

/// Runs the suite for botocore's `service` against a fresh `berth up`, taking the implemented
/// operations from the family's ledger, `crates/<service>/unsupported-operations.txt`; fails on
/// any failed check.
fn conforms(service: &str, profile: Profile) {
    let protocol = if service == "elbv2" { "query" } else { "json" };
    conforms_with_ledger(service, service, protocol, profile);
}

/// [`conforms`] for a family whose crate is not named as botocore names the service
/// (`application-autoscaling` → `crates/autoscaling`), over `protocol` (`json`, `query` or
/// `smithy-rpc-v2-cbor`; the model's own for awsQuery services).
fn conforms_with_ledger(service: &str, family: &str, protocol: &str, profile: Profile) {
    conforms_with_model(service, family, protocol, profile, |_| {});
}

/// [`conforms_with_ledger`] on botocore's model as `amend` leaves it (what the service's
/// documentation and the AWS SDKs say and botocore's files lack).
fn conforms_with_model(
    service: &str,
    family: &str,
    protocol: &str,
    profile: Profile,
    amend: fn(&mut Model),
) {
    let berth = Berth::start(Opts::default());
    let mut model = Model::load(&botocore_data_dir().expect("botocore"), service)
        .unwrap_or_else(|e| panic!("the {service} model: {e}"));
    amend(&mut model);
    // The suite reads the wire protocol from the model, as botocore does: a service that
    // lists several is checked over each by naming it the model's protocol.
    model.service_json["metadata"]["protocol"] = protocol.into();
    let ledger = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../{family}/unsupported-operations.txt")),
    )
    .unwrap_or_else(|e| panic!("the {family} operation ledger: {e}"));
    let implemented = model.implemented(&ledger);
    let mut client = Client::new(
        berth.addr,
        &berth.keys.access_key_id,
        &berth.keys.secret_access_key,
        &model,
    );
    if protocol == "smithy-rpc-v2-cbor" {
        client = client.speaking(protocol, &model);
    }
    let report = Suite::new(model, implemented, client, profile, Config::from_env()).run();
    println!("{}", report.render());
    assert_eq!(report.failed(), 0, "{}", report.summary_line());
}

#[test]
fn ecs_conforms_to_its_service_model() {
    conforms("ecs", Profile::ecs());
}

#[test]
fn ecr_conforms_to_its_service_model() {
    conforms("ecr", Profile::ecr());
}

#[test]
fn elbv2_conforms_to_its_service_model() {
    conforms("elbv2", Profile::elbv2());
}

/// CloudWatch over awsJson 1.0 (botocore's choice), with errors read from
/// `x-amzn-query-error` as botocore reads them.
#[test]
fn cloudwatch_conforms_to_its_service_model() {
    conforms("cloudwatch", Profile::cloudwatch());
}

/// The same checks over Smithy RPC v2 CBOR, the AWS SDK for Rust's protocol for CloudWatch.
#[test]
fn cloudwatch_conforms_over_rpc_v2_cbor() {
    conforms_with_ledger(
        "cloudwatch",
        "cloudwatch",
        "smithy-rpc-v2-cbor",
        Profile::cloudwatch(),
    );
}

/// The same checks over awsQuery, which older SDKs speak to CloudWatch.
#[test]
fn cloudwatch_conforms_over_aws_query() {
    conforms_with_ledger("cloudwatch", "cloudwatch", "query", Profile::cloudwatch());
}

#[test]
fn logs_conforms_to_its_service_model() {
    conforms_with_model(
        "logs",
        "logs",
        "json",
        Profile::logs(),
        berth_conformance::profile::logs::amend_model,
    );
}

#[test]
fn secretsmanager_conforms_to_its_service_model() {
    conforms_with_model(
        "secretsmanager",
        "secretsmanager",
        "json",
        Profile::secretsmanager(),
        berth_conformance::profile::secretsmanager::amend_model,
    );
}

#[test]
fn autoscaling_conforms_to_its_service_model() {
    conforms_with_ledger(
        "application-autoscaling",
        "autoscaling",
        "json",
        Profile::autoscaling(),
    );
}
