//! Kinds and states of volumes and backups. Each has one string form, written at
//! the edges that need strings (catalog columns, repository manifests, the wire)
//! and parsed back there; everywhere else they are these enums.

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value a string form names, if any.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// What a volume is.
    VolumeKind {
        /// A sparse file under the data directory, created and deleted by us.
        #[default]
        Managed = "managed",
        /// A file or block device at a path the user gave; never deleted by us.
        Registered = "registered",
        /// Virtual: the delta between two backups, read-only (see `delta`).
        Delta = "delta",
    }
}

string_enum! {
    /// How a backup found its changed blocks (the backup record's `change_source`).
    ChangeSource {
        /// It read every allocated block and compared each with its parent's.
        #[default]
        FullCompare = "full-compare",
        /// It read only the blocks our target's write tracking marked since its parent
        /// (and compared those): see `tracking`.
        DirtyBitmap = "dirty-bitmap",
    }
}

string_enum! {
    /// What a backup holds: every allocated block, or those changed since its parent.
    BackupKind {
        #[default]
        Full = "full",
        Incremental = "incremental",
    }
}

string_enum! {
    /// Where a volume or backup is in its life (cinder's words).
    Status {
        Available = "available",
        /// Where every record starts.
        #[default]
        Creating = "creating",
        Restoring = "restoring",
        Deleting = "deleting",
        Error = "error",
        /// A volume attached to the iSCSI target.
        InUse = "in-use",
    }
}

string_enum! {
    /// What a token may do (Keystone's default roles).
    Role {
        /// Its own project: read and list only.
        #[default]
        Reader = "reader",
        /// Its own project: create, read, delete.
        Member = "member",
        /// Every project; acts for one when the call names it.
        Admin = "admin",
    }
}

impl Role {
    /// Whether this role may do what `needed` may: admin ⊇ member ⊇ reader.
    pub fn at_least(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }

    fn rank(self) -> u8 {
        match self {
            Role::Reader => 0,
            Role::Member => 1,
            Role::Admin => 2,
        }
    }
}

string_enum! {
    /// What a quota limits (cinder's names, plus delta volumes).
    QuotaResource {
        /// Managed and registered volumes (delta volumes have their own quota).
        #[default]
        Volumes = "volumes",
        /// GiB of those volumes' sizes.
        Gigabytes = "gigabytes",
        /// Backups not in `error`.
        Backups = "backups",
        /// GiB of those backups' volume sizes (cinder counts the volume, not the bytes stored).
        BackupGigabytes = "backup_gigabytes",
        DeltaVolumes = "delta_volumes",
    }
}

string_enum! {
    /// What a job claimed on a volume does (one job per volume, across every node).
    JobKind {
        #[default]
        Backup = "backup",
        Restore = "restore",
        /// Merging a chain into a synthetic full (`backup merge`, retention).
        Merge = "merge",
    }
}

string_enum! {
    /// How a policy's run on one volume ended (`policy show`, `report`).
    RunOutcome {
        /// Its backup, retention or copy is still going.
        #[default]
        Running = "running",
        /// The backup is available; retention and the copy (if any) did their work.
        Succeeded = "succeeded",
        /// The backup failed, or retention or the copy did (the error says which).
        Failed = "failed",
    }
}

string_enum! {
    /// Whether a node of the cluster is heartbeating (`service list`).
    NodeState {
        #[default]
        Up = "up",
        Down = "down",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_form_parses_back_and_serde_agrees() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for k in VolumeKind::ALL {
            assert_eq!(VolumeKind::parse(k.as_str()), Some(*k));
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{k}\""));
        }
        for k in BackupKind::ALL {
            assert_eq!(BackupKind::parse(k.as_str()), Some(*k));
            assert_eq!(
                serde_json::from_str::<BackupKind>(&format!("\"{k}\"")).unwrap(),
                *k
            );
        }
        assert_eq!(Status::parse("in_use"), None);
    }
}
