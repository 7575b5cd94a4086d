//! The gRPC services the administrator serves.

pub mod agent;
pub mod inventory;
