//! What peers speak to: the gRPC services, HTTP (the JSON API, the live findings stream and
//! the dashboard), authentication, TLS, the accept loop's defences and errors as statuses.

pub mod auth;
pub mod edge;
pub mod error;
pub mod filters;
pub mod grpc;
pub mod http;
pub mod tls;
