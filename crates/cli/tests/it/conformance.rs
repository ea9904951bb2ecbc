//! The conformance suite (`berth-conformance`) against a real `berth up`: every implemented ECS,
//! ECR and ELBv2 operation, generated from botocore's model, must conform.

use crate::harness::{Berth, Opts};
use berth_conformance::{Client, Config, Model, Profile, Suite, model::botocore_data_dir};

#[test]
fn ecs_conforms_to_its_service_model() {
    let berth = Berth::start(Opts::default());
    let model = Model::load(&botocore_data_dir().expect("botocore"), "ecs").expect("ECS model");
    let ledger = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ecs/unsupported-operations.txt"),
    )
    .expect("the ECS operation ledger");
    let implemented = model.implemented(&ledger);
    let client = Client::new(
        berth.addr,
        &berth.keys.access_key_id,
        &berth.keys.secret_access_key,
        &model,
    );
    let suite = Suite::new(
        model,
        implemented,
        client,
        Profile::ecs(),
        Config::from_env(),
    );
    let report = suite.run();
    println!("{}", report.render());
    assert_eq!(report.failed(), 0, "{}", report.summary_line());
}

#[test]
fn ecr_conforms_to_its_service_model() {
    let berth = Berth::start(Opts::default());
    let model = Model::load(&botocore_data_dir().expect("botocore"), "ecr").expect("ECR model");
    let ledger = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ecr/unsupported-operations.txt"),
    )
    .expect("the ECR operation ledger");
    let implemented = model.implemented(&ledger);
    let client = Client::new(
        berth.addr,
        &berth.keys.access_key_id,
        &berth.keys.secret_access_key,
        &model,
    );
    let suite = Suite::new(
        model,
        implemented,
        client,
        Profile::ecr(),
        Config::from_env(),
    );
    let report = suite.run();
    println!("{}", report.render());
    assert_eq!(report.failed(), 0, "{}", report.summary_line());
}

#[test]
fn elbv2_conforms_to_its_service_model() {
    let berth = Berth::start(Opts::default());
    let model = Model::load(&botocore_data_dir().expect("botocore"), "elbv2").expect("ELBv2 model");
    let ledger = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../elbv2/unsupported-operations.txt"),
    )
    .expect("the ELBv2 operation ledger");
    let implemented = model.implemented(&ledger);
    let client = Client::new(
        berth.addr,
        &berth.keys.access_key_id,
        &berth.keys.secret_access_key,
        &model,
    );
    let suite = Suite::new(
        model,
        implemented,
        client,
        Profile::elbv2(),
        Config::from_env(),
    );
    let report = suite.run();
    println!("{}", report.render());
    assert_eq!(report.failed(), 0, "{}", report.summary_line());
}
