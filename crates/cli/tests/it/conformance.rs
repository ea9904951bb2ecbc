//! The conformance suite (`berth-conformance`) against a real `berth up`: every implemented ECS,
//! ECR and ELBv2 operation, generated from botocore's model, must conform.

use crate::harness::{Berth, Opts};
use berth_conformance::{Client, Config, Model, Profile, Suite, model::botocore_data_dir};

/// Runs the suite for botocore's `service` against a fresh `berth up`, taking the implemented
/// operations from the family's ledger, `crates/<service>/unsupported-operations.txt`; fails on
/// any failed check.
fn conforms(service: &str, profile: Profile) {
    let berth = Berth::start(Opts::default());
    let model = Model::load(&botocore_data_dir().expect("botocore"), service)
        .unwrap_or_else(|e| panic!("the {service} model: {e}"));
    let ledger = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../{service}/unsupported-operations.txt")),
    )
    .unwrap_or_else(|e| panic!("the {service} operation ledger: {e}"));
    let implemented = model.implemented(&ledger);
    let client = Client::new(
        berth.addr,
        &berth.keys.access_key_id,
        &berth.keys.secret_access_key,
        &model,
    );
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
