//! `hint synth` as a user runs it: the real binary, twice with one seed (identical trees),
//! the layout other stages read, annotations read back with the VOC reader, and the
//! errors a user meets.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use hint_common::annotations::voc;
use hint_common::hierarchy::Hierarchy;

use crate::support::{failed, hint_command, succeeded};

const LEAVES: [&str; 8] = [
    "bus",
    "car",
    "cat",
    "dog",
    "duck",
    "parrot",
    "sailboat",
    "steamship",
];

fn synth(out: &Path, extra: &[&str]) -> Output {
    hint_command()
        .args(["synth", "--out", out.to_str().unwrap()])
        .args(extra)
        .output()
        .expect("starting hint")
}

/// Every file under `root` by `/`-joined relative path.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

#[test]
fn same_seed_gives_identical_worlds_in_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let args = ["--seed", "7", "--per-class", "4", "--size", "48"];
    let printed = succeeded(&synth(&a, &args), "hint synth");
    assert!(printed.contains("wrote 32 images"), "{printed}");
    assert!(
        printed.contains("mammal (fur, four_legs) → cat, dog"),
        "{printed}"
    );
    succeeded(&synth(&b, &args), "hint synth");
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, bytes) in &ta {
        assert!(
            tb[name] == *bytes,
            "{name} differs between two runs with seed 7"
        );
    }

    let mut expected: Vec<String> = vec!["hierarchy.yaml".into(), "world.json".into()];
    for (kind, ext) in [("images", "png"), ("annotations", "xml"), ("masks", "png")] {
        for leaf in LEAVES {
            for k in 0..4 {
                expected.push(format!("{kind}/{leaf}/{leaf}_{k:05}.{ext}"));
            }
        }
    }
    expected.sort();
    assert_eq!(ta.keys().cloned().collect::<Vec<_>>(), expected);

    let annotations = voc::read_dir(&a.join("annotations")).unwrap();
    assert_eq!(annotations.len(), 32);
    for annotation in &annotations {
        let leaf = LEAVES[annotation.id as usize / 4];
        assert_eq!(annotation.label, leaf);
        let image = a.join("images").join(leaf).join(&annotation.path);
        let decoded = image::open(&image).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (48, 48));
        let mask = image::open(a.join("masks").join(leaf).join(&annotation.path))
            .unwrap()
            .to_luma8();
        let object = &annotation.boxes[0];
        assert_eq!(object.label, leaf);
        // Every mask pixel is inside the box and the box is tight on all four sides.
        let inside = |x: u32, y: u32| {
            (x as f32) >= object.xmin
                && (x as f32) < object.xmax
                && (y as f32) >= object.ymin
                && (y as f32) < object.ymax
        };
        let on: Vec<(u32, u32)> = mask
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] == 255)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(!on.is_empty());
        assert!(on.iter().all(|&(x, y)| inside(x, y)));
        assert!(on.iter().any(|&(x, _)| x as f32 == object.xmin));
        assert!(on.iter().any(|&(x, _)| x as f32 + 1.0 == object.xmax));
        assert!(on.iter().any(|&(_, y)| y as f32 == object.ymin));
        assert!(on.iter().any(|&(_, y)| y as f32 + 1.0 == object.ymax));
    }

    let labels: Vec<String> = LEAVES.iter().map(|s| s.to_string()).collect();
    let hierarchy = Hierarchy::from_custom_file(&a.join("hierarchy.yaml"), &labels).unwrap();
    let vehicle = hierarchy.concept(hierarchy.find("vehicle").unwrap());
    assert_eq!(vehicle.labels, [0, 1, 6, 7]);
    let world: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("world.json")).unwrap()).unwrap();
    assert_eq!(world["seed"], 7);
    assert_eq!(world["size"], 48);
    assert_eq!(world["images"], 32);
    assert_eq!(world["classes"][2]["name"], "cat");

    // Another seed, another world.
    let c = dir.path().join("c");
    succeeded(
        &synth(&c, &["--seed", "8", "--per-class", "4", "--size", "48"]),
        "hint synth",
    );
    let tc = tree(&c);
    assert_ne!(
        tc["images/cat/cat_00000.png"],
        ta["images/cat/cat_00000.png"]
    );
}

#[test]
fn refuses_a_non_empty_directory_and_bad_sizes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "x").unwrap();
    let message = failed(&synth(dir.path(), &["--per-class", "1"]), "hint synth");
    assert!(message.contains("is not empty"), "{message}");
    assert!(message.contains("--overwrite"), "{message}");
    succeeded(
        &synth(dir.path(), &["--per-class", "1", "--overwrite"]),
        "hint synth",
    );
    assert!(dir.path().join("images/dog/dog_00000.png").exists());
    let message = failed(
        &synth(&dir.path().join("new"), &["--size", "8"]),
        "hint synth",
    );
    assert!(message.contains("32 to 1024"), "{message}");
    assert!(!dir.path().join("new").exists());
}
