use std::collections::BTreeMap;

use super::*;
use crate::hierarchy::Hierarchy;

/// Every file under `root` by `/`-joined relative path.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
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

fn small(out: &Path, seed: u64) -> SynthConfig {
    SynthConfig {
        per_class: 3,
        size: 48,
        seed,
        ..SynthConfig::new(out)
    }
}

/// The 0-based half-open box of a mask's non-zero pixels.
fn box_of(mask: &GrayImage) -> Option<(u32, u32, u32, u32)> {
    let mut found: Option<(u32, u32, u32, u32)> = None;
    for (x, y, p) in mask.enumerate_pixels() {
        if p.0[0] != 0 {
            let (a, b, c, d) = found.unwrap_or((x, y, x + 1, y + 1));
            found = Some((a.min(x), b.min(y), c.max(x + 1), d.max(y + 1)));
        }
    }
    found
}

#[test]
fn same_seed_writes_identical_files_and_another_seed_differs() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let count = AtomicUsize::new(0);
    let world = generate(&small(a.path(), 5), &|| {
        count.fetch_add(1, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(count.load(Ordering::Relaxed), 24);
    assert_eq!(world.images, 24);
    generate(&small(b.path(), 5), &|| {}).unwrap();
    generate(&small(c.path(), 6), &|| {}).unwrap();
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(fa.len(), 3 * 24 + 2);
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(
            fb[name] == *bytes,
            "{name} differs between two runs with seed 5"
        );
    }
    let differing = fa
        .iter()
        .filter(|(name, bytes)| name.starts_with("images/") && fc[*name] != **bytes)
        .count();
    assert_eq!(differing, 24, "seed 6 should change every image");
}

#[test]
fn an_image_does_not_depend_on_the_world_around_it() {
    // Image k of a class is the same whatever else is generated.
    let a = render(3, 4, 1, 64);
    let b = render(3, 4, 1, 64);
    assert_eq!(a.image, b.image);
    assert_eq!(a.mask, b.mask);
    let small_dir = tempfile::tempdir().unwrap();
    let big_dir = tempfile::tempdir().unwrap();
    generate(
        &SynthConfig {
            per_class: 1,
            ..small(small_dir.path(), 9)
        },
        &|| {},
    )
    .unwrap();
    generate(&small(big_dir.path(), 9), &|| {}).unwrap();
    let (fs, fb) = (files(small_dir.path()), files(big_dir.path()));
    for (name, bytes) in &fs {
        if name.ends_with(".png") || name.ends_with(".xml") {
            assert!(fb[name] == *bytes, "{name}");
        }
    }
    assert_ne!(render(3, 4, 2, 64).image, a.image);
}

#[test]
fn boxes_are_the_masks_boxes_and_masks_are_objects_inside_the_image() {
    for size in [32, 64, 100] {
        for label in 0..world::LEAVES.len() {
            for index in 0..6 {
                let s = render(11, label, index, size);
                assert_eq!(s.image.dimensions(), (size, size));
                let (x0, y0, x1, y1) = box_of(&s.mask).expect("mask is not empty");
                let b = &s.bbox;
                assert_eq!(
                    (b.xmin, b.ymin, b.xmax, b.ymax),
                    (x0 as f32, y0 as f32, x1 as f32, y1 as f32)
                );
                assert_eq!(b.label, world::LEAVES[label].name);
                assert!(x1 <= size && y1 <= size);
                assert!(s.mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
                // Objects are large: at least a twentieth of the image's area.
                let area = s.mask.pixels().filter(|p| p.0[0] == 255).count();
                assert!(
                    area * 20 >= (size * size) as usize,
                    "{label}/{index}: {area}"
                );
            }
        }
    }
}

#[test]
fn written_files_decode_and_annotations_match_the_masks() {
    let dir = tempfile::tempdir().unwrap();
    generate(&small(dir.path(), 2), &|| {}).unwrap();
    let annotations = voc::read_dir(&dir.path().join("annotations")).unwrap();
    assert_eq!(annotations.len(), 24);
    for (id, a) in annotations.iter().enumerate() {
        let (label, index) = (id / 3, id % 3);
        let leaf = world::LEAVES[label].name;
        assert_eq!(a.id, id as u64);
        assert_eq!(a.label, leaf);
        assert_eq!(a.path, PathBuf::from(format!("{leaf}_{index:05}.png")));
        assert_eq!((a.width, a.height), (Some(48), Some(48)));
        let image = image::open(dir.path().join("images").join(leaf).join(&a.path)).unwrap();
        assert_eq!(image.color(), image::ColorType::Rgb8);
        assert_eq!((image.width(), image.height()), (48, 48));
        let mask = image::open(dir.path().join("masks").join(leaf).join(&a.path)).unwrap();
        assert_eq!(mask.color(), image::ColorType::L8);
        let (x0, y0, x1, y1) = box_of(&mask.to_luma8()).unwrap();
        let b = &a.boxes[0];
        assert_eq!(
            (b.xmin, b.ymin, b.xmax, b.ymax),
            (x0 as f32, y0 as f32, x1 as f32, y1 as f32)
        );
    }
    let json: World =
        serde_json::from_slice(&std::fs::read(dir.path().join("world.json")).unwrap()).unwrap();
    assert_eq!(json, describe(&small(dir.path(), 2)));
    assert_eq!(json.classes[2].name, "cat");
    assert_eq!(json.classes[2].ancestors, ["whole", "animal", "mammal"]);
}

#[test]
fn hierarchy_file_parses_with_the_worlds_labels() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        &SynthConfig {
            per_class: 1,
            ..small(dir.path(), 0)
        },
        &|| {},
    )
    .unwrap();
    let labels = world::labels();
    let h = Hierarchy::from_custom_file(&dir.path().join("hierarchy.yaml"), &labels).unwrap();
    let under = |name: &str| -> Vec<&str> {
        let id = h.find(name).unwrap_or_else(|| panic!("no concept {name}"));
        h.concept(id)
            .labels
            .iter()
            .map(|&l| labels[l as usize].as_str())
            .collect()
    };
    assert_eq!(under("mammal"), ["cat", "dog"]);
    assert_eq!(under("bird"), ["duck", "parrot"]);
    assert_eq!(under("watercraft"), ["sailboat", "steamship"]);
    assert_eq!(under("vehicle"), ["bus", "car", "sailboat", "steamship"]);
    assert_eq!(under("whole").len(), 8);
    assert_eq!(h.concept(h.find("whole").unwrap()).level, 0);
    assert_eq!(h.concept(h.find("mammal").unwrap()).level, 2);
    assert_eq!(h.concept(h.find("cat").unwrap()).level, 3);
}

#[test]
fn refuses_a_non_empty_directory_unless_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let config = small(dir.path(), 0);
    let error = generate(&config, &|| {}).unwrap_err();
    assert!(matches!(error, SynthError::NotEmpty(_)), "{error}");
    assert!(error.to_string().contains("--overwrite"));
    generate(
        &SynthConfig {
            overwrite: true,
            ..config.clone()
        },
        &|| {},
    )
    .unwrap();
    // Overwriting with fewer images leaves no stale ones, and keeps unrelated files.
    generate(
        &SynthConfig {
            overwrite: true,
            per_class: 1,
            ..config
        },
        &|| {},
    )
    .unwrap();
    let all = files(dir.path());
    assert_eq!(all.keys().filter(|k| k.starts_with("images/")).count(), 8);
    assert_eq!(all["notes.txt"], b"mine");
}

#[test]
fn settings_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for config in [
        SynthConfig {
            per_class: 0,
            ..small(dir.path(), 0)
        },
        SynthConfig {
            per_class: 100_000,
            ..small(dir.path(), 0)
        },
        SynthConfig {
            size: 31,
            ..small(dir.path(), 0)
        },
        SynthConfig {
            size: 2048,
            ..small(dir.path(), 0)
        },
    ] {
        let error = generate(&config, &|| {}).unwrap_err();
        assert!(matches!(error, SynthError::Setting(_)), "{error}");
    }
    assert!(
        files(dir.path()).is_empty(),
        "nothing is written for bad settings"
    );
}

#[test]
fn every_class_shows_the_parts_its_concepts_own_and_no_others() {
    // The hierarchy is in the pixels: each image shows every part of every concept above
    // its class (siblings share their parent's parts) and no part of another branch.
    for (label, leaf) in world::LEAVES.iter().enumerate() {
        let declared = world::parts(leaf);
        for index in 0..12 {
            for size in [32, 64, 128] {
                let sample = render(4, label, index, size);
                // At 32 px a thin part (an outline, a stripe) may fall between pixel
                // centres; from the default 64 px on, every part shows.
                for part in declared.iter().filter(|_| size >= 64) {
                    let shown = sample.parts.get(*part).copied().unwrap_or(0);
                    assert!(
                        shown > 0,
                        "{} {index} at {size}px: no {part} visible",
                        leaf.name
                    );
                }
                for part in sample.parts.keys() {
                    assert!(
                        part == "body" || declared.contains(&part.as_str()),
                        "{} draws {part}, which is not one of its parts {declared:?}",
                        leaf.name
                    );
                }
                let total: usize = sample.parts.values().sum();
                let mask = sample.mask.pixels().filter(|p| p.0[0] == 255).count();
                assert_eq!(total, mask, "every object pixel belongs to one part");
            }
        }
    }
}

/// The object's area fraction and mask centroid (fractions of the side) of a sample.
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

fn std_dev(values: &[f64]) -> f64 {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt()
}

/// Area fractions and centres of the first `per_class` images of every class.
fn measure(scene: &SceneOptions, size: u32, per_class: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut areas, mut xs, mut ys) = (Vec::new(), Vec::new(), Vec::new());
    for label in 0..world::LEAVES.len() {
        for index in 0..per_class {
            let s = render_scene(21, label, index, size, scene);
            let (a, x, y) = area_and_centre(&s.mask);
            areas.push(a);
            xs.push(x);
            ys.push(y);
        }
    }
    (areas, xs, ys)
}

#[test]
fn hard_scenes_spread_smaller_objects_and_keep_distractors_off_them() {
    let hard = Preset::Hard.options();
    let (easy_areas, easy_x, easy_y) = measure(&SceneOptions::default(), 64, 10);
    let (hard_areas, hard_x, hard_y) = measure(&hard, 64, 10);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&hard_areas) < 0.8 * mean(&easy_areas));
    assert!(std_dev(&hard_x) > 1.4 * std_dev(&easy_x));
    assert!(std_dev(&hard_y) > 1.4 * std_dev(&easy_y));
    let mut placed = 0;
    for label in 0..world::LEAVES.len() {
        for index in 0..10 {
            let s = render_scene(21, label, index, 64, &hard);
            let bare = render_scene(
                21,
                label,
                index,
                64,
                &SceneOptions {
                    distractors: 0,
                    ..hard
                },
            );
            // Distractors add pixels off the object and change nothing else.
            assert_eq!(s.mask, bare.mask);
            assert_eq!(s.parts, bare.parts);
            assert_eq!(s.bbox, bare.bbox);
            let (x0, y0, x1, y1) = box_of(&s.mask).unwrap();
            assert_eq!(
                (s.bbox.xmin, s.bbox.ymin, s.bbox.xmax, s.bbox.ymax),
                (x0 as f32, y0 as f32, x1 as f32, y1 as f32)
            );
            for (x, y, d) in s.distractor_mask.enumerate_pixels() {
                let changed = s.image.get_pixel(x, y) != bare.image.get_pixel(x, y);
                if d.0[0] == 0 {
                    assert!(
                        !changed,
                        "{label}/{index}: ({x}, {y}) changed off distractors"
                    );
                    continue;
                }
                // Not on the object, nor next to it.
                for (nx, ny) in [(x, y), (x + 1, y), (x, y + 1)]
                    .into_iter()
                    .chain(x.checked_sub(1).map(|a| (a, y)))
                    .chain(y.checked_sub(1).map(|b| (x, b)))
                    .filter(|&(a, b)| a < 64 && b < 64)
                {
                    assert_eq!(s.mask.get_pixel(nx, ny).0[0], 0, "{label}/{index}");
                }
            }
            placed += s.distractors;
        }
    }
    assert!(
        placed >= 80 * 3 * 9 / 10,
        "only {placed} of 240 distractors fit"
    );
}

#[test]
fn first_index_writes_the_images_of_a_larger_world() {
    let (all, later) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let hard = Preset::Hard.options();
    generate(
        &SynthConfig {
            per_class: 5,
            scene: hard,
            ..small(all.path(), 4)
        },
        &|| {},
    )
    .unwrap();
    let config = SynthConfig {
        per_class: 2,
        first_index: 3,
        scene: hard,
        ..small(later.path(), 4)
    };
    let world = generate(&config, &|| {}).unwrap();
    assert_eq!((world.first_index, world.images), (3, 16));
    let (fa, fl) = (files(all.path()), files(later.path()));
    assert_eq!(fl.len(), 3 * 16 + 2);
    for (name, bytes) in fl.iter().filter(|(n, _)| n.contains('/')) {
        assert!(
            name.ends_with("_00003.png")
                || name.ends_with("_00004.png")
                || name.ends_with("_00003.xml")
                || name.ends_with("_00004.xml"),
            "{name}"
        );
        assert!(fa[name] == *bytes, "{name}");
    }
    let json: World = serde_json::from_slice(&fl["world.json"]).unwrap();
    assert_eq!(json, describe(&config));
    assert_eq!(json.scene, hard);
}

#[test]
fn scene_settings_out_of_range_name_their_flag() {
    let dir = tempfile::tempdir().unwrap();
    let scale = |min, max| SceneOptions {
        object_scale: ObjectScale { min, max },
        ..SceneOptions::default()
    };
    for (scene, first_index, says) in [
        (
            scale(0.8, 0.5),
            0,
            "--object-scale 0.8,0.5: the minimum is above the maximum",
        ),
        (
            scale(0.0, 0.5),
            0,
            "--object-scale 0,0.5: fractions of the image side must be in (0, 1]",
        ),
        (scale(0.5, 1.5), 0, "(0, 1]"),
        (scale(f32::NAN, 0.5), 0, "(0, 1]"),
        (scale(0.1, 0.5), 0, "objects need at least 8 px"),
        (
            SceneOptions {
                distractors: 21,
                ..SceneOptions::default()
            },
            0,
            "--distractors must be 0 to 20, not 21",
        ),
        (
            SceneOptions::default(),
            99_998,
            "--first-index 99998 with --per-class 3",
        ),
    ] {
        let config = SynthConfig {
            scene,
            first_index,
            ..small(dir.path(), 0)
        };
        let error = generate(&config, &|| {}).unwrap_err();
        assert!(matches!(error, SynthError::Setting(_)), "{error}");
        assert!(error.to_string().contains(says), "{error}");
    }
    assert!(files(dir.path()).is_empty());
    // The edges are allowed: one fixed size, the whole side, the last file name.
    for (scene, first_index) in [
        (scale(0.5, 0.5), 0),
        (scale(1.0, 1.0), 0),
        (SceneOptions::default(), 99_997),
    ] {
        SynthConfig {
            scene,
            first_index,
            ..small(dir.path(), 0)
        }
        .validate()
        .unwrap();
    }
}
