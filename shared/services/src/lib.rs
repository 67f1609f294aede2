//! sluice-services
