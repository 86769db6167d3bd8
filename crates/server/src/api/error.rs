//! The one error type of the API and its one response form (DESIGN §5.4):
//! `{"error":{"code","message","details":[…]}}`. A 5xx never carries internals: its message is
//! "internal error" (or says the store is unavailable) and the cause goes to the log only.

use allowgate_store::{AuthError, ErrorKind, StoreError};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An API refusal or failure, with what the client may be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable keyword (`unauthorized`, `not_found`, `invalid_input`, …).
    pub code: &'static str,
    /// One sentence for people.
    pub message: String,
    /// Every problem, for `invalid_input`; empty otherwise.
    pub details: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// 401: no token, a token that is not one, a revoked token, a disabled user — the same
    /// answer for every reason.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API token is required (Authorization: Bearer <token>)",
        )
    }

    /// 403: the caller may see this but not change it.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: missing, or not the caller's to see (the two are never told apart).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404 for a tenant: the same answer whether it does not exist or is another tenant's.
    pub fn no_tenant(name: &str) -> ApiError {
        ApiError::not_found(format!("no tenant `{name}`"))
    }

    /// 404 for an entry: the same answer whether it does not exist or is not visible.
    pub fn no_entry(id: &str) -> ApiError {
        ApiError::not_found(format!("no entry {id}"))
    }

    /// 405: the path exists, the method does not.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take this method",
        )
    }

    /// 422 with every problem found.
    pub fn invalid(details: Vec<String>) -> ApiError {
        ApiError {
            details,
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                "the request is not valid; nothing was changed",
            )
        }
    }

    /// 400: the body is not JSON, or the query string cannot be decoded.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError {
            details: vec![detail.into()],
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request cannot be read; nothing was changed",
            )
        }
    }

    /// 413: the body is larger than the cap.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 503: the store cannot be reached (or is busy); the cause is logged, not told. The
    /// code (`unavailable`) says that retrying later may work.
    pub fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "internal error",
        )
    }

    /// 500: a bug or damaged data; the cause is logged, not told.
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The answer for a store failure. Only refusals the caller caused (a duplicate, an unknown
    /// tenant, …) repeat the store's message, which names the caller's own input; everything
    /// else is logged and answered without detail.
    pub fn from_store(e: &StoreError) -> ApiError {
        match e {
            StoreError::UnknownTenant { name } | StoreError::TenantNotFound { name } => {
                return ApiError::no_tenant(name);
            }
            StoreError::NotFound { id } => return ApiError::no_entry(&id.0.to_string()),
            _ => {}
        }
        match e.kind() {
            ErrorKind::Conflict => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            ErrorKind::InvalidInput => ApiError::invalid(vec![e.to_string()]),
            ErrorKind::NotFound => ApiError::not_found(e.to_string()),
            ErrorKind::Unavailable | ErrorKind::Busy => {
                tracing::warn!(error = %e, "api: store unavailable");
                ApiError::unavailable()
            }
            ErrorKind::Corrupt | ErrorKind::Internal => {
                tracing::error!(error = %e, "api: store failure");
                ApiError::internal()
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::from_store(&e)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Denied(reason) => {
                tracing::info!(?reason, "api: token refused");
                ApiError::unauthorized()
            }
            AuthError::Store(e) => ApiError::from_store(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
            }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
