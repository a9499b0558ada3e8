//! Tests of the hierarchy module: custom files and their errors ([`custom`]), the selection
//! rules on a hand-built graph and concepts.json ([`select`]), and WordNet read from the
//! installed database ([`wordnet`]).

mod custom;
mod select;
mod wordnet;

use std::path::{Path, PathBuf};

use super::*;

pub(super) fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

pub(super) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Keys of the concepts in id order.
pub(super) fn keys(h: &Hierarchy) -> Vec<&str> {
    h.concepts().iter().map(|c| c.key.as_str()).collect()
}

/// Keys of a list of concept ids.
pub(super) fn keys_of<'a>(h: &'a Hierarchy, ids: &[ConceptId]) -> Vec<&'a str> {
    ids.iter().map(|&id| h.concept(id).key.as_str()).collect()
}

pub(super) fn get<'a>(h: &'a Hierarchy, key: &str) -> &'a Concept {
    h.concept(
        h.find(key)
            .unwrap_or_else(|| panic!("{key} not in {:?}", keys(h))),
    )
}

// ---- the hand-built world: a small DAG over five labels ---------------------------------

pub(super) const WORLD: &str = "\
name: world
children:
  whole: [animal, vehicle]
  animal: [mammal, bird]
  mammal: [carnivore]
  carnivore: [cat, dog]
  bird: [sparrow]
  vehicle: [car, boat]
  pet: [cat, dog]
";

pub(super) fn world_labels() -> Vec<String> {
    labels(&["boat", "car", "cat", "dog", "sparrow"])
}

/// Images per label of `world_labels()`.
pub(super) const WORLD_COUNTS: [u64; 5] = [2, 3, 5, 4, 1];

// ---- helpers over the world ------------------------------------------------------------

pub(super) fn world_graph() -> (tempfile::TempDir, ConceptGraph) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "h.yaml", WORLD);
    let graph = ConceptGraph::from_custom_file(&path, &world_labels()).unwrap();
    (dir, graph)
}

pub(super) fn select(selection: Selection) -> Result<Hierarchy> {
    let (_dir, graph) = world_graph();
    graph.select(&selection, Some(&WORLD_COUNTS))
}

/// Checks what every hierarchy promises (contract of [`Hierarchy`] and [`Concept`]).
pub(super) fn check_invariants(h: &Hierarchy) {
    let concepts = h.concepts();
    for (pos, c) in concepts.iter().enumerate() {
        assert_eq!(c.id, ConceptId(pos as u32));
        assert_eq!(h.find(&c.key), Some(c.id), "{}", c.key);
        if pos > 0 {
            let prev = &concepts[pos - 1];
            assert!(
                (prev.level, &prev.key) < (c.level, &c.key),
                "order at {}",
                c.key
            );
        }
        assert!(c.parents.windows(2).all(|w| w[0] < w[1]), "{}", c.key);
        assert!(c.children.windows(2).all(|w| w[0] < w[1]), "{}", c.key);
        assert!(c.labels.windows(2).all(|w| w[0] < w[1]), "{}", c.key);
        let expected = c
            .parents
            .iter()
            .map(|&p| h.concept(p).level + 1)
            .max()
            .unwrap_or(0);
        assert_eq!(c.level, expected, "level of {}", c.key);
        for &p in &c.parents {
            assert!(h.concept(p).children.contains(&c.id), "{} ↔ {}", p, c.key);
            assert!(c.labels.iter().all(|l| h.concept(p).labels.contains(l)));
        }
        for &ch in &c.children {
            assert!(h.concept(ch).parents.contains(&c.id));
        }
        if let Some(l) = h.labels().iter().position(|l| *l == c.key) {
            assert!(
                c.labels.contains(&(l as u32)),
                "a label concept covers its label"
            );
        }
    }
    for l in 0..h.labels().len() as u32 {
        let expected: Vec<ConceptId> = concepts
            .iter()
            .filter(|c| c.labels.contains(&l))
            .map(|c| c.id)
            .collect();
        assert_eq!(h.concepts_of_label(l), expected, "label {l}");
    }
}
