//! Sealed handles: bytes a server hands to a client and later takes back, signed with a key
//! derived from the JWT secret, so that any server sharing that secret (every replica) can
//! check them without shared state and nobody can forge or alter one.
//!
//! A sealed value is `as1` + the payload + HMAC-SHA256(key, purpose || 0 || payload). The
//! payload is signed, not encrypted: it must hold nothing the holder may not read.

use aws_lc_rs::{constant_time, hmac};

const MAGIC: &[u8] = b"as1";
const TAG: usize = 32;

/// The sealing key of a JWT secret (a different key than the one tokens are signed with, so a
/// sealed value can never pass for a token nor the other way round).
#[derive(Clone)]
pub(crate) struct SealKey(hmac::Key);

impl SealKey {
    pub(crate) fn derive(secret: &[u8]) -> SealKey {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&root, b"assay sealed handles v1");
        SealKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    fn tag(&self, purpose: &str, payload: &[u8]) -> hmac::Tag {
        let mut mac = hmac::Context::with_key(&self.0);
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac.sign()
    }

    /// `payload`, signed for `purpose`.
    pub(crate) fn seal(&self, purpose: &str, payload: &[u8]) -> Vec<u8> {
        let tag = self.tag(purpose, payload);
        let mut out = Vec::with_capacity(MAGIC.len() + payload.len() + TAG);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(payload);
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The payload of a value this key sealed for `purpose`; `None` for anything else
    /// (forged, altered, truncated, another purpose, another secret).
    pub(crate) fn open<'a>(&self, purpose: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let body = sealed.strip_prefix(MAGIC)?;
        let split = body.len().checked_sub(TAG)?;
        let (payload, tag) = body.split_at(split);
        let expected = self.tag(purpose, payload);
        constant_time::verify_slices_are_equal(expected.as_ref(), tag).ok()?;
        Some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_secret_and_purpose_open_an_unaltered_value() {
        let key = SealKey::derive(b"a secret of at least thirty-two bytes");
        let sealed = key.seal("statement", b"SELECT 1");
        assert_eq!(key.open("statement", &sealed), Some(&b"SELECT 1"[..]));
        // Another replica with the same secret opens it.
        let same = SealKey::derive(b"a secret of at least thirty-two bytes");
        assert_eq!(same.open("statement", &sealed), Some(&b"SELECT 1"[..]));
        assert_eq!(key.open("prepared", &sealed), None, "another purpose");
        let other = SealKey::derive(b"another secret of thirty-two bytes!!");
        assert_eq!(other.open("statement", &sealed), None, "another secret");
        let mut altered = sealed.clone();
        altered[4] ^= 1;
        assert_eq!(key.open("statement", &altered), None, "an altered payload");
        assert_eq!(key.open("statement", &sealed[..sealed.len() - 1]), None);
        assert_eq!(key.open("statement", b"as1"), None);
        assert_eq!(key.open("statement", b""), None);
        let empty = key.seal("statement", b"");
        assert_eq!(key.open("statement", &empty), Some(&b""[..]));
    }
}
