//! `X-Hub-Signature-256` verification: HMAC-SHA256 of the raw body, compared in
//! constant time (`Mac::verify_slice`), against every configured secret so a
//! secret can be rotated without refusing deliveries.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a SHA-256 digest in bytes.
const SHA256_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error(
        "only the legacy X-Hub-Signature (SHA-1) header was sent; webhookd verifies X-Hub-Signature-256: set a secret on the GitHub webhook"
    )]
    LegacyOnly,
    #[error("malformed X-Hub-Signature-256 header: expected sha256= followed by 64 hex digits")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body under any configured secret")]
    Mismatch,
}

/// The configured secrets, keyed once at start so each request only clones
/// a ready HMAC state. Never prints its keys.
#[derive(Clone)]
pub struct SignatureVerifier {
    keyed: Vec<HmacSha256>,
}

impl fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureVerifier({} secrets)", self.keyed.len())
    }
}

impl SignatureVerifier {
    pub fn new(secrets: &[SecretString]) -> Self {
        let keyed = secrets.iter().map(|s| keyed_mac(s.expose_secret().as_bytes())).collect();
        Self { keyed }
    }

    /// Checks `header` (the value of `X-Hub-Signature-256`, if sent) against
    /// `body`. `legacy_present` says whether an `X-Hub-Signature` (SHA-1) header
    /// came instead, to give a better message; SHA-1 alone is never accepted.
    pub fn verify(&self, header: Option<&[u8]>, legacy_present: bool, body: &[u8]) -> Result<(), SignatureError> {
        self.verify_claimed(&ClaimedSignature::from_header(header, legacy_present)?, body)
    }

    /// Checks a well-formed signature against `body` under every secret.
    /// Costs one HMAC over `body` per secret when none matches.
    pub fn verify_claimed(&self, claimed: &ClaimedSignature, body: &[u8]) -> Result<(), SignatureError> {
        let matches = |mac: &HmacSha256| {
            let mut mac = mac.clone();
            mac.update(body);
            mac.verify_slice(&claimed.0).is_ok()
        };
        // `any` stops at the first match: that leaks which secret matched, not
        // anything about the expected signature.
        if self.keyed.iter().any(matches) { Ok(()) } else { Err(SignatureError::Mismatch) }
    }
}

/// A well-formed `X-Hub-Signature-256`: the digest the sender claims. What
/// the header alone decides (missing, SHA-1 only, malformed) is known before
/// a byte of the body is read.
#[derive(Clone, Copy)]
pub struct ClaimedSignature([u8; SHA256_LEN]);

impl fmt::Debug for ClaimedSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClaimedSignature(..)")
    }
}

impl ClaimedSignature {
    /// Parses `header`; `legacy_present` as for `SignatureVerifier::verify`.
    pub fn from_header(header: Option<&[u8]>, legacy_present: bool) -> Result<Self, SignatureError> {
        let header = match header {
            Some(h) => h,
            None if legacy_present => return Err(SignatureError::LegacyOnly),
            None => return Err(SignatureError::Missing),
        };
        let hex_sig = header.strip_prefix(b"sha256=").ok_or(SignatureError::Malformed)?;
        let mut claimed = [0u8; SHA256_LEN];
        hex::decode_to_slice(hex_sig, &mut claimed).map_err(|_| SignatureError::Malformed)?;
        Ok(Self(claimed))
    }
}

/// Computes the `X-Hub-Signature-256` header value for `body` (for `send`).
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    let mut mac = keyed_mac(secret.expose_secret().as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn keyed_mac(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC is defined for keys of every length; this arm cannot run.
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// The verifier in force, swapped whole when the secret files are re-read
/// (SIGHUP) while requests go on verifying against the one they took.
#[derive(Debug)]
pub struct SharedVerifier(RwLock<Arc<SignatureVerifier>>);

impl SharedVerifier {
    pub fn new(verifier: SignatureVerifier) -> Self {
        Self(RwLock::new(Arc::new(verifier)))
    }

    /// The verifier in force.
    pub fn current(&self) -> Arc<SignatureVerifier> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts `verifier` in force for the requests that start from now on.
    pub fn replace(&self, verifier: SignatureVerifier) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(verifier);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented test vector.
    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &[u8] = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn verifier(secrets: &[&str]) -> SignatureVerifier {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| SecretString::from(*s)).collect();
        SignatureVerifier::new(&secrets)
    }

    #[test]
    fn github_test_vector_verifies() {
        assert_eq!(verifier(&[SECRET]).verify(Some(SIGNATURE), false, BODY), Ok(()));
    }

    #[test]
    fn sign_produces_the_github_test_vector() {
        assert_eq!(sign(&SecretString::from(SECRET), BODY).as_bytes(), SIGNATURE);
    }

    #[test]
    fn any_of_several_secrets_verifies() {
        assert_eq!(verifier(&["old", SECRET]).verify(Some(SIGNATURE), false, BODY), Ok(()));
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        assert_eq!(verifier(&["not it"]).verify(Some(SIGNATURE), false, BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        assert_eq!(verifier(&[SECRET]).verify(Some(SIGNATURE), false, b"Hello, World?"), Err(SignatureError::Mismatch));
    }

    #[test]
    fn bad_hex_and_wrong_length_are_malformed() {
        let v = verifier(&[SECRET]);
        let bad_hex = b"sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(v.verify(Some(bad_hex), false, BODY), Err(SignatureError::Malformed));
        assert_eq!(v.verify(Some(b"sha256=7571"), false, BODY), Err(SignatureError::Malformed));
    }

    #[test]
    fn missing_prefix_is_malformed() {
        let v = verifier(&[SECRET]);
        assert_eq!(v.verify(Some(&SIGNATURE[7..]), false, BODY), Err(SignatureError::Malformed));
        assert_eq!(
            v.verify(Some(b"sha1=757107ea0eb2509fc211221cce984b8a37570b6d"), false, BODY),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn legacy_sha1_header_alone_is_refused() {
        assert_eq!(verifier(&[SECRET]).verify(None, true, BODY), Err(SignatureError::LegacyOnly));
        assert_eq!(verifier(&[SECRET]).verify(None, false, BODY), Err(SignatureError::Missing));
    }

    #[test]
    fn header_problems_are_known_without_a_body() {
        assert_eq!(ClaimedSignature::from_header(None, false).err(), Some(SignatureError::Missing));
        assert_eq!(ClaimedSignature::from_header(None, true).err(), Some(SignatureError::LegacyOnly));
        assert_eq!(ClaimedSignature::from_header(Some(b"sha256=12"), false).err(), Some(SignatureError::Malformed));
        let claimed = ClaimedSignature::from_header(Some(SIGNATURE), false).expect("well formed");
        assert_eq!(verifier(&[SECRET]).verify_claimed(&claimed, BODY), Ok(()));
        assert_eq!(verifier(&["other"]).verify_claimed(&claimed, BODY), Err(SignatureError::Mismatch));
    }

    #[test]
    fn debug_does_not_show_keys() {
        assert_eq!(format!("{:?}", verifier(&[SECRET])), "SignatureVerifier(1 secrets)");
    }
}
