//! WordNet 3.0 read from the installed files (they must be there: see `wordnet()`).

use std::sync::OnceLock;

use super::*;
use crate::hierarchy::wordnet::parse_id;
use crate::hierarchy::*;

/// The installed WordNet database, read once. Fails (never skips) when it is missing.
fn wordnet() -> &'static WordNet {
    static WORDNET: OnceLock<WordNet> = OnceLock::new();
    WORDNET.get_or_init(|| {
        WordNet::open(&WordNet::default_dir()).unwrap_or_else(|e| {
            panic!("{e}\nThe WordNet tests need the WordNet 3.0 files: run scripts/bootstrap.sh")
        })
    })
}

fn wordnet_hierarchy(ids: &[&str], selection: &Selection) -> Result<Hierarchy> {
    ConceptGraph::from_wordnet(wordnet(), &labels(ids))?.select(selection, None)
}

#[test]
fn wordnet_names_and_ids_match_the_installed_files() {
    let wn = wordnet();
    for (id, name) in [
        ("n02110185", "siberian_husky.n.01"),
        ("n02084071", "dog.n.01"),
        ("n02083346", "canine.n.02"),
        ("n02075296", "carnivore.n.01"),
        ("n01861778", "mammal.n.01"),
        ("n01471682", "vertebrate.n.01"),
        ("n00015388", "animal.n.01"),
        ("n00003553", "whole.n.02"),
        ("n00001740", "entity.n.01"),
        ("n02958343", "car.n.01"),
        ("n01503061", "bird.n.01"),
    ] {
        let synset = wn.synset_by_id(id).unwrap();
        assert_eq!(wn.name_of(&synset).unwrap(), name, "{id}");
        assert_eq!(wn.lookup(name), [parse_id(id).unwrap()], "{name}");
    }
    let husky = wn.synset_by_id("n02110185").unwrap();
    assert_eq!(husky.lemmas, ["Siberian_husky"]);
    assert_eq!(husky.hypernyms, [2109811]);
    assert!(husky.gloss.starts_with("breed of sled dog"));
    assert_eq!(wn.lookup("dog").len(), 7, "dog has seven noun senses");
}

#[test]
fn wordnet_husky_reaches_dog_canine_carnivore_mammal_vertebrate_animal() {
    let h = wordnet_hierarchy(&["n02110185"], &Selection::default()).unwrap();
    let above: Vec<&str> = keys_of(&h, h.concepts_of_label(0));
    for id in [
        "n02109811", // sled_dog.n.01
        "n02103406", // working_dog.n.01
        "n02084071", // dog.n.01
        "n02083346", // canine.n.02
        "n02075296", // carnivore.n.01
        "n01861778", // mammal.n.01
        "n01471682", // vertebrate.n.01
        "n01466257", // chordate.n.01
        "n00015388", // animal.n.01
        "n01317541", // domestic_animal.n.01: the second path, through dog's second hypernym
        "n00001740", // entity.n.01
        "n02110185", // the label itself
    ] {
        assert!(above.contains(&id), "{id} not above the husky: {above:?}");
    }
    let roots: Vec<&str> = h.roots().map(|c| c.name.as_str()).collect();
    assert_eq!(roots, ["entity.n.01"]);
    let husky = get(&h, "n02110185");
    assert_eq!(
        husky.name, "siberian_husky.n.01",
        "a label concept is keyed by its label and named by its synset"
    );
    assert!(husky.children.is_empty());
    assert_eq!(get(&h, "mammal.n.01").key, "n01861778");
}

#[test]
fn wordnet_keeps_both_hypernym_paths_of_a_dag() {
    let h = wordnet_hierarchy(&["n02084071"], &Selection::default()).unwrap();
    let dog = get(&h, "n02084071");
    let parents: Vec<&str> = keys_of(&h, &dog.parents);
    let mut sorted = parents.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["n01317541", "n02083346"],
        "canine.n.02 and domestic_animal.n.01"
    );
    // Both paths meet again at animal.n.01; the level is the longer path's.
    let animal = get(&h, "n00015388");
    assert!(dog.level > get(&h, "n01317541").level + 1);
    assert!(animal.level < get(&h, "n01317541").level);
    assert_eq!(
        dog.level,
        1 + get(&h, "n02083346").level.max(get(&h, "n01317541").level)
    );
}

#[test]
fn wordnet_car_and_bird_closures() {
    let h = wordnet_hierarchy(&["n01530575", "n04285008"], &Selection::default()).unwrap();
    let brambling: Vec<&str> = h
        .concepts_of_label(0)
        .iter()
        .map(|&c| h.concept(c).name.as_str())
        .collect();
    for name in [
        "finch.n.01",
        "passerine.n.01",
        "bird.n.01",
        "vertebrate.n.01",
        "animal.n.01",
    ] {
        assert!(
            brambling.contains(&name),
            "{name} not above brambling: {brambling:?}"
        );
    }
    let car: Vec<&str> = h
        .concepts_of_label(1)
        .iter()
        .map(|&c| h.concept(c).name.as_str())
        .collect();
    for name in [
        "car.n.01",
        "motor_vehicle.n.01",
        "self-propelled_vehicle.n.01",
        "wheeled_vehicle.n.01",
        "vehicle.n.01",
        "artifact.n.01",
        "whole.n.02",
    ] {
        assert!(car.contains(&name), "{name} not above sports car: {car:?}");
    }
    assert!(!car.contains(&"animal.n.01"));
    assert_eq!(
        get(&h, "whole.n.02").labels,
        [0, 1],
        "organisms and artifacts are wholes"
    );
}

#[test]
fn wordnet_roots_by_name_id_and_lemma() {
    let ids = ["n02110185", "n01530575"];
    for root in ["animal.n.01", "n00015388", "animal", "Animal", "beast.n.01"] {
        let h = wordnet_hierarchy(
            &ids,
            &Selection {
                roots: vec![root.into()],
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{root}: {e}"));
        let roots: Vec<&str> = h.roots().map(|c| c.name.as_str()).collect();
        assert_eq!(roots, ["animal.n.01"], "{root}");
    }
    // A sports car is not an animal: the label is named.
    let err = wordnet_hierarchy(
        &["n02110185", "n04285008"],
        &Selection {
            roots: vec!["animal.n.01".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, HierarchyError::LabelWithoutConcept { ref labels, .. } if labels == &["n04285008"]),
        "{err}"
    );
    let err = wordnet_hierarchy(
        &ids,
        &Selection {
            roots: vec!["tree.n.01".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, HierarchyError::BadRoot { .. }), "{err}");
    // frank.n.02 (a sausage) is also called dog: with a husky, the lemma is ambiguous.
    let err = wordnet_hierarchy(
        &["n02110185", "n07676602"],
        &Selection {
            roots: vec!["dog".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("ambiguous") && message.contains("dog.n.01"),
        "{message}"
    );
    assert!(matches!(err, HierarchyError::BadRoot { .. }), "{err}");
}

#[test]
fn wordnet_selection_on_real_ids() {
    // husky, malamute (n02110063), brambling: under animal, collapse leaves
    // animal → {sled_dog (two labels), brambling}? sled_dog.n.01 has both dogs, and the chain
    // chordate → vertebrate → … collapses into the lowest node with two children.
    let ids = ["n02110063", "n02110185", "n01530575"];
    let h = wordnet_hierarchy(
        &ids,
        &Selection {
            roots: vec!["animal.n.01".into()],
            collapse: true,
            ..Default::default()
        },
    )
    .unwrap();
    let names: Vec<&str> = h.concepts().iter().map(|c| c.name.as_str()).collect();
    assert!(!names.contains(&"canine.n.02"), "{names:?}");
    assert!(
        names.contains(&"brambling.n.01") && names.contains(&"siberian_husky.n.01"),
        "{names:?}"
    );
    for c in h.concepts() {
        assert!(
            c.children.len() != 1 || h.labels().contains(&c.key),
            "{} has one child",
            c.name
        );
    }
    let depth1 = wordnet_hierarchy(
        &ids,
        &Selection {
            roots: vec!["animal".into()],
            max_depth: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    let names: Vec<&str> = depth1.concepts().iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains(&"animal.n.01") && names.contains(&"chordate.n.01"),
        "{names:?}"
    );
    assert!(depth1.concepts().iter().all(|c| c.level <= 1));
}

#[test]
fn wordnet_bad_labels_are_named() {
    let err = ConceptGraph::from_wordnet(wordnet(), &labels(&["n02110185", "husky"])).unwrap_err();
    assert!(err.to_string().contains("husky"), "{err}");
    let err = ConceptGraph::from_wordnet(wordnet(), &labels(&["n02110186"])).unwrap_err();
    assert!(matches!(err, HierarchyError::UnknownSynset(_)), "{err}");
    assert!(err.to_string().contains("n02110186"), "{err}");
}

#[test]
fn wordnet_instance_hypernyms_are_parents() {
    // Hegira (n00060548) is an instance of migration (n00058743).
    let h = wordnet_hierarchy(&["n00060548"], &Selection::default()).unwrap();
    assert_eq!(keys_of(&h, &get(&h, "n00060548").parents), ["n00058743"]);
}

#[test]
fn wordnet_missing_files_say_how_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let err = WordNet::open(dir.path()).unwrap_err();
    assert!(matches!(err, HierarchyError::WordNetMissing { .. }));
    assert!(err.to_string().contains("scripts/bootstrap.sh"), "{err}");
}

#[test]
fn wordnet_malformed_data_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let header = "  1 This is a fake WordNet header line\n";
    let first = format!("{:08} 03 n 01 thing 0 000 | a thing\n", header.len());
    let second_at = header.len() + first.len();
    let second = format!(
        "{second_at:08} 03 n 01 gadget 0 001 @ {:08} n | no target\n",
        header.len()
    );
    std::fs::write(
        dir.path().join("data.noun"),
        format!("{header}{first}{second}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("index.noun"),
        format!(
            "{header}gadget n 1 1 @ 1 0 {second_at:08}\nthing n 1 0 1 0 {:08}\n",
            header.len()
        ),
    )
    .unwrap();
    let wn = WordNet::open(dir.path()).unwrap();
    let thing = wn.synset(header.len() as u32).unwrap();
    assert_eq!(wn.name_of(&thing).unwrap(), "thing.n.01");
    let err = wn.synset(second_at as u32).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, HierarchyError::MalformedWordNet { line: 3, .. }),
        "{message}"
    );
    assert!(message.contains("data.noun:3"), "{message}");

    std::fs::write(dir.path().join("index.noun"), "thing n x 0 1 0 00000000\n").unwrap();
    let err = WordNet::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("index.noun:1"), "{err}");
}

#[test]
fn wordnet_every_noun_synset_parses_and_has_a_name() {
    let wn = wordnet();
    let text = std::fs::read_to_string(wn.dir().join("data.noun")).unwrap();
    let mut count = 0;
    for line in text.lines().filter(|l| !l.starts_with(' ')) {
        let offset: u32 = line[..8].parse().unwrap();
        let synset = wn.synset(offset).unwrap();
        let name = wn
            .name_of(&synset)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(wn.lookup(&name), [offset], "{name}");
        count += 1;
    }
    assert_eq!(count, 82115, "WordNet 3.0 has 82,115 noun synsets");
}

#[test]
fn wordnet_a_thousand_leaf_labels_keep_every_invariant() {
    let wn = wordnet();
    let text = std::fs::read_to_string(wn.dir().join("data.noun")).unwrap();
    // Every 40th synset without hyponyms, as ImageNet's classes mostly are.
    let ids: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter(|l| {
            let pointers = l.split(" | ").next().unwrap();
            !pointers.contains(" ~ ") && !pointers.contains(" ~i ")
        })
        .step_by(40)
        .take(1000)
        .map(|l| format!("n{}", &l[..8]))
        .collect();
    assert_eq!(ids.len(), 1000);
    let counts: Vec<u64> = (0..ids.len() as u64).map(|i| i % 7 + 1).collect();
    let graph = ConceptGraph::from_wordnet(wn, &ids).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for selection in [
        Selection::default(),
        Selection {
            collapse: true,
            ..Default::default()
        },
        Selection {
            max_depth: Some(4),
            ..Default::default()
        },
        Selection {
            roots: vec!["animal.n.01".into(), "artifact".into()],
            min_images: Some(10),
            collapse: true,
            max_depth: Some(6),
            drop_uncovered: true,
        },
    ] {
        let h = graph.select(&selection, Some(&counts)).unwrap();
        check_invariants(&h);
        if selection.collapse {
            for c in h.concepts() {
                let is_label = h.labels().contains(&c.key);
                assert!(
                    is_label || c.children.len() != 1,
                    "{selection:?}: {}",
                    c.name
                );
            }
        }
        if let Some(max) = selection.max_depth {
            assert!(h.concepts().iter().all(|c| c.level <= max));
        }
        if let Some(min) = selection.min_images {
            assert!(h.concepts().iter().all(|c| h.images(c.id).unwrap() >= min));
        }
        if selection.drop_uncovered {
            let dropped = (0..1000)
                .filter(|&l| h.concepts_of_label(l).is_empty())
                .count();
            assert!(dropped > 0 && dropped < 1000, "{dropped} labels dropped");
        } else {
            assert!((0..1000).all(|l| !h.concepts_of_label(l).is_empty()));
        }
        let path = dir.path().join("concepts.json");
        h.write_json(&path).unwrap();
        assert_eq!(Hierarchy::read_json(&path).unwrap(), h);
    }
}
