use super::*;
use image::{Rgb, RgbImage};

/// An in-memory set of `per_class` 16×16 images for each of three classes that differ by
/// where a bright square sits (left, right, bottom), on seeded noise.
fn squares(per_class: usize, seed: u64) -> ImageSet {
    let side = 16usize;
    let mut rng = hint_common::seed::rng(seed, &[]);
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for i in 0..per_class * 3 {
        let class = (i % 3) as u32;
        for _channel in 0..3 {
            for y in 0..side {
                for x in 0..side {
                    let inside = match class {
                        0 => x < 6 && (5..11).contains(&y),
                        1 => x >= 10 && (5..11).contains(&y),
                        _ => y >= 10 && (5..11).contains(&x),
                    };
                    let noise = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                    values.push(if inside { 1.5 } else { -0.5 } + noise);
                }
            }
        }
        labels.push(class);
    }
    let n = labels.len();
    ImageSet {
        pixels: Tensor::from_slice(&values).view([n as i64, 3, side as i64, side as i64]),
        labels,
        ids: (0..n as u64).collect(),
        classes: vec!["left".into(), "right".into(), "bottom".into()],
        skipped: Vec::new(),
    }
}

fn config(seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: 3,
        batch_size: 16,
        learning_rate: 3e-3,
        seed,
        flip: true,
        ..TrainConfig::new(Architecture::TinyCnn)
    }
}

/// Initialises and trains a fresh tiny CNN; returns it with the report.
fn fit(data: &ImageSet, config: &TrainConfig) -> (Backbone, TrainReport, Vec<EpochStats>) {
    let model = Backbone::new(config.arch, data.classes.len() as i64, Device::Cpu);
    initialise(&model, config.seed).unwrap();
    let split = split(
        &data.labels,
        data.classes.len(),
        config.holdout,
        config.seed,
    )
    .unwrap();
    let mut epochs = Vec::new();
    let report = train(&model, data, &split, config, &mut |p| {
        if let Progress::Epoch(stats) = p {
            epochs.push(stats);
        }
    })
    .unwrap();
    (model, report, epochs)
}

/// The weights by sorted name, as plain numbers.
fn weights(model: &Backbone) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = model
        .var_store()
        .variables()
        .into_iter()
        .map(|(k, v)| (k, Vec::<f32>::try_from(v.flatten(0, -1)).unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn initialisation_is_seeded_and_ignores_the_global_generator() {
    let a = Backbone::new(Architecture::TinyCnn, 4, Device::Cpu);
    let b = Backbone::new(Architecture::TinyCnn, 4, Device::Cpu);
    tch::manual_seed(1);
    initialise(&a, 7).unwrap();
    tch::manual_seed(2);
    initialise(&b, 7).unwrap();
    assert_eq!(weights(&a), weights(&b));
    initialise(&b, 8).unwrap();
    assert_ne!(weights(&a), weights(&b));
    for (name, values) in weights(&a) {
        if name.ends_with("bias") {
            assert!(values.iter().all(|&v| v == 0.0), "{name}");
        } else {
            // features.3.weight: fan_in 16·3·3 = 144, bound √(6/144) ≈ 0.204.
            let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let fan_in = match name.as_str() {
                "features.0.weight" => 27.0,
                "features.3.weight" => 144.0,
                "features.6.weight" => 288.0,
                _ => 64.0,
            };
            let bound = (6.0f32 / fan_in).sqrt();
            assert!(
                max <= bound && max > 0.8 * bound,
                "{name}: {max} vs {bound}"
            );
        }
    }
}

/// A network with batch norm keeps its norms' scales at 1 and running statistics at 0 and 1
/// (drawn, a running variance could be negative: the first version drew them, and an
/// initialised ResNet-18 gave NaN in evaluation mode).
#[test]
fn initialisation_leaves_batch_norm_as_built() {
    let model = Backbone::new(Architecture::Resnet18, 3, Device::Cpu);
    initialise(&model, 7).unwrap();
    let variables = model.var_store().variables();
    for (name, want) in [
        ("bn1.weight", 1.0),
        ("bn1.running_mean", 0.0),
        ("bn1.running_var", 1.0),
        ("layer3.1.bn2.weight", 1.0),
        ("layer3.1.bn2.running_var", 1.0),
    ] {
        let values = Vec::<f32>::try_from(&variables[name]).unwrap();
        assert!(values.iter().all(|&v| v == want), "{name}");
    }
    let conv = Vec::<f32>::try_from(variables["layer3.1.conv2.weight"].view([-1])).unwrap();
    assert!(conv.iter().any(|&v| v != conv[0]));
    let x = Tensor::ones([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let logits = tch::no_grad(|| model.forward(&x));
    assert!(bool::try_from(logits.isfinite().all()).unwrap());
}

#[test]
fn a_few_steps_lower_the_loss_and_learn_the_classes() {
    let data = squares(30, 3);
    // No flips: they would make "left" and "right" one class.
    let config = TrainConfig {
        epochs: 4,
        batch_size: 8,
        flip: false,
        ..config(5)
    };
    let (_, report, epochs) = fit(&data, &config);
    assert_eq!(epochs, report.history);
    assert_eq!(report.history.len(), 4);
    let first = report.history[0].loss;
    let last = report.history[3].loss;
    assert!(last < 0.5 * first, "loss {first} → {last}");
    // Held out: 0.2 × 30 = 6 per class.
    assert_eq!(report.heldout.images, 18);
    assert_eq!(
        report
            .heldout
            .per_class
            .iter()
            .map(|c| c.images)
            .collect::<Vec<_>>(),
        [6, 6, 6]
    );
    assert!(
        report.heldout.accuracy.unwrap() >= 0.9,
        "{:?}",
        report.heldout
    );
}

#[test]
fn same_seed_same_weights() {
    let data = squares(8, 4);
    let mut short = config(11);
    short.epochs = 2;
    let (a, ra, _) = fit(&data, &short);
    let (b, rb, _) = fit(&data, &short);
    assert_eq!(weights(&a), weights(&b));
    assert_eq!(ra.heldout, rb.heldout);
    short.seed = 12;
    let (c, _, _) = fit(&data, &short);
    assert_ne!(weights(&a), weights(&c));
}

#[test]
fn evaluation_counts_per_class() {
    let data = squares(4, 1);
    let model = Backbone::new(Architecture::TinyCnn, 3, Device::Cpu);
    // All weights zero except the last bias: every image is predicted "right" (1).
    tch::no_grad(|| {
        for (name, mut v) in model.var_store().variables() {
            let _ = v.zero_();
            if name == "classifier.2.bias" {
                v.copy_(&Tensor::from_slice(&[0f32, 1.0, 0.0]));
            }
        }
    });
    let rows: Vec<usize> = (0..data.len()).collect();
    let e = evaluate(&model, &data, &rows, 5).unwrap();
    assert_eq!((e.images, e.correct, e.accuracy), (12, 4, Some(4.0 / 12.0)));
    let per: Vec<(usize, usize)> = e.per_class.iter().map(|c| (c.images, c.correct)).collect();
    assert_eq!(per, [(4, 0), (4, 4), (4, 0)]);
    let empty = evaluate(&model, &data, &[], 5).unwrap();
    assert_eq!((empty.accuracy, empty.per_class[0].accuracy), (None, None));
}

#[test]
fn bad_settings_are_one_error_listing_each() {
    let mut c = TrainConfig::new(Architecture::Resnet18);
    c.epochs = 0;
    c.learning_rate = f64::NAN;
    c.holdout = 1.0;
    let message = c.validate().unwrap_err().to_string();
    for part in [
        "cannot train resnet18",
        "epochs",
        "learning rate",
        "held-out",
    ] {
        assert!(message.contains(part), "{message}");
    }
    assert!(TrainConfig::new(Architecture::TinyCnn).validate().is_ok());
    // A model whose outputs do not match the classes.
    let data = squares(2, 0);
    let model = Backbone::new(Architecture::TinyCnn, 5, Device::Cpu);
    let split = split(&data.labels, 3, 0.0, 0).unwrap();
    let error = train(&model, &data, &split, &config(0), &mut |_| {}).unwrap_err();
    assert!(error.to_string().contains("5 outputs"), "{error}");
}

#[test]
fn learning_rate_decays_by_a_half_cosine() {
    assert_eq!(cosine(2.0, 0.0), 2.0);
    assert!((cosine(2.0, 0.5) - 1.0).abs() < 1e-12);
    assert!(cosine(2.0, 0.999) < 1e-4);
}

#[test]
fn loads_an_image_folder_with_sorted_labels_and_records_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    for (class, value) in [("zebra", 250u8), ("ant", 10)] {
        let folder = dir.path().join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..3 {
            RgbImage::from_pixel(10, 8, Rgb([value, 0, 0]))
                .save(folder.join(format!("{i}.png")))
                .unwrap();
        }
    }
    std::fs::write(dir.path().join("ant/bad.png"), b"nope").unwrap();
    let p = crate::images::Preprocess::imagenet(8, 8);
    let set = ImageSet::load(dir.path(), p, 2).unwrap();
    assert_eq!(set.classes, ["ant", "zebra"]);
    assert_eq!(set.labels, [0, 0, 0, 1, 1, 1]);
    // ImageFolder ids: ant's 0,1,2 then bad.png (3, skipped), zebra 4,5,6.
    assert_eq!(set.ids, [0, 1, 2, 4, 5, 6]);
    assert_eq!(set.skipped.len(), 1);
    assert!(set.skipped[0].path.ends_with("ant/bad.png"));
    assert_eq!(set.pixels.size(), [6, 3, 8, 8]);
    // Same values as the extraction pipeline's decoder.
    let expected = crate::images::load(&dir.path().join("zebra/1.png"), &p).unwrap();
    let row = Vec::<f32>::try_from(set.pixels.get(4).flatten(0, -1)).unwrap();
    assert_eq!(row, expected);

    std::fs::remove_dir_all(dir.path().join("zebra")).unwrap();
    let error = ImageSet::load(dir.path(), p, 1).unwrap_err().to_string();
    assert!(error.contains("at least two classes"), "{error}");
}
