//! Looking at processes through /proc (ids, state, start ticks, command line, environment) and
//! signalling them. Linux only; every reader returns `None` or nothing for a process that is
//! gone, since tests race with processes that exit.

/// The pids of every process /proc lists.
pub fn pids() -> std::io::Result<Vec<u32>> {
    Ok(std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .collect())
}

/// The /proc/PID/stat fields after the command name: state is `[0]`, ppid `[1]`, pgrp `[2]`,
/// start ticks `[19]`. `None` when the process does not exist.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the last ") " ends it.
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// True when `pid` exists and has not exited (a zombie waiting for its parent counts as gone).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid)
        .is_some_and(|f| !matches!(f.first().map(String::as_str), Some("Z" | "X" | "x") | None))
}

/// The process group of `pid`.
pub fn pgid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// Start ticks of `pid` (field 22 of /proc/PID/stat): with the pid, what identifies a process.
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Live processes whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    pids()
        .expect("read /proc")
        .into_iter()
        .filter(|&pid| alive(pid) && self::pgid(pid) == Some(pgid))
        .collect()
}

/// The NUL-separated entries of /proc/PID/`file` (`cmdline`, `environ`), read lossily as UTF-8.
fn entries(pid: u32, file: &str) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/{file}")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|entry| !entry.is_empty())
            .map(|entry| String::from_utf8_lossy(entry).into_owned())
            .collect(),
    )
}

/// The command line of `pid`, one argument an item.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    entries(pid, "cmdline")
}

/// The environment `pid` started with, one `NAME=value` an item.
pub fn environ(pid: u32) -> Option<Vec<String>> {
    entries(pid, "environ")
}

/// Every command line on the machine as /proc and `ps` show them, one a line (arguments joined
/// by spaces): what a secret must never appear in.
pub fn all_command_lines() -> String {
    let mut all = String::new();
    for pid in pids().expect("read /proc") {
        if let Some(args) = cmdline(pid) {
            all.push_str(&args.join(" "));
            all.push('\n');
        }
    }
    if let Ok(out) = std::process::Command::new("ps")
        .args(["-eww", "-o", "args"])
        .output()
    {
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// The value of `flag` on the command line `args` (the argument after it).
pub fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Sends `signal` to the one process `pid`; a process already gone is no error.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Sends `signal` to every process of group `pgid`. Groups 0 and 1 and the test's own group
/// are refused: signalling them would hit the test run itself or the whole machine.
pub fn signal_group(pgid: u32, signal: libc::c_int) {
    if pgid > 1 && Some(pgid) != self::pgid(std::process::id()) {
        // SAFETY: as in `signal`; the negative pid names the group.
        unsafe {
            libc::kill(-(pgid as libc::pid_t), signal);
        }
    }
}

/// Kills the process groups it holds when dropped, so a failing test leaves no service behind.
pub struct KillOnDrop(pub Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pgid in &self.0 {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}
