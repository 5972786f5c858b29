//! Turning an HTTP request into a verified delivery: the signature over the
//! raw bytes first, then the GitHub headers, then the body. Nothing here
//! touches an unverified byte beyond hashing it.

pub mod body;
pub mod headers;
pub mod signature;
