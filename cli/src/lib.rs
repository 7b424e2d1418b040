//! hub2lake's operator tools, on top of the handler library ([`hub2lake`]):
//! [`simulator`] (a faithful Functions host that drives the real `handler`),
//! [`benchmark`] (the handler measured from outside), [`ops`] (read, verify, fetch and
//! replay a lake), [`bridge`] (Redis Streams → Event Hubs), [`glibc_floor`] (what glibc a
//! `handler` binary needs) and [`commands`] (the `hub2lake` command line over all of them).

pub mod benchmark;
pub mod bridge;
pub mod commands;
pub mod glibc_floor;
pub mod ops;
pub mod simulator;
