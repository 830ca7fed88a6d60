//! Handshake credentials and bearer tokens, checked by the engine's access policy.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// The `authorization` header's text.
fn authorization<'a>(md: &'a MetadataMap, missing: &str) -> Result<&'a str, Status> {
    md.get("authorization")
        .ok_or_else(|| Status::unauthenticated(missing.to_string()))?
        .to_str()
        .map_err(|_| Status::unauthenticated("authorization header is not text"))
}

/// `user:password` from an `authorization: Basic …` header.
pub(crate) fn basic(md: &MetadataMap) -> Result<(String, String), Status> {
    let encoded = authorization(md, "missing authorization header")?
        .strip_prefix("Basic ")
        .ok_or_else(|| Status::unauthenticated("handshake needs Basic authorization"))?;
    // Go clients (the ADBC driver) send unpadded base64; others pad.
    let engine = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let decoded = engine
        .decode(encoded.trim())
        .map_err(|_| Status::unauthenticated("authorization is not base64"))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| Status::unauthenticated("authorization is not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| Status::unauthenticated("authorization is not user:password"))?;
    Ok((user.to_string(), password.to_string()))
}

/// The token of an `authorization: Bearer …` header.
pub(crate) fn bearer(md: &MetadataMap) -> Result<String, Status> {
    let token = authorization(md, "missing bearer token; call Handshake first")?
        .strip_prefix("Bearer ")
        .ok_or_else(|| Status::unauthenticated("expected a bearer token"))?;
    Ok(token.trim().to_string())
}
