//! Typed calls the worker makes: heartbeat, poll, claim and report states, logs.
