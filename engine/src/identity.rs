//! Who is calling: roles, principals, local users and secrets. Plain values, shared by the
//! config, the auth tree, the serving core and the servers; they decide nothing.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::table::Layer;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees gold.
    Reader,
    /// Sees silver, gold and `_system`; reads run history.
    Engineer,
    /// Sees everything; may run pipelines and write.
    Admin,
}

impl Role {
    /// True when the role may read tables of `layer`.
    pub fn can_read(self, layer: Layer) -> bool {
        match self {
            Role::Admin => true,
            Role::Engineer => matches!(layer, Layer::Silver | Layer::Gold | Layer::System),
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

    /// Parses `reader`, `engineer` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "engineer" => Some(Role::Engineer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl Role {
    /// The role's name as written (`reader`, `engineer`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Engineer => "engineer",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a caller's identity comes from: names of different sources never meet, so an
/// OIDC user `alice` is not the local account `alice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Source {
    /// A `[[users]]` entry or an account in the lake's store (one namespace).
    #[default]
    Local,
    /// A user of the configured OIDC issuer.
    Oidc,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name (unique within its source).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Where the identity comes from.
    pub source: Source,
}

/// What an API key records as its owner: a local name, or `oidc:<role>:<name>` (local
/// names cannot hold `:`, so the two never collide).
const OIDC_OWNER: &str = "oidc:";

impl Principal {
    /// A local account or config user.
    pub fn local(name: impl Into<String>, role: Role) -> Self {
        Principal {
            name: name.into(),
            role,
            source: Source::Local,
        }
    }

    /// A user of the OIDC issuer.
    pub fn oidc(name: impl Into<String>, role: Role) -> Self {
        Principal {
            name: name.into(),
            role,
            source: Source::Oidc,
        }
    }

    /// The identity as one string (`alice`, or `oidc:alice` for an OIDC user).
    pub fn identity(&self) -> String {
        match self.source {
            Source::Local => self.name.clone(),
            Source::Oidc => format!("{OIDC_OWNER}{}", self.name),
        }
    }

    /// Whether `other` is the same identity (name and source; the role may differ).
    pub fn same_identity(&self, other: &Principal) -> bool {
        self.name == other.name && self.source == other.source
    }

    /// The owner an API key of this principal records: the local name, or
    /// `oidc:<role>:<name>` (an OIDC user's key acts as them, with the role they had when
    /// they made it).
    pub fn key_owner(&self) -> String {
        match self.source {
            Source::Local => self.name.clone(),
            Source::Oidc => format!("{OIDC_OWNER}{}:{}", self.role, self.name),
        }
    }

    /// The principal an API key's recorded owner stands for (`None` for a malformed
    /// OIDC owner).
    pub fn from_key_owner(owner: &str) -> Option<Principal> {
        match owner.strip_prefix(OIDC_OWNER) {
            None => Some(Principal::local(owner, Role::Reader)),
            Some(rest) => {
                let (role, name) = rest.split_once(':')?;
                Some(Principal::oidc(name, Role::parse(role)?))
            }
        }
    }
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
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A local user (one from the project's `[[users]]`).
#[derive(Debug, Clone)]
pub struct LocalUser {
    /// User name.
    pub name: String,
    /// Password.
    pub password: Secret,
    /// Role.
    pub role: Role,
}
