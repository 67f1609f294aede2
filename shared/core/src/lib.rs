//! Sluice's pure domain: the types, rules and computations of Prefect-style orchestration.
//!
//! Architecture invariant: nothing in this crate performs I/O. There is no storage, no HTTP, no AWS
//! and no clock here; callers pass `now` and any looked-up data in. Every rule about states,
//! templates and schedules lives in this crate so it can be tested as plain functions.

pub mod api_keys;
pub mod blocks;
pub mod concurrency;
pub mod domain;
pub mod events;
pub mod graph;
pub mod hydration;
pub mod job_config;
pub mod orchestration;
pub mod pool_types;
pub mod push;
pub mod schedules;
pub mod schema;
pub mod task_runs;
pub mod templating;
pub mod time;
