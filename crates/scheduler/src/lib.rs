//! berth's placement engine, as pure functions: the ECS cluster query language ([`query`]),
//! the cluster view and task request ([`Instance`], [`TaskRequest`]), and [`place`], which
//! filters (agent, constraints, CPU, memory, ports) and ranks (binpack, spread, random, in
//! order) to place a batch one task at a time, each placement reserving what it takes.
//!
//! **Architecture Invariant:** no I/O, no clock, no global state; randomness only through the
//! injected RNG, so the same inputs and seed give the same plan.

mod model;
mod place;
pub mod query;

pub use model::{
    Constraint, Demand, Failure, Instance, Placement, PlacementError, Plan, Reason, Resource,
    Resources, SpreadField, Strategy, TaskRequest,
};
pub use place::{misfit, misfits, place};
pub use query::{Expr, QueryError, parse};

#[cfg(test)]
mod tests;
