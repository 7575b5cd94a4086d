//! The administrator: merges the inventories that member agents stream to it, keeps them in
//! sled, judges every bucket and serves the organization's inventory and statistics.
//!
//! Layers, each importing only those below it (`scripts/module-cycles.py` checks that no two
//! modules import each other, directly or through others):
//! - `server`: starts everything and wires it together;
//! - `api`: what peers speak to (gRPC services, HTTP and the dashboard, authentication, TLS,
//!   the accept loop's defences, errors as statuses);
//! - `deliver`: findings sent to destinations outside Estate (EventBridge, webhooks, OCSF),
//!   each sink following the findings feed from a cursor kept in the state;
//! - `read`: questions about the state (criteria, bucket queries, views, the findings feed);
//! - `ingest` (the committer, the one writer) and `analysis` (the policy workers, which hand
//!   their outcomes to the committer through a sink);
//! - `state`: the state in memory, changed only by applying an `Op`, with the concerns it
//!   owns (membership, owners, verdicts, findings, the index, statistics);
//! - `criteria`: Macie's filter criteria and the properties of buckets and findings they
//!   name, pure (queries and findings filters both match with them);
//! - `judge`: the judgement of one bucket, pure, and the organization view it is judged in;
//! - `storage`: how records sit on disk.
//!
//! `state`, `judge` and `read` name neither tonic nor axum.

pub mod analysis;
pub mod api;
pub mod config;
pub mod criteria;
pub mod deliver;
pub mod ingest;
pub mod judge;
pub mod organizations;
pub mod permissions;
pub mod read;
pub mod server;
pub mod state;
pub mod storage;
