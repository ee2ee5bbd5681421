//! Include and exclude patterns, with restic's rules, for backup and restore alike:
//!
//! - a pattern starting with `/` is matched against the whole absolute path;
//! - one with a `/` elsewhere (`data/doc`) matches at any depth, as if it began with `**/`;
//! - one without a `/` (`*.log`) is matched against the entry's name;
//! - `*` and `?` stay within one path component, `**` crosses them;
//! - a leading `!` negates: within one list, the last pattern that matches decides.
//!
//! Matching a directory decides for everything below it (the walk does not go in).

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct Patterns {
    /// Each list decides on its own (`--exclude` and `--iexclude` are two); a path matches
    /// when any list says so.
    lists: Vec<Vec<Rule>>,
}

#[derive(Clone, Debug)]
struct Rule {
    matcher: GlobMatcher,
    /// Matched against the entry's name rather than its path.
    on_name: bool,
    negated: bool,
}

impl Patterns {
    /// `exact` patterns are matched as written, `folded` ones ignoring case.
    pub fn new(exact: &[String], folded: &[String]) -> Result<Patterns> {
        let mut lists = Vec::new();
        for (patterns, fold) in [(exact, false), (folded, true)] {
            let rules = patterns.iter().map(|p| rule(p, fold)).collect::<Result<Vec<_>>>()?;
            if !rules.is_empty() {
                lists.push(rules);
            }
        }
        Ok(Patterns { lists })
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Whether the absolute `path` matches.
    pub fn matches(&self, path: &Path) -> bool {
        let name = path.file_name().map(Path::new);
        self.lists.iter().any(|rules| {
            let last = rules.iter().rev().find(|r| match (r.on_name, name) {
                (true, Some(n)) => r.matcher.is_match(n),
                (true, None) => false,
                (false, _) => r.matcher.is_match(path),
            });
            last.is_some_and(|r| !r.negated)
        })
    }
}

fn rule(pattern: &str, fold: bool) -> Result<Rule> {
    let bad = |why: String| Error::Invalid(format!("bad pattern {pattern:?}: {why}"));
    let (negated, p) = match pattern.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    if p.is_empty() {
        return Err(bad("it is empty".into()));
    }
    let on_name = !p.contains('/');
    let glob = if on_name || p.starts_with('/') { p.to_string() } else { format!("**/{p}") };
    let matcher = GlobBuilder::new(glob.trim_end_matches('/'))
        .literal_separator(true)
        .case_insensitive(fold)
        .build()
        .map_err(|e| bad(e.kind().to_string()))?
        .compile_matcher();
    Ok(Rule { matcher, on_name, negated })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(exact: &[&str], folded: &[&str], path: &str) -> bool {
        let s = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        Patterns::new(&s(exact), &s(folded)).unwrap().matches(Path::new(path))
    }

    #[test]
    fn restic_rules() {
        assert!(m(&["*.log"], &[], "/var/x/a.log"));
        assert!(!m(&["*.log"], &[], "/var/x/a.log.gz"));
        assert!(m(&["data/doc"], &[], "/home/me/data/doc"));
        assert!(m(&["data/doc"], &[], "/data/doc"));
        assert!(!m(&["data/doc"], &[], "/home/me/mydata/doc"));
        assert!(m(&["/home/*/cache"], &[], "/home/me/cache"));
        assert!(!m(&["/home/*/cache"], &[], "/srv/home/me/cache"));
        assert!(!m(&["/home/*"], &[], "/home/me/cache"), "* crossed a /");
        assert!(m(&["/home/**/cache"], &[], "/home/me/x/cache"));
        assert!(m(&["data/"], &[], "/x/data"));
        // Negation: the last match decides.
        assert!(!m(&["*.c", "!keep.c"], &[], "/src/keep.c"));
        assert!(m(&["*.c", "!keep.c"], &[], "/src/drop.c"));
        assert!(m(&["!keep.c", "*.c"], &[], "/src/keep.c"));
        // Case folding only where asked.
        assert!(!m(&["*.JPG"], &[], "/p/a.jpg"));
        assert!(m(&[], &["*.JPG"], "/p/a.jpg"));
        assert!(m(&["*.txt"], &["*.JPG"], "/p/a.jpg"));
        assert!(!m(&[], &[], "/p/a.jpg"));
    }

    #[test]
    fn bad_patterns_are_named() {
        for p in ["!", "a[", ""] {
            let e = Patterns::new(&[p.to_string()], &[]).unwrap_err().to_string();
            assert!(e.contains(&format!("{p:?}")), "{e}");
        }
    }
}
