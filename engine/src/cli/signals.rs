//! Process signals, in one place. SIGINT, SIGTERM and SIGHUP (the terminal or the SSH session
//! to a bastion closed) all mean stop. While an operation obeys the invocation's stop token (an
//! apply's executor), the first signal asks it to finish running steps and start nothing new,
//! the second to cancel now. Outside that, the first signal releases berth's state lock and
//! ends berth with exit code 130, so an interrupted plan, drift or confirmation prompt leaves
//! no stale lock. SIGPIPE is ignored: a closed pipe only stops the printing. A long-running
//! command may take SIGHUP as a request to re-read its config instead ([`hup_reloads`]).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::ops::Stop;

/// The exit code of a berth ended by a signal outside an apply (128 + SIGINT, as shells do).
pub const INTERRUPTED: i32 = 130;

/// Ignores SIGPIPE and starts turning SIGINT, SIGTERM and SIGHUP into requests on `stop`, on
/// `runtime`'s worker threads (so a command blocked on a prompt or a lock is still reached).
pub fn install(runtime: &tokio::runtime::Handle, stop: Stop) {
    // A closed pipe must never end berth mid-apply: SIGPIPE is ignored, the write fails with
    // EPIPE, and the console stops printing to that stream while berth goes on.
    // SAFETY: setting a signal's disposition; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // Registered here, before the task first runs, so no signal falls between the two.
    let _guard = runtime.enter();
    let listeners = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
    ]
    .map(|(kind, name)| (signal(kind), name));
    for (listener, name) in listeners {
        let Ok(mut listener) = listener else {
            continue;
        };
        let stop = stop.clone();
        runtime.spawn(async move {
            while listener.recv().await.is_some() {
                on_signal(&stop, name);
            }
        });
    }
}

/// Set while a long-running command (`watch`) takes SIGHUP as a request to re-read its config.
static HUP_RELOADS: AtomicBool = AtomicBool::new(false);
/// Wakes the command that takes SIGHUP as a reload.
static RELOAD: Notify = Notify::const_new();

/// From now on SIGHUP asks for a reload ([`reload_asked`]) instead of a stop.
pub fn hup_reloads() {
    HUP_RELOADS.store(true, Ordering::SeqCst);
}

/// Resolves once SIGHUP asked for a reload (a request made before the call is not lost).
pub async fn reload_asked() {
    RELOAD.notified().await;
}

fn on_signal(stop: &Stop, name: &str) {
    if name == "SIGHUP" && HUP_RELOADS.load(Ordering::SeqCst) {
        RELOAD.notify_one();
        return;
    }
    if stop.is_obeyed() {
        stop.escalate(name);
        return;
    }
    // Nothing would obey a request: end now, releasing the state lock first without the
    // destructors a normal exit would need the main thread for.
    crate::session::release_for_interrupt();
    // SAFETY: ends the process without unwinding other threads.
    unsafe { libc::_exit(INTERRUPTED) }
}
