//! SQL over the store: golden results over a fixed store whose metrics are partly in Parquet
//! segments, partly in the buffer; refused statements; errors for bad queries.

use arrow::util::pretty::pretty_format_batches;
use quiver_store::*;

use crate::temp_store;

const T0: i64 = 1_700_000_000_000;

/// Two experiments, three runs with params, tags and metrics; `r-small`'s and `r-large`'s first
/// points are flushed into a segment, the rest (including all of `r-bert`) stays buffered, and
/// `r-large`'s `val_loss` spans both.
fn fixture() -> (tempfile::TempDir, Store, Vec<String>) {
    let (dir, s) = temp_store();
    let vision = s.create_experiment("vision", None, &[]).unwrap();
    let nlp = s.create_experiment("nlp", None, &[]).unwrap();
    let run = |exp: &str, name: &str, start: i64| {
        s.create_run(CreateRun {
            experiment_id: Some(exp.to_string()),
            user_id: Some("alice".into()),
            run_name: Some(name.into()),
            start_time: Some(start),
            tags: vec![Tag::new("team", if exp == vision { "cv" } else { "text" })],
        })
        .unwrap()
        .info
        .run_id
    };
    let small = run(&vision, "r-small", T0);
    let large = run(&vision, "r-large", T0 + 1);
    let bert = run(&nlp, "r-bert", T0 + 2);
    let log = |id: &str, key: &str, values: &[f64], first_step: i64| {
        let points: Vec<Metric> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let step = first_step + i as i64;
                Metric::new(key, *v, T0 + 1000 * step, step)
            })
            .collect();
        s.log_batch(id, &points, &[], &[]).unwrap();
    };
    let params = |id: &str, lr: &str, bs: &str| {
        s.log_batch(
            id,
            &[],
            &[Param::new("lr", lr), Param::new("batch_size", bs)],
            &[],
        )
        .unwrap();
    };
    params(&small, "0.01", "32");
    params(&large, "0.1", "64");
    params(&bert, "0.001", "16");
    log(&small, "val_loss", &[0.9, 0.7, 0.5, 0.45, 0.48], 0);
    log(&large, "val_loss", &[1.0, 0.8, 0.6, 0.55, 0.52], 0);
    log(&small, "train_loss", &[1.2, 1.0, 0.8, 0.6, 0.5, 0.4], 0);
    s.flush().unwrap();
    log(&large, "val_loss", &[0.5, 0.49, 0.51], 5);
    log(&bert, "val_loss", &[0.6, 0.4, 0.35, 0.36, 0.37], 0);
    // A point with a dataset reference (buffered).
    let mut m = Metric::new("eval_acc", 0.75, T0 + 9000, 9);
    m.dataset_name = Some("imdb".into());
    m.dataset_digest = Some("d1".into());
    s.log_batch(&bert, &[m], &[], &[]).unwrap();
    s.update_run(
        &small,
        UpdateRun {
            status: Some(RunStatus::Finished),
            end_time: Some(T0 + 60_000),
            ..Default::default()
        },
    )
    .unwrap();
    s.put_artifact(
        &format!("{vision}/{small}/artifacts/model.bin"),
        &b"weights"[..],
    )
    .unwrap();
    let stats = s.metrics_stats();
    assert_eq!(stats.segments, 1);
    assert_eq!(stats.segment_rows, 16);
    assert_eq!(stats.buffered_points, 9);
    (dir, s, vec![small, large, bert])
}

/// The result of `sql` as an ASCII table.
fn table(s: &Store, sql: &str) -> String {
    let batches = s.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&batches).unwrap().to_string()
}

fn golden(s: &Store, sql: &str, expected: &str) {
    let got = table(s, sql);
    assert_eq!(
        got.trim(),
        expected.trim(),
        "query: {sql}\n--- got ---\n{got}"
    );
}

#[test]
fn best_val_loss_per_run_joined_with_lr() {
    let (_d, s, _) = fixture();
    golden(
        &s,
        "SELECT r.run_name, p.value AS lr, min(m.value) AS best_val_loss, count(*) AS points
         FROM metrics m
         JOIN runs r ON r.run_id = m.run_id
         JOIN params p ON p.run_id = m.run_id AND p.key = 'lr'
         WHERE m.key = 'val_loss'
         GROUP BY r.run_name, p.value
         ORDER BY best_val_loss",
        "
+----------+-------+---------------+--------+
| run_name | lr    | best_val_loss | points |
+----------+-------+---------------+--------+
| r-bert   | 0.001 | 0.35          | 5      |
| r-small  | 0.01  | 0.45          | 5      |
| r-large  | 0.1   | 0.49          | 8      |
+----------+-------+---------------+--------+",
    );
}

#[test]
fn points_per_key_across_segments_and_buffer() {
    let (_d, s, _) = fixture();
    golden(
        &s,
        "SELECT key, count(*) AS n, min(step) AS first, max(step) AS last, round(sum(value), 6) AS total
         FROM metrics GROUP BY key ORDER BY key",
        "
+------------+----+-------+------+-------+
| key        | n  | first | last | total |
+------------+----+-------+------+-------+
| eval_acc   | 1  | 9     | 9    | 0.75  |
| train_loss | 6  | 0     | 5    | 4.5   |
| val_loss   | 18 | 0     | 7    | 10.08 |
+------------+----+-------+------+-------+",
    );
    // count(*) alone (an empty projection) agrees.
    golden(
        &s,
        "SELECT count(*) AS n FROM metrics",
        "
+----+
| n  |
+----+
| 25 |
+----+",
    );
}

#[test]
fn filter_on_run_id_and_key_reads_that_series() {
    let (_d, s, runs) = fixture();
    let large = &runs[1];
    golden(
        &s,
        &format!(
            "SELECT step, timestamp - {T0} AS t, value FROM metrics
             WHERE run_id = '{large}' AND key = 'val_loss' AND step >= 3 ORDER BY step"
        ),
        "
+------+------+-------+
| step | t    | value |
+------+------+-------+
| 3    | 3000 | 0.55  |
| 4    | 4000 | 0.52  |
| 5    | 5000 | 0.5   |
| 6    | 6000 | 0.49  |
| 7    | 7000 | 0.51  |
+------+------+-------+",
    );
    // IN lists, ORs and experiment ids are pushed down too; the result is the same as without.
    let small = &runs[0];
    golden(
        &s,
        &format!(
            "SELECT key, count(*) AS n FROM metrics
             WHERE run_id IN ('{small}', 'nope') AND (key = 'train_loss' OR key = 'val_loss')
               AND experiment_id = '1'
             GROUP BY key ORDER BY key"
        ),
        "
+------------+---+
| key        | n |
+------------+---+
| train_loss | 6 |
| val_loss   | 5 |
+------------+---+",
    );
    golden(
        &s,
        "SELECT count(*) AS n FROM metrics WHERE run_id = 'unknown'",
        "
+---+
| n |
+---+
| 0 |
+---+",
    );
}

#[test]
fn catalog_tables() {
    let (_d, s, _) = fixture();
    golden(
        &s,
        "SELECT experiment_id, name, lifecycle_stage FROM experiments ORDER BY experiment_id",
        "
+---------------+---------+-----------------+
| experiment_id | name    | lifecycle_stage |
+---------------+---------+-----------------+
| 0             | Default | active          |
| 1             | vision  | active          |
| 2             | nlp     | active          |
+---------------+---------+-----------------+",
    );
    golden(
        &s,
        &format!(
            "SELECT e.name AS experiment, r.run_name, r.user_id, r.status,
                    r.start_time - {T0} AS start, r.end_time - {T0} AS end, t.value AS team
             FROM runs r JOIN experiments e USING (experiment_id)
             JOIN tags t ON t.run_id = r.run_id AND t.key = 'team'
             ORDER BY r.start_time"
        ),
        "
+------------+----------+---------+----------+-------+-------+------+
| experiment | run_name | user_id | status   | start | end   | team |
+------------+----------+---------+----------+-------+-------+------+
| vision     | r-small  | alice   | FINISHED | 0     | 60000 | cv   |
| vision     | r-large  | alice   | RUNNING  | 1     |       | cv   |
| nlp        | r-bert   | alice   | RUNNING  | 2     |       | text |
+------------+----------+---------+----------+-------+-------+------+",
    );
    golden(
        &s,
        "SELECT r.run_name, l.key, l.value, l.step
         FROM latest_metrics l JOIN runs r USING (run_id) ORDER BY r.run_name, l.key",
        "
+----------+------------+-------+------+
| run_name | key        | value | step |
+----------+------------+-------+------+
| r-bert   | eval_acc   | 0.75  | 9    |
| r-bert   | val_loss   | 0.37  | 4    |
| r-large  | val_loss   | 0.51  | 7    |
| r-small  | train_loss | 0.4   | 5    |
| r-small  | val_loss   | 0.48  | 4    |
+----------+------------+-------+------+",
    );
    golden(
        &s,
        "SELECT substr(path, length(path) - 8) AS file, size, substr(digest, 1, 8) AS digest
         FROM artifacts",
        &format!(
            "
+-----------+------+----------+
| file      | size | digest   |
+-----------+------+----------+
| model.bin | 7    | {} |
+-----------+------+----------+",
            &blake3::hash(b"weights").to_hex()[..8]
        ),
    );
}

#[test]
fn dataset_columns_and_new_points_are_seen() {
    let (_d, s, runs) = fixture();
    golden(
        &s,
        "SELECT key, value, dataset_name, dataset_digest, model_id FROM metrics
         WHERE dataset_name IS NOT NULL",
        "
+----------+-------+--------------+----------------+----------+
| key      | value | dataset_name | dataset_digest | model_id |
+----------+-------+--------------+----------------+----------+
| eval_acc | 0.75  | imdb         | d1             |          |
+----------+-------+--------------+----------------+----------+",
    );
    // No cached listing: points logged, flushed and compacted after a query are seen by the next.
    let q = "SELECT count(*) AS n FROM metrics";
    s.log_metric(&runs[2], &Metric::new("val_loss", 0.3, T0 + 5000, 5))
        .unwrap();
    s.flush().unwrap();
    assert!(table(&s, q).contains("| 26 |"), "{}", table(&s, q));
}

#[test]
fn only_queries_are_allowed() {
    let (_d, s, _) = fixture();
    for sql in [
        "DROP TABLE runs",
        "INSERT INTO params VALUES ('a', 'b', 'c')",
        "DELETE FROM runs",
        "UPDATE runs SET status = 'KILLED'",
        "CREATE TABLE t AS SELECT * FROM runs",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x'",
        "COPY runs TO '/tmp/runs.csv'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT 1; DROP TABLE runs",
        "SELECT * INTO t2 FROM runs",
        "EXPLAIN DELETE FROM runs",
        "",
    ] {
        match s.sql(sql) {
            Err(Error::InvalidParameter(msg)) => assert!(!msg.is_empty(), "{sql}"),
            other => panic!("{sql}: expected InvalidParameter, got {other:?}"),
        }
    }
    // The tables are intact, and EXPLAIN of a query is a query.
    assert!(table(&s, "SELECT count(*) AS n FROM runs").contains("| 3 |"));
    assert!(s
        .sql("EXPLAIN SELECT * FROM metrics WHERE key = 'x'")
        .is_ok());
    let e = s.sql("DROP TABLE runs").unwrap_err();
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[test]
fn bad_queries_are_invalid_parameters() {
    let (_d, s, _) = fixture();
    for sql in [
        "SELEC 1",
        "SELECT nope FROM runs",
        "SELECT * FROM no_such_table",
        "SELECT count(value FROM metrics",
        "SELECT CAST('abc' AS INT)",
    ] {
        match s.sql(sql) {
            Err(e @ Error::InvalidParameter(_)) => {
                assert_eq!(e.code(), ErrorCode::InvalidParameterValue)
            }
            other => panic!("{sql}: expected InvalidParameter, got {other:?}"),
        }
    }
}

#[test]
fn limits_memory_and_time() {
    let (_d, s, _) = fixture();
    let tiny = QueryOptions {
        memory_limit: 1 << 10,
        ..QueryOptions::default()
    };
    // A sort that cannot fit (and cannot spill within 1 KiB).
    let heavy = "SELECT a.value * b.value AS v FROM metrics a, metrics b, metrics c ORDER BY v";
    match s.sql_with(heavy, &tiny) {
        Err(Error::InvalidParameter(m)) => assert!(m.contains("memory"), "{m}"),
        other => panic!("expected a memory error, got {other:?}"),
    }
    let quick = QueryOptions {
        timeout: std::time::Duration::from_millis(1),
        ..QueryOptions::default()
    };
    let slow = "SELECT count(*) FROM metrics a, metrics b, metrics c, metrics d, metrics e";
    match s.sql_with(slow, &quick) {
        Err(Error::InvalidParameter(m)) => assert!(m.contains("time limit"), "{m}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let schema = s.sql_schema("SELECT run_id, value FROM metrics").unwrap();
    assert_eq!(schema.fields().len(), 2);
}
