//! The operator's `volume_roots`: the only places host paths may be registered or
//! restored onto. Paths are canonicalised first (symlinks, `..`), so a link inside a
//! root that points outside it, or `root/../etc/passwd`, is outside.

use std::path::{Component, Path, PathBuf};

/// Why a host path is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RootError {
    #[error("host path {path:?} cannot be used: the server has no volume_roots configured")]
    NoRoots { path: String },
    #[error(
        "host path {path:?} (resolved to {resolved:?}) is not under any of volume_roots {roots:?}"
    )]
    Outside {
        path: String,
        resolved: String,
        roots: Vec<String>,
    },
    #[error("host path {path:?}: {cause}")]
    Unresolvable { path: String, cause: String },
}

/// The canonical form of `path` when it lies under one of `roots` (themselves
/// canonicalised; a root that does not exist admits nothing).
pub fn admit(roots: &[PathBuf], path: &str) -> Result<PathBuf, RootError> {
    if roots.is_empty() {
        return Err(RootError::NoRoots { path: path.into() });
    }
    let roots_now: Vec<PathBuf> = roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect();
    let resolved = match std::fs::canonicalize(path) {
        Ok(p) => p,
        // A path that does not resolve is outside unless its text lies in a root: whether
        // `/dev/mem` exists is not told to someone who may not use it.
        Err(e) => {
            let lexical = lexical(Path::new(path));
            if roots_now.iter().any(|r| lexical.starts_with(r)) {
                return Err(RootError::Unresolvable {
                    path: path.into(),
                    cause: e.to_string(),
                });
            }
            lexical
        }
    };
    let inside = roots_now.iter().any(|root| resolved.starts_with(root));
    if inside {
        Ok(resolved)
    } else {
        Err(RootError::Outside {
            path: path.into(),
            resolved: resolved.display().to_string(),
            roots: roots.iter().map(|r| r.display().to_string()).collect(),
        })
    }
}

/// `path` with `.` and `..` resolved as text (no file system access).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_dotdot_out_of_a_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let inside = root.join("disk.img");
        std::fs::write(&inside, b"x").unwrap();
        let roots = vec![root.clone()];
        assert_eq!(
            admit(&roots, inside.to_str().unwrap()).unwrap(),
            std::fs::canonicalize(&inside).unwrap()
        );
        let outside = dir.path().join("secret");
        std::fs::write(&outside, b"x").unwrap();
        let link = root.join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(matches!(
            admit(&roots, link.to_str().unwrap()),
            Err(RootError::Outside { .. })
        ));
        let dotdot = format!("{}/../secret", root.display());
        assert!(matches!(
            admit(&roots, &dotdot),
            Err(RootError::Outside { .. })
        ));
        assert!(matches!(
            admit(&[], inside.to_str().unwrap()),
            Err(RootError::NoRoots { .. })
        ));
        // Missing paths: outside a root refused as outside, inside one unresolvable.
        assert!(matches!(
            admit(&roots, "/nonexistent/dev/mem"),
            Err(RootError::Outside { .. })
        ));
        let missing = format!("{}/missing.img", root.display());
        assert!(matches!(
            admit(&roots, &missing),
            Err(RootError::Unresolvable { .. })
        ));
        // A sibling whose name merely starts with the root's is outside.
        let sibling = dir.path().join("rootless");
        std::fs::write(&sibling, b"x").unwrap();
        assert!(admit(&roots, sibling.to_str().unwrap()).is_err());
    }
}
