//! Integration tests of the services over a real SQLite file, with time driven by a
//! `ManualClock`. One binary, one module per service.

mod common;
mod deployments;
mod foreman;
mod late_runs;
mod poll;
mod queues;
mod scheduler;
mod set_state;
