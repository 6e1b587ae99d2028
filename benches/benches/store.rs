//! Criterion benchmarks of quiver-store, the embedded engine: ingest, history reads, sampled
//! reads, artifact blobs and step-key lookups. Figures and their targets are recorded in `benches/README.md`;
//! run with `cargo bench -p quiver-benches`.
//!
//! Setups (filling stores with millions of points) run lazily, the first time criterion runs a
//! benchmark that needs them, so a filter (`cargo bench -p quiver-benches -- history`) skips
//! the setups of the others.

use std::cell::OnceCell;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use quiver_benches::{
    advance_batch, bench_dir, byte_sum, fill_series, ingest_batch, memory_only_options, mib,
    new_run, open_store, peak_rss_bytes, quiet_options, reset_peak_rss, rss_bytes, scaled,
    segment_files, server_options, status_bytes, GeneratedReader, BATCH,
};
use quiver_store::{Metric, Store};
use tempfile::TempDir;

/// The metric key of single-series benchmarks.
const KEY: &str = "train/loss";

/// Keys of the ingest benchmark: each batch holds `BATCH / 4` steps of each.
const INGEST_KEYS: [&str; 4] = ["train/loss", "train/accuracy", "lr", "grad_norm"];

// ---------------------------------------------------------------------------------------------
// ingest

/// A store being written by `writers` threads, one run each.
struct Ingest {
    // Declared first so that it is dropped (closed) before its directory is removed.
    store: Store,
    _dir: TempDir,
    runs: Vec<String>,
    batches: Vec<Vec<Metric>>,
    points: u64,
    busy: Duration,
}

impl Ingest {
    fn new(writers: usize) -> Ingest {
        let dir = bench_dir("ingest");
        let store = open_store(dir.path(), server_options());
        let runs = (0..writers)
            .map(|w| new_run(&store, &format!("writer-{w}")))
            .collect();
        let batches = (0..writers as u64)
            .map(|w| ingest_batch(&INGEST_KEYS, w))
            .collect();
        Ingest {
            store,
            _dir: dir,
            runs,
            batches,
            points: 0,
            busy: Duration::ZERO,
        }
    }

    /// Each writer logs `iters` batches to its run; returns the wall time from the common start
    /// until the last batch is durable.
    fn run(&mut self, iters: u64) -> Duration {
        let barrier = Barrier::new(self.runs.len() + 1);
        let store = &self.store;
        let elapsed = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .runs
                .iter()
                .zip(self.batches.iter_mut())
                .map(|(run, batch)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        for _ in 0..iters {
                            store.log_batch(run, batch, &[], &[]).expect("log_batch");
                            advance_batch(batch, INGEST_KEYS.len());
                        }
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            for h in handles {
                h.join().expect("writer thread");
            }
            start.elapsed()
        });
        self.points += iters * (self.runs.len() * BATCH) as u64;
        self.busy += elapsed;
        elapsed
    }

    fn finish(self) {
        let stats = self.store.metrics_stats();
        println!(
            "  ingest: {} points in {:.1} s of logging, warm-up included ({:.2} M points/s); \
             {} segments written by background flushes, {} points still buffered",
            self.points,
            self.busy.as_secs_f64(),
            self.points as f64 / self.busy.as_secs_f64() / 1e6,
            stats.segments,
            stats.buffered_points,
        );
        let t = Instant::now();
        self.store.close().expect("close");
        println!(
            "  ingest: close (final flush) took {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }
}

fn ingest(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(SamplingMode::Flat);
    for writers in [4usize, 1] {
        // One criterion iteration: every writer logs one durable batch of 1000 points.
        g.throughput(Throughput::Elements((writers * BATCH) as u64));
        let mut state: Option<Ingest> = None;
        g.bench_function(
            BenchmarkId::new("log_batch_1000", format!("{writers}_writers")),
            |b| {
                let st = state.get_or_insert_with(|| Ingest::new(writers));
                b.iter_custom(|iters| st.run(iters));
            },
        );
        if let Some(st) = state {
            st.finish();
        }
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// history_1m and sampled_320_of_10m

/// One series of `n` points in a store of its own.
struct Series {
    // Declared first so that it is dropped (closed) before its directory is removed.
    store: Store,
    dir: TempDir,
    run: String,
    n: u64,
}

impl Series {
    /// Logs `n` points of [`KEY`] to a new run, one thread, in batches of 1000.
    fn fill(label: &str, options: quiver_store::StoreOptions, n: u64) -> Series {
        let dir = bench_dir(label);
        let store = open_store(dir.path(), options);
        let run = new_run(&store, label);
        let t = Instant::now();
        fill_series(&store, &run, KEY, n).expect("fill the series");
        let secs = t.elapsed().as_secs_f64();
        println!(
            "  {label}: logged {n} points in {secs:.1} s ({:.2} M points/s, one writer)",
            n as f64 / secs / 1e6
        );
        Series { store, dir, run, n }
    }

    /// Closes the store and opens it again (quiet): its segments are mapped afresh.
    fn reopen(self) -> Series {
        let Series { store, dir, run, n } = self;
        store.close().expect("close");
        Series {
            store: open_store(dir.path(), quiet_options()),
            dir,
            run,
            n,
        }
    }

    fn persist(&self) {
        self.store.flush().expect("flush");
        self.store.compact().expect("compact");
    }

    fn describe(&self, label: &str) {
        let s = self.store.metrics_stats();
        let (bytes, files) = segment_files(self.dir.path()).expect("list segments");
        println!(
            "  {label}: {} points buffered, {} segments ({files} files, {:.1} MiB, {} rows)",
            s.buffered_points,
            s.segments,
            mib(bytes),
            s.segment_rows
        );
    }

    fn history(&self) -> usize {
        let (h, next) = self
            .store
            .metric_history(&self.run, KEY, None, None)
            .expect("metric_history");
        debug_assert!(next.is_none());
        h.len()
    }

    fn sampled(&self, max: u64, steps: Option<(i64, i64)>) -> usize {
        self.store
            .sampled_metric_history(&self.run, KEY, max, steps)
            .expect("sampled_metric_history")
            .len()
    }
}

fn history_1m(c: &mut Criterion) {
    let n = scaled(1_000_000, 10_000);
    let mut g = c.benchmark_group("history_1m");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(n));

    let segment: OnceCell<Series> = OnceCell::new();
    g.bench_function("segment", |b| {
        let s = segment.get_or_init(|| {
            let s = Series::fill("history_1m/segment", quiet_options(), n);
            s.persist();
            s.describe("history_1m/segment");
            s
        });
        assert_eq!(s.history() as u64, n);
        b.iter(|| black_box(s.history()));
    });
    drop(segment);

    let memory: OnceCell<Series> = OnceCell::new();
    g.bench_function("memory", |b| {
        let s = memory.get_or_init(|| {
            let s = Series::fill("history_1m/memory", memory_only_options(), n);
            s.describe("history_1m/memory");
            s
        });
        assert_eq!(s.history() as u64, n);
        b.iter(|| black_box(s.history()));
    });
    drop(memory);
    g.finish();
}

/// Memory taken by one sampled read right after the store was reopened: peak RSS growth during
/// the call (VmHWM reset just before) and what stays resident after, anonymous and file-backed
/// (the memory-mapped segment pages the read touched).
fn sampled_memory_probe(s: &Series, label: &str, steps: Option<(i64, i64)>) {
    let reset = reset_peak_rss();
    let (rss0, anon0, file0) = (
        rss_bytes(),
        status_bytes("RssAnon"),
        status_bytes("RssFile"),
    );
    let t = Instant::now();
    let got = s.sampled(320, steps);
    let took = t.elapsed();
    let (peak, rss1) = (peak_rss_bytes(), rss_bytes());
    let (anon1, file1) = (status_bytes("RssAnon"), status_bytes("RssFile"));
    let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+.2} MiB", (b as f64 - a as f64) / (1u64 << 20) as f64),
        _ => "n/a".into(),
    };
    let (seg_bytes, _) = segment_files(s.dir.path()).expect("list segments");
    println!(
        "  {label} memory: series on disk {:.1} MiB; first sampled read after reopen ({got} points, \
         {:.2} ms): peak RSS growth {}, retained RSS {} (anon {}, file-backed {})",
        mib(seg_bytes),
        took.as_secs_f64() * 1e3,
        if reset { delta(rss0, peak) } else { "n/a (clear_refs refused)".into() },
        delta(rss0, rss1),
        delta(anon0, anon1),
        delta(file0, file1),
    );
}

fn sampled_320_of_10m(c: &mut Criterion) {
    let n = scaled(10_000_000, 100_000);
    let mid = ((n * 2 / 5) as i64, (n * 3 / 5) as i64);
    let mut g = c.benchmark_group("sampled_320_of_10m");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    let fixture: OnceCell<Series> = OnceCell::new();
    let init = || {
        // Logged as a server would take it (background flushes every 2M points), then flushed
        // and compacted, then reopened so that the memory probe sees a cold mapping.
        let s = Series::fill("sampled_320_of_10m", server_options(), n);
        s.persist();
        s.describe("sampled_320_of_10m");
        let s = s.reopen();
        sampled_memory_probe(&s, "sampled_320_of_10m/full_range", None);
        let s = s.reopen();
        sampled_memory_probe(&s, "sampled_320_of_10m/mid_steps", Some(mid));
        s
    };
    g.bench_function("full_range", |b| {
        let s = fixture.get_or_init(&init);
        assert_eq!(s.sampled(320, None), 320);
        b.iter(|| black_box(s.sampled(320, None)));
    });
    g.bench_function(format!("steps_{}_to_{}", mid.0, mid.1), |b| {
        let s = fixture.get_or_init(&init);
        assert_eq!(s.sampled(320, Some(mid)), 320);
        b.iter(|| black_box(s.sampled(320, Some(mid))));
    });
    if let Some(s) = fixture.get() {
        assert!(s.n >= 320);
    }
    drop(fixture);

    // For comparison (no target): the same sample of a 1M-point series still in the memory
    // buffer, as a series being logged right now is.
    let n_buffered = scaled(1_000_000, 10_000);
    let buffered: OnceCell<Series> = OnceCell::new();
    g.bench_function("buffered_1m", |b| {
        let s = buffered.get_or_init(|| {
            let s = Series::fill("sampled_320/buffered_1m", memory_only_options(), n_buffered);
            s.describe("sampled_320/buffered_1m");
            s
        });
        assert_eq!(s.sampled(320, None), 320);
        b.iter(|| black_box(s.sampled(320, None)));
    });
    drop(buffered);
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// blobs

/// Drops the page-cache pages of `file` (clean pages only; blobs are fsynced), so that the next
/// read comes from the disk.
fn evict_from_page_cache(file: &File) {
    // SAFETY: plain syscall on a valid descriptor; no memory is passed.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise(DONTNEED) failed");
}

/// Reads `reader` to its end through a 1 MiB buffer; returns the byte count.
fn drain(mut reader: impl Read, buf: &mut [u8]) -> u64 {
    let mut total = 0u64;
    loop {
        let n = reader.read(buf).expect("read");
        if n == 0 {
            return total;
        }
        black_box(&buf[..n]);
        total += n as u64;
    }
}

fn blobs(c: &mut Criterion) {
    let size = scaled(1 << 30, 16 << 20);
    let mut g = c.benchmark_group("blobs");
    // One iteration per sample: ten 1 GiB transfers per benchmark (criterion's minimum).
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(size));
    let dir = bench_dir("blobs");
    let store = open_store(&dir.path().join("store"), quiet_options());
    let mut seed = 0u64;

    g.bench_function("put_1gib", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seed += 1; // new content each time: no deduplication
                let t = Instant::now();
                let entry = store
                    .put_artifact("bench/put.bin", GeneratedReader::new(size, seed))
                    .expect("put_artifact");
                total += t.elapsed();
                assert_eq!(entry.size, size);
                store.delete_artifacts("bench/put.bin").expect("delete");
                store.gc().expect("gc");
            }
            total
        })
    });

    // The disk's own ceiling for the same job: the same stream written with 1 MiB writes to a
    // plain file, then fsynced (no hashing, no rename).
    g.bench_function("baseline_fs_write_fsync_1gib", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut buf = vec![0u8; 1 << 20];
            let path = dir.path().join("baseline.bin");
            for _ in 0..iters {
                seed += 1;
                let t = Instant::now();
                let mut reader = GeneratedReader::new(size, seed);
                let mut f = File::create(&path).expect("create");
                loop {
                    let n = reader.read(&mut buf).expect("generate");
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).expect("write");
                }
                f.sync_all().expect("fsync");
                total += t.elapsed();
                drop(f);
                std::fs::remove_file(&path).expect("remove");
            }
            total
        })
    });

    let path = "bench/get.bin";
    let stored = OnceCell::new();
    let ensure_stored = || {
        stored.get_or_init(|| {
            store
                .put_artifact(path, GeneratedReader::new(size, 0))
                .expect("put_artifact")
        });
    };
    let evict = || {
        let (_, f) = store.open_artifact(path).expect("open_artifact");
        evict_from_page_cache(&f);
    };
    let mut buf = vec![0u8; 1 << 20];
    g.bench_function("get_read_1mib_buf", |b| {
        ensure_stored();
        b.iter(|| {
            let (_, f) = store.open_artifact(path).expect("open_artifact");
            assert_eq!(drain(f, &mut buf), size);
        })
    });
    g.bench_function("get_mmap_sum", |b| {
        ensure_stored();
        b.iter(|| {
            let (_, bytes) = store.map_artifact(path).expect("map_artifact");
            black_box(byte_sum(&bytes))
        })
    });
    g.bench_function("get_read_1mib_buf_cold", |b| {
        ensure_stored();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                evict();
                let t = Instant::now();
                let (_, f) = store.open_artifact(path).expect("open_artifact");
                assert_eq!(drain(f, &mut buf), size);
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("get_mmap_sum_cold", |b| {
        ensure_stored();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                evict();
                let t = Instant::now();
                let (_, bytes) = store.map_artifact(path).expect("map_artifact");
                black_box(byte_sum(&bytes));
                drop(bytes);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    store.close().expect("close");
    drop(dir); // removes the blobs
}

// ---------------------------------------------------------------------------------------------
// step keys

/// `quiver run --reuse`'s lookup at 100,000 runs: the step-key index probe, against the same
/// question asked as a search (`tags.quiver.step.key = '...'`, a scan of the run index).
fn step_keys(c: &mut Criterion) {
    let runs = scaled(100_000, 2_000);
    let dir = bench_dir("step-keys");
    let store = open_store(&dir.path().join("store"), quiet_options());
    let key = |i: u64| format!("{:064x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let writers = 4;
    std::thread::scope(|scope| {
        for w in 0..writers {
            let (store, key) = (&store, &key);
            scope.spawn(move || {
                for i in (w..runs).step_by(writers as usize) {
                    store
                        .create_run(quiver_store::CreateRun {
                            tags: vec![quiver_store::Tag::new(quiver_store::STEP_KEY_TAG, key(i))],
                            ..Default::default()
                        })
                        .expect("create a run");
                }
            });
        }
    });
    println!("step_keys: {runs} runs, each with its own step key");
    let mut g = c.benchmark_group("step_keys");
    let mut i = 0u64;
    g.bench_function(BenchmarkId::new("index_probe", runs), |b| {
        b.iter(|| {
            i = (i + 7919) % runs;
            let found = store.runs_with_step_key(&key(i)).expect("probe");
            assert_eq!(found.len(), 1);
        })
    });
    let search = |k: String| quiver_store::RunSearch {
        experiment_ids: vec!["0".into()],
        filter: format!("tags.`{}` = '{k}'", quiver_store::STEP_KEY_TAG),
        view: quiver_store::ViewType::ActiveOnly,
        max_results: 10,
        order_by: Vec::new(),
        page_token: None,
    };
    // The first search builds the experiment's run index: not what is measured.
    store.search_runs(&search(key(0))).expect("search");
    g.bench_function(BenchmarkId::new("search_filter", runs), |b| {
        b.iter(|| {
            i = (i + 7919) % runs;
            let page = store.search_runs(&search(key(i))).expect("search");
            assert_eq!(page.runs.len(), 1);
        })
    });
    g.finish();
    store.close().expect("close");
}

criterion_group!(
    benches,
    ingest,
    history_1m,
    sampled_320_of_10m,
    blobs,
    step_keys
);
criterion_main!(benches);
