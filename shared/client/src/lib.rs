//! sluice-client
