//! [`ConceptGraph`]: every concept above a dataset's labels, before selection.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use super::wordnet::{format_id, parse_id, WordNet};
use super::{HierarchyError, Result};

/// One node of a [`ConceptGraph`].
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// Stable identity (WordNet id or custom name; a dataset label for label nodes).
    pub key: String,
    /// For people.
    pub name: String,
    /// Other names a root may be given by (WordNet lemmas and `lemma.n.NN` names).
    pub aliases: Vec<String>,
    /// Children, by node index.
    pub children: BTreeSet<usize>,
    /// The dataset label this node is, if any.
    pub label: Option<u32>,
}

/// Every concept above a dataset's labels (a DAG, all paths kept), before a
/// [`Selection`](super::Selection) cuts it down to a [`Hierarchy`](super::Hierarchy).
#[derive(Clone, Debug)]
pub struct ConceptGraph {
    /// Where it came from, for errors.
    pub(crate) source: PathBuf,
    /// The hierarchy's name, if the source has one.
    pub(crate) name: Option<String>,
    /// Dataset labels by label index.
    pub(crate) labels: Vec<String>,
    pub(crate) nodes: Vec<Node>,
    /// The node of each label.
    pub(crate) label_node: Vec<usize>,
}

impl ConceptGraph {
    /// The dataset labels, by label index.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Number of concepts (dataset labels included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no concept (never true for a graph over at least one label).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The hypernym closure of `labels`, which must all be WordNet noun synset ids
    /// (`n02084071`). Hypernyms and instance hypernyms are both parents; every path is kept.
    /// Every concept's key is its id (for labels: the label) and its name the synset's
    /// (`siberian_husky.n.01`), so Φ and reports read as words.
    pub fn from_wordnet(wordnet: &WordNet, labels: &[String]) -> Result<ConceptGraph> {
        check_unique_labels(wordnet.dir(), labels)?;
        let not_ids: Vec<&str> = labels
            .iter()
            .filter(|l| parse_id(l).is_none())
            .map(String::as_str)
            .collect();
        if !not_ids.is_empty() {
            return Err(HierarchyError::UnknownSynset(format!(
                "{} label(s) are not WordNet noun ids like n02084071: {}",
                not_ids.len(),
                not_ids.join(", ")
            )));
        }
        let mut nodes: Vec<Node> = Vec::new();
        let mut by_offset: HashMap<u32, usize> = HashMap::new();
        let mut queue = VecDeque::new();
        let mut label_node = Vec::with_capacity(labels.len());
        for (i, label) in labels.iter().enumerate() {
            let offset = parse_id(label).expect("checked above");
            let synset = wordnet.synset(offset).map_err(|e| match e {
                HierarchyError::UnknownSynset(why) => {
                    HierarchyError::UnknownSynset(format!("dataset label {label}: {why}"))
                }
                other => other,
            })?;
            let node = nodes.len();
            nodes.push(Node {
                key: label.clone(),
                name: wordnet.name_of(&synset)?,
                aliases: wordnet.aliases(&synset)?,
                children: BTreeSet::new(),
                label: Some(i as u32),
            });
            by_offset.insert(offset, node);
            label_node.push(node);
            queue.push_back((node, synset));
        }
        while let Some((node, synset)) = queue.pop_front() {
            for &h in synset.hypernyms.iter().chain(&synset.instance_hypernyms) {
                let parent = match by_offset.get(&h) {
                    Some(&p) => p,
                    None => {
                        let hyper = wordnet.synset(h)?;
                        let p = nodes.len();
                        nodes.push(Node {
                            key: format_id(h),
                            name: wordnet.name_of(&hyper)?,
                            aliases: wordnet.aliases(&hyper)?,
                            children: BTreeSet::new(),
                            label: None,
                        });
                        by_offset.insert(h, p);
                        queue.push_back((p, hyper));
                        p
                    }
                };
                nodes[parent].children.insert(node);
            }
        }
        let graph = ConceptGraph {
            source: wordnet.dir().join("data.noun"),
            name: Some("wordnet-3.0".into()),
            labels: labels.to_vec(),
            nodes,
            label_node,
        };
        graph.check_acyclic()?;
        Ok(graph)
    }

    /// A graph from parent → children entries over `labels` (what a custom file holds, in
    /// file order), checked as the module docs say: no parent given twice, no child twice
    /// under one parent, no cycle, every leaf a dataset label, every dataset label some
    /// concept's child. `source` names the origin in errors; `lines` holds each entry's line
    /// there where known (it may be shorter than `entries`, or empty).
    pub fn from_entries(
        source: &Path,
        name: Option<String>,
        labels: &[String],
        entries: &[(String, Vec<String>)],
        lines: &[Option<usize>],
    ) -> Result<ConceptGraph> {
        check_unique_labels(source, labels)?;
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut defined: HashMap<&str, usize> = HashMap::new();
        for (e, (parent, children)) in entries.iter().enumerate() {
            let line = lines.get(e).copied().flatten();
            if parent.trim().is_empty() {
                return Err(HierarchyError::Syntax {
                    path: source.to_path_buf(),
                    line,
                    problem: "empty concept name".into(),
                });
            }
            if let Some(first) = defined.insert(parent, e) {
                let first_line = lines.get(first).copied().flatten();
                return Err(HierarchyError::DuplicateName {
                    path: source.to_path_buf(),
                    line,
                    name: parent.clone(),
                    problem: format!(
                        "its children are listed twice (first{})",
                        first_line.map_or(String::new(), |l| format!(" at line {l}"))
                    ),
                });
            }
            let p = node_of(parent, &mut index, &mut nodes);
            for child in children {
                if child.trim().is_empty() {
                    return Err(HierarchyError::Syntax {
                        path: source.to_path_buf(),
                        line,
                        problem: format!("empty child name under {parent}"),
                    });
                }
                let c = node_of(child, &mut index, &mut nodes);
                if !nodes[p].children.insert(c) {
                    return Err(HierarchyError::DuplicateName {
                        path: source.to_path_buf(),
                        line,
                        name: child.clone(),
                        problem: format!("listed twice among the children of {parent}"),
                    });
                }
            }
        }
        let mut label_node = Vec::with_capacity(labels.len());
        let mut missing = Vec::new();
        for (i, label) in labels.iter().enumerate() {
            match index.get(label.as_str()) {
                Some(&n) => {
                    nodes[n].label = Some(i as u32);
                    label_node.push(n);
                }
                None => {
                    missing.push(label.clone());
                    label_node.push(usize::MAX);
                }
            }
        }
        let graph = ConceptGraph {
            source: source.to_path_buf(),
            name,
            labels: labels.to_vec(),
            nodes,
            label_node,
        };
        graph.check_acyclic()?;
        let unknown: Vec<String> = graph
            .nodes
            .iter()
            .filter(|n| n.children.is_empty() && n.label.is_none())
            .map(|n| n.name.clone())
            .collect();
        if !unknown.is_empty() {
            return Err(HierarchyError::UnknownLabel {
                path: source.to_path_buf(),
                names: unknown,
                known: labels.to_vec(),
            });
        }
        if !missing.is_empty() {
            return Err(HierarchyError::LabelWithoutConcept {
                labels: missing,
                why: format!("not in {}", source.display()),
            });
        }
        let has_parent = graph.has_parent();
        let orphans: Vec<String> = labels
            .iter()
            .zip(&graph.label_node)
            .filter(|&(_, &n)| !has_parent[n])
            .map(|(l, _)| l.clone())
            .collect();
        if !orphans.is_empty() {
            return Err(HierarchyError::LabelWithoutConcept {
                labels: orphans,
                why: format!("never a child of a concept in {}", source.display()),
            });
        }
        Ok(graph)
    }

    /// Whether each node has a parent.
    pub(crate) fn has_parent(&self) -> Vec<bool> {
        let mut has = vec![false; self.nodes.len()];
        for n in &self.nodes {
            for &c in &n.children {
                has[c] = true;
            }
        }
        has
    }

    fn check_acyclic(&self) -> Result<()> {
        match find_cycle(self.nodes.len(), |i| self.nodes[i].children.iter().copied()) {
            None => Ok(()),
            Some(cycle) => Err(HierarchyError::Cycle {
                path: self.source.clone(),
                cycle: cycle.iter().map(|&i| self.nodes[i].name.clone()).collect(),
            }),
        }
    }
}

/// The node named `name`, added (key = name = `name`) when new.
fn node_of<'a>(name: &'a str, index: &mut HashMap<&'a str, usize>, nodes: &mut Vec<Node>) -> usize {
    if let Some(&n) = index.get(name) {
        return n;
    }
    nodes.push(Node {
        key: name.to_string(),
        name: name.to_string(),
        aliases: Vec::new(),
        children: BTreeSet::new(),
        label: None,
    });
    index.insert(name, nodes.len() - 1);
    nodes.len() - 1
}

fn check_unique_labels(source: &Path, labels: &[String]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for l in labels {
        if !seen.insert(l.as_str()) {
            return Err(HierarchyError::DuplicateName {
                path: source.to_path_buf(),
                line: None,
                name: l.clone(),
                problem: "the dataset lists this label twice".into(),
            });
        }
    }
    Ok(())
}

/// A cycle of the graph with `n` nodes and these children, as node indices with the first
/// repeated at the end; `None` when it is acyclic. Iterative depth-first search.
pub(crate) fn find_cycle<I>(n: usize, children: impl Fn(usize) -> I) -> Option<Vec<usize>>
where
    I: Iterator<Item = usize>,
{
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; n];
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        let mut path: Vec<usize> = vec![start];
        let mut stack: Vec<Vec<usize>> = vec![children(start).collect()];
        mark[start] = Mark::OnPath;
        while let Some(pending) = stack.last_mut() {
            match pending.pop() {
                Some(c) => match mark[c] {
                    Mark::New => {
                        mark[c] = Mark::OnPath;
                        path.push(c);
                        stack.push(children(c).collect());
                    }
                    Mark::OnPath => {
                        let from = path.iter().position(|&p| p == c).expect("on the path");
                        let mut cycle = path[from..].to_vec();
                        cycle.push(c);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                },
                None => {
                    stack.pop();
                    let done = path.pop().expect("path follows the stack");
                    mark[done] = Mark::Done;
                }
            }
        }
    }
    None
}
