//! What queries may use together: memory (each query's pool draws on one server-wide
//! budget) and admission (concurrent queries per server and per user).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};

use super::QueryError;

/// Bytes shared by every query of the process (`[query] server_memory_mb`).
#[derive(Debug)]
pub struct ServerMemory {
    limit: usize,
    used: AtomicUsize,
}

impl ServerMemory {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        ServerMemory {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes reserved now by all queries.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: usize) -> Result<(), usize> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .map(|_| ())
    }
}

/// One query's memory pool: at most its own limit, and only while the server budget has
/// room. Every operator reservation and every result batch is charged here.
#[derive(Debug)]
pub struct QueryPool {
    limit: usize,
    used: AtomicUsize,
    server: Arc<ServerMemory>,
}

impl QueryPool {
    /// A pool of `limit` bytes drawing on `server`.
    pub fn new(limit: usize, server: Arc<ServerMemory>) -> Self {
        QueryPool {
            limit,
            used: AtomicUsize::new(0),
            server,
        }
    }

    /// Bytes this query may still take (its own room, bounded by the server's).
    pub fn available(&self) -> usize {
        let own = self.limit.saturating_sub(self.used.load(Ordering::Relaxed));
        let server = self.server.limit.saturating_sub(self.server.used());
        own.min(server)
    }

    /// Takes `n` bytes, or says which limit refuses them.
    ///
    /// # Errors
    /// `ResourcesExhausted` naming the query's or the server's limit.
    pub fn try_take(&self, n: usize, what: &str) -> Result<()> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .map_err(|used| {
                DataFusionError::ResourcesExhausted(format!(
                    "{what} needs {} more, the query has {} of `[query] memory_mb` = {} left",
                    mib(n),
                    mib(self.limit.saturating_sub(used)),
                    mib(self.limit)
                ))
            })?;
        if self.server.try_take(n).is_err() {
            self.used.fetch_sub(n, Ordering::AcqRel);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{what} needs {}, but the queries running now hold the server's \
                 `[query] server_memory_mb` = {}; retry later",
                mib(n),
                mib(self.server.limit)
            )));
        }
        Ok(())
    }

    /// Gives back `n` bytes.
    pub fn give_back(&self, n: usize) {
        let n = n.min(self.used.load(Ordering::Acquire));
        self.used.fetch_sub(n, Ordering::AcqRel);
        self.server.used.fetch_sub(n, Ordering::AcqRel);
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        let left = self.used.swap(0, Ordering::AcqRel);
        self.server.used.fetch_sub(left, Ordering::AcqRel);
    }
}

fn mib(n: usize) -> String {
    format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
}

impl fmt::Display for QueryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QueryPool(used: {}, limit: {})",
            mib(self.used.load(Ordering::Relaxed)),
            mib(self.limit)
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "assay-query"
    }

    fn grow(&self, _reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::AcqRel);
        self.server.used.fetch_add(additional, Ordering::AcqRel);
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        self.give_back(shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.try_take(additional, reservation.consumer().name())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

/// Admission: at most `server` queries at once, and `per_user` for one principal.
#[derive(Debug)]
pub struct Admission {
    server: usize,
    per_user: usize,
    running: Mutex<(usize, HashMap<String, usize>)>,
}

impl Admission {
    /// Caps of `server` queries in all and `per_user` per principal.
    pub fn new(server: usize, per_user: usize) -> Arc<Self> {
        Arc::new(Admission {
            server,
            per_user,
            running: Mutex::new((0, HashMap::new())),
        })
    }

    /// A ticket for one more query of `user`, held until the query's stream ends.
    ///
    /// # Errors
    /// [`QueryError::Busy`] naming the cap that is reached.
    pub fn admit(self: &Arc<Self>, user: &str) -> Result<Ticket, QueryError> {
        let mut guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let (total, users) = &mut *guard;
        if *total >= self.server {
            return Err(QueryError::Busy(format!(
                "the server runs `[query] max_concurrent` = {} queries now; retry later",
                self.server
            )));
        }
        let mine = users.entry(user.to_string()).or_insert(0);
        if *mine >= self.per_user {
            return Err(QueryError::Busy(format!(
                "`{user}` runs `[query] max_concurrent_per_user` = {} queries now; retry later",
                self.per_user
            )));
        }
        *mine += 1;
        *total += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            user: user.to_string(),
        })
    }

    /// Queries running now.
    pub fn running(&self) -> usize {
        self.running.lock().map(|g| g.0).unwrap_or(0)
    }
}

/// One admitted query; dropping it lets the next one in.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    user: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut guard = self
            .admission
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (total, users) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = users.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pools_draw_on_one_server_budget() {
        let server = Arc::new(ServerMemory::new(100));
        let a = QueryPool::new(80, Arc::clone(&server));
        let b = QueryPool::new(80, Arc::clone(&server));
        a.try_take(70, "sort").unwrap();
        let err = a.try_take(20, "sort").unwrap_err().to_string();
        assert!(err.contains("[query] memory_mb"), "{err}");
        let err = b.try_take(40, "join").unwrap_err().to_string();
        assert!(err.contains("[query] server_memory_mb"), "{err}");
        assert_eq!(b.reserved(), 0);
        b.try_take(30, "join").unwrap();
        drop(a);
        assert_eq!(server.used(), 30);
        b.give_back(30);
        assert_eq!(server.used(), 0);
    }

    #[test]
    fn admission_caps_the_server_and_each_user() {
        let adm = Admission::new(3, 2);
        let a1 = adm.admit("a").unwrap();
        let _a2 = adm.admit("a").unwrap();
        assert!(
            adm.admit("a")
                .unwrap_err()
                .to_string()
                .contains("max_concurrent_per_user")
        );
        let _b1 = adm.admit("b").unwrap();
        let err = adm.admit("c").unwrap_err().to_string();
        assert!(err.contains("`[query] max_concurrent` = 3"), "{err}");
        drop(a1);
        assert_eq!(adm.running(), 2);
        adm.admit("c").unwrap();
    }
}
