//! Questions about the state: criteria, the bucket and findings queries, the findings
//! follower, views. Nothing here writes.

pub mod findings;
pub mod members;
pub mod query;
pub mod views;
