//! What the examples share on the command line: logging, signals, the banner,
//! and printing an error with its causes. (Each example uses its own subset.)
#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The error and its causes on one line: "failed to bind 1.2.3.4:80: permission
/// denied" — the library keeps causes apart (`source()`), a terminal wants them
/// together.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

/// Logs to stderr at `level` (`--log`), else as `RUST_LOG` says, else warnings.
pub fn init_logging(level: Option<log::LevelFilter>) {
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    if let Some(level) = level {
        logger.filter_level(level);
    }
    logger.init();
}

/// SIGINT and SIGTERM, registered before the server listens so that a signal
/// right after the banner is never lost.
pub fn signals(program: &str) -> Result<Signals, String> {
    Signals::new([SIGINT, SIGTERM]).map_err(|e| format!("{program}: cannot install signal handlers: {e}"))
}

/// Prints `listening on ENDPOINTS with N reactors` on stdout, at once.
pub fn banner(endpoints: &str, reactors: usize) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {endpoints} with {reactors} reactors");
    let _ = stdout.flush();
}

/// On the first SIGINT or SIGTERM, shuts the server down with `grace`.
pub fn shutdown_on_signal<M: Send + 'static>(mut signals: Signals, handle: coreloop::Handle<M>, grace: Duration) {
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            handle.shutdown(grace);
        }
    });
}
