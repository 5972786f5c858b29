//! Rows to deliveries and back, and the few statements shared by the writer
//! and the operator commands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::writer::StoredRow;
use crate::delivery::{Delivery, DeliveryId};
use crate::webhook::body::ContentKind;
use crate::webhook::headers::{EventName, GitHubHeaders};

pub(super) fn content_kind_name(kind: ContentKind) -> &'static str {
    match kind {
        ContentKind::Json => "json",
        ContentKind::Form => "form",
    }
}

/// Rebuilds a delivery from its row; on failure, its id and the reason.
pub(super) fn restore(row: StoredRow) -> Result<Delivery, (String, String)> {
    let fail = |reason: String| (row.delivery_id.clone(), reason);
    let headers = GitHubHeaders {
        event: EventName::parse(&row.event).map_err(|e| fail(e.to_string()))?,
        delivery_id: DeliveryId::parse(&row.delivery_id).map_err(|e| fail(e.to_string()))?,
        hook_id: row.hook_id.clone(),
        target_type: row.target_type.clone(),
        target_id: row.target_id.clone(),
    };
    let kind = match row.content_kind.as_str() {
        "form" => ContentKind::Form,
        _ => ContentKind::Json,
    };
    let received_at = UNIX_EPOCH + Duration::from_millis(u64::try_from(row.received_at).unwrap_or(0));
    let mut delivery =
        Delivery::from_verified(headers, kind, Bytes::from(row.body.clone())).map_err(|e| fail(e.to_string()))?;
    delivery.received_at = received_at;
    delivery.attempt = row.attempts;
    delivery.first_run = row.runs <= 1;
    Ok(delivery)
}

/// Deletes finished (done or dead) deliveries, with their bodies, that
/// finished before `finished_before`; returns how many.
pub(crate) fn prune_finished(conn: &Connection, finished_before: i64) -> rusqlite::Result<usize> {
    const FINISHED: &str = "state IN ('done', 'dead') AND finished_at < ?1";
    conn.prepare_cached(&format!("DELETE FROM bodies WHERE seq IN (SELECT seq FROM deliveries WHERE {FINISHED})"))?
        .execute(params![finished_before])?;
    conn.prepare_cached(&format!("DELETE FROM deliveries WHERE {FINISHED}"))?.execute(params![finished_before])
}

pub(crate) fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

pub(super) fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}
