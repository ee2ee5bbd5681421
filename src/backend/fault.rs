//! A backend wrapper that fails on purpose, for tests: an error from the Nth write or delete
//! on (a full disk, a dying one), a torn write, failing reads, and power loss, which keeps
//! only what was durable before the Nth operation, as redb's crash tests freeze durability.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Backend, Kind, MemoryBackend, object_name};
use crate::error::{Error, Result};

/// What goes wrong. Operations are the mutating ones (write, delete), counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Operation `op` and every one after it fail with this OS error (e.g. `libc::ENOSPC`).
    FailFrom {
        op: u64,
        errno: i32,
    },
    /// Write `op` stores only the first half of its object, then reports an error: a broken
    /// store that is not atomic.
    TornWrite {
        op: u64,
    },
    /// Every read of this kind fails with EIO.
    ReadEio(Kind),
    /// The power goes at operation `op`: it and everything after it still seem to work (they
    /// are in the page cache), but the durable image keeps only the operations before it.
    PowerLoss {
        op: u64,
    },
    /// The same, at the first write of an object of this kind (e.g. just before the snapshot,
    /// wherever the parallel packers put that write).
    PowerLossAtFirst(Kind),
}

pub struct FaultBackend {
    durable: Arc<dyn Backend>,
    fault: Fault,
    ops: AtomicU64,
    /// After a power loss: what the running process still sees.
    volatile: Mutex<Option<MemoryBackend>>,
    /// The durable image as a memory store, needed to start `volatile` from it.
    image: Option<MemoryBackend>,
}

fn os_err(what: String, errno: i32) -> Error {
    Error::io(what, std::io::Error::from_raw_os_error(errno))
}

impl FaultBackend {
    /// Wraps any backend; power loss needs [`FaultBackend::over_memory`].
    pub fn new(inner: Arc<dyn Backend>, fault: Fault) -> FaultBackend {
        assert!(
            !matches!(fault, Fault::PowerLoss { .. } | Fault::PowerLossAtFirst(_)),
            "power loss needs a memory image"
        );
        FaultBackend { durable: inner, fault, ops: AtomicU64::new(0), volatile: Mutex::new(None), image: None }
    }

    /// Wraps a memory store, which stays the durable image: after the run, open it again to
    /// see what survived.
    pub fn over_memory(image: MemoryBackend, fault: Fault) -> FaultBackend {
        FaultBackend {
            durable: Arc::new(image.clone()),
            fault,
            ops: AtomicU64::new(0),
            volatile: Mutex::new(None),
            image: Some(image),
        }
    }

    /// Mutating operations seen so far: a run without faults says how many points to test.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    /// The store reads and writes go to now, or the injected error. `kind` is that of a write.
    fn target(&self, mutating: bool, kind: Option<Kind>, what: impl FnOnce() -> String) -> Result<Arc<dyn Backend>> {
        let n = if mutating { self.ops.fetch_add(1, Ordering::SeqCst) + 1 } else { self.ops() };
        let power_lost = match self.fault {
            Fault::FailFrom { op, errno } if mutating && n >= op => return Err(os_err(what(), errno)),
            Fault::PowerLoss { op } => mutating && n >= op,
            Fault::PowerLossAtFirst(k) => kind == Some(k),
            _ => false,
        };
        if power_lost {
            let mut v = self.volatile.lock().unwrap_or_else(|e| e.into_inner());
            let image = self.image.as_ref().expect("set for power loss");
            return Ok(Arc::new(v.get_or_insert_with(|| image.deep_copy()).clone()));
        }
        match &*self.volatile.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(v) => Ok(Arc::new(v.clone())),
            None => Ok(self.durable.clone()),
        }
    }
}

impl Backend for FaultBackend {
    fn write(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        let what = || format!("write {}", object_name(kind, name));
        let n = self.ops() + 1;
        let target = self.target(true, Some(kind), what)?;
        if matches!(self.fault, Fault::TornWrite { op } if op == n) {
            target.write(kind, name, &data[..data.len() / 2])?;
            return Err(os_err(what(), libc::EIO));
        }
        target.write(kind, name, data)
    }

    fn read(&self, kind: Kind, name: &str) -> Result<Vec<u8>> {
        if self.fault == Fault::ReadEio(kind) {
            return Err(os_err(format!("read {}", object_name(kind, name)), libc::EIO));
        }
        self.target(false, None, String::new)?.read(kind, name)
    }

    fn read_at(&self, kind: Kind, name: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        if self.fault == Fault::ReadEio(kind) {
            return Err(os_err(format!("read {}", object_name(kind, name)), libc::EIO));
        }
        self.target(false, None, String::new)?.read_at(kind, name, offset, buf)
    }

    fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        self.target(false, None, String::new)?.list(kind)
    }

    fn replace(&self, kind: Kind, name: &str, data: &[u8]) -> Result<()> {
        // Atomic by contract: a torn replace would be a broken store, not a fault to survive.
        self.target(true, Some(kind), || format!("replace {}", object_name(kind, name)))?.replace(kind, name, data)
    }

    fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        self.target(true, None, || format!("delete {}", object_name(kind, name)))?.delete(kind, name)
    }

    fn location(&self) -> String {
        format!("{} (with faults: {:?})", self.durable.location(), self.fault)
    }
}
