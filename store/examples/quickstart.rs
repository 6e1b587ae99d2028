//! Embedded use of quiver-store: log a run from a training loop, read its history back.
//!
//! ```text
//! cargo run -p quiver-store --example quickstart [STORE_DIR]
//! ```
//! Without an argument the store goes to a temporary directory.

use quiver_store::{CreateRun, Metric, Param, RunStatus, Store, Tag, UpdateRun};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let store = Store::open(&dir)?;

    let experiment = match store.get_experiment_by_name("quickstart") {
        Ok(e) => e.experiment_id,
        Err(_) => store.create_experiment("quickstart", None, &[Tag::new("owner", "me")])?,
    };
    let run = store.create_run(CreateRun {
        experiment_id: Some(experiment.clone()),
        run_name: Some("tiny-sgd".into()),
        ..Default::default()
    })?;
    let run_id = run.info.run_id.clone();
    store.log_batch(
        &run_id,
        &[],
        &[Param::new("lr", "0.1"), Param::new("epochs", "1000")],
        &[],
    )?;

    // A training loop: fit y = 3x with SGD, logging loss every step, in batches of 100.
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let (mut w, lr) = (0.0f64, 0.1);
    let mut pending = Vec::new();
    for step in 0..1000i64 {
        let x = (step % 10) as f64 / 10.0;
        let err = w * x - 3.0 * x;
        w -= lr * err * x;
        pending.push(Metric::new("loss", err * err, start + step, step));
        pending.push(Metric::new("w", w, start + step, step));
        if pending.len() == 200 {
            store.log_batch(&run_id, &pending, &[], &[])?; // durable when it returns
            pending.clear();
        }
    }
    store.update_run(
        &run_id,
        UpdateRun {
            status: Some(RunStatus::Finished),
            end_time: Some(start + 1000),
            run_name: None,
        },
    )?;

    // Read it back: the latest values, a sample for a chart, and the full history page by page.
    let run = store.get_run(&run_id)?;
    for m in &run.metrics {
        println!("latest {} = {:.6} at step {}", m.key, m.value, m.step);
    }
    let sample = store.sampled_metric_history(&run_id, "loss", 10, None)?;
    println!("sampled loss steps: {:?}", sample.steps());
    let mut token = None;
    let mut total = 0;
    loop {
        let (page, next) = store.metric_history(&run_id, "loss", token.as_deref(), Some(300))?;
        total += page.len();
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    println!(
        "read {total} loss points in pages of 300; run {run_id} in {}",
        dir.display()
    );
    store.close()?;
    Ok(())
}
