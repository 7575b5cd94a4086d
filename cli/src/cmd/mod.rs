//! One module per subcommand: its `Args` and its `run`.

pub mod bucket;
pub mod buckets;
pub mod filters;
pub mod findings;
pub mod members;
pub mod policy;
pub mod posture;
pub mod refresh;
pub mod stats;
pub mod watch;
