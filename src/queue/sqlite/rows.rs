//! Rows to deliveries and back, and the few statements shared by the writer
//! and the operator commands.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::body_log::{self, BodyRef};
use super::writer::StoredRow;
use crate::delivery::{Delivery, DeliveryId};
use crate::queue::Cause;
use crate::webhook::body::ContentKind;
use crate::webhook::headers::{EventName, GitHubHeaders};

/// Rebuilds a delivery from its row; on failure, its id and the reason.
pub(super) fn restore(row: StoredRow) -> Result<Delivery, (String, String)> {
    let StoredRow {
        delivery_id,
        event,
        hook_id,
        target_type,
        target_id,
        content_kind,
        body,
        received_at,
        attempts,
        runs,
    } = row;
    let fail = |reason: String| (delivery_id.clone(), reason);
    let headers = GitHubHeaders {
        event: EventName::parse(&event).map_err(|e| fail(e.to_string()))?,
        delivery_id: DeliveryId::parse(&delivery_id).map_err(|e| fail(e.to_string()))?,
        hook_id,
        target_type,
        target_id,
    };
    let kind = ContentKind::from_name(&content_kind);
    let body = body.map_err(fail)?;
    let mut delivery = Delivery::from_verified(headers, kind, Bytes::from(body)).map_err(|e| fail(e.to_string()))?;
    delivery.received_at = UNIX_EPOCH + Duration::from_millis(u64::try_from(received_at).unwrap_or(0));
    delivery.attempt = attempts;
    delivery.first_run = runs <= 1;
    Ok(delivery)
}

/// The columns that locate a row's body, for [`stored_body`]: in the
/// `bodies` table (schema version 1) or in the body log.
pub(super) const BODY_COLUMNS: &str =
    "(SELECT body FROM bodies WHERE bodies.seq = deliveries.seq), body_segment, body_offset, body_len";

/// A row's body from the [`BODY_COLUMNS`] starting at column `first`, read
/// with `read` from the body log; an unreadable body is the reason why.
pub(super) fn stored_body(
    row: &rusqlite::Row<'_>,
    first: usize,
    read: impl FnOnce(BodyRef) -> std::io::Result<Vec<u8>>,
) -> rusqlite::Result<Result<Vec<u8>, String>> {
    if let Some(body) = row.get::<_, Option<Vec<u8>>>(first)? {
        return Ok(Ok(body));
    }
    let (segment, offset, len) = (row.get(first + 1)?, row.get(first + 2)?, row.get(first + 3)?);
    Ok(match (segment, offset, len) {
        (Some(segment), Some(offset), Some(len)) => read(BodyRef { segment, offset, len })
            .map_err(|e| format!("its body cannot be read from segment {segment} of the body log: {e}")),
        _ => Err("no body is stored for it".into()),
    })
}

/// Deletes the body log segments no row points into any more (never the
/// newest); returns how many. Only once the rows' deletion is committed.
pub(crate) fn remove_unreferenced_bodies(conn: &Connection, dir: &Path) -> Result<usize, Cause> {
    let failed = |e: std::io::Error| Cause::file(dir.display().to_string(), e);
    let candidates = body_log::deletable(dir).map_err(failed)?;
    let referenced = conn
        .prepare_cached("SELECT DISTINCT body_segment FROM deliveries WHERE body_segment IS NOT NULL")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<HashSet<i64>>>())
        .map_err(Cause::from)?;
    body_log::remove(dir, candidates.into_iter().filter(|s| !referenced.contains(s))).map_err(failed)
}

/// The highest body log segment a row points into (0: none).
pub(super) fn highest_referenced_segment(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT coalesce(max(body_segment), 0) FROM deliveries", [], |r| r.get(0))
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

pub(crate) fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}
