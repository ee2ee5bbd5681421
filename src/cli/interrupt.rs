//! Ctrl-C, SIGTERM and SIGHUP for a command that must not leave its lock behind. The signals are
//! blocked before any thread starts (every thread inherits the mask), so only the waiter here
//! sees them; it sets a flag the library polls, and the command then unwinds as from any error:
//! packs in flight are finished, staging files removed, the lock deleted when the repository is
//! dropped. A second signal, or one before [`Interrupt::arm`] (at the password prompt, before
//! any lock exists), exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

use super::exit;

pub struct Interrupt {
    flag: Arc<AtomicBool>,
    armed: Arc<AtomicBool>,
}

impl Interrupt {
    /// Call before anything starts a thread (opening a repository starts rayon's pool).
    pub fn catch() -> Result<Interrupt> {
        let mut signals = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            signals.add(s);
        }
        signals.thread_block().context("block signals")?;
        let (flag, armed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (f, a) = (flag.clone(), armed.clone());
        // Not joined: it waits until a signal comes or the process exits.
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            while let Ok(sig) = signals.wait() {
                if !a.load(SeqCst) || f.swap(true, SeqCst) {
                    std::process::exit(exit::INTERRUPTED.into());
                }
                errln!("snapfs: {sig}: stopping once the data in flight is written (again to stop at once)");
            }
        })?;
        Ok(Interrupt { flag, armed })
    }

    /// From now on a first signal asks the command to stop rather than ending the process.
    pub fn arm(&self) {
        self.armed.store(true, SeqCst);
    }

    /// The flag the library polls.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}
