//! Tokens from an external OIDC issuer: its JWKS fetched and cached, signatures, issuer,
//! audience and expiry checked, the user name and role read from configured claims.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};

use super::{AuthError, OidcSettings, Role, unavailable};

/// Fetched JWKS, kept `jwks_ttl`; an unknown `kid` refetches at most every 10 s.
pub(super) struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(Instant, jsonwebtoken::jwk::JwkSet)>>,
}

const REFETCH_AFTER: Duration = Duration::from_secs(10);

const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Oidc {
    pub(super) fn new(settings: OidcSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Oidc {
            settings,
            http,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    pub(super) fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Checks a token of the issuer: the user name and the role its claims give.
    pub(super) async fn verify(
        &self,
        token: &str,
        header: &Header,
    ) -> Result<(String, Role), AuthError> {
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(AuthError::BadToken);
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| AuthError::BadToken)?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&[&self.settings.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 30;
        v.validate_nbf = true;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|_| AuthError::BadToken)?
            .claims;
        let name = claims
            .get(&self.settings.username_claim)
            .or_else(|| claims.get("sub"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::BadToken)?
            .to_string();
        let role = match claims.get(&self.settings.role_claim) {
            Some(serde_json::Value::String(s)) => Role::parse(s),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .filter_map(|v| v.as_str().and_then(Role::parse))
                .max(),
            _ => None,
        }
        .unwrap_or(self.settings.default_role);
        Ok((name, role))
    }

    async fn fetch(&self) -> Result<jsonwebtoken::jwk::JwkSet, AuthError> {
        let res = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(|e| unavailable(format!("JWKS {}: {e}", self.settings.jwks_url)))?;
        if !res.status().is_success() {
            return Err(unavailable(format!(
                "JWKS {}: HTTP {}",
                self.settings.jwks_url,
                res.status()
            )));
        }
        res.json()
            .await
            .map_err(|e| unavailable(format!("JWKS {}: {e}", self.settings.jwks_url)))
    }

    async fn key(&self, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, AuthError> {
        let find = |set: &jsonwebtoken::jwk::JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        let mut cached = self.cached.lock().await;
        if let Some((at, set)) = cached.as_ref() {
            let age = at.elapsed();
            if age < self.settings.jwks_ttl {
                if let Some(k) = find(set) {
                    return Ok(k);
                }
                if age < REFETCH_AFTER {
                    return Err(AuthError::BadToken);
                }
            }
        }
        let set = self.fetch().await?;
        let key = find(&set);
        *cached = Some((Instant::now(), set));
        key.ok_or(AuthError::BadToken)
    }
}
