//! Custom hierarchy files: the DAG they give, and every error.

use super::*;
use crate::hierarchy::*;

#[test]
fn custom_yaml_builds_the_dag_with_levels_order_and_label_sets() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "h.yaml", WORLD);
    let h = Hierarchy::from_custom_file(&path, &world_labels()).unwrap();
    assert_eq!(h.name(), Some("world"));
    assert_eq!(
        keys(&h),
        [
            "pet",
            "whole", // level 0
            "animal",
            "vehicle", // 1
            "bird",
            "boat",
            "car",
            "mammal", // 2
            "carnivore",
            "sparrow", // 3
            "cat",
            "dog", // 4: 1 + max(carnivore 3, pet 0)
        ]
    );
    let levels: Vec<u32> = h.concepts().iter().map(|c| c.level).collect();
    assert_eq!(levels, [0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4]);
    for (i, c) in h.concepts().iter().enumerate() {
        assert_eq!(c.id, ConceptId(i as u32));
        assert_eq!(c.key, c.name);
    }
    let cat = get(&h, "cat");
    assert_eq!(keys_of(&h, &cat.parents), ["pet", "carnivore"]);
    assert!(cat.children.is_empty());
    assert_eq!(cat.labels, [2]);
    assert_eq!(get(&h, "whole").labels, [0, 1, 2, 3, 4]);
    assert_eq!(get(&h, "pet").labels, [2, 3]);
    assert_eq!(
        keys_of(&h, &get(&h, "whole").children),
        ["animal", "vehicle"]
    );
    assert_eq!(
        keys_of(&h, h.concepts_of_label(2)),
        ["pet", "whole", "animal", "mammal", "carnivore", "cat"]
    );
    assert_eq!(
        keys_of(&h, h.concepts_of_label(4)),
        ["whole", "animal", "bird", "sparrow"]
    );
    assert_eq!(h.find("nothing"), None);
    assert_eq!(h.concepts_per_level(), [2, 2, 4, 2, 2]);
}

#[test]
fn custom_json_reads_like_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = write(dir.path(), "h.yml", WORLD);
    let json = write(
        dir.path(),
        "h.json",
        r#"{"name": "world", "children": {
            "whole": ["animal", "vehicle"], "animal": ["mammal", "bird"],
            "mammal": ["carnivore"], "carnivore": ["cat", "dog"], "bird": ["sparrow"],
            "vehicle": ["car", "boat"], "pet": ["cat", "dog"]}}"#,
    );
    let from_yaml = Hierarchy::from_custom_file(&yaml, &world_labels()).unwrap();
    let from_json = Hierarchy::from_custom_file(&json, &world_labels()).unwrap();
    assert_eq!(from_yaml.concepts(), from_json.concepts());
}

/// The error of reading `text` as a custom file named `name` over `world_labels()`.
fn custom_error(name: &str, text: &str) -> (HierarchyError, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, text);
    let err = Hierarchy::from_custom_file(&path, &world_labels()).expect_err("must fail");
    let message = err.to_string();
    assert!(message.contains(name), "error names the file: {message}");
    (err, message)
}

#[test]
fn custom_cycle_is_named() {
    let (err, message) = custom_error(
        "cycle.yaml",
        "children:\n  whole: [animal, vehicle]\n  animal: [mammal]\n  mammal: [carnivore, sparrow]\n  \
         carnivore: [cat, dog, animal]\n  vehicle: [car, boat]\n",
    );
    let HierarchyError::Cycle { cycle, .. } = err else {
        panic!("{message}")
    };
    assert_eq!(cycle.first(), cycle.last());
    let mut on_cycle = cycle[..cycle.len() - 1].to_vec();
    on_cycle.sort();
    assert_eq!(on_cycle, ["animal", "carnivore", "mammal"]);
    assert!(
        message.contains("cycle") && message.contains(" → "),
        "{message}"
    );
}

#[test]
fn custom_self_loop_is_a_cycle() {
    let (err, message) = custom_error(
        "self.yaml",
        "children:\n  whole: [whole, cat, dog, car, boat, sparrow]\n",
    );
    assert!(
        matches!(err, HierarchyError::Cycle { ref cycle, .. } if cycle == &["whole", "whole"]),
        "{message}"
    );
}

#[test]
fn custom_unknown_label_is_named() {
    let (err, message) = custom_error(
        "unknown.yaml",
        "children:\n  whole: [cat, dog, car, boat, sparrow, horse, animal]\n  animal: []\n",
    );
    let HierarchyError::UnknownLabel { names, .. } = err else {
        panic!("{message}")
    };
    assert_eq!(names, ["horse", "animal"]);
    assert!(
        message.contains("not dataset labels: horse, animal"),
        "{message}"
    );
}

#[test]
fn custom_duplicate_parent_is_named_with_its_line() {
    let (err, message) = custom_error(
        "dup.yaml",
        "children:\n  whole: [animal, vehicle]\n  animal: [cat, dog]\n  vehicle: [car, boat]\n  \
         animal: [sparrow]\n",
    );
    let HierarchyError::DuplicateName { line, name, .. } = err else {
        panic!("{message}")
    };
    assert_eq!((line, name.as_str()), (Some(5), "animal"));
    assert!(
        message.contains("dup.yaml:5") && message.contains("line 3"),
        "{message}"
    );
}

#[test]
fn custom_duplicate_parent_in_json_is_named() {
    let (err, message) = custom_error(
        "dup.json",
        "{\"children\": {\n  \"whole\": [\"cat\", \"dog\", \"car\"],\n  \"whole\": [\"boat\", \"sparrow\"]\n}}\n",
    );
    assert!(
        matches!(err, HierarchyError::DuplicateName { line: Some(3), ref name, .. } if name == "whole"),
        "{message}"
    );
}

#[test]
fn custom_duplicate_child_is_named() {
    let (err, message) = custom_error(
        "dupchild.yaml",
        "children:\n  whole: [cat, dog, car, boat, sparrow, dog]\n",
    );
    assert!(
        matches!(err, HierarchyError::DuplicateName { ref name, line: Some(2), .. } if name == "dog"),
        "{message}"
    );
    assert!(message.contains("twice"), "{message}");
}

#[test]
fn custom_label_missing_from_the_file_is_named() {
    let (err, message) = custom_error("missing.yaml", "children:\n  whole: [cat, dog, car]\n");
    let HierarchyError::LabelWithoutConcept { labels, .. } = err else {
        panic!("{message}")
    };
    assert_eq!(labels, ["boat", "sparrow"]);
    assert!(message.contains("not in"), "{message}");
}

#[test]
fn custom_label_with_no_concept_above_is_named() {
    // sparrow is in the file, but only as a parent: no concept lies above it.
    let (err, message) = custom_error(
        "orphan.yaml",
        "children:\n  whole: [cat, dog, car, boat]\n  sparrow: []\n",
    );
    let HierarchyError::LabelWithoutConcept { labels, .. } = err else {
        panic!("{message}")
    };
    assert_eq!(labels, ["sparrow"]);
    assert!(message.contains("never a child"), "{message}");
}

#[test]
fn custom_malformed_yaml_names_the_line() {
    let (err, message) = custom_error(
        "bad.yaml",
        "children:\n  whole: [cat, dog]\n  animal: [car, boat\n  vehicle: [sparrow]\n",
    );
    let HierarchyError::Syntax { line, .. } = err else {
        panic!("{message}")
    };
    assert!(matches!(line, Some(3..=4)), "{message}");
    assert!(
        message.contains(&format!("bad.yaml:{}", line.unwrap())),
        "{message}"
    );
}

#[test]
fn custom_wrong_shape_and_unknown_fields_are_syntax_errors() {
    let (err, message) = custom_error("shape.yaml", "children:\n  whole: cat\n");
    assert!(
        matches!(err, HierarchyError::Syntax { line: Some(2), .. }),
        "{message}"
    );
    let (err, message) = custom_error("field.yaml", "name: x\nchildrn:\n  whole: [cat]\n");
    assert!(matches!(err, HierarchyError::Syntax { .. }), "{message}");
    assert!(message.contains("childrn"), "{message}");
    let (err, message) = custom_error("bad.json", "{\"children\": {\n\"whole\": [\"cat\",]\n}}");
    assert!(
        matches!(err, HierarchyError::Syntax { line: Some(2), .. }),
        "{message}"
    );
    let (err, message) = custom_error("h.toml", "children = 1");
    assert!(matches!(err, HierarchyError::Syntax { .. }), "{message}");
}

#[test]
fn dataset_label_listed_twice_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "h.yaml", "children:\n  whole: [cat]\n");
    let err = Hierarchy::from_custom_file(&path, &labels(&["cat", "cat"])).unwrap_err();
    assert!(
        matches!(err, HierarchyError::DuplicateName { ref name, .. } if name == "cat"),
        "{err}"
    );
}

#[test]
fn a_label_may_be_a_parent_of_other_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "h.yaml",
        "children:\n  animal: [dog]\n  dog: [husky]\n",
    );
    let h = Hierarchy::from_custom_file(&path, &labels(&["dog", "husky"])).unwrap();
    assert_eq!(keys(&h), ["animal", "dog", "husky"]);
    assert_eq!(get(&h, "dog").labels, [0, 1]);
    assert_eq!(
        keys_of(&h, h.concepts_of_label(1)),
        ["animal", "dog", "husky"]
    );
}
