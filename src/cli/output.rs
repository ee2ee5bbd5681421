//! Where the commands print. A closed standard output is not an error (`snapfs snapshots | head
//! -1`): once the reader is gone, output stops quietly and the command finishes its work, so a
//! backup still saves its snapshot and exits as it would have. Any other failure to write
//! standard output (a full disk) is remembered for `main`, which then reports it and exits 1:
//! a script must not take a truncated listing for a whole one. Standard error is best effort.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

static STOPPED: AtomicBool = AtomicBool::new(false);
static FAILURE: OnceLock<std::io::Error> = OnceLock::new();

/// Writes one line to standard output (see the module docs for what a failure does).
pub fn line(args: fmt::Arguments) {
    if STOPPED.load(Relaxed) {
        return;
    }
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}") {
        STOPPED.store(true, Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            let _ = FAILURE.set(e);
        }
    }
}

/// Writes one line to standard error, ignoring failure: there is nowhere left to report it.
pub fn err_line(args: fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Whether standard output no longer takes lines, so a long listing can stop early.
pub fn stopped() -> bool {
    STOPPED.load(Relaxed)
}

/// The first failure to write standard output other than a closed pipe.
pub fn failure() -> Option<&'static std::io::Error> {
    FAILURE.get()
}
