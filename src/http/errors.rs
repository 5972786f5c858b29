//! Every refusal of `/webhook`, mapped to its status code and a JSON body
//! `{"error": "..."}` that says what to fix. Messages never carry a secret or
//! any byte of the request body, and header values they echo are cut short
//! (`redact::echo`).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::queue::EnqueueError;
use crate::webhook::body::BodyError;
use crate::webhook::headers::HeaderError;
use crate::webhook::signature::SignatureError;

/// Seconds a sender is told to wait when the queue is full or webhookd is draining.
pub const RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("body larger than the {max} bytes allowed (WEBHOOKD_MAX_BODY)")]
    TooLarge { max: usize },
    /// The value as sent, already cut by `redact::echo`.
    #[error("unsupported content type {0:?}: send application/json or application/x-www-form-urlencoded")]
    UnsupportedContentType(String),
    #[error("the request body did not arrive within {} (WEBHOOKD_BODY_TIMEOUT)", humantime::format_duration(*.0))]
    BodyTimeout(Duration),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Headers(#[from] HeaderError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("could not read the request body: {0}")]
    Read(String),
    #[error("{0}; retry later")]
    Unavailable(#[from] EnqueueError),
    #[error("too many request bodies are being received at once (WEBHOOKD_BODY_MEMORY); retry later")]
    BodyMemory,
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl WebhookError {
    /// Label for `webhookd_deliveries_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::UnsupportedContentType(_) => "content_type",
            Self::Signature(_) => "signature",
            Self::Headers(_) => "headers",
            Self::Body(_) => "body",
            Self::Read(_) => "read",
            Self::BodyTimeout(_) => "body_timeout",
            Self::BodyMemory => "body_memory",
            Self::Internal(_) => "internal",
            Self::Unavailable(EnqueueError::Full) => "queue_full",
            Self::Unavailable(EnqueueError::Closed) => "draining",
            Self::Unavailable(EnqueueError::Store) => "store_error",
        }
    }
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::Headers(_) | Self::Body(_) | Self::Read(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) | Self::BodyMemory => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = error_json(self.status_code(), &self.to_string());
        if let Self::Unavailable(_) | Self::BodyMemory = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

/// `{"error": message}` with `status`.
pub fn error_json(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": message }))
}
