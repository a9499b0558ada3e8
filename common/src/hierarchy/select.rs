//! [`Selection`]: which concepts of a [`ConceptGraph`] a [`Hierarchy`] keeps (rules and their
//! order in the module docs of [`hierarchy`](super)).

use std::collections::{BTreeSet, VecDeque};

use super::graph::ConceptGraph;
use super::{Draft, Hierarchy, HierarchyError, Result};

/// Concept selection rules, applied in the order of the fields (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Keep only these concepts and what is below them (key, name or unambiguous lemma);
    /// empty = the graph's own roots.
    pub roots: Vec<String>,
    /// Remove concepts with fewer images at or under them (needs image counts).
    pub min_images: Option<u64>,
    /// Remove every non-label concept with exactly one child (the child takes its place).
    pub collapse: bool,
    /// Remove concepts whose level is greater than this (0 keeps only the roots).
    pub max_depth: Option<u32>,
    /// Drop dataset labels left without any concept instead of failing.
    pub drop_uncovered: bool,
}

impl ConceptGraph {
    /// Applies `selection`; `image_counts` (images per label, by label index) is needed by
    /// `min_images` and kept in the hierarchy (for `concepts.json` and printing).
    pub fn select(&self, selection: &Selection, image_counts: Option<&[u64]>) -> Result<Hierarchy> {
        if let Some(counts) = image_counts {
            if counts.len() != self.labels.len() {
                return Err(HierarchyError::Selection(format!(
                    "{} image counts for {} labels",
                    counts.len(),
                    self.labels.len()
                )));
            }
        }
        let n = self.nodes.len();
        // 1. Roots and everything below them.
        let roots = if selection.roots.is_empty() {
            let has_parent = self.has_parent();
            (0..n).filter(|&i| !has_parent[i]).collect()
        } else {
            selection
                .roots
                .iter()
                .map(|r| self.resolve_root(r))
                .collect::<Result<Vec<usize>>>()?
        };
        let mut alive = vec![false; n];
        let mut queue: VecDeque<usize> = roots.iter().copied().collect();
        for &r in &roots {
            alive[r] = true;
        }
        while let Some(p) = queue.pop_front() {
            for &c in &self.nodes[p].children {
                if !alive[c] {
                    alive[c] = true;
                    queue.push_back(c);
                }
            }
        }
        let outside: Vec<String> = (0..self.labels.len())
            .filter(|&l| !alive[self.label_node[l]])
            .map(|l| self.labels[l].clone())
            .collect();
        if !outside.is_empty() && !selection.drop_uncovered {
            let names: Vec<&str> = roots.iter().map(|&r| self.nodes[r].name.as_str()).collect();
            return Err(HierarchyError::LabelWithoutConcept {
                labels: outside,
                why: format!(
                    "under none of the roots: {}; choose other roots, or drop such labels",
                    names.join(", ")
                ),
            });
        }
        let mut children: Vec<BTreeSet<usize>> = (0..n)
            .map(|i| {
                if alive[i] {
                    self.nodes[i].children.clone()
                } else {
                    BTreeSet::new()
                }
            })
            .collect();
        let labels_under = labels_under(&self.nodes, &alive, &children, |i| self.nodes[i].label);

        // 2. Minimum images.
        if let Some(min) = selection.min_images {
            let counts = image_counts.ok_or_else(|| {
                HierarchyError::Selection("a minimum image count needs the images".into())
            })?;
            for i in 0..n {
                let images: u64 = labels_under[i].iter().map(|&l| counts[l as usize]).sum();
                if alive[i] && images < min {
                    alive[i] = false;
                }
            }
            prune_dead_children(&mut children, &alive);
        }

        // 3. Collapse single-child concepts into their child, to a fixed point: replacing a
        // concept by its child under a parent can leave that parent with one child, so the
        // parent is looked at again.
        if selection.collapse {
            let mut parents: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
            for p in (0..n).filter(|&p| alive[p]) {
                for &c in &children[p] {
                    parents[c].insert(p);
                }
            }
            let mut work: Vec<usize> = (0..n).rev().collect();
            while let Some(p) = work.pop() {
                if !alive[p] || self.nodes[p].label.is_some() || children[p].len() != 1 {
                    continue;
                }
                let only = children[p].pop_first().expect("one child");
                parents[only].remove(&p);
                for g in std::mem::take(&mut parents[p]) {
                    children[g].remove(&p);
                    children[g].insert(only);
                    parents[only].insert(g);
                    // g may now have one child (if `only` already was one): look again.
                    work.push(g);
                }
                alive[p] = false;
            }
        }

        // 4. Depth.
        if let Some(max) = selection.max_depth {
            let level = levels(&alive, &children);
            for i in 0..n {
                if alive[i] && level[i] > max {
                    alive[i] = false;
                }
            }
            prune_dead_children(&mut children, &alive);
        }

        let mut covered = vec![false; self.labels.len()];
        for i in (0..n).filter(|&i| alive[i]) {
            for &l in &labels_under[i] {
                covered[l as usize] = true;
            }
        }
        let removed: Vec<String> = (0..self.labels.len())
            .filter(|&l| !covered[l] && alive_before(&outside, &self.labels[l]))
            .map(|l| self.labels[l].clone())
            .collect();
        if !removed.is_empty() && !selection.drop_uncovered {
            return Err(HierarchyError::LabelWithoutConcept {
                labels: removed,
                why: "every concept at or above them was removed by the selection rules; \
                      lower the minimum image count, or drop such labels"
                    .into(),
            });
        }

        let mut draft_of = vec![usize::MAX; n];
        let mut drafts = Vec::new();
        for i in (0..n).filter(|&i| alive[i]) {
            draft_of[i] = drafts.len();
            drafts.push(Draft {
                key: self.nodes[i].key.clone(),
                name: self.nodes[i].name.clone(),
                children: BTreeSet::new(),
                labels: labels_under[i].clone(),
            });
        }
        for i in (0..n).filter(|&i| alive[i]) {
            drafts[draft_of[i]].children = children[i].iter().map(|&c| draft_of[c]).collect();
        }
        if drafts.is_empty() {
            return Err(HierarchyError::Selection("no concept is left".into()));
        }
        Hierarchy::assemble(
            &self.source,
            self.name.clone(),
            self.labels.clone(),
            image_counts.map(<[u64]>::to_vec),
            drafts,
        )
    }

    /// The node a root names: its key, its name, or an alias (lemma) only one node has.
    fn resolve_root(&self, root: &str) -> Result<usize> {
        let exact: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].key == root || self.nodes[i].name == root)
            .collect();
        if let [one] = exact[..] {
            return Ok(one);
        }
        let lower = root.to_lowercase();
        let by_alias: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].aliases.contains(&lower))
            .collect();
        match by_alias[..] {
            [one] => Ok(one),
            [] => Err(HierarchyError::BadRoot {
                root: root.to_string(),
                problem: format!(
                    "no concept above the dataset labels has this key, name or lemma (in {})",
                    self.source.display()
                ),
            }),
            _ => Err(HierarchyError::BadRoot {
                root: root.to_string(),
                problem: format!(
                    "ambiguous, it could be {}",
                    by_alias
                        .iter()
                        .map(|&i| format!("{} ({})", self.nodes[i].name, self.nodes[i].key))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }
}

/// Whether a label was under a root (not already reported or dropped as outside them).
fn alive_before(outside: &[String], label: &str) -> bool {
    !outside.iter().any(|o| o == label)
}

fn prune_dead_children(children: &mut [BTreeSet<usize>], alive: &[bool]) {
    for (i, cs) in children.iter_mut().enumerate() {
        if alive[i] {
            cs.retain(|&c| alive[c]);
        } else {
            cs.clear();
        }
    }
}

/// Dataset labels at or under each alive node (post-order over the alive DAG).
fn labels_under<N>(
    nodes: &[N],
    alive: &[bool],
    children: &[BTreeSet<usize>],
    label: impl Fn(usize) -> Option<u32>,
) -> Vec<BTreeSet<u32>> {
    let n = nodes.len();
    let mut under: Vec<Option<BTreeSet<u32>>> = vec![None; n];
    for start in (0..n).filter(|&i| alive[i]) {
        // Iterative post-order: a node's set is built once all its children's are.
        let mut stack = vec![(start, false)];
        while let Some((i, expanded)) = stack.pop() {
            if under[i].is_some() {
                continue;
            }
            if expanded {
                let mut set: BTreeSet<u32> = label(i).into_iter().collect();
                for &c in &children[i] {
                    set.extend(under[c].as_ref().expect("children first").iter().copied());
                }
                under[i] = Some(set);
            } else {
                stack.push((i, true));
                for &c in &children[i] {
                    if under[c].is_none() {
                        stack.push((c, false));
                    }
                }
            }
        }
    }
    under.into_iter().map(Option::unwrap_or_default).collect()
}

/// Level of each alive node: 0 for one without alive parents, else 1 + max over parents.
fn levels(alive: &[bool], children: &[BTreeSet<usize>]) -> Vec<u32> {
    let n = alive.len();
    let mut waiting = vec![0usize; n];
    for (p, cs) in children.iter().enumerate() {
        if alive[p] {
            for &c in cs {
                waiting[c] += 1;
            }
        }
    }
    let mut level = vec![0u32; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| alive[i] && waiting[i] == 0).collect();
    while let Some(p) = ready.pop() {
        for &c in &children[p] {
            level[c] = level[c].max(level[p] + 1);
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.push(c);
            }
        }
    }
    level
}
