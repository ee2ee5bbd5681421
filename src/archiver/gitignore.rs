//! `backup --git-ignore`: the `.gitignore` files inside the backed-up directories, with git's
//! rules through the `ignore` crate's matcher: a file's patterns apply to its directory and
//! everything below, the deepest file that has an opinion decides, and `!` re-includes.

use std::path::Path;

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The `.gitignore` matchers from the walk's top down to one directory.
pub struct Ignores<'a> {
    here: Gitignore,
    up: Option<&'a Ignores<'a>>,
}

impl<'a> Ignores<'a> {
    /// The matchers for `dir`: its own `.gitignore` (if any) over those of `up`. A file that
    /// cannot be read or parsed is returned as a warning, with the patterns that could be used.
    pub fn enter(dir: &Path, up: Option<&'a Ignores<'a>>) -> (Ignores<'a>, Option<String>) {
        let file = dir.join(".gitignore");
        if std::fs::symlink_metadata(&file).is_err() {
            return (Ignores { here: Gitignore::empty(), up }, None);
        }
        let mut b = GitignoreBuilder::new(dir);
        let mut warning = b.add(&file).map(|e| format!("{}: {e}", file.display()));
        let here = b.build().unwrap_or_else(|e| {
            warning = Some(format!("{}: {e}", file.display()));
            Gitignore::empty()
        });
        (Ignores { here, up }, warning)
    }

    /// Whether `path` (inside the directory of the innermost matcher) is ignored.
    pub fn ignores(&self, path: &Path, is_dir: bool) -> bool {
        let mut at = Some(self);
        while let Some(i) = at {
            match i.here.matched(path, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => at = i.up,
            }
        }
        false
    }
}
