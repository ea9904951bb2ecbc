//! The generator on the real botocore models of every service berth serves: no request it makes
//! passes the body limit berth (and AWS) put on requests, however large the model lets a list
//! or string be, and a list at its maximum length is still made where it fits.

use berth_conformance::Model;
use berth_conformance::generate::{DEFAULT_BODY_LIMIT, Generator};
use berth_conformance::model::botocore_data_dir;

const SERVICES: &[&str] = &[
    "ecs",
    "ecr",
    "elbv2",
    "cloudwatch",
    "application-autoscaling",
    "secretsmanager",
    "logs",
];

#[test]
fn no_generated_request_passes_the_body_limit() {
    let data = botocore_data_dir().expect("botocore");
    for service in SERVICES {
        let model = Model::load(&data, service).expect("model");
        for op in model.operations() {
            let mut g = Generator::new(&model, 8);
            let valid = g.valid_cases(&op);
            for case in &valid {
                let len = case.body.to_string().len();
                assert!(
                    len <= DEFAULT_BODY_LIMIT,
                    "{service}/{op} [{}]: {len} bytes",
                    case.label
                );
            }
            // The suite breaks the largest accepted request; the largest valid one stands in.
            let Some(largest) = valid.iter().max_by_key(|c| c.body.to_string().len()) else {
                continue;
            };
            for case in g.invalid_cases(&op, &largest.body.clone(), 40) {
                let len = case.body.to_string().len();
                assert!(
                    len <= DEFAULT_BODY_LIMIT,
                    "{service}/{op} [{}]: {len} bytes",
                    case.label
                );
            }
        }
    }
}

#[test]
fn put_log_events_is_tried_with_ten_thousand_events() {
    let model = Model::load(&botocore_data_dir().expect("botocore"), "logs").expect("model");
    let cases = Generator::new(&model, 8).valid_cases("PutLogEvents");
    let at_max = cases
        .iter()
        .find(|c| c.label == "max /logEvents (10000)")
        .expect("logEvents at its maximum length");
    assert_eq!(
        at_max.body["logEvents"].as_array().map(Vec::len),
        Some(10_000)
    );
}
