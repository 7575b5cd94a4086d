//! Questions about the state: criteria, bucket queries and views. Nothing here writes.

pub mod bucket;
pub mod criteria;
pub mod query;
pub mod views;
