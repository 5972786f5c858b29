//! `POST /webhook`: checks in the contract's order (size, content type,
//! signature, headers, body), then hands the delivery to the queue and answers.
//! What the request headers alone decide (a declared length over the cap, the
//! content type, a missing or malformed signature header) is answered before
//! a byte of the body is read; the body then has `WEBHOOKD_BODY_TIMEOUT` in
//! all to arrive, and its buffer grows with what arrived, never with what was
//! declared. The handler never processes a delivery itself: it only verifies
//! and queues, so it answers in well under GitHub's 10 s limit whatever the
//! workers do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::json;

use crate::delivery::Delivery;
use crate::http::refusal_log::Admission;
use crate::http::{HttpState, WebhookError};
use crate::queue::{EnqueueError, Enqueued};
use crate::redact;
use crate::webhook::body::ContentKind;
use crate::webhook::headers::GitHubHeaders;
use crate::webhook::signature::{ClaimedSignature, SignatureVerifier};

/// Bodies larger than this are hashed on the blocking pool, not on the HTTP
/// thread: ten HMACs over 25 MiB would otherwise stall every connection that
/// thread serves.
const OFF_THREAD_HASHING_BYTES: usize = 1024 * 1024;

pub async fn receive(req: HttpRequest, payload: web::Payload, state: web::Data<HttpState>) -> HttpResponse {
    match accept(&req, payload, &state).await {
        Ok(response) => response,
        Err(err) => {
            state.metrics.deliveries_rejected.with_label_values(&[err.reason()]).inc();
            if let WebhookError::Signature(_) = err {
                state.metrics.signature_failures.inc();
            }
            log_refusal(&state, &err);
            err.error_response()
        }
    }
}

/// One WARN line per refusal, within the refusal log's rate limit.
fn log_refusal(state: &HttpState, err: &WebhookError) {
    match state.refusals.admit(err.reason(), Instant::now()) {
        Admission::Skip => {}
        Admission::Log(suppressed) => {
            if let Some(s) = suppressed {
                tracing::warn!(
                    suppressed = s.total,
                    reasons = %s.reasons(),
                    "{} refused requests not logged in the last {:.1}s",
                    s.total,
                    s.over.as_secs_f64()
                );
            }
            tracing::warn!(reason = err.reason(), error = %err, "delivery refused");
        }
    }
}

async fn accept(req: &HttpRequest, payload: web::Payload, state: &HttpState) -> Result<HttpResponse, WebhookError> {
    let limits = state.limits;
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limits.max_body as u64) {
        return Err(WebhookError::TooLarge { max: limits.max_body });
    }
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)"));
    let kind = ContentKind::from_header(content_type)
        .ok_or_else(|| WebhookError::UnsupportedContentType(redact::echo(content_type.unwrap_or("(none)"))))?;
    let claimed = ClaimedSignature::from_header(
        req.headers().get("X-Hub-Signature-256").map(|v| v.as_bytes()),
        req.headers().contains_key("X-Hub-Signature"),
    )?;

    // Only now is the body read: a chunked body's size is known only here.
    // Held until the answer: the body's bytes count against every other's.
    let mut reservation = state.bodies.reservation();
    let raw = read_body(payload, limits.max_body, limits.body_timeout, |bytes| reservation.grow(bytes)).await?;
    verify(state.verifier.current(), claimed, &raw).await?;
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

/// Checks the body's signature; large bodies on the blocking pool.
async fn verify(verifier: Arc<SignatureVerifier>, claimed: ClaimedSignature, raw: &Bytes) -> Result<(), WebhookError> {
    if raw.len() <= OFF_THREAD_HASHING_BYTES {
        return Ok(verifier.verify_claimed(&claimed, raw)?);
    }
    let body = raw.clone();
    web::block(move || verifier.verify_claimed(&claimed, &body))
        .await
        .map_err(|_| WebhookError::Internal("the signature check could not run"))??;
    Ok(())
}

/// Reads the body within `deadline` in all (a sender trickling bytes or
/// falling silent gets 408), refusing it as soon as it grows past `max` (a
/// missing or lying `Content-Length` cannot get around the cap).
/// `reserve` takes each chunk's bytes from the shared body budget, or
/// refuses them.
async fn read_body(
    payload: web::Payload,
    max: usize,
    deadline: Duration,
    reserve: impl FnMut(usize) -> bool,
) -> Result<Bytes, WebhookError> {
    tokio::time::timeout(deadline, collect_body(payload, max, reserve))
        .await
        .unwrap_or(Err(WebhookError::BodyTimeout(deadline)))
}

/// The body's chunks, joined once at the end into a buffer of exactly the
/// size received. A body that arrives in one chunk is kept as it is.
async fn collect_body(
    mut payload: web::Payload,
    max: usize,
    mut reserve: impl FnMut(usize) -> bool,
) -> Result<Bytes, WebhookError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| WebhookError::Read(e.to_string()))?;
        len += chunk.len();
        if len > max {
            return Err(WebhookError::TooLarge { max });
        }
        // The join below copies once more, briefly; the budget counts what
        // is held while waiting on the client, which is what a client controls.
        if !reserve(chunk.len()) {
            return Err(WebhookError::BodyMemory);
        }
        chunks.push(chunk);
    }
    if chunks.len() <= 1 {
        return Ok(chunks.pop().unwrap_or_default());
    }
    let mut joined = BytesMut::with_capacity(len);
    for chunk in &chunks {
        joined.extend_from_slice(chunk);
    }
    Ok(joined.freeze())
}
