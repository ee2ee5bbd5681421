//! The JSON shapes that both the CLI prints and the server's management API answers
//! (format-spec §17.4): one definition, so a script reads the same fields from either.

use serde_json::{Value, json};

use crate::check::Report;
use crate::crypto::ObjType;
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::timespec;

/// A snapshot as `snapshots --json` prints it (restic's shape, with snapfs's summary).
pub fn snapshot(id: &Id, s: &Snapshot) -> Value {
    let summary: serde_json::Map<String, Value> = s.summary.named().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let mut v = json!({
        "id": id.hex(),
        "short_id": id.short(),
        "time": timespec::rfc3339(s.time_ns),
        "hostname": s.hostname,
        "username": s.username,
        "uid": s.uid,
        "gid": s.gid,
        "paths": s.paths,
        "tags": s.tags,
        "tree": s.tree.hex(),
        "description": s.description,
        "program_version": s.program_version,
        "summary": summary,
    });
    if let Some(p) = s.parent {
        v["parent"] = json!(p.hex());
    }
    if let Some(o) = s.original {
        v["original"] = json!(o.hex());
    }
    v
}

/// `check --json`, and the server's validate answer.
pub fn check_report(r: &Report) -> Value {
    let problems: Vec<Value> = r
        .problems
        .iter()
        .map(|p| {
            json!({
                "kind": p.kind,
                "pack": p.pack.map(|id| id.hex()),
                "blob": p.blob.map(|(id, _)| id.hex()),
                "blob_type": p.blob.map(|(_, ty)| if ty == ObjType::Tree { "tree" } else { "data" }),
                "detail": p.detail,
            })
        })
        .collect();
    let affected: Vec<Value> = r
        .affected
        .iter()
        .map(|a| {
            let paths: Vec<Value> =
                a.paths.iter().map(|p| json!({"path": p.path, "kind": p.kind, "blob": p.blob.hex()})).collect();
            json!({"snapshot": a.snapshot.hex(), "time": timespec::rfc3339(a.time_ns), "paths": paths})
        })
        .collect();
    let read = r.read.as_ref().map(|d| {
        json!({
            "packs": d.packs,
            "packs_selected": d.packs_selected,
            "bytes": d.bytes,
            "blobs": d.blobs,
            "seconds": d.seconds,
            "complete": d.complete,
        })
    });
    let c = &r.coverage;
    json!({
        "ok": r.is_clean(),
        "snapshots": r.snapshots,
        "trees": r.trees,
        "data_blobs": r.data_blobs,
        "packs": r.packs,
        "pack_bytes": r.pack_bytes,
        "problems": problems,
        "affected": affected,
        "index": {
            "ok": !r.index.needs_repair(),
            "unusable": r.index.unusable,
            "repair_recommended": r.index.needs_repair(),
            "problems": r.index.problems,
            "unindexed_packs": r.index.unindexed_packs,
            "gone_packs": r.index.gone_packs.len(),
        },
        "unreferenced": {"packs": r.unreferenced_packs, "blobs": r.unreferenced_blobs},
        "redundant_blobs": r.redundant_blobs,
        "stray_files": r.stray_files,
        "staging_files": r.staging_files.iter().map(|(n, age)| json!({"name": n, "age_seconds": age.as_secs()})).collect::<Vec<_>>(),
        "read_data": read,
        "coverage": {
            "packs": c.packs,
            "verified_recently": c.verified_recently,
            "days": c.days,
            "percent": c.percent(),
        },
    })
}
