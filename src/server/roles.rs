//! What each role may do (format-spec §17.3), decided from the request alone: the server never
//! reads an object's plaintext, so a rule can only name an operation and a kind of object.

use crate::backend::Kind;

/// Kopia-style roles, each including the one before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// List and fetch objects: restore, mount, check, snapshots.
    Read,
    /// Read, and add new packs, snapshots and locks; delete only the locks this token wrote.
    Append,
    /// Append, and forget and prune: delete snapshots, packs, locks, write condemned lists.
    Delete,
    /// Everything, also key slots, epochs, the config (`init`) and `replace` (key rotation).
    Admin,
}

/// What a request asks to do to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    /// A new object (never over an existing one).
    Write,
    /// Over an existing object (`Backend::replace`).
    Replace,
    Delete,
}

impl Op {
    pub fn verb(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Replace => "replace",
            Op::Delete => "delete",
        }
    }
}

/// The answer for one request: allowed, allowed if the token owns the lock, or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Only a lock this token itself wrote.
    IfOwnLock,
    Deny,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Read, Role::Append, Role::Delete, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Append => "append",
            Role::Delete => "delete",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    pub fn may(self, op: Op, kind: Kind) -> Verdict {
        use Kind::*;
        let allow = |b: bool| if b { Verdict::Allow } else { Verdict::Deny };
        match (op, self) {
            (Op::Read, _) | (_, Role::Admin) => Verdict::Allow,
            (_, Role::Read) | (Op::Replace, _) => Verdict::Deny,
            (Op::Write, Role::Append) => allow(matches!(kind, Pack | Snapshot | Lock)),
            (Op::Write, Role::Delete) => allow(matches!(kind, Pack | Snapshot | Lock | Condemned)),
            (Op::Delete, Role::Append) if kind == Lock => Verdict::IfOwnLock,
            (Op::Delete, Role::Append) => Verdict::Deny,
            (Op::Delete, Role::Delete) => allow(matches!(kind, Pack | Snapshot | Lock | Condemned)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_never_deletes_or_overwrites_data() {
        for kind in Kind::ALL {
            assert_eq!(Role::Append.may(Op::Replace, kind), Verdict::Deny, "{kind:?}");
            assert_eq!(Role::Delete.may(Op::Replace, kind), Verdict::Deny, "{kind:?}");
            assert_eq!(Role::Read.may(Op::Write, kind), Verdict::Deny, "{kind:?}");
            assert_eq!(Role::Read.may(Op::Read, kind), Verdict::Allow, "{kind:?}");
            let delete = Role::Append.may(Op::Delete, kind);
            assert_eq!(delete, if kind == Kind::Lock { Verdict::IfOwnLock } else { Verdict::Deny }, "{kind:?}");
            assert_eq!(Role::Admin.may(Op::Replace, kind), Verdict::Allow);
        }
        assert_eq!(Role::Append.may(Op::Write, Kind::Condemned), Verdict::Deny);
        assert_eq!(Role::Delete.may(Op::Delete, Kind::Pack), Verdict::Allow);
        assert_eq!(Role::Delete.may(Op::Delete, Kind::Key), Verdict::Deny);
        assert!(Role::ALL.iter().all(|r| Role::parse(r.name()) == Some(*r)));
    }
}
