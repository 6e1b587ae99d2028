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

#[test]
fn datasets_inputs_and_input_tags() {
    let (_d, s, runs) = fixture();
    let (small, large, bert) = (&runs[0], &runs[1], &runs[2]);
    let dataset = |name: &str, digest: &str, schema: Option<&str>| Dataset {
        name: name.into(),
        digest: digest.into(),
        source_type: "local".into(),
        source: format!("{{\"uri\": \"/data/{name}\"}}"),
        schema: schema.map(str::to_string),
        profile: None,
    };
    let input = |ds: Dataset, tags: &[(&str, &str)]| DatasetInput {
        tags: tags.iter().map(|(k, v)| Tag::new(*k, *v)).collect(),
        dataset: ds,
    };
    let cifar = dataset("cifar", "c1", Some("{\"mlflow_colspec\": []}"));
    s.log_inputs(
        small,
        &[
            input(cifar.clone(), &[("mlflow.data.context", "train")]),
            input(
                dataset("cifar-test", "c2", None),
                &[("mlflow.data.context", "eval")],
            ),
        ],
    )
    .unwrap();
    // The same dataset in the same experiment is one `datasets` row; no context tag is a null.
    s.log_inputs(large, &[input(cifar, &[("origin", "mirror")])])
        .unwrap();
    s.log_inputs(
        bert,
        &[input(
            dataset("imdb", "d1", None),
            &[("mlflow.data.context", "train"), ("split", "90/10")],
        )],
    )
    .unwrap();
    golden(
        &s,
        "SELECT experiment_id, name, digest, source_type, source, schema IS NOT NULL AS has_schema,
                profile
         FROM datasets ORDER BY experiment_id, name",
        r#"
+---------------+------------+--------+-------------+-----------------------------+------------+---------+
| experiment_id | name       | digest | source_type | source                      | has_schema | profile |
+---------------+------------+--------+-------------+-----------------------------+------------+---------+
| 1             | cifar      | c1     | local       | {"uri": "/data/cifar"}      | true       |         |
| 1             | cifar-test | c2     | local       | {"uri": "/data/cifar-test"} | false      |         |
| 2             | imdb       | d1     | local       | {"uri": "/data/imdb"}       | false      |         |
+---------------+------------+--------+-------------+-----------------------------+------------+---------+"#,
    );
    golden(
        &s,
        "SELECT r.run_name, i.experiment_id, i.dataset_name, i.dataset_digest, i.context,
                d.source_type
         FROM inputs i JOIN runs r USING (run_id)
         JOIN datasets d ON d.experiment_id = i.experiment_id AND d.name = i.dataset_name
                        AND d.digest = i.dataset_digest
         ORDER BY r.run_name, i.dataset_name",
        "
+----------+---------------+--------------+----------------+---------+-------------+
| run_name | experiment_id | dataset_name | dataset_digest | context | source_type |
+----------+---------------+--------------+----------------+---------+-------------+
| r-bert   | 2             | imdb         | d1             | train   | local       |
| r-large  | 1             | cifar        | c1             |         | local       |
| r-small  | 1             | cifar        | c1             | train   | local       |
| r-small  | 1             | cifar-test   | c2             | eval    | local       |
+----------+---------------+--------------+----------------+---------+-------------+",
    );
    golden(
        &s,
        "SELECT r.run_name, t.dataset_name, t.key, t.value
         FROM input_tags t JOIN runs r USING (run_id) ORDER BY r.run_name, t.dataset_name, t.key",
        "
+----------+--------------+---------------------+--------+
| run_name | dataset_name | key                 | value  |
+----------+--------------+---------------------+--------+
| r-bert   | imdb         | mlflow.data.context | train  |
| r-bert   | imdb         | split               | 90/10  |
| r-large  | cifar        | origin              | mirror |
| r-small  | cifar        | mlflow.data.context | train  |
| r-small  | cifar-test   | mlflow.data.context | eval   |
+----------+--------------+---------------------+--------+",
    );
    // Training runs per dataset: the question the two tables answer together.
    golden(
        &s,
        "SELECT i.dataset_name, count(DISTINCT i.run_id) AS runs
         FROM inputs i WHERE i.context = 'train' GROUP BY 1 ORDER BY 1",
        "
+--------------+------+
| dataset_name | runs |
+--------------+------+
| cifar        | 1    |
| imdb         | 1    |
+--------------+------+",
    );
}

/// Sorted rows of `sql` as text.
fn rows(s: &Store, sql: &str) -> Vec<String> {
    let batches = s.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let text = pretty_format_batches(&batches).unwrap().to_string();
    let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
    rows.sort();
    rows
}

#[test]
fn pushed_down_filters_return_what_plain_filters_return() {
    let (_d, s) = temp_store();
    let a = crate::new_run(&s);
    let b = crate::new_run(&s);
    // `a/loss`: 3,000 steps over three segments and the buffer; timestamps go back at step 1500.
    // `a/acc`: logged twice, before and after a flush (its parts overlap: merged on read).
    // `b/loss`: in the buffer only, with a dataset reference on some points.
    let ts = |step: i64| {
        T0 + if step < 1500 {
            step * 10
        } else {
            step * 10 - 20_000
        }
    };
    let log = |run: &str, key: &str, steps: std::ops::Range<i64>| {
        let steps: Vec<i64> = steps.collect();
        for chunk in steps.chunks(1000) {
            let points: Vec<Metric> = chunk
                .iter()
                .map(|&st| {
                    let mut m = Metric::new(key, (st % 97) as f64, ts(st), st);
                    if run == b && st % 5 == 0 {
                        m.dataset_name = Some("ds".into());
                    }
                    m
                })
                .collect();
            s.log_batch(run, &points, &[], &[]).unwrap();
        }
    };
    log(&a, "loss", 0..1000);
    log(&a, "acc", 0..800);
    s.flush().unwrap();
    log(&a, "loss", 1000..2000);
    log(&a, "acc", 400..1200);
    s.flush().unwrap();
    log(&a, "loss", 2000..2500);
    s.flush().unwrap();
    log(&a, "loss", 2500..3000);
    log(&b, "loss", 0..700);
    assert_eq!(s.metrics_stats().segments, 3);

    let filters = [
        "step BETWEEN 1000 AND 1100",
        "step = 2999",
        "step < 10",
        "step > 2400 AND step <= 2600",
        "step IN (5, 1500, 2998)",
        "step >= 700 AND step < 900",
        "step = 5 OR step = 1199",
        "step > 100000",
        "timestamp BETWEEN 1700000010000 AND 1700000012000",
        "timestamp < 1700000000100",
        "timestamp >= 1700000009990",
        "step > 1200 AND timestamp < 1700000001000",
        "timestamp = 1700000005000",
    ];
    for f in filters {
        let plain = f
            .replace("step", "(step + 0)")
            .replace("timestamp", "(timestamp + 0)");
        let q = |w: &str| {
            format!(
                "SELECT run_id = '{a}' AS is_a, key, step, timestamp, value, dataset_name
                 FROM metrics WHERE {w}"
            )
        };
        let (pushed, expected) = (rows(&s, &q(f)), rows(&s, &q(&plain)));
        assert!(
            expected.len() > 4 || f.contains("100000"),
            "{f}: {expected:?}"
        );
        assert_eq!(pushed, expected, "filter {f}");
    }
    // The filters are shown on the scan.
    let plan = table(
        &s,
        "EXPLAIN SELECT count(*) FROM metrics WHERE step BETWEEN 5 AND 9 AND timestamp > 3",
    );
    assert!(
        plan.contains("steps=[5, 9], timestamps=[4, 9223372036854775807]"),
        "{plan}"
    );
}

#[test]
fn scans_and_results_stay_within_the_memory_limit() {
    let (_d, s) = temp_store();
    let run = crate::new_run(&s);
    // 20 keys × 15,000 steps in a segment; `dup` logged twice (its parts overlap: the scan
    // merges it in memory).
    for first in (0..15_000).step_by(50) {
        let points: Vec<Metric> = (first..first + 50)
            .flat_map(|step| {
                (0..20).map(move |k| Metric::new(format!("m{k}"), step as f64, T0 + step, step))
            })
            .collect();
        s.log_batch(&run, &points, &[], &[]).unwrap();
    }
    let dup = |s: &Store| {
        for first in (0..100_000).step_by(1000) {
            let points: Vec<Metric> = (first..first + 1000)
                .map(|step| Metric::new("dup", 1.0, T0 + step, step))
                .collect();
            s.log_batch(&run, &points, &[], &[]).unwrap();
        }
    };
    dup(&s);
    s.flush().unwrap();
    dup(&s);
    let with_limit = |bytes: usize| QueryOptions {
        memory_limit: bytes,
        ..QueryOptions::default()
    };
    let fails = |sql: &str, limit: usize, consumer: &str| match s.sql_with(sql, &with_limit(limit))
    {
        Err(Error::InvalidParameter(m)) => {
            assert!(m.contains("memory limit"), "{sql}: {m}");
            assert!(m.contains(consumer), "{sql}: {m}");
        }
        other => panic!("{sql} within {limit} bytes: expected a memory error, got {other:?}"),
    };
    let count = |sql: &str, limit: usize| -> usize {
        let batches = s
            .sql_with(sql, &with_limit(limit))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        batches.iter().map(|b| b.num_rows()).sum()
    };

    // The whole table as the result: 400,000 rows of ~80 bytes do not fit in 4 MiB.
    let everything = "SELECT * FROM metrics";
    fails(everything, 4 << 20, "SQL query result");
    assert_eq!(count(everything, 512 << 20), 400_000);

    // A scan under a small aggregate: its batches alone exceed 32 KiB.
    let scan = "SELECT count(*) AS n FROM metrics WHERE value >= 0 AND key IN ('m1', 'm2', 'm3')";
    fails(scan, 32 << 10, "MetricsScanExec");
    let n = s.sql_with(scan, &with_limit(16 << 20)).unwrap();
    let n = pretty_format_batches(&n).unwrap().to_string();
    assert!(n.contains("| 45000 |"), "{n}");

    // The overlapping series is reserved before it is merged (200,000 points read).
    let merged =
        format!("SELECT count(*) AS n FROM metrics WHERE run_id = '{run}' AND key = 'dup'");
    fails(&merged, 2 << 20, "MetricsScanExec");
    golden(
        &s,
        &merged,
        "
+--------+
| n      |
+--------+
| 100000 |
+--------+",
    );
    // A failed query leaves nothing behind: the same small limit runs a small query.
    assert_eq!(
        count(
            &format!(
                "SELECT step FROM metrics WHERE key = 'm3' AND step < 100 AND run_id = '{run}'"
            ),
            1 << 20
        ),
        100
    );
}

#[test]
fn metric_series_gives_the_segments_series_ids_a_run_and_key() {
    let (dir, s, _) = fixture();
    golden(
        &s,
        "SELECT r.run_name, m.key FROM metric_series m JOIN runs r USING (run_id)
         ORDER BY m.series_id",
        "
+----------+------------+
| run_name | key        |
+----------+------------+
| r-small  | val_loss   |
| r-large  | val_loss   |
| r-small  | train_loss |
| r-bert   | val_loss   |
| r-bert   | eval_acc   |
+----------+------------+",
    );
    // The segment file, read as plain Parquet: its `series_id` column means what the table says.
    let mut rows_per_series = std::collections::BTreeMap::<u64, usize>::new();
    for entry in std::fs::read_dir(dir.path().join("metrics")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            let file = std::fs::File::open(&path).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let ids = batch
                    .column_by_name("series_id")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<arrow::array::UInt64Array>()
                    .unwrap()
                    .clone();
                for id in ids.values() {
                    *rows_per_series.entry(*id).or_default() += 1;
                }
            }
        }
    }
    let names = s
        .sql(
            "SELECT m.series_id, r.run_name || '/' || m.key AS name
             FROM metric_series m JOIN runs r USING (run_id)",
        )
        .unwrap();
    let mut name_of = std::collections::HashMap::new();
    for b in &names {
        let ids = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .unwrap();
        for i in 0..b.num_rows() {
            name_of.insert(
                ids.value(i),
                arrow::util::display::array_value_to_string(b.column(1), i).unwrap(),
            );
        }
    }
    let in_segment: Vec<(String, usize)> = rows_per_series
        .into_iter()
        .map(|(id, n)| (name_of[&id].clone(), n))
        .collect();
    assert_eq!(
        in_segment,
        [
            ("r-small/val_loss".to_string(), 5),
            ("r-large/val_loss".to_string(), 5),
            ("r-small/train_loss".to_string(), 6)
        ]
    );
}

#[test]
fn grouping_by_run_and_key_is_planned_as_grouping_by_series_id() {
    let (_d, s, runs) = fixture();
    // An overlapping series (logged again after a flush) and points logged after planning's
    // names were read do not change the answers.
    s.log_batch(
        &runs[0],
        &[
            Metric::new("val_loss", 0.9, T0, 0),
            Metric::new("val_loss", 0.1, T0 + 99_000, 99),
        ],
        &[],
        &[],
    )
    .unwrap();
    let pairs = [
        (
            "SELECT run_id, key, count(*) AS n, round(avg(value), 9) AS a, max(step) AS hi,
                    min(timestamp) AS t
             FROM metrics GROUP BY run_id, key",
            "SELECT concat(run_id, '') AS run_id, key, count(*) AS n, round(avg(value), 9) AS a,
                    max(step) AS hi, min(timestamp) AS t
             FROM metrics GROUP BY concat(run_id, ''), key",
        ),
        (
            "SELECT m.experiment_id, m.key, m.run_id, count(*) AS n FROM metrics m
             WHERE m.step >= 2 AND m.value < 0.9 GROUP BY m.run_id, m.key, m.experiment_id",
            "SELECT m.experiment_id, m.key, concat(m.run_id, '') AS run_id, count(*) AS n
             FROM metrics m WHERE m.step >= 2 AND m.value < 0.9
             GROUP BY concat(m.run_id, ''), m.key, m.experiment_id",
        ),
        (
            "SELECT run_id, key, step % 2 AS odd, sum(step) AS s FROM metrics
             GROUP BY run_id, key, step % 2",
            "SELECT concat(run_id, '') AS run_id, key, step % 2 AS odd, sum(step) AS s
             FROM metrics GROUP BY concat(run_id, ''), key, step % 2",
        ),
        (
            "SELECT r.run_name, a.key, a.n, a.keys FROM
               (SELECT run_id, key, count(*) AS n, count(DISTINCT key) AS keys FROM metrics
                WHERE key <> 'eval_acc' GROUP BY 1, 2 HAVING count(*) > 5) a
             JOIN runs r USING (run_id)",
            "SELECT r.run_name, a.key, a.n, a.keys FROM
               (SELECT concat(run_id, '') AS run_id, key, count(*) AS n,
                       count(DISTINCT key) AS keys
                FROM metrics WHERE key <> 'eval_acc' GROUP BY 1, 2 HAVING count(*) > 5) a
             JOIN runs r USING (run_id)",
        ),
    ];
    for (rewritten, plain) in pairs {
        let explain = table(&s, &format!("EXPLAIN {rewritten}"));
        assert!(explain.contains("quiver_series_names"), "{explain}");
        let explain = table(&s, &format!("EXPLAIN {plain}"));
        assert!(!explain.contains("quiver_series_names"), "{explain}");
        let (got, want) = (rows(&s, rewritten), rows(&s, plain));
        assert!(want.len() > 5, "{want:?}");
        assert_eq!(got, want, "{rewritten}");
    }
    golden(
        &s,
        "SELECT r.run_name, m.key, count(*) AS n, max(m.step) AS last
         FROM (SELECT run_id, key, step FROM metrics) m JOIN runs r USING (run_id)
         GROUP BY r.run_name, m.key ORDER BY 1, 2",
        "
+----------+------------+---+------+
| run_name | key        | n | last |
+----------+------------+---+------+
| r-bert   | eval_acc   | 1 | 9    |
| r-bert   | val_loss   | 5 | 4    |
| r-large  | val_loss   | 8 | 7    |
| r-small  | train_loss | 6 | 5    |
| r-small  | val_loss   | 6 | 99   |
+----------+------------+---+------+",
    );
    golden(
        &s,
        "SELECT key, count(*) AS n FROM metrics GROUP BY run_id, key ORDER BY n DESC, key LIMIT 2",
        "
+------------+---+
| key        | n |
+------------+---+
| val_loss   | 8 |
| train_loss | 6 |
+------------+---+",
    );
}

/// Issue 10, defect 1: chains of operators, set operations and joins overflowed the stack of a
/// query thread (and aborted the process). Run from a thread with a small stack, as a server's
/// worker would call it.
#[test]
fn deep_queries_are_refused_or_answered_never_a_crash() {
    let (_d, s, _) = fixture();
    let s = std::sync::Arc::new(s);
    let chain = |n: usize, term: &str, op: &str| vec![term; n].join(op);
    let deep = [
        format!("SELECT {}", chain(3000, "1", "+")),
        format!("SELECT 1 WHERE {}", chain(2000, "1 = 1", " OR ")),
        format!("SELECT 1 WHERE {}", chain(2000, "1 = 1", " AND ")),
        chain(3000, "SELECT 1", " UNION ALL "),
        format!(
            "SELECT 1 FROM {}",
            chain(2000, "runs", " JOIN runs USING (run_id) ")
        ),
    ];
    let within = [
        format!("SELECT {} AS n", chain(1000, "1", "+")),
        format!(
            "SELECT count(*) FROM ({})",
            chain(990, "SELECT 1", " UNION ALL ")
        ),
        format!(
            "SELECT count(*) FROM metrics WHERE {}",
            chain(450, "step = 1", " OR ")
        ),
        format!(
            "SELECT 1 AS n FROM {}",
            (0..300)
                .map(|i| format!("(VALUES (1)) AS t{i}(x{i})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    let store = s.clone();
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            for q in &deep {
                match store.sql(q) {
                    Err(Error::InvalidParameter(m)) => {
                        assert!(m.contains("too deeply nested"), "{m}")
                    }
                    other => panic!("{}...: expected a refusal, got {other:?}", &q[..40]),
                }
                assert!(store.sql_stream(q).is_err());
            }
            for q in &within {
                store
                    .sql(q)
                    .unwrap_or_else(|e| panic!("{}...: {e}", &q[..40]));
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Issue 10, defect 2: functions whose result is far larger than their arguments are refused
/// before they allocate; large results stream with their memory reserved.
#[test]
fn amplifying_functions_are_bounded_and_results_stream() {
    let (_d, s, _) = fixture();
    let options = QueryOptions {
        memory_limit: 16 << 20,
        ..QueryOptions::default()
    };
    for q in [
        "SELECT length(repeat('a', 2000000000))",
        "SELECT length(lpad('a', 2000000000))",
        "SELECT length(rpad('a', 2000000000, 'b'))",
        "SELECT cardinality(range(2000000000))",
        "SELECT cardinality(generate_series(1, 2000000000))",
        "SELECT cardinality(array_repeat(1, 2000000000))",
        "SELECT cardinality(array_resize(make_array(1), 2000000000))",
        "SELECT length(regexp_replace(repeat('a', 100000), '', repeat('b', 100), 'g'))",
        "SELECT length(repeat(run_id, 1000000)) FROM metrics",
    ] {
        match s.sql_with(q, &options) {
            Err(Error::InvalidParameter(m)) => assert!(m.contains("memory limit"), "{q}: {m}"),
            other => panic!("{q}: expected a refusal, got {other:?}"),
        }
    }
    // Within the bound, the functions work as before.
    let b = s
        .sql_with(
            "SELECT length(repeat('ab', 1000)) AS r, length(lpad('x', 5)) AS l, \
             concat('a', 'b') AS c, cardinality(range(10)) AS n",
            &options,
        )
        .unwrap();
    assert_eq!(
        pretty_format_batches(&b).unwrap().to_string(),
        "+------+---+----+----+\n| r    | l | c  | n  |\n+------+---+----+----+\n| 2000 | 5 | ab | 10 |\n+------+---+----+----+"
    );

    // A result of 8 × the pool streams through it.
    let q = "SELECT v, repeat('x', 100) AS pad FROM generate_series(1, 1400000) AS t(v)";
    let stream = s.sql_stream_with(q, &options).unwrap();
    assert_eq!(stream.schema().fields().len(), 2);
    let mut rows = 0;
    for batch in stream {
        rows += batch.unwrap().num_rows();
    }
    assert_eq!(rows, 1_400_000);
    // Gathered whole, the same result does not fit.
    match s.sql_with(q, &options) {
        Err(Error::InvalidParameter(m)) => assert!(m.contains("memory limit"), "{m}"),
        other => panic!("expected a memory error, got {:?}", other.map(|b| b.len())),
    }
}
