//! What the harness reads of a server process in `/proc`: CPU time in
//! nanoseconds, summed over its threads, and resident memory.

use std::{fs, io};

/// CPU time the process `pid` has spent so far, in nanoseconds: the first
/// field of `/proc/PID/task/TID/schedstat` (time on a CPU), summed over its
/// threads. `/proc/PID/stat` counts in 10 ms ticks, too coarse for a burst
/// that takes the floor 30 ms; every server here keeps its threads for its
/// whole life, so no time leaves with an exited thread.
pub fn cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between listing and reading.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        total += parse_schedstat(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no run time in {text:?}", path.display()),
            )
        })?;
    }
    Ok(total)
}

/// CPU time the process `pid` has spent so far by its own count, in
/// nanoseconds: `utime` plus `stime` of `/proc/PID/stat`, in ticks of
/// 10 ms (`USER_HZ` is 100 on Linux). Coarse, but it keeps the time of
/// threads that have exited: a check on [`cpu_ns`] over seconds.
pub fn cpu_ticks_ns(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_ticks(&text)
        .map(|ticks| ticks * 10_000_000)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no utime and stime in /proc/{pid}/stat"),
            )
        })
}

/// Resident memory of the process `pid`, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no VmRSS line in /proc/{pid}/status"),
        )
    })
}

fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// `utime + stime`: fields 14 and 15 of `/proc/PID/stat`, counted after
/// the command name in parentheses (which may hold spaces).
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // Field 3 (the state) is the first after the name: utime is 11 further.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let rest = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut words = rest.split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_run_time_is_the_first_field() {
        assert_eq!(parse_schedstat("59249 35753 2\n"), Some(59249));
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn stat_ticks_are_utime_plus_stime_after_the_name() {
        let stat = "42 (load (x) y) S 1 42 42 0 -1 4194304 100 0 0 0 250 17 0 0 20 0 3 0";
        assert_eq!(parse_stat_ticks(stat), Some(267));
        assert_eq!(parse_stat_ticks("42 (load) S 1"), None);
    }

    #[test]
    fn vm_rss_is_read_in_kibibytes() {
        let status = "Name:\tload\nVmPeak:\t  9000 kB\nVmRSS:\t  1234 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
        assert_eq!(parse_vm_rss("Name:\tload\n"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        let before = cpu_ns(pid).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(pid).unwrap() > before);
        assert!(cpu_ticks_ns(pid).is_ok());
        assert!(rss_bytes(pid).unwrap() > 0);
    }
}
