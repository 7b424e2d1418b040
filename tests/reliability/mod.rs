//! Support for `tests/reliability.rs`: the lake checker, the handler process, the
//! fault-matrix cells, the summary table and a failing object store.
#![allow(dead_code)]

pub mod cells;
pub mod checker;
pub mod failing_store;
pub mod handler;
pub mod table;
