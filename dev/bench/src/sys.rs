//! What the bench reads from the machine: per-process RSS/CPU from /proc, and a description of the host.

use std::fs;
use std::io;
use std::process::Command;

/// One reading of a process's memory and CPU counters.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    /// `VmRSS` in KiB: resident memory now.
    pub rss_kib: u64,
    /// `VmHWM` in KiB: the highest RSS the process ever had.
    pub hwm_kib: u64,
    /// `utime + stime` in clock ticks: CPU used since the process started.
    pub cpu_ticks: u64,
    /// Sum of the first field of `/proc/PID/task/*/schedstat`: nanoseconds on
    /// a CPU of the threads alive now. A finer cross-check of `cpu_ticks`
    /// (threads that already exited are not in it).
    pub cpu_ns: u64,
}

/// Reads `/proc/PID/status` (VmRSS, VmHWM) and `/proc/PID/stat` (utime+stime).
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |name: &str| -> io::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("/proc/{pid}/status has no {name}")))
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields after it are fixed.
    let after = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/stat is malformed")))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); utime is field 14, stime field 15.
    let tick = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("/proc/{pid}/stat field {} missing", i + 3)))
    };
    Ok(ProcSample {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
        cpu_ticks: tick(11)? + tick(12)?,
        cpu_ns: thread_cpu_ns(pid),
    })
}

fn thread_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of `/proc/PID/stat` times.
pub fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The machine the numbers come from, for the report header.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `nproc`.
    pub nproc: String,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// /proc/loadavg's first three fields.
    pub loadavg: String,
    /// `uname -srm`.
    pub kernel: String,
    /// Total memory (MemTotal).
    pub mem_total: String,
}

/// Reads the machine description now.
pub fn machine() -> Machine {
    let cmd = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        nproc: cmd("nproc", &[]),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into()),
        loadavg: loadavg(),
        kernel: cmd("uname", &["-srm"]),
        mem_total: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "unknown".into()),
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
