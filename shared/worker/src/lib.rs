//! The pull worker (to be written).
