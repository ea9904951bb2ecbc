//! berth-runtime's one integration-test binary: the fake driver's behaviour (`fake`), and the
//! Docker driver against the real local engine (`docker`, which fails if no engine answers).

mod docker;
mod fake;
