//! Which backups a policy keeps: the newest `keep_last`, and those younger than
//! `keep_days`; with both, whatever either keeps. The rest of a chain goes by merging:
//! the oldest kept backup becomes a synthetic full (its ancestors merged into it), and
//! older chains, wholly outside what is kept, are deleted. A backup a delta volume uses
//! is never pruned, nor is the newest.

const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// The newest this many backups (0: no count rule).
    pub keep_last: u32,
    /// Backups younger than this many days (0: no age rule).
    pub keep_days: u32,
}

impl Retention {
    /// Whether it prunes anything at all (neither rule set: everything is kept).
    pub fn prunes(&self) -> bool {
        self.keep_last > 0 || self.keep_days > 0
    }
}

/// One available backup of a volume, as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    pub id: String,
    pub chain_id: String,
    /// Whether it is an incremental (it has a parent to merge).
    pub incremental: bool,
    pub created_at_ms: i64,
    /// A delta volume's source, or otherwise held: never pruned.
    pub in_use: bool,
}

/// What retention does to a volume's backups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruning {
    /// The oldest kept backup, when it is an incremental: merged into a synthetic full,
    /// which removes every backup before it in its chain.
    pub merge_into: Option<String>,
    /// Backups of older chains that nothing kept needs, newest first (children before
    /// their parents).
    pub delete: Vec<String>,
}

/// Plans the pruning of `backups` (one volume's available backups, oldest first) as of
/// `now_ms`.
pub fn plan_pruning(backups: &[Generation], retention: Retention, now_ms: i64) -> Pruning {
    let n = backups.len();
    if !retention.prunes() || n == 0 {
        return Pruning::default();
    }
    let by_count = if retention.keep_last > 0 {
        n.saturating_sub(retention.keep_last as usize)
    } else {
        n
    };
    let by_age = if retention.keep_days > 0 {
        let cutoff = now_ms - i64::from(retention.keep_days) * DAY_MS;
        backups
            .iter()
            .position(|b| b.created_at_ms > cutoff)
            .unwrap_or(n)
    } else {
        n
    };
    // Kept: a suffix (both rules keep suffixes; their union is the longer), never empty,
    // reaching back to the oldest backup in use.
    let mut first_kept = by_count.min(by_age).min(n - 1);
    if let Some(used) = backups[..first_kept].iter().position(|b| b.in_use) {
        first_kept = used;
    }
    let oldest_kept = &backups[first_kept];
    let merged_away =
        |b: &Generation| oldest_kept.incremental && b.chain_id == oldest_kept.chain_id;
    Pruning {
        merge_into: (oldest_kept.incremental && backups[..first_kept].iter().any(merged_away))
            .then(|| oldest_kept.id.clone()),
        delete: backups[..first_kept]
            .iter()
            .rev()
            .filter(|b| !merged_away(b))
            .map(|b| b.id.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_800_000_000_000;

    /// Backups one a day, ending today; `fulls` marks where chains start.
    fn daily(n: usize, fulls: &[usize]) -> Vec<Generation> {
        let mut chain = String::new();
        (0..n)
            .map(|i| {
                if i == 0 || fulls.contains(&i) {
                    chain = format!("b{i}");
                }
                Generation {
                    id: format!("b{i}"),
                    chain_id: chain.clone(),
                    incremental: chain != format!("b{i}"),
                    created_at_ms: NOW - (n - 1 - i) as i64 * DAY_MS,
                    in_use: false,
                }
            })
            .collect()
    }

    fn keep(keep_last: u32, keep_days: u32) -> Retention {
        Retention {
            keep_last,
            keep_days,
        }
    }

    #[test]
    fn keep_last_merges_the_oldest_kept() {
        let p = plan_pruning(&daily(7, &[]), keep(3, 0), NOW);
        assert_eq!(p.merge_into.as_deref(), Some("b4"));
        assert!(p.delete.is_empty());
    }

    #[test]
    fn either_rule_keeps() {
        // Three by count, five by age (days 0..4 are younger than 5 days): five kept.
        let p = plan_pruning(&daily(10, &[]), keep(3, 5), NOW);
        assert_eq!(p.merge_into.as_deref(), Some("b5"));
        let p = plan_pruning(&daily(10, &[]), keep(8, 1), NOW);
        assert_eq!(p.merge_into.as_deref(), Some("b2"));
    }

    #[test]
    fn older_chains_are_deleted_newest_first() {
        let p = plan_pruning(&daily(8, &[3, 6]), keep(3, 0), NOW);
        // Kept b5 (an incremental of chain b3), b6 (a full), b7: b3 and b4 merge into b5,
        // chain b0 goes whole.
        assert_eq!(p.merge_into.as_deref(), Some("b5"));
        assert_eq!(p.delete, ["b2", "b1", "b0"]);
        // The oldest kept a full: nothing to merge.
        let p = plan_pruning(&daily(8, &[3, 6]), keep(2, 0), NOW);
        assert_eq!(p.merge_into, None);
        assert_eq!(p.delete, ["b5", "b4", "b3", "b2", "b1", "b0"]);
    }

    #[test]
    fn delta_sources_and_the_newest_stay() {
        let mut backups = daily(7, &[]);
        backups[1].in_use = true;
        let p = plan_pruning(&backups, keep(2, 0), NOW);
        assert_eq!(p.merge_into.as_deref(), Some("b1"));
        // Nothing younger than a day but today's: the newest is kept whatever the rules.
        let p = plan_pruning(&daily(3, &[]), keep(0, 1), NOW + 5 * DAY_MS);
        assert_eq!(p.merge_into.as_deref(), Some("b2"));
        assert_eq!(
            plan_pruning(&daily(3, &[]), keep(0, 0), NOW),
            Pruning::default()
        );
    }

    proptest! {
        /// Whatever either rule keeps, and every backup in use, survives; what goes is
        /// exactly what precedes the oldest kept.
        #[test]
        fn keeps_what_the_rules_keep(
            n in 1usize..30,
            fulls in prop::collection::vec(1usize..30, 0..4),
            used in prop::collection::vec(0usize..30, 0..3),
            keep_last in 0u32..10,
            keep_days in 0u32..10,
        ) {
            let mut backups = daily(n, &fulls);
            for u in used.iter().filter(|u| **u < n) {
                backups[*u].in_use = true;
            }
            let p = plan_pruning(&backups, keep(keep_last, keep_days), NOW);
            let mut gone: Vec<String> = p.delete.clone();
            if let Some(target) = &p.merge_into {
                let t = backups.iter().position(|b| &b.id == target).unwrap();
                gone.extend(backups[..t].iter().filter(|b| b.chain_id == backups[t].chain_id).map(|b| b.id.clone()));
            }
            for (i, b) in backups.iter().enumerate() {
                let young = keep_days > 0 && b.created_at_ms > NOW - i64::from(keep_days) * DAY_MS;
                let recent = keep_last > 0 && i + keep_last as usize >= n;
                let kept = !gone.contains(&b.id);
                if young || recent || b.in_use || i == n - 1 || (keep_last == 0 && keep_days == 0) {
                    prop_assert!(kept, "{} pruned", b.id);
                }
                if kept {
                    // Kept backups form a suffix.
                    prop_assert!(backups[i..].iter().all(|later| !gone.contains(&later.id)));
                }
            }
            let mut unique = gone.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(unique.len(), gone.len());
        }
    }
}
