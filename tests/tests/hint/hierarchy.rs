//! `hint concepts` as a user runs it: the real binary on small ImageFolders, with WordNet
//! (read from the installed WordNet 3.0 files) and with custom hierarchy files, printing the
//! tree with image counts and writing concepts.json; and the errors a user meets.

use std::path::{Path, PathBuf};

use hint_common::hierarchy::{Hierarchy, WordNet};

use crate::support::{failed, hint, succeeded};

/// Fails (never skips) when the WordNet files are not installed.
fn require_wordnet() -> PathBuf {
    let dir = WordNet::default_dir();
    assert!(
        dir.join("data.noun").is_file() && dir.join("index.noun").is_file(),
        "WordNet 3.0 files are missing from {}: run scripts/bootstrap.sh (installs wordnet-base)",
        dir.display()
    );
    dir
}

/// An ImageFolder with `n` tiny PNGs per class.
fn image_folder(root: &Path, classes: &[(&str, usize)]) {
    for &(class, n) in classes {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let shade = (40 * i) as u8;
            image::RgbImage::from_pixel(4, 4, image::Rgb([shade, 128, 255 - shade]))
                .save(dir.join(format!("{class}_{i:03}.png")))
                .unwrap();
        }
    }
}

/// The printed line of the concept named `name` (the tree's drawing stripped).
fn line_of<'a>(tree: &'a str, name: &str) -> &'a str {
    tree.lines()
        .map(|l| l.trim_start_matches(['│', '├', '└', '─', ' ']))
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{tree}"))
}

/// husky 3, malamute 2, chihuahua 4, brambling 2, sports car 1.
const WORDNET_CLASSES: [(&str, usize); 5] = [
    ("n02110185", 3),
    ("n02110063", 2),
    ("n02085620", 4),
    ("n01530575", 2),
    ("n04285008", 1),
];

#[test]
fn concepts_prints_the_wordnet_tree_with_counts_and_writes_json() {
    require_wordnet();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    image_folder(&images, &WORDNET_CLASSES);
    let json = dir.path().join("concepts.json");
    let out = succeeded(
        &hint(&[
            "concepts",
            "--images",
            images.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ]),
        "hint concepts",
    );
    assert!(
        out.starts_with("entity.n.01 (n00001740)  12 images\n"),
        "{out}"
    );
    for (name, rest) in [
        ("animal.n.01", "(n00015388)  11 images"),
        ("mammal.n.01", "(n01861778)  9 images"),
        ("carnivore.n.01", "(n02075296)  9 images"),
        ("canine.n.02", "(n02083346)  9 images"),
        ("sled_dog.n.01", "(n02109811)  5 images"),
        ("bird.n.01", "(n01503061)  2 images"),
        ("vehicle.n.01", "(n04524313)  1 image"),
        ("siberian_husky.n.01", "(n02110185)  3 images  [label]"),
        ("chihuahua.n.03", "(n02085620)  4 images  [label]"),
        ("sports_car.n.01", "(n04285008)  1 image  [label]"),
    ] {
        assert_eq!(line_of(&out, name), format!("{name} {rest}"), "{out}");
    }
    // dog.n.01 has two hypernyms: shown under both, its subtree drawn once.
    let dog_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("dog.n.01 (n02084071)"))
        .collect();
    assert_eq!(dog_lines.len(), 2, "{out}");
    assert!(
        dog_lines
            .iter()
            .all(|l| l.contains("9 images  [2 parents; also under ")),
        "{out}"
    );
    assert!(dog_lines[1].contains("children shown above"), "{out}");
    assert_eq!(
        out.matches("siberian_husky.n.01 (n02110185)").count(),
        1,
        "{out}"
    );
    // Every line is indented one step per depth below its parent's line.
    let husky = out.lines().find(|l| l.contains("n02110185")).unwrap();
    let sled = out.lines().find(|l| l.contains("sled_dog.n.01")).unwrap();
    assert_eq!(
        husky.chars().count()
            - husky
                .trim_start_matches(['│', '├', '└', '─', ' '])
                .chars()
                .count(),
        sled.chars().count()
            - sled
                .trim_start_matches(['│', '├', '└', '─', ' '])
                .chars()
                .count()
            + 3,
        "{out}"
    );

    let hierarchy = Hierarchy::read_json(&json).unwrap();
    let summary = out.lines().rev().nth(1).unwrap();
    assert!(
        summary.starts_with(&format!(
            "{} concepts over 5 labels and 12 images; concepts per level 0:1 ",
            hierarchy.concepts().len()
        )),
        "{summary}"
    );
    assert_eq!(
        hierarchy.labels(),
        [
            "n01530575",
            "n02085620",
            "n02110063",
            "n02110185",
            "n04285008"
        ]
    );
    assert_eq!(hierarchy.label_images(), Some(&[2, 4, 2, 3, 1][..]));
    let dog = hierarchy.find("dog.n.01").unwrap();
    assert_eq!(hierarchy.images(dog), Some(9));
    assert_eq!(hierarchy.concept(dog).parents.len(), 2);
    let husky_concepts: Vec<&str> = hierarchy
        .concepts_of_label(3)
        .iter()
        .map(|&c| hierarchy.concept(c).name.as_str())
        .collect();
    for name in [
        "dog.n.01",
        "canine.n.02",
        "carnivore.n.01",
        "mammal.n.01",
        "vertebrate.n.01",
        "animal.n.01",
    ] {
        assert!(husky_concepts.contains(&name), "{name}: {husky_concepts:?}");
    }
    // Every concept of the file is printed.
    for c in hierarchy.concepts() {
        line_of(&out, &c.name);
    }
}

#[test]
fn concepts_selection_flags() {
    require_wordnet();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    image_folder(&images, &WORDNET_CLASSES);
    let images = images.to_str().unwrap();

    // A sports car is not an animal: an error naming it, unless dropped.
    let err = failed(
        &hint(&["concepts", "--images", images, "--root", "animal.n.01"]),
        "root animal",
    );
    assert!(
        err.contains("n04285008") && err.contains("animal.n.01"),
        "{err}"
    );
    let out = succeeded(
        &hint(&[
            "concepts",
            "--images",
            images,
            "--root",
            "animal",
            "--collapse",
            "--drop-uncovered",
        ]),
        "root animal, collapse",
    );
    assert!(
        out.starts_with("animal.n.01 (n00015388)  11 images\n"),
        "{out}"
    );
    assert!(
        !out.contains("canine.n.02") && !out.contains("mammal.n.01"),
        "{out}"
    );
    assert_eq!(
        line_of(&out, "sled_dog.n.01"),
        "sled_dog.n.01 (n02109811)  5 images"
    );
    assert!(
        out.contains("dropped labels (no concept): n04285008"),
        "{out}"
    );

    // Minimum images and depth.
    let out = succeeded(
        &hint(&[
            "concepts",
            "--images",
            images,
            "--root",
            "n00015388",
            "--min-images",
            "5",
            "--max-depth",
            "2",
            "--drop-uncovered",
        ]),
        "min images, depth",
    );
    assert_eq!(
        out.lines().next().unwrap(),
        "animal.n.01 (n00015388)  11 images",
        "{out}"
    );
    assert!(
        !out.contains("bird.n.01") && !out.contains("[label]"),
        "{out}"
    );
    // The 9 dogs reach animal.n.01 also through domestic_animal.n.01 (level 1); the 11
    // animals through chordate.n.01 (1) and vertebrate.n.01 (2); mammal.n.01 is level 3.
    assert_eq!(
        line_of(&out, "domestic_animal.n.01"),
        "domestic_animal.n.01 (n01317541)  9 images"
    );
    assert_eq!(
        line_of(&out, "vertebrate.n.01"),
        "vertebrate.n.01 (n01471682)  11 images"
    );
    assert!(!out.contains("mammal.n.01"), "{out}");
    assert!(
        out.contains("4 concepts over 5 labels and 12 images; concepts per level 0:1 1:2 2:1;"),
        "{out}"
    );

    let err = failed(
        &hint(&["concepts", "--images", images, "--root", "tree.n.01"]),
        "bad root",
    );
    assert!(err.contains("tree.n.01"), "{err}");
}

#[test]
fn concepts_with_a_custom_hierarchy_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    image_folder(&images, &[("cat", 2), ("dog", 3), ("car", 1)]);
    let images = images.to_str().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let good = file(
        "world.yaml",
        "name: world\nchildren:\n  whole: [animal, vehicle]\n  animal: [cat, dog]\n  vehicle: [car]\n  pet: [cat, dog]\n",
    );
    let out = succeeded(
        &hint(&["concepts", "--images", images, "--hierarchy", &good]),
        "custom",
    );
    assert_eq!(
        out,
        "pet  5 images\n\
         ├─ cat  2 images  [label]  [2 parents; also under animal]\n\
         └─ dog  3 images  [label]  [2 parents; also under animal]\n\
         whole  6 images\n\
         ├─ animal  5 images\n\
         │  ├─ cat  2 images  [label]  [2 parents; also under pet]\n\
         │  └─ dog  3 images  [label]  [2 parents; also under pet]\n\
         └─ vehicle  1 image\n   \
            └─ car  1 image  [label]\n\
         7 concepts over 3 labels and 6 images; concepts per level 0:2 1:2 2:3\n"
    );
    // The same images listed by a CSV manifest give the same tree.
    let mut csv = String::from("path,label\n");
    for (class, n) in [("car", 1), ("cat", 2), ("dog", 3)] {
        for i in 0..n {
            csv.push_str(&format!("images/{class}/{class}_{i:03}.png,{class}\n"));
        }
    }
    let manifest = file("manifest.csv", &csv);
    let from_csv = succeeded(
        &hint(&["concepts", "--images", &manifest, "--hierarchy", &good]),
        "custom, CSV manifest",
    );
    assert_eq!(from_csv, out);

    for (name, text, expected) in [
        (
            "cycle.yaml",
            "children:\n  whole: [a, car]\n  a: [b, cat]\n  b: [a, dog]\n",
            "cycle in the hierarchy: a → b → a",
        ),
        (
            "unknown.yaml",
            "children:\n  whole: [cat, dog, car, horse]\n",
            "horse",
        ),
        (
            "dup.yaml",
            "children:\n  whole: [animal, car]\n  animal: [cat]\n  animal: [dog]\n",
            "dup.yaml:4: duplicate name \"animal\"",
        ),
        (
            "missing.yaml",
            "children:\n  whole: [cat, dog]\n",
            "1 dataset label(s) with no concept: car",
        ),
        (
            "bad.yaml",
            "children:\n  whole: [cat, dog\n  x: [car]\n",
            "bad.yaml:",
        ),
    ] {
        let path = file(name, text);
        let err = failed(
            &hint(&["concepts", "--images", images, "--hierarchy", &path]),
            name,
        );
        assert!(err.contains(expected), "{name}: {err}");
    }
    // Labels that are not WordNet ids need a hierarchy file.
    let err = failed(&hint(&["concepts", "--images", images]), "no hierarchy");
    assert!(err.contains("--hierarchy"), "{err}");
}

#[test]
fn concepts_without_wordnet_files_says_how_to_install_them() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    image_folder(&images, &[("n02110185", 1)]);
    let err = failed(
        &hint(&[
            "concepts",
            "--images",
            images.to_str().unwrap(),
            "--wordnet",
            dir.path().to_str().unwrap(),
        ]),
        "no wordnet",
    );
    assert!(
        err.contains("data.noun") && err.contains("scripts/bootstrap.sh"),
        "{err}"
    );
}
