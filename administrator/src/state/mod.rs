//! The state in memory, changed only by applying an `Op` (`store`), with the concerns it
//! owns: membership, owners of replication destinations, canonical IDs, policy verdicts,
//! findings, the bucket index and the statistics.

pub mod filters;
pub mod findings;
pub mod identities;
pub mod index;
pub mod members;
pub mod op;
pub mod owners;
pub mod records;
pub mod stats;
pub mod store;
#[cfg(test)]
pub mod testing;
pub mod verdicts;
