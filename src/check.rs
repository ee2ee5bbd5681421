//! `check`: verifies a repository and, when something is damaged, says exactly what was lost.
//!
//! The pack headers are the ground truth (they are authenticated); the index is a cache checked
//! against them. A structure pass reads headers, the index, snapshots and every reachable tree;
//! `read data` then reads packs in full. Damage is traced back to every snapshot path that needs it.

mod damage;
mod data;
mod structure;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::crypto::ObjType;
use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;

pub use damage::{Affected, AffectedPath};

/// Which packs `--read-data` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    All,
    /// This percentage of the packs, least recently verified first.
    Percent(f64),
    /// Slice `n` of `m` (1-based): a fixed partition by pack id.
    Slice(u32, u32),
}

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Read and verify pack contents; `None` checks structure only.
    pub read_data: Option<Subset>,
    /// Stop starting new packs after this long (the structure pass always completes).
    pub max_duration: Option<Duration>,
    /// Check only what this snapshot needs.
    pub snapshot: Option<Id>,
    /// Advanced as packs are read: packs and their bytes.
    pub progress: std::sync::Arc<crate::progress::Work>,
}

/// One damaged thing. `kind` is a stable word for monitoring: `key_slot`, `snapshot`,
/// `key_epoch`, `pack_missing`, `pack_size`, `pack_header`, `pack_hash`, `pack_read`, `blob`, `tree`.
#[derive(Clone, Debug)]
pub struct Problem {
    pub kind: &'static str,
    pub pack: Option<Id>,
    pub blob: Option<(Id, ObjType)>,
    pub detail: String,
}

/// What is known about the index compared with the pack headers.
#[derive(Clone, Debug, Default)]
pub struct IndexReport {
    /// Missing or unopenable; `problems` says why.
    pub unusable: bool,
    /// Disagreements with the pack headers, or referenced blobs it lacks.
    pub problems: Vec<String>,
    /// Packs on disk the index does not list (normal after an interrupted backup).
    pub unindexed_packs: u64,
    /// Packs the index listed that are gone, with their blob counts (the next command forgets them).
    pub gone_packs: Vec<(Id, u32)>,
}

impl IndexReport {
    /// Whether rebuilding the index from the pack headers is the fix.
    pub fn needs_repair(&self) -> bool {
        self.unusable || !self.problems.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct ReadStats {
    pub packs: u64,
    pub packs_selected: u64,
    pub bytes: u64,
    pub blobs: u64,
    pub seconds: f64,
    /// False when `max_duration` stopped the run before every selected pack was read.
    pub complete: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Coverage {
    pub packs: u64,
    /// Packs fully verified within `days` days.
    pub verified_recently: u64,
    pub days: u64,
}

impl Coverage {
    /// The share of packs verified recently; all of none is 100 %.
    pub fn percent(&self) -> f64 {
        if self.packs == 0 { 100.0 } else { self.verified_recently as f64 * 100.0 / self.packs as f64 }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub packs: u64,
    pub pack_bytes: u64,
    pub snapshots: u64,
    pub trees: u64,
    pub data_blobs: u64,
    pub problems: Vec<Problem>,
    pub index: IndexReport,
    pub affected: Vec<Affected>,
    /// Packs none of whose blobs any snapshot references (not damage: `prune` removes them).
    pub unreferenced_packs: u64,
    pub unreferenced_blobs: u64,
    /// Copies of blobs stored in more than one pack (two writers raced; not damage: `prune`
    /// reclaims them).
    pub redundant_blobs: u64,
    /// Files under `packs/` that are not packs.
    pub stray_files: Vec<String>,
    /// Staging files left in the repository by writers, with their age: an interrupted backup's
    /// (removed by the next write once an hour old), or a running one's.
    pub staging_files: Vec<(String, Duration)>,
    pub read: Option<ReadStats>,
    pub coverage: Coverage,
}

impl Report {
    /// Exit 0 only when nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && !self.index.needs_repair()
    }
}

/// A blob none of whose copies can be read.
#[derive(Clone, Debug)]
struct Lost {
    ty: ObjType,
    pack: Option<Id>,
    detail: String,
}

const COVERAGE_DAYS: u64 = 30;
/// Plaintext trees the data pass keeps for the walk: listings of a few hundred thousand
/// entries; past it the walk reads the rest itself.
const KEPT_TREES: usize = 64 << 20;

pub fn check(repo: &Repository, opts: &CheckOptions) -> Result<Report> {
    let mut report = Report::default();
    structure::key_slots(repo.backend().as_ref(), &mut report);
    for (name, e) in repo.damaged_epochs() {
        let detail = format!("key epoch {name}: {e}");
        report.problems.push(Problem { kind: "key_epoch", pack: None, blob: None, detail });
    }
    let mut facts = structure::gather(repo, &mut report)?;

    let (mut snaps, bad) = repo.snapshots()?;
    for (name, e) in bad {
        report.problems.push(Problem { kind: "snapshot", pack: None, blob: None, detail: format!("{name}: {e}") });
    }
    if let Some(id) = opts.snapshot {
        snaps.retain(|(s, _)| *s == id);
    }
    report.snapshots = snaps.len() as u64;

    let mut lost: HashMap<Id, Lost> = HashMap::new();
    // Reading whole packs needs nothing from the walk, so it goes first and keeps the trees it
    // authenticated: the walk then reads none of them again. Checking one snapshot reads only
    // the blobs the walk finds, so it waits for it.
    let kept = data::TreesRead::new(KEPT_TREES);
    let verified = match opts.read_data {
        Some(subset) if opts.snapshot.is_none() => {
            let plan = data::Plan { subset, max_duration: opts.max_duration, only: None, progress: &opts.progress };
            Some(crate::spans::in_read_pool(repo, || data::verify(repo, &facts, &plan, &kept)))
        }
        _ => None,
    };
    let walk = structure::walk(repo, &facts, &snaps, &kept, &mut lost);
    drop(kept);
    report.trees = walk.trees.len() as u64;
    report.data_blobs = walk.data.len() as u64;
    structure::referenced_in_index(&facts, &walk, &lost, &mut report);
    structure::expansion(&walk, &snaps, &mut report);
    if opts.snapshot.is_none() {
        structure::unreferenced(&facts, &walk, &mut report);
    }

    if let Some(subset) = opts.read_data {
        let verified = verified.unwrap_or_else(|| {
            let needed: HashSet<Id> = walk.trees.iter().chain(walk.data.iter()).copied().collect();
            let plan =
                data::Plan { subset, max_duration: opts.max_duration, only: Some(&needed), progress: &opts.progress };
            crate::spans::in_read_pool(repo, || data::verify(repo, &facts, &plan, &data::TreesRead::new(0)))
        });
        let stats = data::record(repo.index(), &mut facts, verified, opts.snapshot.is_some(), &mut lost, &mut report)?;
        report.read = Some(stats);
    }

    let mut lost: Vec<(Id, Lost)> = lost.into_iter().collect();
    lost.sort_by_key(|(id, _)| *id);
    for (id, l) in &lost {
        let kind = if l.ty == ObjType::Tree { "tree" } else { "blob" };
        report.problems.push(Problem { kind, pack: l.pack, blob: Some((*id, l.ty)), detail: l.detail.clone() });
    }
    // A vanished pack that held a needed blob is damage; name it once beside its blobs.
    for (pack, blobs) in &report.index.gone_packs {
        if lost.iter().any(|(_, l)| l.pack == Some(*pack)) {
            let detail = format!("pack {pack} is missing ({blobs} blobs were in it)");
            report.problems.push(Problem { kind: "pack_missing", pack: Some(*pack), blob: None, detail });
        }
    }
    let lost_ids: HashSet<Id> = lost.iter().map(|(id, _)| *id).collect();
    if !lost_ids.is_empty() {
        report.affected = damage::attribute(&snaps, &lost_ids, &|id| facts.load_tree(repo, id));
    }
    report.coverage = facts.coverage(COVERAGE_DAYS);
    Ok(report)
}

/// Parses `N%` or `n/m`.
pub fn parse_subset(s: &str) -> Option<Subset> {
    if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p.trim().parse().ok()?;
        return (v > 0.0 && v <= 100.0).then_some(Subset::Percent(v));
    }
    let (n, m) = s.split_once('/')?;
    let (n, m): (u32, u32) = (n.trim().parse().ok()?, m.trim().parse().ok()?);
    (m >= 1 && (1..=m).contains(&n)).then_some(Subset::Slice(n, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse() {
        assert_eq!(parse_subset("10%"), Some(Subset::Percent(10.0)));
        assert_eq!(parse_subset("2/5"), Some(Subset::Slice(2, 5)));
        assert_eq!(parse_subset("0%"), None);
        assert_eq!(parse_subset("101%"), None);
        assert_eq!(parse_subset("0/5"), None);
        assert_eq!(parse_subset("6/5"), None);
        assert_eq!(parse_subset("x"), None);
    }
}
