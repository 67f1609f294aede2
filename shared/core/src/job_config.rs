//! job_config
