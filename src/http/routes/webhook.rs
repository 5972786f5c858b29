//! `POST /webhook`: checks in the contract's order (size, content type,
//! signature, headers, body), then hands the delivery to the queue and answers.
//! The handler never processes a delivery itself: it only verifies and queues,
//! so it answers in well under GitHub's 10 s limit whatever the workers do.

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::json;

use crate::delivery::Delivery;
use crate::http::{HttpState, WebhookError};
use crate::queue::{EnqueueError, Enqueued};
use crate::webhook::body::ContentKind;
use crate::webhook::headers::GitHubHeaders;

pub async fn receive(req: HttpRequest, payload: web::Payload, state: web::Data<HttpState>) -> HttpResponse {
    match accept(&req, payload, &state).await {
        Ok(response) => response,
        Err(err) => {
            state.metrics.deliveries_rejected.with_label_values(&[err.reason()]).inc();
            if let WebhookError::Signature(_) = err {
                state.metrics.signature_failures.inc();
            }
            tracing::warn!(reason = err.reason(), error = %err, "delivery refused");
            err.error_response()
        }
    }
}

async fn accept(req: &HttpRequest, payload: web::Payload, state: &HttpState) -> Result<HttpResponse, WebhookError> {
    let max = state.max_body;
    let declared =
        req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(WebhookError::TooLarge { max });
    }
    // The size of a chunked body is known only once read (capped): read it
    // before judging the content type, as the contract orders the checks.
    let raw = read_body(payload, max, declared).await?;
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)"));
    let kind = ContentKind::from_header(content_type)
        .ok_or_else(|| WebhookError::UnsupportedContentType(content_type.unwrap_or("(none)").to_owned()))?;

    state.verifier.current().verify(
        req.headers().get("X-Hub-Signature-256").map(|v| v.as_bytes()),
        req.headers().contains_key("X-Hub-Signature"),
        &raw,
    )?;
    let headers = GitHubHeaders::parse(req.headers())?;
    let delivery = Delivery::from_verified(headers, kind, raw)?;
    let id = delivery.id().clone();
    let event = delivery.event().clone();
    state.metrics.deliveries_received.with_label_values(&[event.as_str()]).inc();

    if event.as_str() == "ping" {
        tracing::info!(delivery.id = %id, hook.id = delivery.headers.hook_id.as_deref(), "ping received");
        return Ok(HttpResponse::Ok().json(json!({ "status": "pong" })));
    }
    if state.readiness.is_draining() {
        return Err(EnqueueError::Closed.into());
    }
    match state.queue.enqueue(delivery).await? {
        Enqueued::Queued => {
            tracing::debug!(delivery.id = %id, github.event = %event, "delivery queued");
            Ok(HttpResponse::Accepted().json(json!({ "delivery": id, "status": "queued" })))
        }
        Enqueued::Duplicate => {
            state.metrics.deliveries_duplicate.with_label_values(&[event.as_str()]).inc();
            tracing::info!(delivery.id = %id, github.event = %event, "redelivery answered as duplicate");
            Ok(HttpResponse::Ok().json(json!({ "delivery": id, "status": "duplicate" })))
        }
    }
}

/// Reads the body, refusing it as soon as it grows past `max` (a missing or
/// lying `Content-Length` cannot get around the cap). A body that arrives in
/// one chunk is kept as it is, without a copy.
async fn read_body(mut payload: web::Payload, max: usize, declared: Option<usize>) -> Result<Bytes, WebhookError> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| WebhookError::Read(e.to_string()))?;
        len += chunk.len();
        if len > max {
            return Err(WebhookError::TooLarge { max });
        }
        match (&mut first, &mut joined) {
            (None, None) => first = Some(chunk),
            (Some(_), None) => {
                let mut buf = BytesMut::with_capacity(declared.unwrap_or(len).clamp(len, max));
                buf.extend_from_slice(first.as_deref().unwrap_or_default());
                buf.extend_from_slice(&chunk);
                joined = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok(match joined {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}
