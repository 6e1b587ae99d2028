//! System metrics of a `quiver run`, sampled every few seconds and logged into the run: the
//! machine's, under MLflow's own `system/...` names (so MLflow's UI charts them as it charts
//! `mlflow.enable_system_metrics_logging()`), and the command's process tree's
//! (`system/process_...`): CPU, resident memory, disk reads and writes. Read from `/proc`
//! (Linux); GPUs through `nvidia-smi` when it is there.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const MB: f64 = 1024.0 * 1024.0;

/// CPU time of the whole machine: (busy, total) clock ticks since boot.
fn machine_cpu() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// A process's parent, CPU ticks (user + system) and resident pages, from `/proc/<pid>/stat`.
fn process_stat(pid: u32) -> Option<(u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let rss = f.get(21)?.parse().ok()?;
    Some((ppid, ticks, rss))
}

/// Bytes a process read from and wrote to storage (`/proc/<pid>/io`).
fn process_io(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

/// `pid` and all its descendants, found through the parents of every process.
fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some((ppid, _, _)) = process_stat(p) {
                    children.entry(ppid).or_default().push(p);
                }
            }
        }
    }
    let (mut out, mut todo, mut seen) = (Vec::new(), vec![pid], HashSet::new());
    while let Some(p) = todo.pop() {
        if seen.insert(p) {
            out.push(p);
            todo.extend(children.get(&p).into_iter().flatten().copied());
        }
    }
    out
}

/// A `key: N kB` field of `/proc/meminfo`, in bytes.
fn meminfo(text: &str, key: &str) -> Option<f64> {
    let v = text.lines().find_map(|l| l.strip_prefix(key))?;
    Some(v.trim().trim_end_matches("kB").trim().parse::<f64>().ok()? * 1024.0)
}

/// Bytes received and sent on every interface but loopback (`/proc/net/dev`).
fn network() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

/// (total, available) bytes of the filesystem holding `path`.
fn disk(path: &Path) -> Option<(f64, f64)> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a zeroed statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as f64;
    Some((st.f_blocks as f64 * unit, st.f_bavail as f64 * unit))
}

/// Takes samples of the machine and of one process tree.
#[derive(Debug)]
pub(crate) struct Sampler {
    pid: u32,
    dir: std::path::PathBuf,
    ticks_per_second: f64,
    page: f64,
    cpus: f64,
    last: Option<(Instant, (u64, u64), u64)>,
    network_at_start: (u64, u64),
}

impl Sampler {
    /// A sampler of process `pid` and its descendants; disk figures are those of `dir`'s
    /// filesystem.
    pub(crate) fn new(pid: u32, dir: &Path) -> Sampler {
        // SAFETY: sysconf with valid names.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Sampler {
            pid,
            dir: dir.to_path_buf(),
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            page: if page > 0 { page as f64 } else { 4096.0 },
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
            last: None,
            network_at_start: network(),
        }
    }

    /// The figures now, as (metric key, value). CPU percentages need a previous sample: the
    /// first call gives none.
    pub(crate) fn sample(&mut self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        let now = Instant::now();
        let procs = tree(self.pid);
        let (mut ticks, mut pages, mut read, mut written) = (0u64, 0u64, 0u64, 0u64);
        for p in &procs {
            if let Some((_, t, rss)) = process_stat(*p) {
                ticks += t;
                pages += rss;
            }
            let (r, w) = process_io(*p);
            read += r;
            written += w;
        }
        let machine = machine_cpu().unwrap_or((0, 0));
        if let Some((then, m0, t0)) = self.last {
            let wall = now.duration_since(then).as_secs_f64();
            if wall > 0.0 {
                let used = ticks.saturating_sub(t0) as f64 / self.ticks_per_second;
                out.push((
                    "system/process_cpu_utilization_percentage".into(),
                    100.0 * used / (wall * self.cpus),
                ));
            }
            let (busy, total) = (
                machine.0.saturating_sub(m0.0),
                machine.1.saturating_sub(m0.1),
            );
            if total > 0 {
                out.push((
                    "system/cpu_utilization_percentage".into(),
                    100.0 * busy as f64 / total as f64,
                ));
            }
        }
        self.last = Some((now, machine, ticks));
        out.push((
            "system/process_memory_rss_megabytes".into(),
            pages as f64 * self.page / MB,
        ));
        out.push((
            "system/process_disk_read_megabytes".into(),
            read as f64 / MB,
        ));
        out.push((
            "system/process_disk_write_megabytes".into(),
            written as f64 / MB,
        ));
        let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        if let (Some(total), Some(available)) =
            (meminfo(&mem, "MemTotal:"), meminfo(&mem, "MemAvailable:"))
        {
            let used = total - available;
            out.push(("system/system_memory_usage_megabytes".into(), used / MB));
            out.push((
                "system/system_memory_usage_percentage".into(),
                100.0 * used / total,
            ));
        }
        if let Some((total, available)) = disk(&self.dir) {
            let used = total - available;
            out.push(("system/disk_usage_megabytes".into(), used / MB));
            out.push(("system/disk_available_megabytes".into(), available / MB));
            if total > 0.0 {
                out.push(("system/disk_usage_percentage".into(), 100.0 * used / total));
            }
        }
        let (rx, tx) = network();
        out.push((
            "system/network_receive_megabytes".into(),
            rx.saturating_sub(self.network_at_start.0) as f64 / MB,
        ));
        out.push((
            "system/network_transmit_megabytes".into(),
            tx.saturating_sub(self.network_at_start.1) as f64 / MB,
        ));
        out.extend(gpus());
        out
    }
}

/// Utilisation and memory of each GPU `nvidia-smi` lists (none without it).
fn gpus() -> Vec<(String, f64)> {
    let Ok(out) = Command::new("nvidia-smi")
        .args([
            "--query-gpu=utilization.gpu,memory.used,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .output()
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut metrics = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<f64> = line
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        if let [util, used, total] = f[..] {
            metrics.push((format!("system/gpu_{i}_utilization_percentage"), util));
            metrics.push((format!("system/gpu_{i}_memory_usage_megabytes"), used));
            if total > 0.0 {
                metrics.push((
                    format!("system/gpu_{i}_memory_usage_percentage"),
                    100.0 * used / total,
                ));
            }
        }
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_tree_is_measured() {
        // A shell whose children burn CPU and which then holds 5 MB in a variable.
        let mut child = Command::new("sh")
            .args(["-c", "x=$(head -c 5000000 /dev/zero | tr '\\0' a); sleep 5"])
            .spawn()
            .unwrap();
        let mut s = Sampler::new(child.id(), Path::new("/"));
        let first: HashMap<String, f64> = s.sample().into_iter().collect();
        assert!(!first.contains_key("system/process_cpu_utilization_percentage"));
        assert!(first["system/disk_usage_percentage"] > 0.0);
        // A process just started may show no resident pages yet (the kernel adds up each
        // CPU's page counts into the process's in batches): wait until it has some.
        let mut rss = first["system/process_memory_rss_megabytes"];
        for _ in 0..200 {
            if rss > 0.0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
            rss = s.sample().into_iter().collect::<HashMap<_, _>>()
                ["system/process_memory_rss_megabytes"];
        }
        assert!(rss > 0.0, "the tree never showed resident memory");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let second: HashMap<String, f64> = s.sample().into_iter().collect();
        let cpu = second["system/process_cpu_utilization_percentage"];
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(second.contains_key("system/cpu_utilization_percentage"));
        assert!(tree(child.id()).contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let me = std::process::id();
        let (ppid, _, rss) = process_stat(me).unwrap();
        assert!(ppid > 0 && rss > 0);
    }
}
