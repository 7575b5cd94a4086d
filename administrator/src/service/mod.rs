//! The gRPC services the administrator serves.

pub mod agent;
pub mod findings;
pub mod inventory;
