//! Live progress of a running step: the rows and bytes its table writers have taken so far,
//! for progress bars. The runner gives each step a [`Meter`]; writers add to the meter of
//! the step they run in (a task-local), so no step's code passes it around.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rows and bytes (Arrow in-memory size) a step has handed to its writers so far.
#[derive(Debug, Default)]
pub struct Meter {
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl Meter {
    /// Rows so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Bytes so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    static METER: Arc<Meter>;
}

/// Runs `f` with `meter` as the meter its writers add to.
pub async fn metered<F: std::future::Future>(meter: Arc<Meter>, f: F) -> F::Output {
    METER.scope(meter, f).await
}

/// Adds written rows and bytes to the current step's meter (nothing outside a step).
pub fn add(rows: u64, bytes: u64) {
    let _ = METER.try_with(|m| {
        m.rows.fetch_add(rows, Ordering::Relaxed);
        m.bytes.fetch_add(bytes, Ordering::Relaxed);
    });
}

/// Forgets what the current step's writers took so far: a retried step starts over, so its
/// rows are not counted twice (nothing outside a step).
pub fn restart() {
    let _ = METER.try_with(|m| {
        m.rows.store(0, Ordering::Relaxed);
        m.bytes.store(0, Ordering::Relaxed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writers_add_to_the_meter_of_the_step_they_run_in() {
        add(5, 50); // outside any step: counted nowhere
        let meter = Arc::new(Meter::default());
        metered(Arc::clone(&meter), async {
            add(3, 30);
            tokio::task::yield_now().await;
            add(2, 20);
        })
        .await;
        assert_eq!((meter.rows(), meter.bytes()), (5, 50));
    }

    #[tokio::test]
    async fn a_restart_forgets_the_failed_attempt() {
        let meter = Arc::new(Meter::default());
        metered(Arc::clone(&meter), async {
            add(7, 70);
            restart();
            add(2, 20);
        })
        .await;
        assert_eq!((meter.rows(), meter.bytes()), (2, 20));
    }
}
