//! The one place where domain errors become gRPC statuses.

use tonic::Status;

use crate::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("`{0}` is not a 12-digit account ID")]
    BadAccountId(String),
    #[error("account `{0}` is not a member")]
    NoSuchMember(String),
    #[error("`maxResults` must be between 1 and 1000, got {0}")]
    BadPageSize(i32),
    #[error("`nextToken` is malformed")]
    BadToken,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::Query(_)
            | ServiceError::BadAccountId(_)
            | ServiceError::BadPageSize(_)
            | ServiceError::BadToken => Status::invalid_argument(message),
            ServiceError::NoSuchMember(_) => Status::not_found(message),
            ServiceError::Internal(_) => Status::internal(message),
        }
    }
}

/// A request's `maxResults`: 0 means `default`; otherwise 1 to 1,000.
pub fn page_size(max_results: i32, default: usize) -> Result<usize, ServiceError> {
    match max_results {
        0 => Ok(default),
        n @ 1..=1000 => Ok(n as usize),
        n => Err(ServiceError::BadPageSize(n)),
    }
}
