//! berth-registry's test binary (one per crate: link time matters): pure parsers first, then the
//! router and the management accessors driven in-process, then a real server on loopback.

mod cache;
mod component;
mod images;
mod layers;
mod parsers;
mod streaming;
mod support;
