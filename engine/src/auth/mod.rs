//! Who is calling and what they may see: one policy for REST and Flight SQL.
//!
//! Roles: `reader` sees `gold`; `engineer` sees `silver`, `gold` and `_system` (run
//! history, expectation outcomes); `admin` sees every layer (including `bronze`) and may
//! trigger runs, write rows and manage accounts. [`authorize`] is the one decision every
//! server asks.
//!
//! Callers prove who they are with a password (config users from `[[users]]`, or accounts
//! in `_system.users`), and then with a bearer token, one of:
//! - a JWT this policy issued (HS256 with the server's secret, issuer `assay`);
//! - a JWT from an external OIDC issuer, checked against its JWKS (fetched and cached);
//! - an API key `ak_<id>_<secret>` (only its SHA-256 is stored).
//!
//! Every token is re-checked against the account's current state: a deactivated account's
//! tokens and keys stop working (403), and a role change applies to the next request.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

mod authorize;
mod oidc;
mod seal;
pub mod store;
mod throttle;

pub use throttle::ThrottleLimits;

pub use crate::config::{OidcSettings, SignupPolicy};
pub use crate::identity::{LocalUser, Principal, Role, Secret, Source};
pub use authorize::{Action, authorize};

use store::{UserRecord, UserStore, hash_key_secret, verify_password};

/// Compares in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Signs handles a server gives out and checks them when they come back (prepared statements,
/// tickets), with a key derived from the JWT secret: every server sharing the secret accepts
/// them, none can forge one. Signed, not encrypted: the holder can read the payload.
pub trait Sealer: Send + Sync {
    /// `payload`, signed for `purpose`.
    fn seal(&self, purpose: &str, payload: &[u8]) -> Vec<u8>;
    /// The payload of a value [`Sealer::seal`] made for `purpose` with this secret; `None`
    /// when it is forged, altered, for another purpose or from another secret.
    fn unseal<'a>(&self, purpose: &str, sealed: &'a [u8]) -> Option<&'a [u8]>;
}

impl Sealer for AccessPolicy {
    fn seal(&self, purpose: &str, payload: &[u8]) -> Vec<u8> {
        self.keys.seal.seal(purpose, payload)
    }

    fn unseal<'a>(&self, purpose: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
        self.keys.seal.open(purpose, sealed)
    }
}

/// Why authentication or an account operation failed (vague where it must be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown user or wrong password.
    #[error("invalid user name or password")]
    BadCredentials,
    /// No token, an unknown one, a forged or expired one.
    #[error("missing, invalid or expired token")]
    BadToken,
    /// The account exists but is not active.
    #[error("account `{0}` is inactive: an admin must activate it")]
    Inactive(String),
    /// The operation is not allowed (closed signup, not an admin, not the owner).
    #[error("{0}")]
    Forbidden(String),
    /// A malformed user name, password or role.
    #[error("{0}")]
    Invalid(String),
    /// The user name is taken.
    #[error("user `{0}` already exists")]
    Conflict(String),
    /// No such account or key.
    #[error("{0}")]
    NotFound(String),
    /// Too many attempts (per client or per account): retry later.
    #[error("{0}")]
    Throttled(String),
    /// The account store or the OIDC issuer could not be reached (details are logged).
    #[error("authentication is unavailable")]
    Unavailable,
}

impl AuthError {
    /// How a client sees the error.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            AuthError::BadCredentials | AuthError::BadToken => ErrorKind::Unauthenticated,
            AuthError::Inactive(_) | AuthError::Forbidden(_) => ErrorKind::Forbidden,
            AuthError::Invalid(_) => ErrorKind::Invalid,
            AuthError::Conflict(_) => ErrorKind::Conflict,
            AuthError::NotFound(_) => ErrorKind::NotFound,
            AuthError::Unavailable => ErrorKind::Unavailable,
            AuthError::Throttled(_) => ErrorKind::Busy,
        }
    }
}

fn unavailable(e: impl fmt::Display) -> AuthError {
    tracing::error!(error = %e, "authentication backend failed");
    AuthError::Unavailable
}

/// The issuer our own JWTs carry.
pub const ISSUER: &str = "assay";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iss: String,
    iat: u64,
    exp: u64,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    seal: seal::SealKey,
}

impl Keys {
    fn from_secret(secret: &[u8]) -> Self {
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            seal: seal::SealKey::derive(secret),
        }
    }
}

/// Users, tokens and what each role may see.
pub struct AccessPolicy {
    users: HashMap<String, LocalUser>,
    store: Option<UserStore>,
    signup: SignupPolicy,
    keys: Keys,
    oidc: Option<oidc::Oidc>,
    token_ttl: Duration,
    /// Our JWTs whose signature and claims were checked: token -> (subject, expiry). The
    /// account is still looked up on every request; only the decoding is saved.
    verified: moka::sync::Cache<String, (String, u64)>,
    throttle: throttle::Throttle,
    reserved: Vec<String>,
}

/// Verified tokens remembered at most.
const VERIFIED_TOKENS: u64 = 10_000;

impl fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("store", &self.store.is_some())
            .field("signup", &self.signup)
            .field("oidc", &self.oidc.as_ref().map(oidc::Oidc::issuer))
            .field("token_ttl", &self.token_ttl)
            .finish_non_exhaustive()
    }
}

fn random_secret() -> Vec<u8> {
    let mut s = uuid::Uuid::new_v4().as_bytes().to_vec();
    s.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    s
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters
/// (case-insensitive: `*@corp.example`, `admin*`, `root`).
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return p == n;
    };
    if parts.len() == 1 {
        return p == n;
    }
    let Some(mut rest) = n.strip_prefix(first) else {
        return false;
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Checks a new account's name and password: 400 naming the rule otherwise.
fn check_new_account(name: &str, password: &str) -> Result<(), AuthError> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !name_ok {
        return Err(AuthError::Invalid(
            "username: 1 to 64 characters from letters, digits, `.`, `_`, `-`, `@`".into(),
        ));
    }
    if password.chars().count() < 8 {
        return Err(AuthError::Invalid("password: at least 8 characters".into()));
    }
    Ok(())
}

impl AccessPolicy {
    /// A policy over the given config users; tokens live `token_ttl` and are signed with a
    /// random per-process secret until [`AccessPolicy::with_secret`] sets one.
    pub fn new(users: Vec<LocalUser>, token_ttl: Duration) -> Self {
        AccessPolicy {
            users: users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            store: None,
            signup: SignupPolicy::Closed,
            keys: Keys::from_secret(&random_secret()),
            oidc: None,
            token_ttl,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS)
                .time_to_live(Duration::from_secs(60))
                .build(),
            throttle: throttle::Throttle::new(ThrottleLimits::default()),
            reserved: Vec::new(),
        }
    }

    /// Names sign-ups may not take (`*` matches any run of characters).
    pub fn with_reserved_names(mut self, patterns: Vec<String>) -> Self {
        self.reserved = patterns;
        self
    }

    /// Throttles logins and signups by `limits`.
    pub fn with_throttle(mut self, limits: ThrottleLimits) -> Self {
        self.throttle = throttle::Throttle::new(limits);
        self
    }

    /// The login and signup limits.
    pub fn throttle_limits(&self) -> ThrottleLimits {
        self.throttle.limits()
    }

    /// Signs and checks our JWTs with `secret` (so tokens survive restarts and work on
    /// every gateway that shares it).
    pub fn with_secret(mut self, secret: &[u8]) -> Self {
        self.keys = Keys::from_secret(secret);
        self.verified.invalidate_all();
        self
    }

    /// Keeps accounts and API keys in the lake, with the given signup policy.
    pub fn with_store(mut self, store: UserStore, signup: SignupPolicy) -> Self {
        self.store = Some(store);
        self.signup = signup;
        self
    }

    /// Accepts tokens from an external OIDC issuer.
    pub fn with_oidc(mut self, settings: OidcSettings) -> Self {
        self.oidc = Some(oidc::Oidc::new(settings));
        self
    }

    /// The account store, when accounts live in the lake.
    pub fn store(&self) -> Option<&UserStore> {
        self.store.as_ref()
    }

    /// Who may sign up.
    pub fn signup_policy(&self) -> SignupPolicy {
        self.signup
    }

    /// How long issued tokens live.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    fn store_or_forbidden(&self) -> Result<&UserStore, AuthError> {
        self.store
            .as_ref()
            .ok_or_else(|| AuthError::Forbidden("this server keeps no accounts".into()))
    }

    /// Creates the first admin in the store unless an account of that name exists; true when
    /// it was created.
    ///
    /// # Errors
    /// A bad name or password, or the store failed.
    pub async fn bootstrap_admin(&self, name: &str, password: &str) -> Result<bool, AuthError> {
        let store = self.store_or_forbidden()?;
        check_new_account(name, password)?;
        if store.user(name).await.map_err(unavailable)?.is_some() {
            return Ok(false);
        }
        let created = store
            .create(name, password, Role::Admin, true, "bootstrap")
            .await
            .map_err(unavailable)?;
        Ok(created.is_some())
    }

    /// `POST /signup`: creates an account by the signup policy (`reader`; inactive under
    /// `approval`).
    ///
    /// # Errors
    /// Signup closed (403), a bad name or password (400), a taken name (409).
    pub async fn signup(
        &self,
        name: &str,
        password: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<UserRecord, AuthError> {
        let store = self.store_or_forbidden()?;
        if self.signup == SignupPolicy::Closed {
            return Err(AuthError::Forbidden(
                "signup is closed on this server: ask an admin for an account".into(),
            ));
        }
        check_new_account(name, password)?;
        if self.reserved.iter().any(|p| matches_pattern(p, name)) {
            return Err(AuthError::Forbidden(format!(
                "the name `{name}` is reserved on this server (`[auth] reserved_names`)"
            )));
        }
        self.throttle.signup(client)?;
        if self.users.contains_key(name) {
            return Err(AuthError::Conflict(name.into()));
        }
        let active = self.signup == SignupPolicy::Open;
        store
            .create(name, password, Role::Reader, active, "signup")
            .await
            .map_err(unavailable)?
            .ok_or_else(|| AuthError::Conflict(name.into()))
    }

    /// Creates an account as an admin (`by`), active at once.
    ///
    /// # Errors
    /// As [`AccessPolicy::signup`], except that the policy does not apply.
    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        role: Role,
        by: &str,
    ) -> Result<UserRecord, AuthError> {
        let store = self.store_or_forbidden()?;
        check_new_account(name, password)?;
        if self.users.contains_key(name) {
            return Err(AuthError::Conflict(name.into()));
        }
        store
            .create(name, password, role, true, by)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| AuthError::Conflict(name.into()))
    }

    /// Checks a user name and password from `client` (throttled per client and per
    /// account; every attempt costs one password hash check, known user or not).
    ///
    /// # Errors
    /// [`AuthError::BadCredentials`], the same for an unknown user and a wrong password;
    /// [`AuthError::Inactive`] for a right password on an inactive account;
    /// [`AuthError::Throttled`] past the limits.
    pub async fn authenticate(
        &self,
        name: &str,
        password: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<Principal, AuthError> {
        self.throttle.login(client, name)?;
        let _turn = self.throttle.check_turn().await?;
        let result = self.check_password(name, password).await;
        let ok = !matches!(result, Err(AuthError::BadCredentials));
        self.throttle.outcome(client, name, ok);
        result
    }

    async fn check_password(&self, name: &str, password: &str) -> Result<Principal, AuthError> {
        let config = self.users.get(name);
        let record = match (config, &self.store) {
            (None, Some(store)) => store.user(name).await.map_err(unavailable)?,
            _ => None,
        };
        // One argon2 check on every path: against the account's hash, or a dummy one.
        let hash = record.as_ref().and_then(|r| r.password_hash.clone());
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| store::dummy_hash().to_string());
        let given = password.to_string();
        let hash_ok = tokio::task::spawn_blocking(move || verify_password(&given, &hash))
            .await
            .map_err(unavailable)?;
        if let Some(u) = config {
            return if same(u.password.expose().as_bytes(), password.as_bytes()) {
                Ok(Principal::local(u.name.clone(), u.role))
            } else {
                Err(AuthError::BadCredentials)
            };
        }
        let Some(record) = record.filter(|_| real && hash_ok) else {
            return Err(AuthError::BadCredentials);
        };
        if !record.is_active {
            return Err(AuthError::Inactive(record.name));
        }
        let role = record.effective_role();
        Ok(Principal::local(record.name, role))
    }

    /// Issues a bearer token (a JWT signed with the server's secret) for a principal.
    ///
    /// # Errors
    /// Signing failed (a bug).
    pub fn issue_token(&self, principal: &Principal) -> Result<String, AuthError> {
        self.issue_token_with(principal, now_secs(), self.token_ttl)
    }

    /// Issues a token as of `iat` (seconds since the epoch) that lives `ttl`; for tests of
    /// expiry.
    ///
    /// # Errors
    /// Signing failed (a bug).
    pub fn issue_token_with(
        &self,
        principal: &Principal,
        iat: u64,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            sub: principal.name.clone(),
            role: principal.role,
            iss: ISSUER.into(),
            iat,
            exp: iat + ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.keys.encoding)
            .map_err(unavailable)
    }

    /// The principal a bearer token stands for, as of the account's current state.
    ///
    /// # Errors
    /// [`AuthError::BadToken`] for unknown, forged, `alg: none` or expired tokens;
    /// [`AuthError::Inactive`] when the account was deactivated.
    pub async fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(rest) = token.strip_prefix("ak_") {
            return self.verify_api_key(rest).await;
        }
        if let Some((sub, exp)) = self.verified.get(token)
            && now_secs() < exp
        {
            return self.current(&sub).await;
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::BadToken)?;
        if header.alg == Algorithm::HS256 {
            let mut v = Validation::new(Algorithm::HS256);
            v.set_issuer(&[ISSUER]);
            v.set_required_spec_claims(&["exp", "iss", "sub"]);
            v.leeway = 5;
            v.validate_nbf = true;
            let data = jsonwebtoken::decode::<Claims>(token, &self.keys.decoding, &v)
                .map_err(|_| AuthError::BadToken)?;
            self.verified.insert(
                token.to_string(),
                (data.claims.sub.clone(), data.claims.exp),
            );
            return self.current(&data.claims.sub).await;
        }
        let Some(oidc) = &self.oidc else {
            return Err(AuthError::BadToken);
        };
        let (name, role) = oidc.verify(token, &header).await?;
        Ok(self.external(&name, role))
    }

    /// The principal for an OIDC user: the token's name and role, as an identity of its
    /// own. Local accounts and config users of the same name are not consulted, so an
    /// issuer that lets users pick their name cannot borrow a local role, key or lockout.
    fn external(&self, name: &str, role: Role) -> Principal {
        Principal::oidc(name, role)
    }

    /// The principal for `name` now: config users keep their role; stored accounts must be
    /// active and act with their current role; anyone else is refused.
    async fn current(&self, name: &str) -> Result<Principal, AuthError> {
        if let Some(u) = self.users.get(name) {
            return Ok(Principal::local(u.name.clone(), u.role));
        }
        self.stored(name).await?.ok_or(AuthError::BadToken)
    }

    /// The stored account `name` as a principal, `None` when there is none.
    ///
    /// # Errors
    /// [`AuthError::Inactive`] for an inactive account.
    async fn stored(&self, name: &str) -> Result<Option<Principal>, AuthError> {
        let record = match &self.store {
            Some(store) => store.user(name).await.map_err(unavailable)?,
            None => None,
        };
        match record {
            Some(r) if !r.is_active => Err(AuthError::Inactive(r.name)),
            Some(r) => {
                let role = r.effective_role();
                Ok(Some(Principal::local(r.name, role)))
            }
            None => Ok(None),
        }
    }

    async fn verify_api_key(&self, rest: &str) -> Result<Principal, AuthError> {
        let store = self.store.as_ref().ok_or(AuthError::BadToken)?;
        let (id, secret) = rest.split_once('_').ok_or(AuthError::BadToken)?;
        let key = store
            .api_key(id)
            .await
            .map_err(unavailable)?
            .ok_or(AuthError::BadToken)?;
        if key.revoked || !same(key.key_hash.as_bytes(), hash_key_secret(secret).as_bytes()) {
            return Err(AuthError::BadToken);
        }
        match Principal::from_key_owner(&key.user_name) {
            Some(p) if p.source == Source::Oidc => Ok(p),
            Some(p) => self.current(&p.name).await,
            None => Err(AuthError::BadToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_name_patterns_match_with_stars() {
        assert!(matches_pattern("root", "ROOT"));
        assert!(!matches_pattern("root", "rooted"));
        assert!(matches_pattern("*@corp.example", "ana@corp.example"));
        assert!(!matches_pattern("*@corp.example", "ana@corp.example.org"));
        assert!(matches_pattern("admin*", "admin2"));
        assert!(matches_pattern("a*b*c", "axxbyyc"));
        assert!(!matches_pattern("a*b*c", "axxc"));
        assert!(!matches_pattern("ab*ba", "aba"));
    }
    use crate::table::Layer;

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
        assert_eq!(
            Role::Engineer.layers(),
            [Layer::Silver, Layer::Gold, Layer::System]
        );
        assert_eq!(Role::Admin.layers().len(), 4);
        assert!(Role::Admin > Role::Engineer && Role::Engineer > Role::Reader);
    }

    #[test]
    fn one_decision_for_every_action() {
        use crate::table::TableId;
        let who = |role| Principal::local("u", role);
        let (reader, engineer, admin) = (who(Role::Reader), who(Role::Engineer), who(Role::Admin));
        let silver = TableId::new(Layer::Silver, "orders");
        let gold = TableId::new(Layer::Gold, "kpis");
        let kind = |r: Result<(), crate::service::ServiceError>| r.err().map(|e| e.kind());
        use crate::error::ErrorKind::{Forbidden, NotFound};
        assert_eq!(
            kind(authorize(&reader, Action::ReadTable(&silver))),
            Some(NotFound)
        );
        assert_eq!(kind(authorize(&reader, Action::ReadTable(&gold))), None);
        assert_eq!(kind(authorize(&engineer, Action::ReadTable(&silver))), None);
        assert_eq!(
            kind(authorize(&engineer, Action::WriteRows(&gold))),
            Some(Forbidden)
        );
        assert_eq!(
            kind(authorize(&reader, Action::WriteRows(&silver))),
            Some(NotFound)
        );
        assert_eq!(kind(authorize(&admin, Action::WriteRows(&silver))), None);
        assert_eq!(kind(authorize(&reader, Action::ReadRuns)), Some(Forbidden));
        assert_eq!(kind(authorize(&engineer, Action::ReadRuns)), None);
        assert_eq!(
            kind(authorize(&engineer, Action::StartRun)),
            Some(Forbidden)
        );
        assert_eq!(kind(authorize(&admin, Action::StartRun)), None);
        assert_eq!(
            kind(authorize(&engineer, Action::ManageAccounts)),
            Some(Forbidden)
        );
        assert_eq!(
            kind(authorize(&reader, Action::RevokeKey { owner: "u" })),
            None
        );
        assert_eq!(
            kind(authorize(&reader, Action::RevokeKey { owner: "x" })),
            Some(NotFound)
        );
        assert_eq!(
            kind(authorize(&admin, Action::RevokeKey { owner: "x" })),
            None
        );
        let e = authorize(&engineer, Action::StartRun).unwrap_err();
        assert_eq!(
            e.message(),
            "user `u` (engineer) may not start runs: admins only"
        );
    }

    #[tokio::test]
    async fn passwords_and_tokens() {
        let p = policy();
        assert_eq!(
            p.authenticate("ana", "wrong", None).await,
            Err(AuthError::BadCredentials)
        );
        assert_eq!(
            p.authenticate("bob", "s3cret", None).await,
            Err(AuthError::BadCredentials)
        );
        let ana = p.authenticate("ana", "s3cret", None).await.unwrap();
        let token = p.issue_token(&ana).unwrap();
        assert_eq!(p.verify_token(&token).await.unwrap(), ana);
        assert_eq!(p.verify_token("nope").await, Err(AuthError::BadToken));
        assert_eq!(format!("{:?}", Secret::new("x")), "Secret(***)");
    }

    #[tokio::test]
    async fn forged_expired_and_unsigned_tokens_are_refused() {
        let p = policy();
        let ana = Principal::local("ana", Role::Reader);
        // Another server's secret.
        let other = policy().with_secret(b"another secret");
        let forged = other.issue_token(&ana).unwrap();
        assert_eq!(p.verify_token(&forged).await, Err(AuthError::BadToken));
        // Expired an hour ago.
        let old = p
            .issue_token_with(&ana, now_secs() - 7200, Duration::from_secs(3600))
            .unwrap();
        assert_eq!(p.verify_token(&old).await, Err(AuthError::BadToken));
        // alg: none, claiming admin.
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let claims = format!(
            r#"{{"sub":"ana","role":"admin","iss":"assay","iat":{},"exp":{}}}"#,
            now_secs(),
            now_secs() + 600
        );
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims));
        assert_eq!(p.verify_token(&none).await, Err(AuthError::BadToken));
        // A user the policy does not know, validly signed.
        let ghost = p
            .issue_token(&Principal::local("ghost", Role::Admin))
            .unwrap();
        assert_eq!(p.verify_token(&ghost).await, Err(AuthError::BadToken));
    }

    #[test]
    fn account_rules() {
        assert!(check_new_account("ana.b@x", "12345678").is_ok());
        assert!(matches!(
            check_new_account("a b", "12345678"),
            Err(AuthError::Invalid(m)) if m.starts_with("username")
        ));
        assert!(matches!(
            check_new_account("ana", "short"),
            Err(AuthError::Invalid(m)) if m.starts_with("password")
        ));
    }
}
