//! The selection rules on a hand-built graph, and concepts.json.

use super::*;
use crate::hierarchy::*;

#[test]
fn select_roots_keeps_what_is_below_them() {
    let h = select(Selection {
        roots: vec!["vehicle".into()],
        ..Default::default()
    })
    .unwrap_err();
    let HierarchyError::LabelWithoutConcept { labels, why } = h else {
        panic!("{h}")
    };
    assert_eq!(labels, ["cat", "dog", "sparrow"]);
    assert!(why.contains("vehicle"), "{why}");

    let h = select(Selection {
        roots: vec!["vehicle".into(), "animal".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        keys(&h),
        [
            "animal",
            "vehicle",
            "bird",
            "boat",
            "car",
            "mammal",
            "carnivore",
            "sparrow",
            "cat",
            "dog"
        ]
    );
    // pet is not below a root: cat keeps only one parent.
    assert_eq!(keys_of(&h, &get(&h, "cat").parents), ["carnivore"]);
    assert_eq!(h.images(h.find("animal").unwrap()), Some(10));
}

#[test]
fn select_roots_can_drop_uncovered_labels() {
    let h = select(Selection {
        roots: vec!["pet".into()],
        drop_uncovered: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(keys(&h), ["pet", "cat", "dog"]);
    assert_eq!(h.labels(), world_labels(), "label indices never shift");
    assert!(h.concepts_of_label(0).is_empty());
    assert_eq!(keys_of(&h, h.concepts_of_label(3)), ["pet", "dog"]);
}

#[test]
fn select_unknown_root_is_an_error() {
    let err = select(Selection {
        roots: vec!["plant".into()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, HierarchyError::BadRoot { ref root, .. } if root == "plant"),
        "{err}"
    );
}

#[test]
fn select_min_images_removes_small_concepts_and_keeps_counts_above() {
    let h = select(Selection {
        min_images: Some(3),
        ..Default::default()
    })
    .unwrap();
    // bird and sparrow (1 image) and boat (2) go; sparrow's images still count for animal.
    assert_eq!(
        keys(&h),
        [
            "pet",
            "whole",
            "animal",
            "vehicle",
            "car",
            "mammal",
            "carnivore",
            "cat",
            "dog"
        ]
    );
    assert_eq!(h.images(h.find("animal").unwrap()), Some(10));
    assert_eq!(keys_of(&h, h.concepts_of_label(4)), ["whole", "animal"]);
    assert_eq!(keys_of(&h, h.concepts_of_label(0)), ["whole", "vehicle"]);
    assert_eq!(keys_of(&h, &get(&h, "vehicle").children), ["car"]);
}

#[test]
fn select_min_images_that_removes_every_concept_of_a_label_is_an_error() {
    // vehicle has 5 images: car and boat lose every concept.
    let err = select(Selection {
        roots: vec!["vehicle".into(), "animal".into()],
        min_images: Some(6),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, HierarchyError::LabelWithoutConcept { ref labels, .. } if labels == &["boat", "car"]),
        "{err}"
    );
    let (_dir, graph) = world_graph();
    let err = graph
        .select(
            &Selection {
                min_images: Some(1),
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
    assert!(matches!(err, HierarchyError::Selection(_)), "{err}");
}

#[test]
fn select_collapse_keeps_the_node_closest_to_the_leaves() {
    let h = select(Selection {
        collapse: true,
        ..Default::default()
    })
    .unwrap();
    // mammal (one child: carnivore) and bird (one child: the label sparrow) go.
    assert_eq!(
        keys(&h),
        [
            "pet",
            "whole",
            "animal",
            "vehicle",
            "boat",
            "car",
            "carnivore",
            "sparrow",
            "cat",
            "dog"
        ]
    );
    assert_eq!(
        keys_of(&h, &get(&h, "animal").children),
        ["carnivore", "sparrow"]
    );
    assert_eq!(keys_of(&h, &get(&h, "carnivore").parents), ["animal"]);
    assert_eq!(get(&h, "carnivore").level, 2);
}

#[test]
fn select_collapse_reaches_a_fixed_point_and_never_removes_labels() {
    let dir = tempfile::tempdir().unwrap();
    // a → b → c → {x}: a, b and c all have one child; x is a label with one child label y.
    let path = write(
        dir.path(),
        "h.yaml",
        "children:\n  a: [b]\n  b: [c]\n  c: [x]\n  x: [y]\n",
    );
    let graph = ConceptGraph::from_custom_file(&path, &labels(&["x", "y"])).unwrap();
    let h = graph
        .select(
            &Selection {
                collapse: true,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(keys(&h), ["x", "y"]);
    assert_eq!(keys_of(&h, h.concepts_of_label(1)), ["x", "y"]);
    // g → {p, x} and p → {x}: once p gives way to x, g has the one child x and goes too.
    let path = write(
        dir.path(),
        "g.yaml",
        "children:\n  g: [p, x, q]\n  p: [x]\n  q: [x]\n",
    );
    let graph = ConceptGraph::from_custom_file(&path, &labels(&["x"])).unwrap();
    let h = graph
        .select(
            &Selection {
                collapse: true,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(keys(&h), ["x"]);
}

#[test]
fn select_max_depth_cuts_by_level_and_labels_keep_their_ancestors() {
    let h = select(Selection {
        max_depth: Some(2),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        keys(&h),
        ["pet", "whole", "animal", "vehicle", "bird", "boat", "car", "mammal"]
    );
    assert_eq!(
        keys_of(&h, h.concepts_of_label(2)),
        ["pet", "whole", "animal", "mammal"]
    );
    assert!(get(&h, "mammal").children.is_empty());
    assert_eq!(get(&h, "mammal").labels, [2, 3]);
    let h = select(Selection {
        max_depth: Some(0),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(keys(&h), ["pet", "whole"]);
}

#[test]
fn select_applies_collapse_before_depth() {
    let h = select(Selection {
        roots: vec!["animal".into()],
        collapse: true,
        max_depth: Some(1),
        drop_uncovered: true,
        ..Default::default()
    })
    .unwrap();
    // After collapsing mammal and bird, carnivore and sparrow are at level 1.
    assert_eq!(keys(&h), ["animal", "carnivore", "sparrow"]);
}

// ---- concepts.json ---------------------------------------------------------------------

#[test]
fn concepts_json_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    for (counts, selection) in [
        (None, Selection::default()),
        (
            Some(&WORLD_COUNTS[..]),
            Selection {
                collapse: true,
                max_depth: Some(3),
                ..Default::default()
            },
        ),
        (
            Some(&WORLD_COUNTS[..]),
            Selection {
                roots: vec!["pet".into()],
                drop_uncovered: true,
                ..Default::default()
            },
        ),
    ] {
        let (_d, graph) = world_graph();
        let h = graph.select(&selection, counts).unwrap();
        let path = dir.path().join("concepts.json");
        h.write_json(&path).unwrap();
        let back = Hierarchy::read_json(&path).unwrap();
        assert_eq!(back, h);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.contains("\"images\""), counts.is_some());
    }
}

#[test]
fn concepts_json_inconsistencies_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concepts.json");
    let h = select(Selection::default()).unwrap();
    h.write_json(&path).unwrap();
    let good = std::fs::read_to_string(&path).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
    value["concepts"][3]["level"] = 7.into();
    std::fs::write(&path, value.to_string()).unwrap();
    let err = Hierarchy::read_json(&path).unwrap_err();
    assert!(matches!(err, HierarchyError::Inconsistent { .. }), "{err}");

    let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
    value["concepts"][0]["images"] = 999.into();
    std::fs::write(&path, value.to_string()).unwrap();
    assert!(Hierarchy::read_json(&path)
        .unwrap_err()
        .to_string()
        .contains("images"));

    std::fs::write(&path, "{\n  \"format\": \"hint-concepts\",\n  oops\n}").unwrap();
    let err = Hierarchy::read_json(&path).unwrap_err();
    assert!(
        matches!(err, HierarchyError::Syntax { line: Some(3), .. }),
        "{err}"
    );
}

/// Found by the property tests (`common/tests/properties/hierarchy.rs`): image counts that
/// add up past u64, or a parent whose level is u32::MAX, are errors, not an overflow panic.
#[test]
fn concepts_json_with_overflowing_numbers_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concepts.json");
    let h = select(Selection::default())
        .unwrap()
        .with_image_counts(vec![1; WORLD_COUNTS.len()])
        .unwrap();
    h.write_json(&path).unwrap();
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();

    let mut value = good.clone();
    value["label_images"][0] = u64::MAX.into();
    std::fs::write(&path, value.to_string()).unwrap();
    let err = Hierarchy::read_json(&path).unwrap_err();
    assert!(matches!(err, HierarchyError::Inconsistent { .. }), "{err}");

    // Concept 0 claims concept 1 as a parent, whose level is u32::MAX.
    let mut value = good;
    value["concepts"][0]["parents"] = serde_json::json!([1]);
    value["concepts"][1]["level"] = u32::MAX.into();
    std::fs::write(&path, value.to_string()).unwrap();
    let err = Hierarchy::read_json(&path).unwrap_err();
    assert!(matches!(err, HierarchyError::Inconsistent { .. }), "{err}");
}

#[test]
fn invariants_hold_on_the_hand_built_graph() {
    for selection in [
        Selection::default(),
        Selection {
            collapse: true,
            ..Default::default()
        },
        Selection {
            min_images: Some(3),
            collapse: true,
            max_depth: Some(2),
            ..Default::default()
        },
        Selection {
            roots: vec!["pet".into()],
            drop_uncovered: true,
            ..Default::default()
        },
    ] {
        check_invariants(&select(selection).unwrap());
    }
}
