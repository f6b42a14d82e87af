//! Diagnostic logging for people chasing a problem: the `tracing` events of berth's crates
//! (SSH connect and authentication, each remote command with its duration and exit status,
//! probes) written to stderr. Warnings are always shown; `-v` adds debug events, `-vv` trace
//! events, and `BERTH_LOG` (`debug`, `berth_providers=trace,warn`...) sets the filter outright.
//! Events never carry a secret: what reaches them (command summaries, hosts, outcomes) never
//! holds one.

use std::io::{self, Write};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;

/// The environment variable that sets the log filter.
pub const LOG_ENV: &str = "BERTH_LOG";

/// The crates whose events `-v` shows.
const CRATES: [&str; 3] = ["berth", "berth_providers", "berth_state"];

/// Installs the subscriber for `verbose` (the count of `-v`), or the filter in `BERTH_LOG`.
/// A malformed `BERTH_LOG` is reported and the default is used.
pub fn init(verbose: u8) {
    let from_env = std::env::var(LOG_ENV).ok().filter(|v| !v.trim().is_empty());
    let filter = match from_env.as_deref().map(str::parse::<Targets>) {
        Some(Ok(targets)) => targets,
        Some(Err(e)) => {
            errln!(
                "warning: ignoring {LOG_ENV}: {e} (write e.g. `debug` or `berth_providers=trace`)"
            );
            default_filter(verbose)
        }
        None => default_filter(verbose),
    };
    let detailed = verbose > 0 || from_env.is_some();
    let builder = tracing_subscriber::fmt()
        .with_writer(Stderr)
        .with_ansi(false)
        .with_target(detailed)
        .with_max_level(LevelFilter::TRACE);
    let _ = if detailed {
        tracing_subscriber::util::SubscriberInitExt::try_init(
            tracing_subscriber::layer::SubscriberExt::with(
                builder
                    .with_timer(tracing_subscriber::fmt::time::uptime())
                    .finish(),
                filter,
            ),
        )
    } else {
        tracing_subscriber::util::SubscriberInitExt::try_init(
            tracing_subscriber::layer::SubscriberExt::with(builder.without_time().finish(), filter),
        )
    };
}

fn default_filter(verbose: u8) -> Targets {
    let level = match verbose {
        0 => return Targets::new().with_default(LevelFilter::WARN),
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    Targets::new()
        .with_default(LevelFilter::WARN)
        .with_targets(CRATES.map(|c| (c, level)))
}

/// stderr through the console, so that a closed stderr never ends berth.
#[derive(Clone, Copy)]
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::console::write_stderr(format_args!("{}", String::from_utf8_lossy(buf)));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}
