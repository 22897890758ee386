//! System health for the Management Dashboard: CPU and memory of the process and the
//! machine, disk space of the data directory, and total message throughput. Sampled every
//! few seconds by [`SystemMonitor::sample`] (Linux figures from `/proc`; elsewhere the
//! fields are absent).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use iobp_engine::Engine;

/// One reading.
#[derive(Debug, Clone, Default)]
pub struct SystemReading {
    /// This process's share of one CPU, in percent (can exceed 100 on several cores).
    pub process_cpu_percent: Option<f64>,
    /// The whole machine's CPU use, in percent of all cores.
    pub system_cpu_percent: Option<f64>,
    /// Resident memory of this process.
    pub process_rss_bytes: Option<u64>,
    /// Machine memory.
    pub system_memory_total_bytes: Option<u64>,
    /// Machine memory available.
    pub system_memory_available_bytes: Option<u64>,
    /// Size of the data directory's file system.
    pub disk_total_bytes: Option<u64>,
    /// Free space there (for unprivileged users).
    pub disk_free_bytes: Option<u64>,
    /// Messages received per second, all pairs.
    pub received_per_s: f64,
    /// Messages delivered per second, all pairs.
    pub sent_per_s: f64,
}

#[derive(Debug, Default)]
struct Previous {
    at: Option<Instant>,
    process_ticks: u64,
    system_busy: u64,
    system_total: u64,
    received: u64,
    sent: u64,
}

/// Keeps the latest reading.
#[derive(Debug)]
pub struct SystemMonitor {
    data_dir: PathBuf,
    prev: Mutex<Previous>,
    last: Mutex<SystemReading>,
}

impl SystemMonitor {
    pub(crate) fn new(data_dir: &Path) -> Self {
        SystemMonitor {
            data_dir: data_dir.to_path_buf(),
            prev: Mutex::default(),
            last: Mutex::default(),
        }
    }

    /// The latest reading.
    pub fn reading(&self) -> SystemReading {
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Takes a reading now (rates are over the time since the previous one).
    #[allow(clippy::cast_precision_loss)] // rates and percentages for display
    pub fn sample(&self, engine: &Engine) {
        let (received, sent) =
            engine.snapshots().iter().fold((0u64, 0u64), |(r, s), p| (r + p.received, s + p.sent));
        let now = Instant::now();
        let proc_ticks = read_process_ticks();
        let sys = read_system_ticks();
        let mut prev = self.prev.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut r = SystemReading::default();
        if let Some(at) = prev.at {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            r.received_per_s = received.saturating_sub(prev.received) as f64 / secs;
            r.sent_per_s = sent.saturating_sub(prev.sent) as f64 / secs;
            if let Some(t) = proc_ticks {
                // Clock ticks are 100 per second on Linux.
                r.process_cpu_percent = Some(t.saturating_sub(prev.process_ticks) as f64 / secs);
            }
            if let Some((busy, total)) = sys {
                let dt = total.saturating_sub(prev.system_total);
                if dt > 0 {
                    r.system_cpu_percent =
                        Some(100.0 * busy.saturating_sub(prev.system_busy) as f64 / dt as f64);
                }
            }
        }
        *prev = Previous {
            at: Some(now),
            process_ticks: proc_ticks.unwrap_or(0),
            system_busy: sys.map_or(0, |s| s.0),
            system_total: sys.map_or(0, |s| s.1),
            received,
            sent,
        };
        drop(prev);
        r.process_rss_bytes = read_status_kib("VmRSS:").map(|k| k * 1024);
        let (total, avail) = read_meminfo();
        r.system_memory_total_bytes = total;
        r.system_memory_available_bytes = avail;
        let (dt, df) = disk_space(&self.data_dir);
        r.disk_total_bytes = dt;
        r.disk_free_bytes = df;
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = r;
    }
}

/// utime + stime of this process, in clock ticks.
fn read_process_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// (busy, total) ticks of all CPUs.
fn read_system_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

pub(crate) fn read_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

fn read_meminfo() -> (Option<u64>, Option<u64>) {
    let Ok(s) = std::fs::read_to_string("/proc/meminfo") else { return (None, None) };
    let get = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    (get("MemTotal:"), get("MemAvailable:"))
}

fn disk_space(dir: &Path) -> (Option<u64>, Option<u64>) {
    #[cfg(unix)]
    {
        match rustix::fs::statvfs(dir) {
            Ok(s) => (Some(s.f_blocks * s.f_frsize), Some(s.f_bavail * s.f_frsize)),
            Err(_) => (None, None),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        (None, None)
    }
}
