//! Questions about the state: criteria, bucket queries and views. Nothing here writes.

pub mod criteria;
pub mod query;
pub mod views;
