//! berth's domain model: ARNs, resource names and the rules ECS applies to them. Pure functions
//! of their inputs, no I/O.
//!
//! **Architecture Invariant:** nothing here knows HTTP, JSON wire shapes, the store or Docker.
//! Protocol adapters translate wire shapes into calls on these types.

pub mod arn;
pub mod clock;
pub mod ecs;
pub mod rollout;
pub mod task;

pub use arn::Arn;
