//! The one place where errors become gRPC statuses and HTTP responses: handlers, the
//! authenticator and the stream code return a [`ServiceError`], and only this module builds
//! a `tonic::Status` or an HTTP status code from it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::Status;

use estate_common::model::AccountId;

use crate::read::query::QueryError;

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
    /// The request is malformed or names something impossible.
    #[error("{0}")]
    Invalid(String),
    /// No credentials, or ones that name nobody.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known caller that may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// Valid, but not now or not for this object (a refresh too soon, a bucket too large).
    #[error("{0}")]
    Precondition(String),
    /// A limit is reached (streams of one agent).
    #[error("{0}")]
    Exhausted(String),
    /// Try again later: storage, an agent or the committer is not there.
    #[error("{0}")]
    Unavailable(String),
    /// What the caller asked to be sent can no longer be (a watcher that fell too far behind).
    #[error("{0}")]
    DataLoss(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Operations the committer could not make durable: the service is unavailable until the
/// administrator restarts from what is on disk.
impl From<crate::ingest::CommitError> for ServiceError {
    fn from(error: crate::ingest::CommitError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl ServiceError {
    /// An account ID a client sent, checked: [`ServiceError::BadAccountId`] when it is not one.
    pub fn account_id(text: String) -> Result<AccountId, Self> {
        AccountId::parse(text).map_err(|e| Self::BadAccountId(e.text))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::Unauthenticated(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// The gRPC code of this outcome.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::Query(_) | Self::BadAccountId(_) | Self::BadPageSize(_) | Self::BadToken | Self::Invalid(_) => {
                Code::InvalidArgument
            }
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::Forbidden(_) => Code::PermissionDenied,
            Self::NoSuchMember(_) | Self::NotFound(_) => Code::NotFound,
            Self::Precondition(_) => Code::FailedPrecondition,
            Self::Exhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DataLoss(_) => Code::DataLoss,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// What the caller is told.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The HTTP status of the same outcome (the dashboard's API).
    pub fn http_status(&self) -> StatusCode {
        use tonic::Code;
        match self.code() {
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::FailedPrecondition => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A read run off the reactor that panicked.
impl From<tokio::task::JoinError> for ServiceError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        Status::new(error.code(), error.to_string())
    }
}

/// `{"message": …}` with the matching status code.
impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        (self.http_status(), axum::Json(serde_json::json!({ "message": self.to_string() }))).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_one_grpc_code_and_one_http_status() {
        let cases = [
            (ServiceError::invalid("x"), tonic::Code::InvalidArgument, StatusCode::BAD_REQUEST),
            (ServiceError::unauthenticated("x"), tonic::Code::Unauthenticated, StatusCode::UNAUTHORIZED),
            (ServiceError::forbidden("x"), tonic::Code::PermissionDenied, StatusCode::FORBIDDEN),
            (ServiceError::NoSuchMember("1".into()), tonic::Code::NotFound, StatusCode::NOT_FOUND),
            (ServiceError::unavailable("x"), tonic::Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (ServiceError::Internal("x".into()), tonic::Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        ];
        for (error, code, http) in cases {
            assert_eq!(error.http_status(), http, "{error}");
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!((status.code(), status.message()), (code, message.as_str()));
        }
    }
}
