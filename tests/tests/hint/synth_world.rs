//! `hint synth` as a user runs it: the real binary, twice with one seed (identical trees),
//! the layout other stages read, annotations read back with the VOC reader, the errors a
//! user meets, the default world pinned by a digest, and the hard world's properties
//! measured from the files it writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use hint_common::annotations::{voc, ImageAnnotation};
use hint_common::hierarchy::Hierarchy;
use image::GrayImage;
use sha2::{Digest, Sha256};

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

/// The digest of a world as `find . -type f -printf '%P\n' | LC_ALL=C sort | xargs
/// sha256sum | sha256sum` computes it: SHA-256 of the `sha256sum` lines (`<hex>  <path>`)
/// of every file, sorted by path.
fn digest(tree: &BTreeMap<String, Vec<u8>>) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let mut listing = Sha256::new();
    for (path, bytes) in tree {
        listing.update(format!("{}  {path}\n", hex(&Sha256::digest(bytes))));
    }
    hex(&listing.finalize())
}

/// The default world (`hint synth --out W --seed 0 --per-class 6`, so the default 64 px
/// that the demo uses) as the generator wrote it before scene options existed: produced
/// with the binary of commit aeb8c1e and
/// `cd W && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs sha256sum | sha256sum`.
/// A change here means every default world — the demo's, every tutorial's — changed.
const DEFAULT_WORLD_DIGEST: &str =
    "624c18557815ed5a0a9512492279d17d6d7c0258c245d64735a31b893fdf77fc";

#[test]
fn the_default_world_is_the_one_written_before_scene_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    succeeded(
        &synth(&out, &["--seed", "0", "--per-class", "6"]),
        "hint synth",
    );
    let written = tree(&out);
    assert_eq!(written.len(), 3 * 48 + 2);
    assert_eq!(
        digest(&written),
        DEFAULT_WORLD_DIGEST,
        "the default world changed (see DEFAULT_WORLD_DIGEST for how it was produced)"
    );
    // The preset named `default` is the same world.
    let named = dir.path().join("named");
    succeeded(
        &synth(
            &named,
            &["--seed", "0", "--per-class", "6", "--preset", "default"],
        ),
        "hint synth",
    );
    assert_eq!(digest(&tree(&named)), DEFAULT_WORLD_DIGEST);
}

#[test]
fn first_index_writes_the_same_images_as_one_larger_run() {
    let dir = tempfile::tempdir().unwrap();
    let (all, heldout) = (dir.path().join("all"), dir.path().join("heldout"));
    // The hard scene, so its own random streams are covered too; 32 px keeps 206 × 8
    // images cheap.
    let scene = ["--seed", "3", "--size", "32", "--preset", "hard"];
    let with = |extra: &[&'static str]| [&scene[..], extra].concat();
    succeeded(&synth(&all, &with(&["--per-class", "206"])), "hint synth");
    let printed = succeeded(
        &synth(
            &heldout,
            &with(&["--per-class", "6", "--first-index", "200"]),
        ),
        "hint synth",
    );
    assert!(
        printed.contains("images 200..205 of each class"),
        "{printed}"
    );
    let (ta, th) = (tree(&all), tree(&heldout));
    let mut expected = vec!["hierarchy.yaml".to_string(), "world.json".to_string()];
    for (kind, ext) in [("images", "png"), ("annotations", "xml"), ("masks", "png")] {
        for leaf in LEAVES {
            for k in 200..206 {
                expected.push(format!("{kind}/{leaf}/{leaf}_{k:05}.{ext}"));
            }
        }
    }
    expected.sort();
    assert_eq!(th.keys().cloned().collect::<Vec<_>>(), expected);
    for (name, bytes) in th.iter().filter(|(name, _)| name.contains('/')) {
        assert!(ta[name] == *bytes, "{name} differs from the larger run's");
    }
    assert_eq!(th["hierarchy.yaml"], ta["hierarchy.yaml"]);
    let world: serde_json::Value = serde_json::from_slice(&th["world.json"]).unwrap();
    assert_eq!(world["first_index"], 200);
    assert_eq!(world["per_class"], 6);
    assert_eq!(world["images"], 48);
}

/// The masks and annotations of a written world, by `<leaf>/<stem>`.
fn masks_and_boxes(root: &Path) -> BTreeMap<String, (GrayImage, ImageAnnotation)> {
    voc::read_dir(&root.join("annotations"))
        .unwrap()
        .into_iter()
        .map(|annotation| {
            let leaf = annotation.label.clone();
            let mask = image::open(root.join("masks").join(&leaf).join(&annotation.path))
                .unwrap()
                .to_luma8();
            let key = format!("{leaf}/{}", annotation.path.display());
            (key, (mask, annotation))
        })
        .collect()
}

/// Area fraction and centroid (fractions of the side) of a mask's object pixels.
fn area_and_centre(mask: &GrayImage) -> (f64, f64, f64) {
    let (mut n, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for (x, y, p) in mask.enumerate_pixels() {
        if p.0[0] == 255 {
            n += 1.0;
            sx += x as f64 + 0.5;
            sy += y as f64 + 0.5;
        }
    }
    let side = mask.width() as f64;
    (n / (side * side), sx / n / side, sy / n / side)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn std_dev(values: &[f64]) -> f64 {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
}

/// Object area fractions and the standard deviations of the centres in x and y.
fn spread(world: &BTreeMap<String, (GrayImage, ImageAnnotation)>) -> (Vec<f64>, f64, f64) {
    let (mut areas, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    for (mask, _) in world.values() {
        let (a, x, y) = area_and_centre(mask);
        areas.push(a);
        xs.push(x);
        ys.push(y);
    }
    (areas, std_dev(&xs), std_dev(&ys))
}

#[test]
fn the_hard_world_has_small_objects_anywhere_and_distractors_off_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let (easy, hard, bare) = (
        dir.path().join("easy"),
        dir.path().join("hard"),
        dir.path().join("bare"),
    );
    let common = ["--seed", "1", "--per-class", "12"];
    succeeded(&synth(&easy, &common), "hint synth");
    let printed = succeeded(
        &synth(&hard, &[&common[..], &["--preset", "hard"]].concat()),
        "hint synth",
    );
    assert!(
        printed.contains("scene: objects 0.45–0.75 of the side, anywhere in the image, 3"),
        "{printed}"
    );
    // The same scene without distractors: the same objects on the same backgrounds.
    succeeded(
        &synth(
            &bare,
            &[&common[..], &["--preset", "hard", "--distractors", "0"]].concat(),
        ),
        "hint synth",
    );
    let world: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hard.join("world.json")).unwrap()).unwrap();
    assert_eq!(world["object_scale"]["min"], 0.45);
    assert_eq!(world["object_scale"]["max"], 0.75);
    assert_eq!(world["random_position"], true);
    assert_eq!(world["distractors"], 3);
    let defaults: serde_json::Value =
        serde_json::from_slice(&std::fs::read(easy.join("world.json")).unwrap()).unwrap();
    for key in [
        "object_scale",
        "random_position",
        "distractors",
        "first_index",
    ] {
        assert!(defaults.get(key).is_none(), "default world.json has {key}");
    }

    let (e, h, b) = (
        masks_and_boxes(&easy),
        masks_and_boxes(&hard),
        masks_and_boxes(&bare),
    );
    assert_eq!(h.len(), 96);
    let (easy_areas, easy_sx, easy_sy) = spread(&e);
    let (hard_areas, hard_sx, hard_sy) = spread(&h);
    let lowest = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
    let highest = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "areas: easy {:.3}..{:.3}, hard {:.3}..{:.3}; centre std: easy {easy_sx:.3}, \
         {easy_sy:.3}, hard {hard_sx:.3}, {hard_sy:.3}",
        lowest(&easy_areas),
        highest(&easy_areas),
        lowest(&hard_areas),
        highest(&hard_areas)
    );
    // An object fills roughly 30–55% of its square (by class), so squares of 0.45–0.75 of
    // the side cover from under a tenth to a quarter or more of the image, and never
    // more than the largest square; the default's squares (0.62–0.98) are larger.
    assert!(lowest(&hard_areas) < 0.1, "{hard_areas:?}");
    assert!(highest(&hard_areas) > 0.16, "{hard_areas:?}");
    assert!(highest(&hard_areas) < 0.75 * 0.75, "{hard_areas:?}");
    assert!(median(&hard_areas) < 0.8 * median(&easy_areas));
    // Centres: the default keeps a large square inside the image, so they stay within a
    // few pixels of the middle (std ≈ 0.07 of the side); anywhere, ≈ 0.13–0.16.
    assert!(hard_sx > 1.4 * easy_sx && hard_sy > 1.4 * easy_sy);
    assert!(hard_sx > 0.1 && hard_sy > 0.1);

    let mut distractor_pixels = 0;
    for (key, (mask, annotation)) in &h {
        // Boxes are the masks' bounding boxes.
        let on: Vec<(u32, u32)> = mask
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] == 255)
            .map(|(x, y, _)| (x, y))
            .collect();
        let bx = annotation.boxes[0].clone();
        let xmin = on.iter().map(|p| p.0).min().unwrap() as f32;
        let xmax = on.iter().map(|p| p.0).max().unwrap() as f32 + 1.0;
        let ymin = on.iter().map(|p| p.1).min().unwrap() as f32;
        let ymax = on.iter().map(|p| p.1).max().unwrap() as f32 + 1.0;
        assert_eq!(
            (bx.xmin, bx.ymin, bx.xmax, bx.ymax),
            (xmin, ymin, xmax, ymax),
            "{key}"
        );
        // Distractors change neither the mask nor the box, and every pixel they change
        // is off the object.
        let (bare_mask, bare_annotation) = &b[key];
        assert_eq!(mask, bare_mask, "{key}");
        assert_eq!(annotation.boxes, bare_annotation.boxes, "{key}");
        let (leaf, file) = key.split_once('/').unwrap();
        let image = image::open(hard.join("images").join(leaf).join(file))
            .unwrap()
            .to_rgb8();
        let plain = image::open(bare.join("images").join(leaf).join(file))
            .unwrap()
            .to_rgb8();
        for (x, y, p) in image.enumerate_pixels() {
            if *p != *plain.get_pixel(x, y) {
                assert_eq!(
                    mask.get_pixel(x, y).0[0],
                    0,
                    "{key}: distractor on ({x}, {y})"
                );
                distractor_pixels += 1;
            }
        }
    }
    // Three distractors of radius 6–11% of 64 px cover on the order of 100 pixels.
    assert!(
        distractor_pixels > 96 * 40,
        "{distractor_pixels} distractor pixels"
    );
}

#[test]
fn bad_scene_values_are_errors_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    for (args, flag, says) in [
        (
            &["--object-scale", "0.8,0.5"][..],
            "--object-scale",
            "above the maximum",
        ),
        (&["--object-scale", "0,0.5"], "--object-scale", "(0, 1]"),
        (&["--object-scale", "0.5,1.2"], "--object-scale", "(0, 1]"),
        (&["--object-scale", "-0.2,0.5"], "--object-scale", "(0, 1]"),
        (
            &["--object-scale", "0.1", "--size", "32"],
            "--object-scale",
            "at least 8 px",
        ),
        (&["--object-scale", "big"], "--object-scale", "not a number"),
        (
            &["--object-scale", "0.1,0.2,0.3"],
            "--object-scale",
            "MIN,MAX",
        ),
        (&["--distractors", "-1"], "--distractors", "0 or more"),
        (&["--distractors", "21"], "--distractors", "0 to 20"),
        (&["--first-index", "-3"], "--first-index", "0 or more"),
        (
            &["--first-index", "99999", "--per-class", "2"],
            "--first-index",
            "five digits",
        ),
        (&["--preset", "harder"], "--preset", "hard"),
    ] {
        let message = failed(&synth(&out, args), "hint synth");
        assert!(
            message.contains(flag) && message.contains(says),
            "{args:?}: {message}"
        );
        assert!(!out.exists(), "{args:?} wrote files");
    }
}
