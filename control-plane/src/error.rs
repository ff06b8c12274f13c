//! The API's one error type and its JSON body: `{"error":{"code","message","request_id"}}`.
//!
//! A handler returns [`ApiError`]; its response carries the error as an extension and no body.
//! The [`respond_with_request_id`] middleware, which runs around every route, gives each request
//! its id, renders error bodies with that id, logs internal errors once (with their cause, which
//! never reaches the client), and sets `x-request-id` on every response.

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyplane_shared::decision::{Denial, REALM};
use keyplane_shared::ids::RequestId;
use serde::Serialize;

use crate::limits::MAX_BODY_BYTES;
use crate::store::{CallerEnded, Conflict, StoreError};

/// Header carrying the request id on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Everything an API call can fail with. Each variant documents its status and code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`: a field is missing, malformed or out of range.
    #[error("{0}")]
    InvalidRequest(String),
    /// 400 `invalid_json`: the body is not the JSON this route takes.
    #[error("{0}")]
    InvalidJson(String),
    /// 415 `unsupported_media_type`: a body that is not `application/json`.
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// 413 `payload_too_large`: the body exceeds the limit.
    #[error("the request body is larger than the {0} bytes allowed")]
    PayloadTooLarge(usize),
    /// 413 `payload_too_large`: a usage batch holds more events than allowed (the number).
    #[error("a usage batch holds at most {max} events, this one {0}", max = keyplane_shared::usage::MAX_BATCH_EVENTS)]
    TooManyEvents(usize),
    /// 401 `missing_api_key`: no credentials.
    #[error("an API key is required (x-api-key header or Authorization: Bearer)")]
    MissingKey,
    /// 401 `invalid_api_key`: the key is malformed, unknown, or wrong. One message for all.
    #[error("the API key is not valid")]
    InvalidKey,
    /// 401 `revoked_api_key`.
    #[error("the API key has been revoked")]
    RevokedKey,
    /// 401 `expired_api_key`.
    #[error("the API key has expired")]
    ExpiredKey,
    /// 403 `insufficient_scope`: the caller's key lacks a scope.
    #[error("{0}")]
    InsufficientScope(String),
    /// 403 `forbidden`: the caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 403 `not_key_owner`: the caller manages only the keys it owns.
    #[error("this key belongs to another member; your role manages only your own keys")]
    NotKeyOwner,
    /// 401 `invalid_session`: the session cookie is unknown, ended or expired.
    #[error("the session is not valid (signed out or expired); sign in again")]
    InvalidSession,
    /// 403 `csrf_failed`: an unsafe request with a session lacks a matching `Origin` or the
    /// session's CSRF token.
    #[error("this request needs the page's Origin and the session's CSRF token (x-csrf-token)")]
    CsrfFailed,
    /// 401 `invalid_token`: a host product's token was refused; the text names the check.
    #[error("the host-product token was refused: {0}")]
    InvalidHostToken(&'static str),
    /// 401 `invalid_portal_link`: a portal link's token is unknown, used already or expired
    /// (one answer for all three).
    #[error("this portal link is not valid (used already or expired); ask for a new one")]
    InvalidPortalLink,
    /// 401 `invalid_credentials`: the email and password do not match an account (one answer
    /// whether or not the email has one).
    #[error("the email or password is not correct")]
    InvalidCredentials,
    /// 429 `too_many_attempts`: sign-in attempts are throttled; retry after the seconds given.
    #[error("too many sign-in attempts; retry in {0} seconds")]
    TooManyAttempts(u64),
    /// 400 `weak_password`: the new password breaks a rule.
    #[error("{0}")]
    WeakPassword(String),
    /// 404 `not_found`: no such resource in the caller's organization.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 405 `method_not_allowed`.
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    /// 401 `invalid_signature`: an edge request is unsigned, badly signed or stale (one
    /// message for all, so nothing is learned from it).
    #[error("the request is not signed with the edge secret, or the signature is stale")]
    InvalidSignature,
    /// 409 `sequence_ahead`: an edge asked for changes after a sequence this control plane
    /// never reached (a restored database): it must load a snapshot.
    #[error("the edge is ahead of this control plane's change feed (head {0}); load a snapshot")]
    SequenceAhead(u64),
    /// 409: the key's state forbids the change; the code names the state: `key_revoked`,
    /// `key_expired`, `key_rotated` (rotated, possibly still in its grace period: change or
    /// rotate its successor), `key_active` (only revoked or expired keys can be deleted).
    #[error("{0}")]
    Conflict(Conflict),
    /// 503 `unavailable`: the database cannot be reached; retry later.
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] StoreError),
    /// 503 `unavailable`: something the answer needs from elsewhere (named) could not be
    /// fetched, and no earlier copy is held; retry later.
    #[error("{0} could not be fetched; retry later")]
    FetchFailed(&'static str),
    /// 500 `internal`: a bug or an unexpected failure (logged, never described to the client).
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) | ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) | ApiError::TooManyEvents(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::MissingKey
            | ApiError::InvalidKey
            | ApiError::RevokedKey
            | ApiError::ExpiredKey
            | ApiError::InvalidSignature => StatusCode::UNAUTHORIZED,
            ApiError::SequenceAhead(_) => StatusCode::CONFLICT,
            ApiError::InsufficientScope(_)
            | ApiError::Forbidden(_)
            | ApiError::NotKeyOwner
            | ApiError::CsrfFailed => StatusCode::FORBIDDEN,
            ApiError::InvalidSession
            | ApiError::InvalidHostToken(_)
            | ApiError::InvalidPortalLink
            | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::WeakPassword(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) | ApiError::FetchFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) | ApiError::TooManyEvents(_) => "payload_too_large",
            ApiError::MissingKey => "missing_api_key",
            ApiError::InvalidKey => "invalid_api_key",
            ApiError::RevokedKey => "revoked_api_key",
            ApiError::ExpiredKey => "expired_api_key",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotKeyOwner => "not_key_owner",
            ApiError::InvalidSession => "invalid_session",
            ApiError::CsrfFailed => "csrf_failed",
            ApiError::InvalidHostToken(_) => "invalid_token",
            ApiError::InvalidPortalLink => "invalid_portal_link",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::TooManyAttempts(_) => "too_many_attempts",
            ApiError::WeakPassword(_) => "weak_password",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::InvalidSignature => "invalid_signature",
            ApiError::SequenceAhead(_) => "sequence_ahead",
            ApiError::Conflict(conflict) => conflict.code(),
            ApiError::Unavailable(_) | ApiError::FetchFailed(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// A 500 for an unexpected failure.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::NotFound("key"),
            StoreError::OutOfReach => ApiError::InsufficientScope(
                "this key holds scopes your key does not; only a key holding them can change it"
                    .into(),
            ),
            StoreError::NotOwner => ApiError::NotKeyOwner,
            StoreError::Conflict(conflict) => ApiError::Conflict(conflict),
            StoreError::Unavailable(_) | StoreError::Busy => ApiError::Unavailable(error),
            StoreError::CallerEnded(CallerEnded::Revoked) => ApiError::RevokedKey,
            StoreError::CallerEnded(CallerEnded::Expired) => ApiError::ExpiredKey,
            StoreError::CallerEnded(CallerEnded::Removed) => ApiError::InvalidSession,
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(ref bytes)
                if bytes.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::PayloadTooLarge(MAX_BODY_BYTES)
            }
            other => ApiError::InvalidJson(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    /// A path parameter that does not decode (a `%FF`, not UTF-8) names no resource: 404, as a
    /// malformed id does.
    fn from(rejection: PathRejection) -> Self {
        match rejection {
            PathRejection::FailedToDeserializePathParams(_) => ApiError::NotFound("resource"),
            other => ApiError::InvalidRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidRequest(rejection.body_text())
    }
}

/// What the middleware needs to render an error body.
#[derive(Debug, Clone)]
struct RenderedError {
    code: &'static str,
    message: String,
}

/// An internal error's cause, for the middleware to log.
#[derive(Debug, Clone)]
struct InternalCause(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        let cause = match &self {
            ApiError::Internal(cause) => Some(format!("{cause:#}")),
            ApiError::Unavailable(cause) => Some(error_chain(cause)),
            _ => None,
        };
        if let Some(cause) = cause {
            response.extensions_mut().insert(InternalCause(cause));
        }
        // RFC 6750, built as the edge builds it: no credentials get a bare challenge, bad ones
        // an `invalid_token` one.
        let denial = match &self {
            ApiError::MissingKey => Some(Denial::MissingKey),
            ApiError::InvalidKey => Some(Denial::InvalidKey),
            ApiError::RevokedKey => Some(Denial::RevokedKey),
            ApiError::ExpiredKey => Some(Denial::ExpiredKey),
            _ => None,
        };
        let challenge = denial
            .and_then(|denial| denial.www_authenticate(REALM))
            .and_then(|challenge| HeaderValue::from_str(&challenge).ok());
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, challenge);
        }
        if let ApiError::TooManyAttempts(seconds) = &self {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(*seconds));
        }
        response.extensions_mut().insert(RenderedError {
            code: self.code(),
            message: self.to_string(),
        });
        response
    }
}

/// An error and its sources, `outer: inner: innermost` (for logs and recorded errors).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

/// The error object of every failed call.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorFields<'a> {
    /// Machine-readable code, e.g. `invalid_request`.
    code: &'a str,
    /// What went wrong, for people.
    message: &'a str,
    /// The request's id (also in the `x-request-id` header).
    request_id: &'a str,
}

/// Gives each request an id (a request extension and the `x-request-id` response header) and
/// renders error bodies.
pub async fn respond_with_request_id(mut request: Request, next: Next) -> Response {
    let request_id = RequestId::generate()
        .map(|id| id.to_string())
        .unwrap_or_else(|_| keyplane_shared::ids::UNAVAILABLE_REQUEST_ID.to_owned());
    request
        .extensions_mut()
        .insert(CurrentRequestId(request_id.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    if let Some(cause) = response.extensions_mut().remove::<InternalCause>() {
        tracing::error!(%request_id, %method, %path, cause = %cause.0, "request failed");
    }
    if let Some(error) = response.extensions_mut().remove::<RenderedError>() {
        let (parts, _) = response.into_parts();
        let body = ErrorBody {
            error: ErrorFields {
                code: error.code,
                message: &error.message,
                request_id: &request_id,
            },
        };
        response = (parts, Json(body)).into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The id of the request being served (a request extension set by the middleware).
#[derive(Debug, Clone)]
pub struct CurrentRequestId(pub String);
