//! How records sit on disk: versioned encoding, opening, migration and verification.

pub mod codec;
