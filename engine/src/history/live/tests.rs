use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use chrono::Utc;
use datafusion::prelude::{SessionContext, col, lit};

use super::*;
use crate::delta;
use crate::history::record;
use crate::runner::RunSummary;

fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::resolve("lake", dir.path()).unwrap();
    (dir, lake)
}

/// `(kind, status)` of each row of `run_id`, run row first.
async fn rows_of_run(lake: &Lake, run_id: &str) -> Vec<(String, String, Option<String>)> {
    let id = runs_table();
    let table = lake.open(&id).await.unwrap().unwrap();
    let ctx = SessionContext::new();
    let df = delta::scan(&id, &table, &ctx, None)
        .await
        .unwrap()
        .filter(col("run_id").eq(lit(run_id)))
        .unwrap()
        .sort(vec![col("kind").sort(true, false)])
        .unwrap()
        .select_columns(&["kind", "status", "error"])
        .unwrap();
    let mut out = Vec::new();
    for b in df.collect().await.unwrap() {
        let text = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
        let (k, s, e) = (text(0), text(1), text(2));
        let (k, s, e) = (
            k.as_string::<i32>(),
            s.as_string::<i32>(),
            e.as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            let err = (!e.is_null(i)).then(|| e.value(i).to_string());
            out.push((k.value(i).to_string(), s.value(i).to_string(), err));
        }
    }
    out
}

fn finished(run_id: &str) -> RunSummary {
    RunSummary {
        run_id: run_id.to_string(),
        started_at: Utc::now(),
        ended_at: Utc::now(),
        steps: Vec::new(),
    }
}

fn run_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test]
async fn a_run_is_running_from_its_start_and_its_end_replaces_that_row() {
    let (_dir, lake) = lake();
    let a = run_id();
    let pulse = begin(&lake, &a, Utc::now()).await.unwrap();
    assert_eq!(
        rows_of_run(&lake, &a).await,
        vec![("run".into(), "running".into(), None)]
    );
    let store = ScheduleStore::new(&lake).unwrap();
    assert!(store.heartbeat(&a).await.unwrap().is_some());
    record(&lake, &finished(&a)).await.unwrap();
    pulse.stop().await;
    assert_eq!(
        rows_of_run(&lake, &a).await,
        vec![("run".into(), "succeeded".into(), None)],
        "one row for the run, no leftover running row"
    );
    assert!(store.heartbeat(&a).await.unwrap().is_none());
}

#[tokio::test]
async fn a_live_run_stays_running_and_a_dead_one_is_marked_abandoned_by_the_next_run() {
    let (_dir, lake) = lake();
    let store = ScheduleStore::new(&lake).unwrap();
    // Run A: its process is alive (this one) with a live heartbeat.
    let a = run_id();
    let pulse_a = begin(&lake, &a, Utc::now()).await.unwrap();
    // Run B: on another host, heartbeat still live.
    let b = run_id();
    let pulse_b = begin(&lake, &b, Utc::now()).await.unwrap();
    drop(pulse_b);
    let mut beat = store.heartbeat(&b).await.unwrap().unwrap();
    beat.host = "elsewhere.example".into();
    beat.pid = 1;
    store.beat(&beat).await.unwrap();
    // Run C: on this host, its process has exited.
    let c = run_id();
    let pulse_c = begin(&lake, &c, Utc::now()).await.unwrap();
    drop(pulse_c);
    // Run D: died elsewhere, its heartbeat lapsed.
    let d = run_id();
    let pulse_d = begin_with(&lake, &d, Utc::now(), Duration::from_millis(300))
        .await
        .unwrap();
    drop(pulse_d);
    let mut beat = store.heartbeat(&d).await.unwrap().unwrap();
    beat.host = "elsewhere.example".into();
    store.beat(&beat).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // C's process exits (after D started, so the next run is the one to find it).
    let mut exited = std::process::Command::new("true").spawn().unwrap();
    let pid = exited.id();
    exited.wait().unwrap();
    let mut beat = store.heartbeat(&c).await.unwrap().unwrap();
    beat.pid = pid;
    store.beat(&beat).await.unwrap();

    let e = run_id();
    let pulse_e = begin(&lake, &e, Utc::now()).await.unwrap();
    let status = |rows: Vec<(String, String, Option<String>)>| rows[0].1.clone();
    assert_eq!(status(rows_of_run(&lake, &a).await), "running");
    assert_eq!(status(rows_of_run(&lake, &b).await), "running");
    for dead in [&c, &d] {
        let rows = rows_of_run(&lake, dead).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, "abandoned", "{dead}");
        let why = rows[0].2.clone().unwrap();
        assert!(why.contains("stopped before recording its end"), "{why}");
        assert!(why.contains(&e), "names the run that found it: {why}");
        assert!(store.heartbeat(dead).await.unwrap().is_none());
    }
    assert_eq!(status(rows_of_run(&lake, &e).await), "running");

    // A run marked abandoned that comes back and ends is recorded as it ended.
    record(&lake, &finished(&d)).await.unwrap();
    assert_eq!(
        rows_of_run(&lake, &d).await,
        vec![("run".into(), "succeeded".into(), None)]
    );
    // The runs still alive end normally.
    for (id, pulse) in [(&a, pulse_a), (&e, pulse_e)] {
        record(&lake, &finished(id)).await.unwrap();
        pulse.stop().await;
        assert_eq!(status(rows_of_run(&lake, id).await), "succeeded");
    }
}

#[test]
fn alive_tells_running_from_exited_and_zombie_processes() {
    assert!(alive(std::process::id()));
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    assert!(alive(child.id()));
    child.kill().unwrap();
    // Killed, not yet reaped: a zombie.
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(child.id()));
    child.wait().unwrap();
    assert!(!alive(child.id()));
}

#[tokio::test]
async fn a_run_that_died_before_its_running_row_is_recorded_as_abandoned() {
    let (_dir, lake) = lake();
    let store = ScheduleStore::new(&lake).unwrap();
    let dead = run_id();
    let mut beat = heartbeat(&dead, Utc::now(), Duration::from_secs(30));
    beat.expires_at = Utc::now() - chrono::Duration::seconds(1);
    store.beat(&beat).await.unwrap();
    let next = run_id();
    let pulse = begin(&lake, &next, Utc::now()).await.unwrap();
    let rows = rows_of_run(&lake, &dead).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "abandoned");
    assert!(store.heartbeat(&dead).await.unwrap().is_none());
    pulse.stop().await;
}
