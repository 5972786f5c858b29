//! `SignatureVerifier::verify` and `signature::sign`.
//!
//! Invariants: what `sign` produces verifies under that secret (and under a
//! set holding it among others); a changed signature byte or body byte never
//! verifies; an arbitrary header verifies only if it is, ignoring hex case,
//! exactly the signature of the body under one of the secrets.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use webhookd::webhook::signature::{SignatureError, SignatureVerifier, sign};

#[derive(Debug, Arbitrary)]
struct Input {
    secrets: Vec<String>,
    body: Vec<u8>,
    /// An arbitrary `X-Hub-Signature-256` value.
    header: Option<Vec<u8>>,
    legacy_present: bool,
    /// Which signature byte / body byte to change, and by what (xor, made non-zero).
    flip_at: usize,
    flip_with: u8,
}

fuzz_target!(|input: Input| {
    let Input { mut secrets, body, header, legacy_present, flip_at, flip_with } = input;
    secrets.truncate(16);
    let keys: Vec<SecretString> = secrets.iter().map(|s| SecretString::from(s.as_str())).collect();
    let verifier = SignatureVerifier::new(&keys);

    // Arbitrary headers never panic, and only a real signature passes.
    let result = verifier.verify(header.as_deref(), legacy_present, &body);
    match &header {
        None if legacy_present => assert_eq!(result, Err(SignatureError::LegacyOnly)),
        None => assert_eq!(result, Err(SignatureError::Missing)),
        Some(h) => {
            if result.is_ok() {
                let lower = h.to_ascii_lowercase();
                assert!(
                    keys.iter().any(|k| sign(k, &body).as_bytes() == lower),
                    "accepted a header no secret produced"
                );
            } else if !h.starts_with(b"sha256=") {
                assert_eq!(result, Err(SignatureError::Malformed));
            }
        }
    }

    let Some(key) = keys.first() else {
        // No secrets: nothing verifies.
        let any = sign(&SecretString::from("x"), &body);
        assert_eq!(verifier.verify(Some(any.as_bytes()), false, &body), Err(SignatureError::Mismatch));
        return;
    };
    let signature = sign(key, &body);
    assert_eq!(signature.len(), "sha256=".len() + 64);
    assert_eq!(verifier.verify(Some(signature.as_bytes()), legacy_present, &body), Ok(()));
    // Hex digits are accepted in either case (`hex` decodes both).
    assert_eq!(
        verifier.verify(Some(signature.to_ascii_uppercase().replace("SHA256=", "sha256=").as_bytes()), false, &body),
        Ok(())
    );

    let xor = flip_with.max(1);
    let mut digest = hex::decode(&signature["sha256=".len()..]).expect("sign emits hex");
    let at = flip_at % digest.len();
    digest[at] ^= xor;
    let flipped = format!("sha256={}", hex::encode(&digest));
    assert_eq!(verifier.verify(Some(flipped.as_bytes()), false, &body), Err(SignatureError::Mismatch));

    if !body.is_empty() {
        let mut tampered = body.clone();
        let at = flip_at % tampered.len();
        tampered[at] ^= xor;
        assert_eq!(verifier.verify(Some(signature.as_bytes()), false, &tampered), Err(SignatureError::Mismatch));
    }
    let mut longer = body.clone();
    longer.push(flip_with);
    assert_eq!(verifier.verify(Some(signature.as_bytes()), false, &longer), Err(SignatureError::Mismatch));

    // A truncated or extended signature is malformed, never a match.
    assert_eq!(
        verifier.verify(Some(&signature.as_bytes()[..signature.len() - 1]), false, &body),
        Err(SignatureError::Malformed)
    );
    assert_eq!(verifier.verify(Some(format!("{signature}0").as_bytes()), false, &body), Err(SignatureError::Malformed));
});
