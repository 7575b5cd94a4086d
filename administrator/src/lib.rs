//! The administrator: merges the inventories that member agents stream to it, keeps them in
//! sled, judges every bucket and serves the organization's inventory and statistics.

pub mod auth;
pub mod codec;
pub mod config;
pub mod criteria;
pub mod edge;
pub mod error;
pub mod findings;
pub mod http;
pub mod identities;
pub mod index;
pub mod ingest;
pub mod judge;
pub mod members;
pub mod organizations;
pub mod owners;
pub mod permissions;
pub mod policy;
pub mod query;
pub mod server;
pub mod service;
pub mod stats;
pub mod store;
pub mod tls;
pub mod views;
