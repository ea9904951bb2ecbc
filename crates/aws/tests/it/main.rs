//! The one integration-test binary of `berth-aws`; each module tests one part of the crate.

mod sigv4;
