//! The one integration-test binary of the `berth` package: each module starts real `berth`
//! processes and drives them with the clients users have (aws CLI, boto3, the Rust SDK, raw
//! HTTP).

mod autoscaling;
mod bad_input;
mod cloudwatch;
mod cloudwatch_composite;
mod cloudwatch_protocols;
mod conformance;
mod container_metrics;
mod crash;
mod ecr;
mod ecr_lifecycle;
mod ecs_api;
mod elbv2;
mod faults;
mod harness;
mod lb;
mod lb_services;
mod ledger;
mod lifecycle;
mod logs;
mod oci_client;
mod profile;
mod registry_clients;
mod registry_s3;
mod scaling_loop;
mod secretsmanager;
mod services;
mod task_definition_clients;
mod task_images;
mod task_metadata;
mod tasks;
