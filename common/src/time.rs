//! Time as the whole system counts it: milliseconds since the Unix epoch.

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// The wall clock in milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> UnixMillis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
