//! Shared setup for Quiver's benchmarks (`benches/benches/*.rs`; figures in `README.md`).
//!
//! Everything here produces inputs the way a training job would: noisy decreasing curves logged
//! in batches of [`BATCH`] points with millisecond timestamps ~100 ms apart, artifacts streamed
//! from a reader. Stores live in fresh temporary directories under the default temp dir
//! (`$TMPDIR`, else `/tmp`), removed when the benchmark is done.
//!
//! In criterion's test mode (`cargo test --benches`, `cargo bench -- --test`) the benchmarks
//! shrink their inputs through [`scaled`], so that a smoke run stays cheap.

use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use quiver_store::{CreateRun, Metric, Store, StoreOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

/// Timestamp of step 0 of every synthetic series (ms since the epoch, November 2023).
pub const BASE_TS: i64 = 1_700_000_000_000;

/// Points per `log_batch` call: MLflow's limit of 1000 metrics per batch.
pub const BATCH: usize = 1000;

/// Whether the benchmark binary runs in criterion's test mode: started with `--test`, or
/// without `--bench` (which `cargo bench` passes and `cargo test --benches` does not).
pub fn test_mode() -> bool {
    let has = |flag: &str| std::env::args().skip(1).any(|a| a == flag);
    has("--test") || !has("--bench")
}

/// `full` normally, `small` in test mode (see [`test_mode`]).
pub fn scaled(full: u64, small: u64) -> u64 {
    if test_mode() {
        small
    } else {
        full
    }
}

/// A fresh temporary directory named after `label` (`/` becomes `-`), in the default temp dir;
/// deleted (with the store in it) when dropped.
pub fn bench_dir(label: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!(
            "quiver-bench-{}-",
            label.replace(['/', '\\'], "-")
        ))
        .tempdir()
        .expect("create a temporary directory for the benchmark")
}

/// Default options, with flushes and compactions on the background thread (as a server runs).
pub fn server_options() -> StoreOptions {
    StoreOptions {
        background: true,
        ..StoreOptions::default()
    }
}

/// Default thresholds without the background thread: nothing moves unless the benchmark calls
/// [`Store::flush`] or [`Store::compact`], so read benchmarks measure only the read.
pub fn quiet_options() -> StoreOptions {
    StoreOptions {
        background: false,
        ..StoreOptions::default()
    }
}

/// Options under which every logged point stays in the memory buffer until an explicit flush.
pub fn memory_only_options() -> StoreOptions {
    StoreOptions {
        flush_points: usize::MAX,
        flush_interval: Duration::from_secs(365 * 24 * 3600),
        flush_wal_bytes: u64::MAX,
        background: false,
        ..StoreOptions::default()
    }
}

/// Opens (creating it) the store in `dir`; panics on error.
pub fn open_store(dir: &Path, options: StoreOptions) -> Store {
    Store::open_with(dir, options).expect("open the benchmark store")
}

/// Creates a run called `name` in the default experiment and returns its id.
pub fn new_run(store: &Store, name: &str) -> String {
    store
        .create_run(CreateRun {
            run_name: Some(name.to_string()),
            start_time: Some(BASE_TS),
            ..CreateRun::default()
        })
        .expect("create a run")
        .info
        .run_id
}

/// A standard normal deviate (Box-Muller).
fn gaussian(rng: &mut SmallRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1], so ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The shape of a synthetic training curve: `floor + scale·exp(-step/tau)`, multiplied by
/// `1 + noise·g` with `g` standard normal (a loss that decays and jitters around its trend).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurveShape {
    /// Where the curve levels off.
    pub floor: f64,
    /// Height above the floor at step 0.
    pub scale: f64,
    /// Decay constant, in steps.
    pub tau: f64,
    /// Relative standard deviation of the noise.
    pub noise: f64,
}

impl CurveShape {
    /// A plausible loss curve drawn from `rng`: floor 0.05–0.5, scale 1–4, tau 500–5000 steps,
    /// noise 1–5 %.
    pub fn random(rng: &mut impl Rng) -> CurveShape {
        CurveShape {
            floor: rng.random_range(0.05..0.5),
            scale: rng.random_range(1.0..4.0),
            tau: rng.random_range(500.0..5000.0),
            noise: rng.random_range(0.01..0.05),
        }
    }
}

impl Default for CurveShape {
    /// A loss going from 2.6 to 0.1 with 2 % noise.
    fn default() -> Self {
        CurveShape {
            floor: 0.1,
            scale: 2.5,
            tau: 2000.0,
            noise: 0.02,
        }
    }
}

/// The values of one noisy training curve (see [`CurveShape`]); reproducible from its seed.
#[derive(Debug, Clone)]
pub struct TrainingCurve {
    shape: CurveShape,
    rng: SmallRng,
}

/// A training curve of `shape` whose noise comes from `seed`.
pub fn training_curve(shape: CurveShape, seed: u64) -> TrainingCurve {
    TrainingCurve {
        shape,
        rng: SmallRng::seed_from_u64(seed),
    }
}

impl TrainingCurve {
    /// The (noisy) value at `step`. Each call draws new noise.
    pub fn value(&mut self, step: i64) -> f64 {
        let s = &self.shape;
        let trend = s.floor + s.scale * (-(step as f64) / s.tau).exp();
        trend * (1.0 + s.noise * gaussian(&mut self.rng))
    }
}

/// Wall-clock timestamps of successive steps: [`BASE_TS`] first, then about `period_ms` later
/// each step with gaussian jitter, never going back. An endless iterator.
#[derive(Debug, Clone)]
pub struct Timeline {
    rng: SmallRng,
    next: f64,
    period_ms: f64,
    jitter_ms: f64,
}

/// A [`Timeline`] of ~100 ms steps with 10 ms of jitter, whose jitter comes from `seed`.
pub fn timeline(seed: u64) -> Timeline {
    Timeline {
        rng: SmallRng::seed_from_u64(seed),
        next: BASE_TS as f64,
        period_ms: 100.0,
        jitter_ms: 10.0,
    }
}

impl Iterator for Timeline {
    type Item = i64;

    fn next(&mut self) -> Option<i64> {
        let now = self.next;
        let delta = self.period_ms + self.jitter_ms * gaussian(&mut self.rng);
        self.next += delta.max(1.0);
        Some(now as i64)
    }
}

/// Logs `n` points of metric `key` to `run`, steps `0..n` in order, in batches of [`BATCH`]
/// (each durable when `log_batch` returns), values from the default [`CurveShape`] and
/// timestamps from a [`Timeline`]. Points are generated batch by batch: memory stays small
/// whatever `n`.
pub fn fill_series(store: &Store, run: &str, key: &str, n: u64) -> quiver_store::Result<()> {
    let mut curve = training_curve(CurveShape::default(), 1);
    let mut times = timeline(2);
    let mut batch = Vec::with_capacity(BATCH);
    let mut step = 0u64;
    while step < n {
        batch.clear();
        let end = (step + BATCH as u64).min(n);
        for s in step..end {
            let s = s as i64;
            let ts = times.next().expect("timelines are endless");
            batch.push(Metric::new(key, curve.value(s), ts, s));
        }
        store.log_batch(run, &batch, &[], &[])?;
        step = end;
    }
    Ok(())
}

/// Builds one batch of [`BATCH`] points for the ingest benchmark: `keys` interleaved step by
/// step (`BATCH / keys.len()` steps), starting at step 0. Advance it with [`advance_batch`].
pub fn ingest_batch(keys: &[&str], seed: u64) -> Vec<Metric> {
    assert!(
        !keys.is_empty() && BATCH.is_multiple_of(keys.len()),
        "keys must divide the batch size"
    );
    let mut curves: Vec<TrainingCurve> = (0..keys.len() as u64)
        .map(|k| training_curve(CurveShape::default(), seed * 1000 + k))
        .collect();
    let mut times = timeline(seed);
    let steps = BATCH / keys.len();
    let mut batch = Vec::with_capacity(BATCH);
    for step in 0..steps as i64 {
        let ts = times.next().expect("timelines are endless");
        for (key, curve) in keys.iter().zip(&mut curves) {
            batch.push(Metric::new(*key, curve.value(step), ts, step));
        }
    }
    batch
}

/// Moves a batch from [`ingest_batch`] on to its next steps (and 100 ms per step later),
/// keeping its values: cheap enough not to weigh on what an ingest benchmark measures.
pub fn advance_batch(batch: &mut [Metric], keys: usize) {
    let steps = (batch.len() / keys.max(1)) as i64;
    for m in batch {
        m.step += steps;
        m.timestamp += steps * 100;
    }
}

/// A reader of `len` pseudo-random bytes generated on the fly in constant memory: a 1 MiB random
/// block, repeated, each repetition stamped in its first 16 bytes with the seed and its index,
/// so that readers with different seeds give different contents (no deduplication). Producing
/// the bytes costs one `memcpy`, far faster than what it feeds.
#[derive(Debug, Clone)]
pub struct GeneratedReader {
    block: Vec<u8>,
    seed: u64,
    pos: u64,
    len: u64,
}

/// Size of the repeated block of a [`GeneratedReader`].
const BLOCK: u64 = 1 << 20;

impl GeneratedReader {
    /// A reader of `len` bytes whose content depends on `seed`.
    pub fn new(len: u64, seed: u64) -> GeneratedReader {
        let mut block = vec![0u8; BLOCK as usize];
        SmallRng::seed_from_u64(0x5eed).fill(&mut block[..]);
        GeneratedReader {
            block,
            seed,
            pos: 0,
            len,
        }
    }
}

impl Read for GeneratedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min((self.len - self.pos) as usize);
        let mut done = 0;
        while done < n {
            let off = (self.pos % BLOCK) as usize;
            let take = (n - done).min(BLOCK as usize - off);
            let out = &mut buf[done..done + take];
            out.copy_from_slice(&self.block[off..off + take]);
            if off < 16 {
                let mut stamp = [0u8; 16];
                stamp[..8].copy_from_slice(&self.seed.to_le_bytes());
                stamp[8..].copy_from_slice(&(self.pos / BLOCK).to_le_bytes());
                let end = 16.min(off + take);
                out[..end - off].copy_from_slice(&stamp[off..end]);
            }
            done += take;
            self.pos += take as u64;
        }
        Ok(n)
    }
}

/// A field of `/proc/self/status` given in kB (`VmRSS`, `VmHWM`, `RssAnon`, `RssFile` ...), in
/// bytes, where `/proc` has it.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Resident set size of this process in bytes (`VmRSS`), where `/proc` has it.
pub fn rss_bytes() -> Option<u64> {
    status_bytes("VmRSS")
}

/// Peak resident set size of this process in bytes (`VmHWM`) since it started or since the last
/// [`reset_peak_rss`].
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM")
}

/// Resets the peak resident set size to the current one (writes `5` to
/// `/proc/self/clear_refs`, Linux ≥ 4.0). Returns whether that worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Total size in bytes and number of the Parquet segment files (`metrics/seg-*.parquet`) of
/// the store in `store_dir`.
pub fn segment_files(store_dir: &Path) -> io::Result<(u64, usize)> {
    let mut bytes = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(store_dir.join("metrics"))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("seg-") && name.ends_with(".parquet") {
            bytes += entry.metadata()?.len();
            files += 1;
        }
    }
    Ok((bytes, files))
}

/// Sums every byte of `bytes`, touching each page. Eight bytes at a time, two bytes per 16-bit
/// lane (SWAR, vectorized by the compiler), so that the sum runs far faster than the memory it
/// reads and the figure is the mapping's, not the arithmetic's.
pub fn byte_sum(bytes: &[u8]) -> u64 {
    const EVEN: u64 = 0x00ff_00ff_00ff_00ff;
    let mut total = 0u64;
    // 128 words per block: a lane gets at most 128 × 2 × 255 = 65,280 < 2^16.
    for block in bytes.chunks(8 * 128) {
        let words = block.chunks_exact(8);
        let tail: u64 = words.remainder().iter().map(|&b| b as u64).sum();
        let mut lanes = 0u64;
        for w in words {
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            lanes += (w & EVEN) + ((w >> 8) & EVEN);
        }
        total += (lanes & 0xffff)
            + ((lanes >> 16) & 0xffff)
            + ((lanes >> 32) & 0xffff)
            + (lanes >> 48)
            + tail;
    }
    total
}

/// `bytes` in MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_reader_is_exact_and_seeded() {
        let mut a = Vec::new();
        GeneratedReader::new(3 * BLOCK + 5, 1)
            .read_to_end(&mut a)
            .unwrap();
        assert_eq!(a.len() as u64, 3 * BLOCK + 5);
        // Odd-sized reads give the same bytes.
        let mut b = Vec::new();
        let mut r = GeneratedReader::new(3 * BLOCK + 5, 1);
        let mut buf = [0u8; 7];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            b.extend_from_slice(&buf[..n]);
        }
        assert_eq!(a, b);
        let mut c = Vec::new();
        GeneratedReader::new(3 * BLOCK + 5, 2)
            .read_to_end(&mut c)
            .unwrap();
        assert_ne!(a, c);
        assert_eq!(a[16..BLOCK as usize], c[16..BLOCK as usize]);
    }

    #[test]
    fn byte_sum_is_exact() {
        let bytes: Vec<u8> = (0..100_003u32).map(|i| (i * 7919 % 256) as u8).collect();
        let naive: u64 = bytes.iter().map(|&b| b as u64).sum();
        assert_eq!(byte_sum(&bytes), naive);
        assert_eq!(byte_sum(&[255; 5000]), 255 * 5000);
    }

    #[test]
    fn curves_decrease_and_timelines_advance() {
        let mut curve = training_curve(CurveShape::default(), 7);
        let early: f64 = (0..100).map(|s| curve.value(s)).sum();
        let late: f64 = (10_000..10_100).map(|s| curve.value(s)).sum();
        assert!(late < early / 5.0);
        let ts: Vec<i64> = timeline(3).take(1000).collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
        let span = (ts[999] - ts[0]) as f64 / 999.0;
        assert!((90.0..110.0).contains(&span), "{span}");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn proc_figures() {
        assert!(rss_bytes().unwrap() > 0);
        assert!(peak_rss_bytes().unwrap() >= rss_bytes().unwrap() / 2);
    }
}
