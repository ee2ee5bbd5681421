//! Tracing lost blobs back to the snapshots and paths that need them. Only trees that contain
//! damage somewhere below them are descended, so a clean repository costs nothing here.

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Node;
use crate::id::Id;

#[derive(Clone, Debug)]
pub struct AffectedPath {
    /// Absolute path inside the snapshot (non-UTF-8 bytes replaced).
    pub path: String,
    /// `file`: its contents cannot be restored; `directory`: its listing is lost, so is
    /// everything under it.
    pub kind: &'static str,
    /// The first lost blob on which it depends.
    pub blob: Id,
}

#[derive(Clone, Debug)]
pub struct Affected {
    pub snapshot: Id,
    pub time_ns: i64,
    pub paths: Vec<AffectedPath>,
}

type Load<'a> = &'a dyn Fn(&Id) -> Result<Vec<Node>>;

struct Tracer<'a> {
    lost: &'a HashSet<Id>,
    load: Load<'a>,
    /// Tree → whether something below it is lost; `None` while unreadable trees are absent.
    tainted: HashMap<Id, bool>,
    trees: HashMap<Id, Vec<Node>>,
}

impl Tracer<'_> {
    fn nodes(&mut self, id: &Id) -> Option<Vec<Node>> {
        if self.lost.contains(id) {
            return None;
        }
        if let Some(n) = self.trees.get(id) {
            return Some(n.clone());
        }
        (self.load)(id).ok()
    }

    fn is_tainted(&mut self, id: &Id) -> bool {
        if let Some(&t) = self.tainted.get(id) {
            return t;
        }
        let t = match self.nodes(id) {
            None => true,
            Some(nodes) => {
                let mut t = false;
                for n in &nodes {
                    t |= match n.subtree() {
                        Some(sub) => self.is_tainted(&sub),
                        None => n.content.iter().any(|c| self.lost.contains(c)),
                    };
                }
                if t {
                    self.trees.insert(*id, nodes);
                }
                t
            }
        };
        self.tainted.insert(*id, t);
        t
    }

    fn collect(&mut self, id: &Id, at: &str, out: &mut Vec<AffectedPath>) {
        let Some(nodes) = self.nodes(id) else {
            out.push(AffectedPath { path: at.to_string(), kind: "directory", blob: *id });
            return;
        };
        for n in nodes {
            let path = format!("{}/{}", at.trim_end_matches('/'), String::from_utf8_lossy(&n.name));
            match n.subtree() {
                Some(sub) if self.is_tainted(&sub) => self.collect(&sub, &path, out),
                Some(_) => {}
                None => {
                    if let Some(b) = n.content.iter().find(|c| self.lost.contains(c)) {
                        out.push(AffectedPath { path, kind: "file", blob: *b });
                    }
                }
            }
        }
    }
}

/// Every snapshot path that depends on a lost blob, per snapshot, oldest snapshot first.
pub(super) fn attribute(snaps: &[(Id, Snapshot)], lost: &HashSet<Id>, load: Load) -> Vec<Affected> {
    let mut t = Tracer { lost, load, tainted: HashMap::new(), trees: HashMap::new() };
    let mut out = Vec::new();
    for (id, s) in snaps {
        if !t.is_tainted(&s.tree) {
            continue;
        }
        let mut paths = Vec::new();
        t.collect(&s.tree, "/", &mut paths);
        out.push(Affected { snapshot: *id, time_ns: s.time_ns, paths });
    }
    out
}
