//! Who is calling and what they may see: one policy for REST and Flight SQL.
//!
//! Roles: `reader` sees `gold`; `engineer` sees `silver` and `gold`; `admin` sees every
//! layer (including `bronze` and `_system`) and may trigger runs and write rows.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::table::Layer;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees gold.
    Reader,
    /// Sees silver and gold.
    Engineer,
    /// Sees everything; may run pipelines and write.
    Admin,
}

impl Role {
    /// True when the role may read tables of `layer`.
    pub fn can_read(self, layer: Layer) -> bool {
        match self {
            Role::Admin => true,
            Role::Engineer => matches!(layer, Layer::Silver | Layer::Gold),
            Role::Reader => layer == Layer::Gold,
        }
    }

    /// The layers the role may read.
    pub fn layers(self) -> Vec<Layer> {
        Layer::ALL
            .into_iter()
            .filter(|l| self.can_read(*l))
            .collect()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// A password that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to the component that needs it (never to a log).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the inputs differ.
    fn matches(&self, other: &str) -> bool {
        let a = self.0.as_bytes();
        let b = other.as_bytes();
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            diff |= usize::from(x ^ y);
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A local user (the bootstrap admin, or one from the project's `[[users]]`).
#[derive(Debug, Clone)]
pub struct LocalUser {
    /// User name.
    pub name: String,
    /// Password.
    pub password: Secret,
    /// Role.
    pub role: Role,
}

/// Why authentication failed (deliberately vague towards clients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown user or wrong password.
    #[error("invalid user name or password")]
    BadCredentials,
    /// No token, an unknown one, or an expired one.
    #[error("missing, invalid or expired token")]
    BadToken,
}

/// Users, tokens and what each role may see.
#[derive(Debug)]
pub struct AccessPolicy {
    users: HashMap<String, LocalUser>,
    tokens: Mutex<HashMap<String, (Principal, Instant)>>,
    token_ttl: Duration,
}

impl AccessPolicy {
    /// A policy over the given local users; tokens live `token_ttl`.
    pub fn new(users: Vec<LocalUser>, token_ttl: Duration) -> Self {
        AccessPolicy {
            users: users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            tokens: Mutex::new(HashMap::new()),
            token_ttl,
        }
    }

    /// Checks a user name and password.
    ///
    /// # Errors
    /// [`AuthError::BadCredentials`], the same for an unknown user and a wrong password.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<Principal, AuthError> {
        match self.users.get(name) {
            Some(u) if u.password.matches(password) => Ok(Principal {
                name: u.name.clone(),
                role: u.role,
            }),
            _ => Err(AuthError::BadCredentials),
        }
    }

    /// Issues a bearer token for a principal.
    pub fn issue_token(&self, principal: &Principal) -> String {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        if let Ok(mut tokens) = self.tokens.lock() {
            let now = Instant::now();
            tokens.retain(|_, (_, expires)| *expires > now);
            tokens.insert(token.clone(), (principal.clone(), now + self.token_ttl));
        }
        token
    }

    /// The principal a bearer token was issued to.
    ///
    /// # Errors
    /// [`AuthError::BadToken`] for unknown or expired tokens.
    pub fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        let tokens = self.tokens.lock().map_err(|_| AuthError::BadToken)?;
        match tokens.get(token) {
            Some((p, expires)) if *expires > Instant::now() => Ok(p.clone()),
            _ => Err(AuthError::BadToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        AccessPolicy::new(
            vec![LocalUser {
                name: "ana".into(),
                password: Secret::new("s3cret"),
                role: Role::Reader,
            }],
            Duration::from_secs(60),
        )
    }

    #[test]
    fn roles_see_their_layers() {
        assert_eq!(Role::Reader.layers(), [Layer::Gold]);
        assert_eq!(Role::Engineer.layers(), [Layer::Silver, Layer::Gold]);
        assert_eq!(Role::Admin.layers().len(), 4);
    }

    #[test]
    fn passwords_and_tokens() {
        let p = policy();
        assert_eq!(
            p.authenticate("ana", "wrong"),
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            p.authenticate("bob", "s3cret"),
            Err(AuthError::BadCredentials)
        );
        let ana = p.authenticate("ana", "s3cret").unwrap();
        let token = p.issue_token(&ana);
        assert_eq!(p.verify_token(&token).unwrap(), ana);
        assert_eq!(p.verify_token("nope"), Err(AuthError::BadToken));
        assert_eq!(format!("{:?}", Secret::new("x")), "Secret(***)");
    }
}
