//! The gRPC services the administrator serves.

pub mod agent;
pub mod directory;
pub mod findings;
pub mod inventory;
