//! Throttling of password logins and signups, per client address and per account, in
//! bounded memory; and a fixed cost for every attempt, so an unknown user name answers as
//! slowly as a known one.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::AuthError;
pub use crate::config::ThrottleLimits;

/// Entries remembered per map at most (clients, accounts).
const REMEMBERED: u64 = 100_000;

/// Counters of attempts in bounded, expiring maps.
pub(crate) struct Throttle {
    limits: ThrottleLimits,
    logins: moka::sync::Cache<IpAddr, Arc<std::sync::atomic::AtomicU32>>,
    signups: moka::sync::Cache<IpAddr, Arc<std::sync::atomic::AtomicU32>>,
    /// Account -> (consecutive failures, locked until).
    failures: moka::sync::Cache<String, (u32, std::time::Instant)>,
    checks: tokio::sync::Semaphore,
}

impl Throttle {
    pub(crate) fn new(limits: ThrottleLimits) -> Self {
        let window = |ttl| {
            moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(ttl)
                .build()
        };
        Throttle {
            logins: window(Duration::from_secs(60)),
            signups: window(Duration::from_secs(3600)),
            failures: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            checks: tokio::sync::Semaphore::new(limits.concurrent_checks.max(1)),
            limits,
        }
    }

    pub(crate) fn limits(&self) -> ThrottleLimits {
        self.limits
    }

    fn count(
        map: &moka::sync::Cache<IpAddr, Arc<std::sync::atomic::AtomicU32>>,
        client: IpAddr,
        max: u32,
        what: &str,
    ) -> Result<(), AuthError> {
        let n = map
            .get_with(client, Default::default)
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n >= max {
            return Err(AuthError::Throttled(format!(
                "too many {what} from this address; retry later"
            )));
        }
        Ok(())
    }

    /// The key failures are counted under: the account as tried from one address, so
    /// failing on purpose from one place never locks the account's owner out elsewhere.
    fn failure_key(client: Option<IpAddr>, account: &str) -> String {
        match client {
            Some(ip) => format!("{account}\u{0}{ip}"),
            None => account.to_string(),
        }
    }

    /// Counts a login attempt of `client` for `account`.
    ///
    /// # Errors
    /// [`AuthError::Throttled`] past the client's rate or while the account waits.
    pub(crate) fn login(&self, client: Option<IpAddr>, account: &str) -> Result<(), AuthError> {
        if let Some(ip) = client {
            Self::count(&self.logins, ip, self.limits.logins_per_minute, "logins")?;
        }
        if let Some((_, until)) = self.failures.get(&Self::failure_key(client, account)) {
            let now = std::time::Instant::now();
            if until > now {
                let wait = (until - now).as_secs() + 1;
                return Err(AuthError::Throttled(format!(
                    "too many failed logins for this account; retry in {wait} s"
                )));
            }
        }
        Ok(())
    }

    /// Records the outcome of a login of `account` from `client`.
    pub(crate) fn outcome(&self, client: Option<IpAddr>, account: &str, ok: bool) {
        let key = Self::failure_key(client, account);
        if ok {
            self.failures.invalidate(&key);
            return;
        }
        let failed = self.failures.get(&key).map_or(0, |(n, _)| n) + 1;
        let over = failed.saturating_sub(self.limits.lockout_after);
        let until = if failed >= self.limits.lockout_after {
            let wait = Duration::from_secs(1u64 << over.min(16)).min(self.limits.max_lockout);
            std::time::Instant::now() + wait
        } else {
            std::time::Instant::now()
        };
        self.failures.insert(key, (failed, until));
    }

    /// Counts a signup of `client`.
    ///
    /// # Errors
    /// [`AuthError::Throttled`] past the client's rate.
    pub(crate) fn signup(&self, client: Option<IpAddr>) -> Result<(), AuthError> {
        match client {
            Some(ip) => Self::count(&self.signups, ip, self.limits.signups_per_hour, "signups"),
            None => Ok(()),
        }
    }

    /// A turn to run a password check (they cost memory and CPU: a bounded number at once).
    pub(crate) async fn check_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>, AuthError> {
        match tokio::time::timeout(Duration::from_secs(10), self.checks.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(AuthError::Throttled(
                "too many logins at once; retry later".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_and_accounts_are_throttled_and_lockouts_end() {
        let t = Throttle::new(ThrottleLimits {
            logins_per_minute: 3,
            lockout_after: 2,
            max_lockout: Duration::from_secs(2),
            ..ThrottleLimits::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            t.login(Some(a), "x").unwrap();
        }
        assert!(matches!(
            t.login(Some(a), "x"),
            Err(AuthError::Throttled(_))
        ));
        t.login(Some(b), "x").unwrap();
        let t = Throttle::new(ThrottleLimits {
            lockout_after: 2,
            max_lockout: Duration::from_secs(2),
            ..ThrottleLimits::default()
        });
        t.outcome(Some(b), "ana", false);
        t.login(Some(b), "ana").unwrap();
        t.outcome(Some(b), "ana", false);
        let err = t.login(Some(b), "ana").unwrap_err().to_string();
        assert!(err.contains("failed logins"), "{err}");
        // Failures from one address do not lock the account out from another.
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        t.login(Some(c), "ana").unwrap();
        // Capped: many more failures still wait at most `max_lockout`.
        for _ in 0..50 {
            t.outcome(Some(b), "ana", false);
        }
        std::thread::sleep(Duration::from_millis(2100));
        t.login(Some(b), "ana").unwrap();
        t.outcome(Some(b), "ana", true);
        t.login(Some(b), "ana").unwrap();
    }
}
