//! Ctrl-C, SIGTERM and SIGHUP for a command that must not leave its lock behind. The signals are
//! blocked before any thread starts (every thread inherits the mask), so only the waiter here
//! sees them; it sets a flag the library polls, and the command then unwinds as from any error:
//! packs in flight are finished, staging files removed, the lock deleted when the repository is
//! dropped. A second signal, or one before [`Interrupt::arm`] (at the password prompt, before
//! any lock exists), exits at once. A command that only reads (restore, check) has nothing
//! in flight worth finishing: [`Interrupt::exit_releasing`] makes the first signal remove its
//! lock and exit.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

use super::exit;
use snapfs::backend::Backend;

/// The repository whose lock a reader's first signal removes before exiting.
type Release = Arc<Mutex<Option<Arc<dyn Backend>>>>;

pub struct Interrupt {
    flag: Arc<AtomicBool>,
    armed: Arc<AtomicBool>,
    release: Release,
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
        let release: Release = Arc::new(Mutex::new(None));
        let (f, a, r) = (flag.clone(), armed.clone(), release.clone());
        // Not joined: it waits until a signal comes or the process exits.
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            while let Ok(sig) = signals.wait() {
                if let Some(backend) = r.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = snapfs::repo::lock::remove_own(backend.as_ref());
                    errln!("snapfs: {sig}: stopped; its lock is removed");
                    std::process::exit(exit::INTERRUPTED.into());
                }
                if !a.load(SeqCst) || f.swap(true, SeqCst) {
                    std::process::exit(exit::INTERRUPTED.into());
                }
                errln!("snapfs: {sig}: stopping once the data in flight is written (again to stop at once)");
            }
        })?;
        Ok(Interrupt { flag, armed, release })
    }

    /// From now on a first signal asks the command to stop rather than ending the process.
    pub fn arm(&self) {
        self.armed.store(true, SeqCst);
    }

    /// For a command that only reads (restore, check): a signal from now on removes this
    /// process's lock in `backend` and exits at once, as nothing in the repository is half
    /// written.
    pub fn exit_releasing(&self, backend: Arc<dyn Backend>) {
        *self.release.lock().unwrap_or_else(|e| e.into_inner()) = Some(backend);
    }

    /// The flag the library polls.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}
