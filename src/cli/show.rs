//! `snapfs show`.

use std::io::Write;

use anyhow::{Result, bail};

use super::{Global, human};
use snapfs::timespec;

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id prefix or `latest`
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// The snapshot object as JSON (the same shape as `snapshots --json`)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    filter: super::FilterArgs,
    /// With --keep-* options: whether this policy keeps the snapshot, why, and until when
    #[command(flatten)]
    policy: super::forget::PolicyArgs,
}

pub fn run(g: &Global, a: Args) -> Result<u8> {
    // Like `snapshots`: reads no pack, so no lock and no index.
    let repo = super::open_keys(g, snapfs::repo::LockMode::None, "show")?;
    let snaps = super::snapshot_list(&repo)?;
    let ((id, s), path) = super::pick_spec(&snaps, &a.snapshot, &a.filter.into())?;
    if path.is_some() {
        bail!("show takes a snapshot, not a path in one");
    }
    let policy = a.policy.policy()?;
    // As forget would decide it: within the snapshot's group of host and paths.
    let verdict = (!policy.is_empty()).then(|| {
        let group: Vec<_> =
            snaps.iter().filter(|(_, o)| o.hostname == s.hostname && o.paths == s.paths).cloned().collect();
        let d = snapfs::policy::apply(&group, &policy, &jiff::tz::TimeZone::system(), jiff::Timestamp::now());
        d.keep.into_iter().find(|k| k.id == *id)
    });
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if a.json {
        let mut v = super::snapshots::json_of(id, s);
        if let Some(kept) = &verdict {
            v["keep_reasons"] = serde_json::json!(kept.as_ref().map_or(vec![], |k| k.matches.clone()));
            v["expires"] = serde_json::json!(kept.as_ref().and_then(|k| k.expires).map(|t| t.to_string()));
        }
        writeln!(out, "{v}")?;
        out.flush()?;
        return Ok(0);
    }
    let m = &s.summary;
    let field = |out: &mut dyn Write, k: &str, v: &str| writeln!(out, "{}", format!("{k:<12} {v}").trim_end());
    field(&mut out, "snapshot", &id.hex())?;
    field(&mut out, "time", &format!("{} ({})", timespec::local(s.time_ns), timespec::rfc3339(s.time_ns)))?;
    field(&mut out, "host", &s.hostname)?;
    field(&mut out, "user", &format!("{} (uid {}, gid {})", s.username, s.uid, s.gid))?;
    for (i, p) in s.paths.iter().enumerate() {
        field(&mut out, if i == 0 { "paths" } else { "" }, p)?;
    }
    field(&mut out, "tags", &s.tags.join(", "))?;
    field(&mut out, "description", &s.description)?;
    field(&mut out, "parent", &s.parent.map_or("none".to_string(), |p| p.hex()))?;
    if let Some(o) = s.original {
        field(&mut out, "original", &o.hex())?;
    }
    field(&mut out, "tree", &s.tree.hex())?;
    field(&mut out, "program", &s.program_version)?;
    field(
        &mut out,
        "files",
        &format!(
            "{} ({} new, {} changed, {} unchanged)",
            m.total_files, m.files_new, m.files_changed, m.files_unchanged
        ),
    )?;
    let dirs = m.dirs_new + m.dirs_changed + m.dirs_unchanged;
    field(
        &mut out,
        "dirs",
        &format!("{dirs} ({} new, {} changed, {} unchanged)", m.dirs_new, m.dirs_changed, m.dirs_unchanged),
    )?;
    field(&mut out, "size", &format!("{} in files, {} read by the backup", human(m.total_bytes), human(m.bytes_read)))?;
    field(
        &mut out,
        "added",
        &format!("{} ({} new data blobs, after compression)", human(m.bytes_added), m.data_blobs_added),
    )?;
    field(&mut out, "errors", &m.errors.to_string())?;
    field(&mut out, "duration", &format!("{:.2} s", m.duration_ns as f64 / 1e9))?;
    match &verdict {
        None => {}
        Some(None) => field(&mut out, "policy", "removed by this policy")?,
        Some(Some(k)) => {
            field(&mut out, "policy", &format!("kept: {}", k.matches.join(", ")))?;
            if let Some(t) = k.expires {
                field(&mut out, "expires", &timespec::local(t.as_nanosecond() as i64))?;
            }
        }
    }
    out.flush()?;
    Ok(0)
}
