//! Estate's shared vocabulary: the generated protobuf code, the domain types every crate
//! speaks, and the pure logic that more than one crate needs.

pub mod convert;
pub mod findings;
pub mod logging;
pub mod macie;
pub mod model;
pub use estate_types::limits;
pub mod objects;
pub mod priority;
pub mod signals;
pub mod text;
pub mod time;
pub mod transport;

pub mod pb {
    //! Code generated from `proto/estate/v1/*.proto`.
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("estate.v1");

    /// The encoded file descriptor set of every Estate .proto file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/estate_descriptor.bin"));
}

/// The version every Estate binary reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
