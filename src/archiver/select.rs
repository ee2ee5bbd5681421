//! What a backup leaves out beyond patterns, and where its list of paths can come from, with
//! restic's option semantics: `--exclude-if-present`, `--exclude-caches`,
//! `--exclude-larger-than`, and `--files-from`, `--files-from-verbatim`, `--files-from-raw`.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use globset::GlobBuilder;

use crate::error::{Error, Result};

/// The tag file of the Cache Directory Tagging Specification and the signature it starts with.
pub const CACHEDIR_TAG: (&str, &[u8]) = ("CACHEDIR.TAG", b"Signature: 8a477f597d28d172789f06886806bc55");

#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// A directory holding a file of this name (starting with these bytes, when given) is left
    /// out whole.
    pub if_present: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// Regular files larger than this many bytes are left out.
    pub larger_than: Option<u64>,
    /// Honour the `.gitignore` files inside the backed-up directories.
    pub git_ignore: bool,
}

impl Selection {
    /// `NAME[:HEADER]`, as `--exclude-if-present` takes it.
    pub fn if_present_arg(arg: &str) -> Result<(PathBuf, Option<Vec<u8>>)> {
        let (name, header) = match arg.split_once(':') {
            Some((n, h)) => (n, Some(h.as_bytes().to_vec())),
            None => (arg, None),
        };
        if name.is_empty() || name.contains('/') {
            return Err(Error::Invalid(format!("--exclude-if-present {arg:?}: give a file name, optionally :HEADER")));
        }
        Ok((PathBuf::from(name), header))
    }

    /// Whether the entry at `path` is left out.
    pub fn rejects(&self, path: &Path, md: &Metadata) -> bool {
        if md.is_file() {
            return self.larger_than.is_some_and(|max| md.len() > max);
        }
        md.is_dir() && self.if_present.iter().any(|(name, header)| has_tag(&path.join(name), header.as_deref()))
    }
}

fn has_tag(file: &Path, header: Option<&[u8]>) -> bool {
    let Some(header) = header else { return std::fs::symlink_metadata(file).is_ok() };
    let mut start = vec![0u8; header.len()];
    std::fs::File::open(file).and_then(|mut f| f.read_exact(&mut start)).is_ok() && start == header
}

/// `1024`, `500k`, `20M`, `3G`, `1T` (powers of 1024, as restic reads them).
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || Error::Invalid(format!("bad size {s:?}: use e.g. 500k, 20M, 1G"));
    let (num, shift) = match s.trim().char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'b' => 0,
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                _ => return Err(bad()),
            };
            (&s.trim()[..i], shift)
        }
        _ => (s.trim(), 0),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// How a `--files-from*` file lists paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// One per line, surrounding blanks trimmed, `#` lines and empty lines skipped, globs
    /// expanded (`--files-from`).
    Patterns,
    /// One path per line exactly as written; only empty lines are skipped.
    Verbatim,
    /// Separated by NUL bytes (`find -print0`).
    Raw,
}

/// The paths a `--files-from*` file names. A glob that matches nothing is an error, as a
/// missing path is.
pub fn files_from(text: &[u8], format: ListFormat) -> Result<Vec<PathBuf>> {
    let path = |b: &[u8]| PathBuf::from(OsStr::from_bytes(b));
    match format {
        ListFormat::Raw => Ok(text.split(|&b| b == 0).filter(|p| !p.is_empty()).map(path).collect()),
        ListFormat::Verbatim => Ok(text
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .map(path)
            .collect()),
        ListFormat::Patterns => {
            let mut out = Vec::new();
            for line in text.split(|&b| b == b'\n') {
                let line = line.trim_ascii();
                if line.is_empty() || line.starts_with(b"#") {
                    continue;
                }
                if line.iter().any(|b| b"*?[".contains(b)) {
                    let found = expand(&path(line))?;
                    if found.is_empty() {
                        return Err(Error::Invalid(format!("{}: no path matches", path(line).display())));
                    }
                    out.extend(found);
                } else {
                    out.push(path(line));
                }
            }
            Ok(out)
        }
    }
}

/// The existing paths a glob matches, one component at a time (`*` stays within one).
fn expand(pattern: &Path) -> Result<Vec<PathBuf>> {
    let mut at = vec![if pattern.is_absolute() { PathBuf::from("/") } else { PathBuf::new() }];
    for c in pattern.components() {
        let Component::Normal(part) = c else { continue };
        let lit = !part.as_bytes().iter().any(|b| b"*?[".contains(b));
        let mut next = Vec::new();
        for dir in at {
            if lit {
                let p = dir.join(part);
                if std::fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
                continue;
            }
            let glob = GlobBuilder::new(&part.to_string_lossy())
                .literal_separator(true)
                .build()
                .map_err(|e| Error::Invalid(format!("bad glob {}: {}", pattern.display(), e.kind())))?
                .compile_matcher();
            let read = if dir.as_os_str().is_empty() { Path::new(".") } else { &dir };
            let Ok(entries) = std::fs::read_dir(read) else { continue };
            let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).filter(|n| glob.is_match(n)).collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        at = next;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_lists() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("500k").unwrap(), 500 << 10);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        assert!(parse_size("12x").is_err() && parse_size("").is_err() && parse_size("M").is_err());
        let l = files_from(b"a b\n\n#c\n d \r\n", ListFormat::Verbatim).unwrap();
        assert_eq!(l, [PathBuf::from("a b"), PathBuf::from("#c"), PathBuf::from(" d ")]);
        let l = files_from(b"  a b \n# c\n\n", ListFormat::Patterns).unwrap();
        assert_eq!(l, [PathBuf::from("a b")]);
        let l = files_from(b"x\ny\0\nz\0", ListFormat::Raw).unwrap();
        assert_eq!(l, [PathBuf::from("x\ny"), PathBuf::from("\nz")]);
    }
}
