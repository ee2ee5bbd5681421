//! Read-ahead for a cold disk: a few I/O threads keep many requests in flight while the
//! chunkers (rayon, one thread per core) work. A virtual disk, most SSDs and every network
//! volume deliver their throughput only with many requests outstanding; one blocking read per
//! core runs at the speed of a single reader.
//!
//! Three kinds of work, in this priority:
//! - the files a directory's walk is about to read (`hint`): small ones are read whole into
//!   memory, larger ones get `posix_fadvise(WILLNEED)` for their first window. What is held
//!   or advised ahead is bounded by a byte budget, so memory does not grow with the tree.
//! - a metadata walk ahead of the real one (`warm_tree`): each directory listed and every
//!   entry `fstatat`ed relative to the directory's descriptor, so the walk's own stats find
//!   the inodes cached. It stays a bounded number of directories ahead.
//!
//! Nothing here decides what is stored: a prefetched file carries the metadata seen after its
//! read, and the walk checks it against its own stat exactly as when it reads the file itself.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::walk::{Source, open_noatime};
use crate::patterns::Patterns;
use crate::sys;

/// I/O threads: they block on the disk, not the CPU, so more than the cores. Eight readers
/// reach this kind of disk's limit (issue 21); a few more leave room for the metadata walk.
const THREADS: usize = 12;
/// Bytes held or advised ahead of the chunkers at most.
pub const BUDGET: u64 = 16 << 20;
/// Files up to this size are read whole by an I/O thread; larger ones are advised.
pub const SMALL_MAX: u64 = 512 << 10;
/// How much of a larger file is advised before the walk gets to it.
const FIRST_WINDOW: u64 = 4 << 20;
/// How far ahead of its reader a large file is advised, and in what steps: the kernel caps
/// one WILLNEED at its readahead window, so a long range is advised piece by piece.
const IN_FILE_AHEAD: u64 = 16 << 20;
const ADVISE_STEP: u64 = 4 << 20;
/// Directories the metadata walk may be ahead of the real one.
const WARM_AHEAD: u64 = 512;
/// After this many directories in a row listed and stat'ed faster than [`CACHED_PER_ENTRY`]
/// per entry, the tree is taken as cached and the metadata walk stops: on a warm tree it only
/// doubles the walk's system calls.
const WARM_GIVE_UP: u32 = 64;
const CACHED_PER_ENTRY: Duration = Duration::from_micros(10);

/// What an I/O thread made of a hinted file.
pub enum Ahead {
    /// The whole file, with what `fstat` said after reading it.
    Read(Prefetched),
    /// Its first window is on its way into the page cache; read it as usual.
    Advised,
    /// Not prefetched (gone, unreadable, grew past its stat): read it as usual, which reports
    /// whatever is wrong the usual way.
    Missed,
}

pub struct Prefetched {
    pub data: Vec<u8>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
}

enum Slot {
    Queued,
    Reading,
    Done(Ahead),
}

struct Job {
    path: PathBuf,
    size: u64,
    cost: u64,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Every hinted file not yet taken or forgotten, with what it costs the budget.
    slots: HashMap<PathBuf, (Slot, u64)>,
    held: u64,
    peak: u64,
    /// Directories still to list ahead (a stack, so the order is depth first like the walk's),
    /// with the device they must be on under `--one-file-system`.
    warm: Vec<(PathBuf, Option<u64>)>,
    warmed: u64,
    entered: u64,
    /// Directories in a row found already cached, and whether that stopped the metadata walk.
    cached_dirs: u32,
    warm_off: bool,
    /// Walk threads waiting for a read under way.
    waiting: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    /// For the I/O threads: work was added or budget freed. One is woken per event: waking all
    /// sixteen for every file cost seconds of system time on a warm tree.
    work: Condvar,
    /// For walk threads waiting in `take`: a read finished.
    done: Condvar,
    budget: u64,
    excludes: Patterns,
    one_file_system: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("poisoned")
    }
}

pub struct Readahead {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Readahead {
    /// `SNAPFS_READAHEAD=N` sets the number of I/O threads (0: none, every read by the walk
    /// itself), to measure what they bring.
    pub fn new(excludes: Patterns, one_file_system: bool) -> Readahead {
        let threads = std::env::var("SNAPFS_READAHEAD").ok().and_then(|v| v.parse().ok()).unwrap_or(THREADS);
        Readahead::with(threads, BUDGET, excludes, one_file_system)
    }

    pub fn with(threads: usize, budget: u64, excludes: Patterns, one_file_system: bool) -> Readahead {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            budget,
            excludes,
            one_file_system,
        });
        let threads = (0..threads)
            .filter_map(|i| {
                let s = shared.clone();
                // Threads that cannot be made only mean fewer reads in flight.
                std::thread::Builder::new()
                    .name(format!("snapfs-io-{i}"))
                    .stack_size(256 << 10)
                    .spawn(move || io_thread(&s))
                    .ok()
            })
            .collect();
        Readahead { shared, threads }
    }

    /// Files the walk will read next, in the order it will take them. Every one must later be
    /// taken or forgotten ([`Batch`] does the latter).
    pub fn hint(&self, files: impl IntoIterator<Item = (PathBuf, u64)>) -> Batch<'_> {
        let mut paths = Vec::new();
        let mut s = self.shared.lock();
        for (path, size) in files {
            if s.slots.contains_key(&path) {
                continue;
            }
            let cost = if size <= SMALL_MAX { size + 1 } else { size.min(FIRST_WINDOW) };
            s.slots.insert(path.clone(), (Slot::Queued, cost));
            s.jobs.push_back(Job { path: path.clone(), size, cost });
            paths.push(path);
        }
        drop(s);
        for _ in 0..paths.len().min(THREADS) {
            self.shared.work.notify_one();
        }
        Batch { ahead: self, paths }
    }

    /// What was prefetched of a hinted file; waits when its read is under way. A file whose
    /// turn has not come is dropped from the queue: the walk reads it itself.
    pub fn take(&self, path: &Path) -> Ahead {
        let mut s = self.shared.lock();
        loop {
            match s.slots.get(path) {
                None => return Ahead::Missed,
                Some((Slot::Reading, _)) => {
                    s.waiting += 1;
                    s = self.shared.done.wait(s).expect("poisoned");
                    s.waiting -= 1;
                }
                Some(_) => break,
            }
        }
        let (slot, cost) = s.slots.remove(path).expect("just seen");
        match slot {
            Slot::Done(a) => {
                s.held -= cost;
                drop(s);
                self.shared.work.notify_one();
                a
            }
            // Still queued: its job is skipped when it comes up.
            _ => Ahead::Missed,
        }
    }

    /// Lists and stats the tree under `root` ahead of the walk.
    pub fn warm_tree(&self, root: &Path, dev: u64) {
        let dev = self.shared.one_file_system.then_some(dev);
        self.shared.lock().warm.push((root.to_path_buf(), dev));
        self.shared.work.notify_one();
    }

    /// The walk entered a directory: the metadata walk may go one further.
    pub fn entered_dir(&self) {
        let mut s = self.shared.lock();
        s.entered += 1;
        let waiting = s.warmed >= s.entered + WARM_AHEAD - 1 && !s.warm.is_empty();
        drop(s);
        if waiting {
            self.shared.work.notify_one();
        }
    }

    /// Bytes held or advised ahead now, and at most so far.
    #[cfg(test)]
    pub fn held(&self) -> (u64, u64) {
        let s = self.shared.lock();
        (s.held, s.peak)
    }

    fn forget(&self, paths: &[PathBuf]) {
        let mut s = self.shared.lock();
        let mut freed = false;
        for p in paths {
            match s.slots.get(p) {
                // Its thread releases it when done.
                Some((Slot::Reading, _)) => {
                    s.slots.remove(p);
                }
                Some((Slot::Done(_), cost)) => {
                    let cost = *cost;
                    s.slots.remove(p);
                    s.held -= cost;
                    freed = true;
                }
                Some((Slot::Queued, _)) => {
                    s.slots.remove(p);
                }
                None => {}
            }
        }
        drop(s);
        if freed {
            self.shared.work.notify_all();
        }
    }
}

impl Drop for Readahead {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The files one directory hinted; those the walk did not take are forgotten on drop, so a
/// skipped or unchanged file never holds budget.
pub struct Batch<'a> {
    ahead: &'a Readahead,
    paths: Vec<PathBuf>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.paths.is_empty() {
            self.ahead.forget(&self.paths);
        }
    }
}

enum Work {
    File(Job),
    Dir(PathBuf, Option<u64>),
}

fn io_thread(sh: &Shared) {
    loop {
        let work = {
            let mut s = sh.lock();
            loop {
                if s.shutdown {
                    return;
                }
                if let Some(w) = next_work(sh, &mut s) {
                    break w;
                }
                s = sh.work.wait(s).expect("poisoned");
            }
        };
        match work {
            Work::File(job) => {
                let done = if job.size <= SMALL_MAX { read_small(&job.path, job.size) } else { advise(&job.path) };
                let mut s = sh.lock();
                match s.slots.get_mut(&job.path) {
                    Some((slot @ Slot::Reading, _)) => *slot = Slot::Done(done),
                    // Forgotten while it was read.
                    _ => s.held -= job.cost,
                }
                if s.waiting > 0 {
                    sh.done.notify_all();
                }
            }
            Work::Dir(dir, dev) => {
                let started = Instant::now();
                let (subdirs, entries) = list_and_stat(&dir, dev, &sh.excludes);
                let cached = started.elapsed() < CACHED_PER_ENTRY * (entries + 1);
                let wake = subdirs.len().min(THREADS);
                let mut s = sh.lock();
                s.cached_dirs = if cached { s.cached_dirs + 1 } else { 0 };
                if s.cached_dirs >= WARM_GIVE_UP {
                    s.warm_off = true;
                    s.warm.clear();
                }
                if !s.warm_off {
                    // Reversed, so the first subdirectory is listed first, as the walk enters it.
                    s.warm.extend(subdirs.into_iter().rev().map(|d| (d, dev)));
                }
                drop(s);
                for _ in 1..wake {
                    sh.work.notify_one();
                }
            }
        }
    }
}

/// The next hinted file that fits the budget, else the next directory to list ahead.
fn next_work(sh: &Shared, s: &mut State) -> Option<Work> {
    while let Some(job) = s.jobs.front() {
        if !matches!(s.slots.get(&job.path), Some((Slot::Queued, _))) {
            s.jobs.pop_front();
            continue;
        }
        // An empty budget takes any one file, so a file larger than the budget still goes.
        if s.held > 0 && s.held + job.cost > sh.budget {
            break;
        }
        let job = s.jobs.pop_front().expect("just seen");
        if let Some((slot, _)) = s.slots.get_mut(&job.path) {
            *slot = Slot::Reading;
        }
        s.held += job.cost;
        s.peak = s.peak.max(s.held);
        return Some(Work::File(job));
    }
    if s.warmed < s.entered + WARM_AHEAD
        && let Some((dir, dev)) = s.warm.pop()
    {
        s.warmed += 1;
        return Some(Work::Dir(dir, dev));
    }
    None
}

fn read_small(path: &Path, size: u64) -> Ahead {
    let Ok(f) = open_noatime(path) else { return Ahead::Missed };
    // One byte more than the stat said tells a file that grew: the walk reads it itself.
    let mut data = Vec::with_capacity(size as usize + 1);
    match (&f).take(size + 1).read_to_end(&mut data) {
        Ok(n) if n as u64 <= size => {}
        _ => return Ahead::Missed,
    }
    match f.metadata() {
        Ok(m) => Ahead::Read(Prefetched {
            data,
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }),
        Err(_) => Ahead::Missed,
    }
}

fn advise(path: &Path) -> Ahead {
    if let Ok(f) = open_noatime(path) {
        let mut off = 0;
        while off < FIRST_WINDOW {
            sys::advise_willneed(&f, off, ADVISE_STEP);
            off += ADVISE_STEP;
        }
    }
    Ahead::Advised
}

/// Lists `dir` and stats every entry relative to its descriptor, in inode order (where a
/// filesystem lays out its inode tables); returns the subdirectories to go on with and the
/// number of entries.
fn list_and_stat(dir: &Path, dev: Option<u64>, excludes: &Patterns) -> (Vec<PathBuf>, u32) {
    let Ok(fd) = File::options().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(dir) else {
        return (Vec::new(), 0);
    };
    let Ok(rd) = std::fs::read_dir(dir) else { return (Vec::new(), 0) };
    let mut entries: Vec<(u64, std::ffi::OsString)> =
        rd.filter_map(|e| e.ok()).map(|e| (e.ino(), e.file_name())).collect();
    entries.sort_unstable();
    let n = entries.len() as u32;
    let mut subdirs = Vec::new();
    for (_, name) in entries {
        let Ok(st) = sys::stat_at(&fd, &name) else { continue };
        if st.is_dir && dev.is_none_or(|d| d == st.dev) {
            let p = dir.join(&name);
            if !excludes.matches(&p) {
                subdirs.push(p);
            }
        }
    }
    (subdirs, n)
}

/// A larger file read sequentially with the next [`IN_FILE_AHEAD`] bytes advised, so several
/// reads within it are in flight while the current block is cut.
pub struct Advising<'a> {
    f: &'a File,
    pos: u64,
    advised: u64,
}

impl<'a> Advising<'a> {
    pub fn new(f: &'a File) -> Advising<'a> {
        Advising { f, pos: 0, advised: 0 }
    }
}

impl Source for Advising<'_> {
    fn fill(&mut self, buf: &mut Vec<u8>, need: usize) -> io::Result<(usize, u64)> {
        let until = self.pos + need as u64 + IN_FILE_AHEAD;
        while self.advised < until {
            sys::advise_willneed(self.f, self.advised, ADVISE_STEP);
            self.advised += ADVISE_STEP;
        }
        let n = (&mut &*self.f).take(need as u64).read_to_end(buf)?;
        self.pos += n as u64;
        Ok((n, n as u64))
    }
}

/// A file an I/O thread read whole: handed to the chunker as its buffer, without a copy.
pub struct Whole(pub Option<Vec<u8>>);

impl Source for Whole {
    fn fill(&mut self, _: &mut Vec<u8>, _: usize) -> io::Result<(usize, u64)> {
        Ok((0, 0))
    }

    fn whole(&mut self) -> Option<Vec<u8>> {
        self.0.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path, files: usize, len: usize) -> Vec<(PathBuf, Vec<u8>)> {
        (0..files)
            .map(|i| {
                let p = dir.join(format!("f{i}"));
                let body: Vec<u8> = (0..len).map(|j| (i * 31 + j * 7) as u8).collect();
                std::fs::write(&p, &body).unwrap();
                (p, body)
            })
            .collect()
    }

    /// The I/O threads never hold more than the budget, however many files are hinted and
    /// however slowly they are taken, and every file comes back as it is on disk.
    #[test]
    fn budget_bounds_what_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let files = tree(dir.path(), 200, 100_000);
        let budget = 1 << 20;
        let ahead = Readahead::with(8, budget, Patterns::default(), false);
        let batch = ahead.hint(files.iter().map(|(p, b)| (p.clone(), b.len() as u64)));
        let mut read = 0;
        for (i, (p, body)) in files.iter().enumerate() {
            if i % 50 == 0 {
                // Give the threads time to fill the budget, and to try to overfill it.
                std::thread::sleep(std::time::Duration::from_millis(50));
                let (held, _) = ahead.held();
                assert!(held > budget / 2, "the threads were not ahead: {held} bytes held");
            }
            // One whose turn has not come yet is missed: the walk reads it itself.
            if let Ahead::Read(got) = ahead.take(p) {
                assert_eq!(&got.data, body);
                assert!(got.data.capacity() as u64 <= body.len() as u64 + 1);
                read += 1;
            }
        }
        drop(batch);
        let (held, peak) = ahead.held();
        assert!(read >= 40, "only {read} files were read ahead");
        assert_eq!(held, 0, "bytes still held after every file was taken");
        assert!(peak <= budget, "held {peak} bytes, over the {budget} budget");
        assert!(peak > budget / 2);
    }

    /// What a directory hinted and did not take is released, so the budget is not lost.
    #[test]
    fn forgotten_files_release_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let files = tree(dir.path(), 50, 50_000);
        let ahead = Readahead::with(4, 1 << 20, Patterns::default(), false);
        drop(ahead.hint(files.iter().map(|(p, b)| (p.clone(), b.len() as u64))));
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(ahead.held().0, 0);
        // A file that changed size after its stat is not used: the walk reads it itself.
        let batch = ahead.hint([(files[0].0.clone(), 10)]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(matches!(ahead.take(&files[0].0), Ahead::Missed));
        drop(batch);
        assert_eq!(ahead.held().0, 0);
    }
}
