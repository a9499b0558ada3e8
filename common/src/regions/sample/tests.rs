//! Sampling on real Parquet files in a temporary directory.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use super::*;
use crate::hierarchy::ConceptId;
use crate::regions::{
    open_regions, ActivationType, RegionFileMeta, RegionProjection, RegionRow, RegionRows,
    RegionWriter,
};

const D: usize = 3;
const LABELS: [&str; 3] = ["cat", "dog", "car"];

/// (image_id, label, y, x, foreground, activation).
type Row = (u64, u32, u16, u16, bool, [f32; D]);

fn meta(d: usize, t: ActivationType) -> RegionFileMeta {
    RegionFileMeta {
        model: "tiny_cnn".into(),
        layer: "features.4".into(),
        method: "gradient".into(),
        aggregation: "norm".into(),
        threshold: 0.5,
        channels: d,
        height: 4,
        width: 4,
        activation_type: t,
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        job_id: None,
        task_id: None,
        extra: BTreeMap::new(),
    }
}

/// `images` images, label `id % 3`, 16 positions each; foreground where `(y + x + id) % 3
/// == 0`; activations encode the row's identity so a test can check where a row came from.
fn dataset(images: u64) -> Vec<Row> {
    let mut rows = Vec::new();
    for id in 0..images {
        for y in 0..4u16 {
            for x in 0..4u16 {
                let fg = (u64::from(y + x) + id) % 3 == 0;
                let act = [id as f32, f32::from(y), f32::from(x)];
                rows.push((id, (id % 3) as u32, y, x, fg, act));
            }
        }
    }
    rows
}

fn write(path: &Path, rows: &[Row], t: ActivationType) {
    let mut out = RegionRows::default();
    for &(image_id, label, y, x, foreground, ref act) in rows {
        out.push(RegionRow {
            image_id,
            label,
            y,
            x,
            saliency: 0.5,
            foreground,
            activation: act,
        });
    }
    let mut writer = RegionWriter::create(path, meta(D, t)).unwrap();
    writer.write(&out).unwrap();
    writer.finish().unwrap();
}

fn concepts() -> Vec<ConceptLabels> {
    // animal = {cat, dog} and car are roots (no siblings); cat and dog are siblings.
    let concept = |id, labels: &[u32], siblings: &[u32]| ConceptLabels {
        id: ConceptId(id),
        labels: labels.to_vec(),
        sibling_labels: siblings.to_vec(),
    };
    vec![
        concept(0, &[0, 1], &[]),
        concept(1, &[0], &[1]),
        concept(2, &[1], &[0]),
        concept(3, &[2], &[]),
    ]
}

fn samples_of(files: &[PathBuf], config: &SampleConfig) -> ConceptSamples {
    let info = check_region_set(files).unwrap();
    let mut sampler = RegionSampler::new(config, D, LABELS.len()).unwrap();
    for f in files {
        sampler.offer_file(f, &mut |_| {}).unwrap();
    }
    ConceptSamples::from_sampler(sampler, info, &concepts())
}

/// A concept's samples as comparable values: (region, target, activation) per split.
type Flat = Vec<(SampledRegion, u32, Vec<u32>)>;

fn flat(samples: &ConceptSamples, split: &ConceptSplit) -> Flat {
    let d = samples.d();
    split
        .rows
        .iter()
        .zip(&split.targets)
        .map(|(&r, &t)| {
            let r = r as usize;
            let act = samples.activations()[r * d..(r + 1) * d]
                .iter()
                .map(|v| v.to_bits())
                .collect();
            (samples.regions()[r], t.to_bits(), act)
        })
        .collect()
}

fn all_flat(samples: &ConceptSamples) -> Vec<(Flat, Flat)> {
    samples
        .concepts()
        .iter()
        .map(|c| (flat(samples, &c.train), flat(samples, &c.eval)))
        .collect()
}

fn config(k: usize) -> SampleConfig {
    SampleConfig {
        seed: 11,
        max_per_class: k,
        holdout: 0.3,
        negatives: Negatives::Mixed,
    }
}

#[test]
fn samples_do_not_depend_on_file_order_or_splitting() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dataset(60);
    let one = dir.path().join("one.parquet");
    write(&one, &rows, ActivationType::F32);
    // The same rows in three files, shuffled between and within files.
    let mut shuffled = rows.clone();
    shuffled.sort_by_key(|r| (r.0 * 7919 + u64::from(r.2) * 31 + u64::from(r.3)) % 101);
    let parts: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("part-{i}.parquet")))
        .collect();
    let third = shuffled.len() / 3 + 1;
    for (i, chunk) in shuffled.chunks(third).enumerate() {
        write(&parts[i], chunk, ActivationType::F32);
    }
    let config = config(20);
    let whole = samples_of(&[one], &config);
    let forward = samples_of(&parts, &config);
    let backward = samples_of(
        &[parts[2].clone(), parts[0].clone(), parts[1].clone()],
        &config,
    );
    assert_eq!(all_flat(&whole), all_flat(&forward));
    assert_eq!(all_flat(&whole), all_flat(&backward));

    // Separate samplers per file, merged: the same again (the distributed path).
    let info = check_region_set(&parts).unwrap();
    let mut merged = RegionSampler::new(&config, D, 3).unwrap();
    for f in parts.iter().rev() {
        let mut s = RegionSampler::new(&config, D, 3).unwrap();
        s.offer_file(f, &mut |_| {}).unwrap();
        merged.merge(s);
    }
    assert_eq!(merged.population(), {
        let mut s = RegionSampler::new(&config, D, 3).unwrap();
        s.offer_file(&dir.path().join("one.parquet"), &mut |_| {})
            .unwrap();
        s.population()
    });
    let merged = ConceptSamples::from_sampler(merged, info, &concepts());
    assert_eq!(all_flat(&whole), all_flat(&merged));

    // Another seed draws other rows.
    let other = samples_of(
        &parts,
        &SampleConfig {
            seed: 12,
            ..config.clone()
        },
    );
    assert_ne!(all_flat(&whole), all_flat(&other));
}

#[test]
fn samples_are_the_smallest_keys_within_budget_and_balanced() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dataset(90);
    let path = dir.path().join("r.parquet");
    write(&path, &rows, ActivationType::F32);
    let k = 25;
    let config = config(k);
    let samples = samples_of(&[path], &config);
    for (sample, concept) in samples.concepts().iter().zip(concepts()) {
        let labels = concept.labels;
        // Brute force: the k smallest keys of the positive pool.
        let mut pool: Vec<_> = rows
            .iter()
            .filter(|r| r.4 && labels.contains(&r.1))
            .map(|r| (config.key(r.0, r.2, r.3), r.0, r.2, r.3))
            .collect();
        pool.sort();
        let expected: BTreeSet<(u64, u16, u16)> =
            pool.iter().take(k).map(|p| (p.1, p.2, p.3)).collect();
        let chosen: BTreeSet<(u64, u16, u16)> = [&sample.train, &sample.eval]
            .iter()
            .flat_map(|s| s.rows.iter().zip(&s.targets))
            .filter(|(_, &t)| t == 1.0)
            .map(|(&r, _)| {
                let g = samples.regions()[r as usize];
                (g.image_id, g.y, g.x)
            })
            .collect();
        assert_eq!(chosen, expected, "concept {:?}", sample.concept);
        let pos = sample.train.positives() + sample.eval.positives();
        let neg = sample.train.negatives() + sample.eval.negatives();
        assert_eq!(pos, k.min(pool.len()));
        assert_eq!(neg, pos, "balanced: the pools are large enough");
        assert_eq!(sample.pool.positives, pool.len() as u64);
        assert_eq!(
            sample.pool.background,
            rows.iter().filter(|r| !r.4).count() as u64
        );
        // Activations are those of the row (they encode its identity).
        for (region, _, act) in flat(&samples, &sample.train) {
            let want = [
                region.image_id as f32,
                f32::from(region.y),
                f32::from(region.x),
            ];
            assert_eq!(act, want.map(f32::to_bits).to_vec());
            assert_eq!(region.label, (region.image_id % 3) as u32);
            assert_eq!(
                region.foreground,
                (u64::from(region.y + region.x) + region.image_id) % 3 == 0
            );
        }
    }
    // Stored rows are bounded by the budget: at most (labels + 1) × k.
    assert!(samples.regions().len() <= (LABELS.len() + 1) * k);
}

#[test]
fn split_is_by_image_and_disjoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.parquet");
    write(&path, &dataset(120), ActivationType::F32);
    let config = config(1000);
    let samples = samples_of(&[path], &config);
    let mut eval_images = HashSet::new();
    let mut train_images = HashSet::new();
    for sample in samples.concepts() {
        for &r in &sample.train.rows {
            train_images.insert(samples.regions()[r as usize].image_id);
        }
        for &r in &sample.eval.rows {
            eval_images.insert(samples.regions()[r as usize].image_id);
        }
        assert!(!sample.eval.is_empty() && !sample.train.is_empty());
    }
    assert!(train_images.is_disjoint(&eval_images));
    // Stratified: each label holds out round(0.3 × 40) = 12 of its 40 images.
    for label in 0..3u32 {
        let held = eval_images
            .iter()
            .filter(|&&id| (id % 3) as u32 == label)
            .count();
        assert_eq!(held, 12, "label {label}");
    }
    for &id in &eval_images {
        assert!(samples.is_held_out((id % 3) as u32, id));
    }
    for &id in &train_images {
        assert!(!samples.is_held_out((id % 3) as u32, id));
    }
    assert_eq!(samples.images_per_label(), &[40, 40, 40]);
    // Small labels keep at least one image on each side.
    assert_eq!(config.eval_images(2), 1);
    assert_eq!(config.eval_images(3), 1);
    assert_eq!(config.eval_images(1), 0);
    assert_eq!(config.eval_images(100), 30);
}

#[test]
fn f16_files_sample_like_f32_files_within_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dataset(30);
    let a = dir.path().join("a.parquet");
    let b = dir.path().join("b.parquet");
    write(&a, &rows, ActivationType::F32);
    write(&b, &rows, ActivationType::F16);
    let config = config(10);
    let full = samples_of(&[a], &config);
    let half = samples_of(&[b], &config);
    assert_eq!(full.regions(), half.regions());
    for (x, y) in full.activations().iter().zip(half.activations()) {
        assert!((x - y).abs() <= x.abs() * 1e-3, "{x} vs {y}");
    }
}

#[test]
fn mismatched_files_and_labels_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dataset(3);
    write(&dir.path().join("a.parquet"), &rows, ActivationType::F32);
    let mut other = RegionWriter::create(
        &dir.path().join("b.parquet"),
        meta(D + 1, ActivationType::F32),
    )
    .unwrap();
    other.write(&RegionRows::default()).unwrap();
    other.finish().unwrap();
    let files = region_files(dir.path()).unwrap();
    let err = check_region_set(&files).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, SampleError::Inconsistent { field: "D", .. }),
        "{err:?}"
    );
    assert!(
        text.contains("b.parquet") && text.contains("a.parquet"),
        "{text}"
    );

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        region_files(empty.path()),
        Err(SampleError::NoRegionFiles { .. })
    ));

    let info = check_region_set(&files[..1]).unwrap();
    let wrong: Vec<String> = vec!["cat".into(), "dog".into(), "truck".into()];
    let err = check_labels(&wrong, &info).unwrap_err().to_string();
    assert!(
        err.contains("label 2 is 'truck'") && err.contains("'car'"),
        "{err}"
    );

    assert!(SampleConfig {
        holdout: 1.0,
        ..SampleConfig::default()
    }
    .validate()
    .is_err());
    assert!(SampleConfig {
        max_per_class: 0,
        ..SampleConfig::default()
    }
    .validate()
    .is_err());
}

#[test]
fn streaming_reads_batches_with_only_the_projected_columns() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dataset(10);
    let path = dir.path().join("r.parquet");
    write(&path, &rows, ActivationType::F16);
    let (meta, total) = crate::regions::read_region_meta(&path).unwrap();
    assert_eq!((meta.channels, total), (D, rows.len() as u64));

    let ids_only = RegionProjection {
        saliency: false,
        activation: false,
    };
    let reader = open_regions(&path, ids_only, 7).unwrap();
    assert_eq!(reader.total_rows(), rows.len() as u64);
    let mut seen = Vec::new();
    let mut batches = 0;
    for batch in reader {
        let batch = batch.unwrap();
        assert!(batch.len() <= 7);
        assert!(!batch.has_activations() && batch.saliency().is_none());
        for i in 0..batch.len() {
            seen.push((
                batch.image_id()[i],
                batch.label()[i],
                batch.y()[i],
                batch.x()[i],
                batch.foreground(i),
            ));
        }
        batches += 1;
    }
    assert_eq!(batches, rows.len().div_ceil(7));
    let want: Vec<_> = rows.iter().map(|r| (r.0, r.1, r.2, r.3, r.4)).collect();
    assert_eq!(seen, want);

    // With every column: f16 activations come back as f32, row by row.
    let mut out = [0f32; D];
    let mut row = 0;
    for batch in open_regions(&path, RegionProjection::ALL, 5).unwrap() {
        let batch = batch.unwrap();
        assert_eq!(batch.saliency().unwrap().len(), batch.len());
        for i in 0..batch.len() {
            batch.activation_into(i, &mut out);
            assert_eq!(out, rows[row].5, "row {row}");
            row += 1;
        }
    }
    assert_eq!(row, rows.len());
}

/// FNV-1a over every concept's rows, targets and activations (bits), train then eval: a
/// fingerprint of the samples that changes if any row, order, target or value does.
fn fingerprint(samples: &ConceptSamples) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |v: u64| {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (train, eval) in all_flat(samples) {
        for split in [train, eval] {
            eat(split.len() as u64);
            for (r, t, act) in split {
                eat(r.image_id);
                eat(u64::from(r.label));
                eat(u64::from(r.y) << 16 | u64::from(r.x));
                eat(u64::from(r.foreground));
                eat(u64::from(t));
                for a in act {
                    eat(u64::from(a));
                }
            }
        }
    }
    h
}

/// The default negative set draws exactly what every run before the setting drew: these
/// fingerprints were taken before `negatives` existed (budget within the pools, and a budget
/// past them where background fills in for a short "other" pool).
#[test]
fn default_samples_are_those_of_before_the_negatives_setting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.parquet");
    write(&path, &dataset(90), ActivationType::F32);
    let got: Vec<u64> = [25, 1000]
        .into_iter()
        .map(|k| fingerprint(&samples_of(std::slice::from_ref(&path), &config(k))))
        .collect();
    assert_eq!(got, [5_013_852_500_810_171_638, 3_636_330_992_606_309_288]);
}

fn with(negatives: Negatives, k: usize) -> SampleConfig {
    SampleConfig {
        negatives,
        ..config(k)
    }
}

/// A concept's rows, train then eval, with whether each is a positive.
fn rows_of(samples: &ConceptSamples, sample: &ConceptSample) -> Vec<(SampledRegion, bool)> {
    [&sample.train, &sample.eval]
        .into_iter()
        .flat_map(|s| s.rows.iter().zip(&s.targets))
        .map(|(&r, &t)| (samples.regions()[r as usize], t > 0.5))
        .collect()
}

/// (image, y, x) of a concept's negatives (or positives).
fn chosen(
    samples: &ConceptSamples,
    sample: &ConceptSample,
    positive: bool,
) -> Vec<(u64, u16, u16)> {
    let mut rows: Vec<_> = rows_of(samples, sample)
        .into_iter()
        .filter(|&(_, p)| p == positive)
        .map(|(r, _)| (r.image_id, r.y, r.x))
        .collect();
    rows.sort();
    rows
}

/// Brute force: (image, y, x) of the rows of `rows` that `keep`, by sampling key.
fn by_key(
    rows: &[Row],
    config: &SampleConfig,
    keep: impl Fn(&Row) -> bool,
) -> Vec<(u64, u16, u16)> {
    let mut pool: Vec<_> = rows
        .iter()
        .filter(|r| keep(r))
        .map(|r| (config.key(r.0, r.2, r.3), (r.0, r.2, r.3)))
        .collect();
    pool.sort();
    pool.into_iter().map(|(_, id)| id).collect()
}

fn sorted(mut rows: Vec<(u64, u16, u16)>) -> Vec<(u64, u16, u16)> {
    rows.sort();
    rows
}

/// The pre-setting rule, brute force: `P` negatives, half (rounded up) the smallest keys of
/// the other concepts' foreground and half of background, a short half filled by the other.
#[test]
fn mixed_negatives_are_half_other_foreground_half_background() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dataset(90);
    let path = dir.path().join("r.parquet");
    write(&path, &rows, ActivationType::F32);
    // 25: both halves within their pools; 1000: car's foreground is short for `animal`.
    for k in [25, 1000] {
        let config = config(k);
        let samples = samples_of(std::slice::from_ref(&path), &config);
        let mut filled_in = false;
        for (sample, concept) in samples.concepts().iter().zip(concepts()) {
            let inside = |r: &Row| concept.labels.contains(&r.1);
            let positives = by_key(&rows, &config, |r| r.4 && inside(r));
            let other = by_key(&rows, &config, |r| r.4 && !inside(r));
            let background = by_key(&rows, &config, |r| !r.4);
            let p = positives.len().min(k);
            let mut n_other = other.len().min(k).min(p.div_ceil(2));
            let n_bg = background.len().min(k).min(p - n_other);
            n_other = other.len().min(k).min(p - n_bg);
            filled_in |= n_bg > p / 2;
            let want = sorted([&other[..n_other], &background[..n_bg]].concat());
            assert_eq!(
                chosen(&samples, sample, false),
                want,
                "k {k}, {:?}",
                sample.concept
            );
            assert_eq!(sample.negatives, Negatives::Mixed);
        }
        assert_eq!(
            filled_in,
            k == 1000,
            "k {k}: the short-pool case is exercised"
        );
    }
}

/// Each single-pool set: negatives only from its pool, the smallest keys, as many as the
/// positives or the whole pool when it is short (nothing fills in); positives and split as
/// with `mixed`.
#[test]
fn each_negative_set_draws_only_from_its_pool() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dataset(90);
    let path = dir.path().join("r.parquet");
    write(&path, &rows, ActivationType::F32);
    for k in [25, 1000] {
        let mixed = samples_of(std::slice::from_ref(&path), &with(Negatives::Mixed, k));
        let mut short = 0;
        for set in [
            Negatives::Background,
            Negatives::Others,
            Negatives::Siblings,
        ] {
            let config = with(set, k);
            let samples = samples_of(std::slice::from_ref(&path), &config);
            assert_eq!(samples.config().negatives, set);
            for ((sample, base), concept) in samples
                .concepts()
                .iter()
                .zip(mixed.concepts())
                .zip(concepts())
            {
                let what = format!("k {k}, {set}, {:?}", sample.concept);
                let inside = |r: &Row| concept.labels.contains(&r.1);
                let drawn = match set {
                    Negatives::Siblings if concept.sibling_labels.is_empty() => Negatives::Others,
                    set => set,
                };
                assert_eq!(sample.negatives, drawn, "{what}");
                assert_eq!(
                    chosen(&samples, sample, true),
                    chosen(&mixed, base, true),
                    "{what}"
                );
                let pool = match drawn {
                    Negatives::Background => by_key(&rows, &config, |r| !r.4),
                    Negatives::Others => by_key(&rows, &config, |r| r.4 && !inside(r)),
                    Negatives::Siblings => by_key(&rows, &config, |r| {
                        r.4 && concept.sibling_labels.contains(&r.1)
                    }),
                    Negatives::Mixed => unreachable!(),
                };
                let p = sample.train.positives() + sample.eval.positives();
                let n = p.min(pool.len()).min(k);
                short += usize::from(n < p);
                assert_eq!(
                    chosen(&samples, sample, false),
                    sorted(pool[..n].to_vec()),
                    "{what}"
                );
                // Composition, row by row; and the split is by image, as for `mixed`.
                for (region, positive) in rows_of(&samples, sample) {
                    if positive {
                        assert!(region.foreground && concept.labels.contains(&region.label));
                        continue;
                    }
                    match drawn {
                        Negatives::Background => assert!(!region.foreground, "{what}"),
                        Negatives::Others => assert!(
                            region.foreground && !concept.labels.contains(&region.label),
                            "{what}"
                        ),
                        Negatives::Siblings => assert!(
                            region.foreground && concept.sibling_labels.contains(&region.label),
                            "{what}"
                        ),
                        Negatives::Mixed => unreachable!(),
                    }
                }
                for (split, held) in [(&sample.train, false), (&sample.eval, true)] {
                    for &r in &split.rows {
                        let region = samples.regions()[r as usize];
                        assert_eq!(samples.is_held_out(region.label, region.image_id), held);
                    }
                }
            }
        }
        // With the whole dataset in the budget, `animal`'s others (car) and the labels'
        // siblings are smaller than their positives.
        assert_eq!(short > 0, k == 1000, "k {k}");
    }
}

#[test]
fn siblings_are_the_other_children_of_every_parent_minus_the_concept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.yaml");
    // cat is under animal and feline; feline under animal and thing.
    std::fs::write(
        &path,
        "children:\n  animal: [cat, dog, feline]\n  feline: [cat]\n  thing: [feline, car]\n",
    )
    .unwrap();
    let labels: Vec<String> = LABELS.iter().map(|s| s.to_string()).collect();
    let hierarchy = crate::hierarchy::Hierarchy::from_custom_file(&path, &labels).unwrap();
    let siblings = |name: &str| {
        let id = hierarchy.find(name).unwrap();
        let c = ConceptLabels::of(&hierarchy, id);
        assert_eq!(c.labels, hierarchy.concept(id).labels);
        c.sibling_labels
    };
    // cat's sibling feline covers only cat: not a negative of cat.
    assert_eq!(siblings("cat"), [1]);
    assert_eq!(siblings("dog"), [0]);
    // feline: dog under animal, car under thing (cat, its own, is not).
    assert_eq!(siblings("feline"), [1, 2]);
    assert_eq!(siblings("car"), [0]);
    // Roots have none: `siblings` uses `others` for them.
    assert!(siblings("animal").is_empty() && siblings("thing").is_empty());
}

#[test]
fn negative_sets_parse_print_and_default_to_mixed_in_old_settings() {
    for name in Negatives::NAMES {
        assert_eq!(name.parse::<Negatives>().unwrap().to_string(), name);
    }
    assert_eq!(
        "sibling".parse::<Negatives>().unwrap_err(),
        "unknown negative set 'sibling' (expected mixed, background, others, siblings)"
    );
    let config = with(Negatives::Siblings, 7);
    let mut json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["negatives"], "siblings");
    assert_eq!(
        serde_json::from_value::<SampleConfig>(json.clone()).unwrap(),
        config
    );
    // Settings written before the setting existed drew `mixed` negatives.
    json.as_object_mut().unwrap().remove("negatives");
    let old: SampleConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old, with(Negatives::Mixed, 7));
    json = serde_json::json!({"seed": 1, "max_per_class": 5, "holdout": 0.5, "negatives": "all"});
    let err = serde_json::from_value::<SampleConfig>(json)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `all`"), "{err}");
}

/// A sampler written by the sample stage and read back gives the samples of streaming the
/// region files, for f32 and f16 sources; parts written apart and merged after reading give
/// the samples of the whole.
#[test]
fn stored_samples_read_back_as_the_streamed_ones() {
    for t in [ActivationType::F32, ActivationType::F16] {
        let dir = tempfile::tempdir().unwrap();
        let rows = dataset(60);
        let parts: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!("part-{i}.parquet")))
            .collect();
        for (i, chunk) in rows.chunks(rows.len() / 3 + 1).enumerate() {
            write(&parts[i], chunk, t);
        }
        // Budgets below and above the pools' populations.
        for k in [7, 20, 1000] {
            let config = config(k);
            let whole = samples_of(&parts, &config);

            let mut stored = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                let info = check_region_set(std::slice::from_ref(part)).unwrap();
                let mut sampler = RegionSampler::new(&config, D, LABELS.len()).unwrap();
                sampler.offer_file(part, &mut |_| {}).unwrap();
                let out = dir.path().join(format!("sample-{k}-{i}"));
                std::fs::create_dir(&out).unwrap();
                let held = sampler.held_rows() as u64;
                assert_eq!(sampler.write_to(&out, &info, meta(D, t)).unwrap(), held);
                stored.push(out);
            }
            let (mut merged, mut info) = RegionSampler::read_from(&stored[0], &config).unwrap();
            for out in &stored[1..] {
                let (part, part_info) = RegionSampler::read_from(out, &config).unwrap();
                merged.merge(part);
                info.merge(part_info).unwrap();
            }
            assert_eq!(info, check_region_set(&parts).unwrap());
            assert_eq!(merged.population(), {
                let mut s = RegionSampler::new(&config, D, 3).unwrap();
                for p in &parts {
                    s.offer_file(p, &mut |_| {}).unwrap();
                }
                s.population()
            });
            // The merge written once more (the stage's second round) reads back the same.
            let out = dir.path().join(format!("sample-{k}"));
            std::fs::create_dir(&out).unwrap();
            merged.write_to(&out, &info, meta(D, t)).unwrap();
            let (again, again_info) = RegionSampler::read_from(&out, &config).unwrap();
            // The source alone, from sample.json, is the one reading the rows gives.
            let source = RegionSampler::stored_source(&out, &config).unwrap();
            assert_eq!(source, again_info);
            let from_merge = ConceptSamples::from_sampler(merged, info, &concepts());
            assert_eq!(all_flat(&whole), all_flat(&from_merge), "{t:?} k = {k}");
            let from_file = ConceptSamples::from_sampler(again, again_info, &concepts());
            assert_eq!(all_flat(&whole), all_flat(&from_file), "{t:?} k = {k}");
            // pyarrow and hint read the rows as a region file of the documented schema.
            let (meta_read, n) = read_region_meta(&out.join(SAMPLE_ROWS)).unwrap();
            // Stored as the source stores them: the values above are equal either way.
            assert_eq!(meta_read.activation_type, t);
            assert!(
                meta_read.extra.contains_key("sample"),
                "{:?}",
                meta_read.extra
            );
            assert!(n > 0);
        }
    }
}

/// A sample of f16 files is stored as f16; one that also holds rows of an f32 file, whose
/// values f16 would change, as f32 — whichever file's metadata it is given — and both read
/// back as the sampler that wrote them.
#[test]
fn a_sample_is_stored_as_f16_only_where_that_changes_no_value() {
    let dir = tempfile::tempdir().unwrap();
    let halves = dir.path().join("a.parquet");
    write(&halves, &dataset(30), ActivationType::F16);
    let mut finer = dataset(60).split_off(30 * 16);
    for row in &mut finer {
        row.5[0] += 0.1; // not an f16 value
    }
    let singles = dir.path().join("b.parquet");
    write(&singles, &finer, ActivationType::F32);
    for (name, files, stored_as) in [
        ("f16", vec![halves.clone()], ActivationType::F16),
        (
            "mixed",
            vec![halves.clone(), singles.clone()],
            ActivationType::F32,
        ),
    ] {
        let info = check_region_set(&files).unwrap();
        let mut sampler = RegionSampler::new(&config(40), D, LABELS.len()).unwrap();
        for file in &files {
            sampler.offer_file(file, &mut |_| {}).unwrap();
        }
        let out = dir.path().join(name);
        std::fs::create_dir(&out).unwrap();
        sampler
            .write_to(&out, &info, meta(D, ActivationType::F16))
            .unwrap();
        let (meta_read, _) = read_region_meta(&out.join(SAMPLE_ROWS)).unwrap();
        assert_eq!(meta_read.activation_type, stored_as, "{name}");
        let (back, back_info) = RegionSampler::read_from(&out, &config(40)).unwrap();
        assert_eq!(
            all_flat(&ConceptSamples::from_sampler(back, back_info, &concepts())),
            all_flat(&ConceptSamples::from_sampler(sampler, info, &concepts())),
            "{name}"
        );
    }
}

#[test]
fn stored_samples_of_other_settings_or_damaged_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("r.parquet");
    write(&part, &dataset(30), ActivationType::F32);
    let info = check_region_set(std::slice::from_ref(&part)).unwrap();
    let mut sampler = RegionSampler::new(&config(5), D, LABELS.len()).unwrap();
    sampler.offer_file(&part, &mut |_| {}).unwrap();
    let out = dir.path().join("sample");
    std::fs::create_dir(&out).unwrap();
    sampler
        .write_to(&out, &info, meta(D, ActivationType::F32))
        .unwrap();

    let err = RegionSampler::read_from(&out, &config(6))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sample.json") && err.contains("other settings"),
        "{err}"
    );
    let err = RegionSampler::stored_source(&out, &config(6))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sample.json") && err.contains("other settings"),
        "{err}"
    );

    let err = sampler
        .write_to(&out, &info, meta(D + 1, ActivationType::F32))
        .unwrap_err()
        .to_string();
    assert!(err.contains("D = 4") && err.contains("D = 3"), "{err}");

    let state = out.join(SAMPLE_STATE);
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, text.replace("\"format\":1", "\"format\":9")).unwrap();
    let err = RegionSampler::read_from(&out, &config(5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("layout version 9"), "{err}");
    std::fs::write(&state, "{").unwrap();
    let err = RegionSampler::read_from(&out, &config(5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a sample state"), "{err}");
    std::fs::remove_file(&state).unwrap();
    let err = RegionSampler::read_from(&out, &config(5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sample.json"), "{err}");
}
