use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::TryStreamExt;

use super::*;
use crate::config::{Project, RunConfig};
use crate::dag::Pipeline;
use crate::step::{Step, StepContext, StepError, StepReport};
use crate::storage::Lake;
use crate::table::TableId;

/// A step that counts its runs and, when gated, waits for the test to open the gate.
#[derive(Debug)]
struct Counted {
    table: TableId,
    runs: Arc<AtomicUsize>,
    gate: Option<Arc<tokio::sync::Notify>>,
}

#[async_trait::async_trait]
impl Step for Counted {
    fn table(&self) -> &TableId {
        &self.table
    }
    fn upstreams(&self) -> &[TableId] {
        &[]
    }
    async fn run(&self, _: &StepContext) -> std::result::Result<StepReport, StepError> {
        if let Some(g) = &self.gate {
            g.notified().await;
        }
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(StepReport::default())
    }
}

fn schedules(text: &str) -> Vec<ScheduleConfig> {
    let dir = tempfile::tempdir().unwrap();
    Project::from_toml(dir.path(), text).unwrap().schedules
}

/// A replica: its own launcher over the shared lake, and a scheduler.
struct Replica {
    scheduler: Scheduler,
    launcher: Launcher,
    runs: Arc<AtomicUsize>,
}

fn replica(lake: &Lake, s: &[ScheduleConfig], gate: Option<Arc<tokio::sync::Notify>>) -> Replica {
    let runs = Arc::new(AtomicUsize::new(0));
    let step = Counted {
        table: TableId::parse("gold.a").unwrap(),
        runs: Arc::clone(&runs),
        gate,
    };
    let pipeline = Pipeline::new(vec![Arc::new(step) as Arc<dyn Step>]).unwrap();
    let store = ScheduleStore::new(lake).unwrap();
    let instance = instance_name();
    let launcher = Launcher::new(pipeline, RunConfig::default(), lake.clone()).with_lease(
        store.clone(),
        &instance,
        LEASE_TTL,
    );
    Replica {
        scheduler: Scheduler::new(s.to_vec(), launcher.clone(), store, instance),
        launcher,
        runs,
    }
}

async fn idle(launcher: &Launcher) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while launcher.running().is_some() {
        assert!(std::time::Instant::now() < deadline, "the run did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

const NIGHTLY: &str = "[[schedule]]\nname = \"nightly\"\ncron = \"0 30 2 * * *\"\n";

#[tokio::test]
async fn each_tick_runs_once_across_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    let s = schedules(NIGHTLY);
    let (a, b) = (replica(&lake, &s, None), replica(&lake, &s, None));
    let tick = at("2026-12-06T02:30:00Z");

    let won = a.scheduler.fire(&s[0], tick, false).await.unwrap().unwrap();
    assert_eq!(won.outcome, TickOutcome::Started);
    assert!(won.run_id.is_some());
    assert_eq!(won.claimed_by, a.scheduler.instance());
    assert!(
        b.scheduler
            .fire(&s[0], tick, false)
            .await
            .unwrap()
            .is_none(),
        "the other replica sees the claim"
    );
    assert!(
        a.scheduler
            .fire(&s[0], tick, false)
            .await
            .unwrap()
            .is_none()
    );
    idle(&a.launcher).await;
    assert_eq!(a.runs.load(Ordering::SeqCst), 1);
    assert_eq!(b.runs.load(Ordering::SeqCst), 0);

    let store = ScheduleStore::new(&lake).unwrap();
    assert_eq!(store.last("nightly").await.unwrap(), Some(won));
    assert_eq!(store.newest_claim("nightly").await.unwrap(), Some(tick));
    assert_eq!(
        lake.latest_version(&crate::history::runs_table())
            .await
            .unwrap(),
        Some(1),
        "the run is recorded in _system.runs: running at its start, then its end"
    );
}

#[tokio::test]
async fn a_paused_schedule_starts_nothing_and_stays_paused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    let s = schedules(NIGHTLY);
    let a = replica(&lake, &s, None);
    ScheduleStore::new(&lake)
        .unwrap()
        .set_paused("nightly", true, "ana")
        .await
        .unwrap();

    let restarted = ScheduleStore::new(&lake).unwrap();
    let state = restarted.pause_state("nightly").await.unwrap();
    assert!(state.paused);
    assert_eq!(state.by, "ana");
    let r = a
        .scheduler
        .fire(&s[0], at("2026-12-06T02:30:00Z"), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.outcome, r.run_id), (TickOutcome::Paused, None));
    assert!(a.launcher.running().is_none());

    restarted.set_paused("nightly", false, "ana").await.unwrap();
    let r = a
        .scheduler
        .fire(&s[0], at("2026-12-07T02:30:00Z"), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.outcome, TickOutcome::Started);
    idle(&a.launcher).await;
    assert_eq!(a.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_tick_during_a_run_is_skipped_as_an_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    let s = schedules(NIGHTLY);
    let gate = Arc::new(tokio::sync::Notify::new());
    let a = replica(&lake, &s, Some(Arc::clone(&gate)));
    let first = a
        .scheduler
        .fire(&s[0], at("2026-12-06T02:30:00Z"), false)
        .await
        .unwrap()
        .unwrap();
    let second = a
        .scheduler
        .fire(&s[0], at("2026-12-07T02:30:00Z"), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.outcome, TickOutcome::SkippedOverlap);
    assert_eq!(second.run_id, first.run_id, "names the run in progress");
    gate.notify_one();
    idle(&a.launcher).await;
    assert_eq!(a.runs.load(Ordering::SeqCst), 1);
    let last = ScheduleStore::new(&lake)
        .unwrap()
        .last("nightly")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.outcome, TickOutcome::SkippedOverlap);
}

#[test]
fn due_is_the_newest_tick_and_says_whether_it_was_missed() {
    let s = &schedules(NIGHTLY)[0];
    let after = at("2026-12-01T02:30:00Z");
    assert_eq!(
        due(s, after, at("2026-12-04T10:00:00Z")),
        Some((at("2026-12-04T02:30:00Z"), true)),
        "three missed ticks: the newest, once"
    );
    assert_eq!(
        due(s, after, at("2026-12-02T02:30:05Z")),
        Some((at("2026-12-02T02:30:00Z"), false)),
        "on time"
    );
    assert_eq!(due(s, after, at("2026-12-02T02:29:59Z")), None);
}

#[tokio::test]
async fn missed_ticks_run_once_or_are_skipped() {
    for (catch_up, runs) in [("once", 1), ("skip", 0)] {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::resolve("lake", dir.path()).unwrap();
        let s = schedules(&format!("{NIGHTLY}catch_up = \"{catch_up}\"\n"));
        let a = replica(&lake, &s, None);
        // The newest claim is three nights old: the server was down since.
        let old = at("2026-12-01T02:30:00Z");
        let mut cursor = BTreeMap::from([("nightly".to_string(), old)]);
        a.scheduler
            .fire_due(&mut cursor, at("2026-12-04T10:00:00Z"))
            .await;
        assert_eq!(cursor["nightly"], at("2026-12-04T02:30:00Z"));
        idle(&a.launcher).await;
        assert_eq!(a.runs.load(Ordering::SeqCst), runs, "catch_up = {catch_up}");
        let store = ScheduleStore::new(&lake).unwrap();
        let last = store.last("nightly").await.unwrap();
        if runs == 1 {
            let last = last.unwrap();
            assert!(last.catch_up);
            assert_eq!(last.tick, at("2026-12-04T02:30:00Z"));
        } else {
            assert_eq!(last, None);
        }
    }
}

#[tokio::test]
async fn two_running_schedulers_fire_each_tick_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    let s = schedules("[[schedule]]\nname = \"often\"\ncron = \"* * * * * *\"\n");
    let (a, b) = (replica(&lake, &s, None), replica(&lake, &s, None));
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = |n: Arc<tokio::sync::Notify>| async move { n.notified().await };
    let ta = tokio::spawn(a.scheduler.clone().run(stopped(Arc::clone(&stop))));
    let tb = tokio::spawn(b.scheduler.clone().run(stopped(Arc::clone(&stop))));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    stop.notify_waiters();
    ta.await.unwrap();
    tb.await.unwrap();
    idle(&a.launcher).await;
    idle(&b.launcher).await;

    let (store, root) = lake.child(SCHEDULER_DIR).unwrap().store().unwrap();
    let claims: Vec<_> = store
        .list(Some(&root.clone().join("ticks").join("often")))
        .try_collect()
        .await
        .unwrap();
    let runs = a.runs.load(Ordering::SeqCst) + b.runs.load(Ordering::SeqCst);
    assert!(claims.len() >= 3, "{} ticks in 3.5 s", claims.len());
    assert_eq!(runs, claims.len(), "one run per claimed tick, across both");
}

#[tokio::test]
async fn the_run_lease_is_held_renewed_released_and_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    let store = ScheduleStore::new(&lake).unwrap();
    let ttl = Duration::from_millis(300);
    let mut a = store.acquire("a", "r1", ttl).await.unwrap().unwrap();
    let held = store.acquire("b", "r2", ttl).await.unwrap().unwrap_err();
    assert_eq!((held.holder.as_str(), held.run_id.as_str()), ("a", "r1"));
    // Renewed past the first expiry: still held.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.renew(&mut a, ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.acquire("b", "r2", ttl).await.unwrap().is_err());
    store.release(a).await.unwrap();
    let mut b = store.acquire("b", "r2", ttl).await.unwrap().unwrap();
    // b dies without releasing: the lease lapses after its ttl and c takes over; b's late
    // renewal finds the lease gone.
    assert!(store.acquire("c", "r3", ttl).await.unwrap().is_err());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let c = store.acquire("c", "r3", ttl).await.unwrap().unwrap();
    assert!(!store.renew(&mut b, ttl).await.unwrap(), "b lost it");
    store.release(c).await.unwrap();
}

#[tokio::test]
async fn one_run_at_a_time_across_servers_of_a_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    let s = schedules(NIGHTLY);
    let gate = Arc::new(tokio::sync::Notify::new());
    let a = replica(&lake, &s, Some(Arc::clone(&gate)));
    let b = replica(&lake, &s, None);
    let first = a.launcher.start(None, false, "ana").await.unwrap();
    match b.launcher.start(None, false, "bo").await {
        Err(e @ LaunchError::BusyElsewhere(_)) => {
            assert!(e.to_string().contains(&first.run_id), "{e}");
            assert!(e.to_string().contains(a.scheduler.instance()), "{e}");
        }
        other => panic!("expected the lease to be held, got {other:?}"),
    }
    assert!(b.launcher.running().is_none(), "nothing left reserved");
    // A tick on the other server while the run lasts is an overlap.
    let tick = b
        .scheduler
        .fire(&s[0], at("2026-12-06T02:30:00Z"), false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tick.outcome, TickOutcome::SkippedOverlap);
    assert_eq!(tick.run_id.as_deref(), Some(first.run_id.as_str()));
    gate.notify_one();
    idle(&a.launcher).await;
    // Released at the end: the other server runs at once.
    b.launcher.start(None, false, "bo").await.unwrap();
    idle(&b.launcher).await;
    assert_eq!(b.runs.load(Ordering::SeqCst), 1);
}
