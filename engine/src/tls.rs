//! TLS for both servers: rustls (no OpenSSL) from PEM files, with optional client
//! certificates (mutual TLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{EngineError, Result};

/// `[serve.tls]`: the PEM files, resolved against the project directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (`cert`), leaf first.
    pub cert: PathBuf,
    /// Its private key (`key`: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates a client certificate must chain to (`client_ca`); without it no
    /// client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

fn bad(key: &str, path: &Path, message: impl std::fmt::Display) -> EngineError {
    EngineError::Config {
        file: path.display().to_string(),
        message: format!("`serve.tls.{key}`: {message}"),
    }
}

fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| bad(key, path, format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(key, path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad(key, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// A TLS acceptor for a server speaking the `alpn` protocols (`h2` for Flight SQL,
/// `http/1.1` for the REST gateway).
///
/// # Errors
/// A file that cannot be read or holds no certificate or key, a key that does not match the
/// certificate: [`EngineError::Config`] naming the key and the file.
pub fn acceptor(files: &TlsFiles, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor> {
    let chain = certificates("cert", &files.cert)?;
    let pem = std::fs::read(&files.key)
        .map_err(|e| bad("key", &files.key, format!("cannot read: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad("key", &files.key, format!("no PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("cert", &files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates("client_ca", ca)? {
                roots
                    .add(c)
                    .map_err(|e| bad("client_ca", ca, format!("not a CA certificate: {e}")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| bad("client_ca", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        bad(
            "key",
            &files.key,
            format!("does not go with the certificate: {e}"),
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
