//! Reading an answer's body with a size cap: chunk by chunk, stopping once
//! the cap is passed, so neither GitHub nor a forward receiver decides how
//! much memory an answer takes. A body cut short leaves the connection
//! unread; dropping the response closes it instead of returning it to the
//! pool.

use bytes::{Bytes, BytesMut};

/// A body read up to a cap.
#[derive(Debug)]
pub(super) struct CappedBody {
    /// At most `cap` bytes: the whole body, or its start.
    pub bytes: Bytes,
    /// The body was longer than the cap (declared or seen); the rest was not read.
    pub truncated: bool,
}

/// Reads at most `cap` bytes of `response`'s body. Memory stays within `cap`
/// plus one chunk of the connection's read buffer.
pub(super) async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<CappedBody, reqwest::Error> {
    let declared = response.content_length().and_then(|n| usize::try_from(n).ok());
    if declared.is_some_and(|n| n > cap) {
        // Known to be too long: the start is enough for an error message.
        let start = read_up_to(&mut response, cap.min(ERROR_PREFIX_BYTES)).await?;
        return Ok(CappedBody { bytes: start.bytes, truncated: true });
    }
    read_up_to(&mut response, cap).await
}

/// Most bytes read from an answer already known to exceed its cap.
const ERROR_PREFIX_BYTES: usize = 4 * 1024;

async fn read_up_to(response: &mut reqwest::Response, cap: usize) -> Result<CappedBody, reqwest::Error> {
    let mut buffer = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - buffer.len();
        if chunk.len() > room {
            buffer.extend_from_slice(&chunk[..room]);
            return Ok(CappedBody { bytes: buffer.freeze(), truncated: true });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(CappedBody { bytes: buffer.freeze(), truncated: false })
}
