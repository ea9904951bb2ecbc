//! The agent's component tests: the real agent against the fake runtime and a fake control
//! plane (a small axum server speaking `berth-agent-api` with scripted desired states).

mod agent;
mod control_plane;
