//! `snapfs stats`.

use std::io::Write;

use anyhow::{Result, bail};
use serde_json::json;

use super::{Global, human};
use snapfs::browse::stats::{Mode, stats};
use snapfs::timespec;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshots to count (id prefix or `latest`) [default: all that match the filters]
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// restore-size: the files as restored, summed over the snapshots; files-by-contents:
    /// each distinct file content once; raw-data: the blobs referenced, each once, and the
    /// deduplication and compression ratios
    #[arg(long, value_enum, default_value = "restore-size")]
    mode: ModeArg,
    /// Print a JSON object
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    RestoreSize,
    FilesByContents,
    RawData,
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    let repo = super::open(g, snapfs::repo::LockMode::Shared, "stats")?;
    let all = super::snapshot_list(&repo)?;
    let filter: snapfs::select::Filter = a.filter.into();
    let snaps: Vec<_> = if a.snapshots.is_empty() {
        all.iter().filter(|(_, s)| filter.matches(s)).cloned().collect()
    } else {
        let mut chosen = Vec::new();
        for spec in &a.snapshots {
            let (pick, path) = super::pick_spec(&all, spec, &filter)?;
            if path.is_some() {
                bail!("stats counts whole snapshots, not a path in one");
            }
            chosen.push(pick.clone());
        }
        chosen.sort_by_key(|(id, s)| (s.time_ns, *id));
        chosen.dedup_by_key(|(id, _)| *id);
        chosen
    };
    let (mode, name) = match a.mode {
        ModeArg::RestoreSize => (Mode::RestoreSize, "restore-size"),
        ModeArg::FilesByContents => (Mode::FilesByContents, "files-by-contents"),
        ModeArg::RawData => (Mode::RawData, "raw-data"),
    };
    let st = stats(&repo, &snaps, mode)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if a.json {
        let growth: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                json!({
                    "id": id.hex(), "time": timespec::rfc3339(s.time_ns),
                    "total_bytes": s.summary.total_bytes, "bytes_added": s.summary.bytes_added,
                })
            })
            .collect();
        let mut v = json!({
            "mode": name,
            "snapshots_count": st.snapshots,
            "total_file_count": st.files,
            "total_size": st.bytes,
            "restore_size": st.restore_bytes,
            "trees_read": st.trees_read,
            "snapshots": growth,
        });
        if mode == Mode::RawData {
            v["total_blob_count"] = json!(st.blobs);
            v["total_uncompressed_size"] = json!(st.raw_bytes);
            v["total_stored_size"] = json!(st.stored_bytes);
            v["compression_ratio"] = json!(st.compression_ratio());
            v["dedup_ratio"] = json!(st.dedup_ratio());
        }
        writeln!(out, "{v}")?;
        out.flush()?;
        return Ok(0);
    }
    writeln!(out, "Stats in {name} mode:")?;
    writeln!(out, "     Snapshots processed:  {}", st.snapshots)?;
    writeln!(out, "        Total File Count:  {}", st.files)?;
    match mode {
        Mode::RawData => {
            writeln!(out, "        Total Blob Count:  {}", st.blobs)?;
            writeln!(out, " Total Uncompressed Size:  {}", human(st.raw_bytes))?;
            writeln!(out, "              Total Size:  {}", human(st.stored_bytes))?;
            writeln!(out, "            Restore Size:  {}", human(st.restore_bytes))?;
            if let Some(r) = st.compression_ratio() {
                writeln!(out, "       Compression Ratio:  {r:.2}x")?;
            }
            if let Some(r) = st.dedup_ratio() {
                writeln!(out, "     Deduplication Ratio:  {r:.2}x")?;
            }
        }
        _ => writeln!(out, "              Total Size:  {}", human(st.bytes))?,
    }
    if snaps.len() > 1 {
        writeln!(out, "\nGrowth per snapshot:\n{:<8}  {:<19}  {:>12}  {:>12}", "id", "time", "size", "added")?;
        for (id, s) in &snaps {
            let (total, added) = (human(s.summary.total_bytes), human(s.summary.bytes_added));
            writeln!(out, "{:<8}  {:<19}  {total:>12}  {added:>12}", id.short(), timespec::local(s.time_ns))?;
        }
    }
    out.flush()?;
    Ok(0)
}
