//! What clients see of accounts and API keys (never a hash), and the changes they ask for.

use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::auth::store::{ApiKeyRecord, UserRecord};

/// An account as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    /// User name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Whether the account may sign in.
    pub is_active: bool,
    /// Whether the account is an admin (role `admin`).
    pub is_admin: bool,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
    /// Who changed it last (`signup`, `bootstrap` or an admin).
    pub updated_by: String,
}

impl From<&UserRecord> for Account {
    fn from(u: &UserRecord) -> Self {
        Account {
            name: u.name.clone(),
            role: u.role,
            is_active: u.is_active,
            is_admin: u.is_admin,
            created_at: u.created_at.clone(),
            updated_at: u.updated_at.clone(),
            updated_by: u.updated_by.clone(),
        }
    }
}

/// An API key as clients see it (its secret is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    /// The key's public id.
    pub key_id: String,
    /// The account it acts as.
    pub user: String,
    /// Its owner's label.
    pub label: Option<String>,
    /// Revoked keys stop working.
    pub revoked: bool,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

impl From<&ApiKeyRecord> for ApiKey {
    fn from(k: &ApiKeyRecord) -> Self {
        ApiKey {
            key_id: k.key_id.clone(),
            user: k.user_name.clone(),
            label: k.label.clone(),
            revoked: k.revoked,
            created_at: k.created_at.clone(),
            updated_at: k.updated_at.clone(),
        }
    }
}

/// A new key and, once only, its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewApiKey {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKey,
    /// `ak_<id>_<secret>`: use it as a bearer token or `X-API-Key`.
    #[serde(rename = "key")]
    pub secret: String,
}

/// What an admin changes on an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AccountChange {
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// A new role.
    pub role: Option<Role>,
    /// `true`: role `admin`; `false`: role `engineer`.
    pub is_admin: Option<bool>,
}

/// A bearer token for a signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Login {
    /// The JWT.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The user.
    pub user: String,
    /// Their role.
    pub role: Role,
}
