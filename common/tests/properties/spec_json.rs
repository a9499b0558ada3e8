//! The job spec as workers receive it: `JobSpec::to_json` / `from_json`. (The TOML reader
//! is the coordinator's, tested there: `hint_coordinator::spec` properties.)

use std::path::PathBuf;

use hint_common::ablation::{AblationSelection, Removal};
use hint_common::job::spec::{
    AblateSpec, ClassifySpec, DataSpec, EvaluateSpec, ExtractSpec, HierarchySpec, ModelSpec,
    SchedulerSpec, ShapleySpec, StorageSpec,
};
use hint_common::job::JobSpec;
use hint_common::regions::sample::Negatives;
use hint_common::regions::{ActivationType, Compression};
use hint_common::settings::{Aggregation, Baseline, MethodName, Mode};
use hint_common::shapley::{Quality, Replacement};
use proptest::prelude::*;
use proptest::sample::select;

/// Any finite f64 (JSON has no NaN or infinity; the spec reader refuses them).
fn finite() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

fn finite_f32() -> impl Strategy<Value = f32> {
    use proptest::num::f32::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

fn path() -> impl Strategy<Value = PathBuf> {
    any::<String>().prop_map(PathBuf::from)
}

fn model() -> impl Strategy<Value = ModelSpec> {
    (
        any::<String>(),
        path(),
        any::<String>(),
        any::<Option<u32>>(),
        any::<Option<u32>>(),
        prop::collection::vec(any::<String>(), 0..4),
    )
        .prop_map(
            |(architecture, weights, layer, resize, crop, layers)| ModelSpec {
                architecture,
                weights,
                layer,
                layers,
                resize,
                crop,
            },
        )
}

fn hierarchy() -> impl Strategy<Value = HierarchySpec> {
    prop_oneof![
        path().prop_map(|path| HierarchySpec::File { path }),
        (
            proptest::option::of(path()),
            proptest::collection::vec(any::<String>(), 0..3),
            any::<Option<u64>>(),
            any::<bool>(),
            any::<Option<u32>>(),
            any::<bool>(),
        )
            .prop_map(
                |(dir, roots, min_images, collapse, max_depth, drop_uncovered)| {
                    HierarchySpec::Wordnet {
                        dir,
                        roots,
                        min_images,
                        collapse,
                        max_depth,
                        drop_uncovered,
                    }
                }
            ),
    ]
}

fn data() -> impl Strategy<Value = DataSpec> {
    (path(), proptest::option::of(path()), hierarchy()).prop_map(|(images, labels, hierarchy)| {
        DataSpec {
            images,
            labels,
            hierarchy,
        }
    })
}

fn extract() -> impl Strategy<Value = ExtractSpec> {
    (
        (
            select(&MethodName::ALL[..]),
            any::<usize>(),
            finite(),
            any::<usize>(),
        ),
        select(&[Baseline::Zero, Baseline::Black][..]),
        select(&Aggregation::ALL[..]),
        finite_f32(),
        finite(),
        (
            select(&[ActivationType::F32, ActivationType::F16][..]),
            select(&[Compression::Zstd, Compression::Lz4][..]),
        ),
        any::<usize>(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |(
                (method, samples, noise, steps),
                baseline,
                aggregation,
                threshold,
                background_ratio,
                (activation_type, compression),
                batch_size,
                images_per_task,
            )| ExtractSpec {
                method,
                samples,
                noise,
                steps,
                baseline,
                aggregation,
                threshold,
                background_ratio,
                activation_type,
                compression,
                batch_size,
                images_per_task,
            },
        )
}

fn classify() -> impl Strategy<Value = ClassifySpec> {
    (
        any::<usize>(),
        finite(),
        select(
            &[
                Negatives::Mixed,
                Negatives::Background,
                Negatives::Others,
                Negatives::Siblings,
            ][..],
        ),
        finite(),
        any::<usize>(),
        finite(),
        any::<usize>(),
    )
        .prop_map(
            |(max_per_class, holdout, negatives, l2, iterations, tolerance, concepts_per_task)| {
                ClassifySpec {
                    max_per_class,
                    holdout,
                    negatives,
                    l2,
                    iterations,
                    tolerance,
                    concepts_per_task,
                }
            },
        )
}

fn shapley() -> impl Strategy<Value = ShapleySpec> {
    (
        (
            select(&[Mode::Fixed, Mode::Retrain][..]),
            select(&Quality::ALL[..]),
            select(&[Replacement::Marginal, Replacement::Mean, Replacement::Zero][..]),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            proptest::option::of(finite()),
            any::<Option<usize>>(),
            finite(),
            proptest::option::of(finite()),
        ),
        (
            any::<usize>(),
            finite(),
            any::<usize>(),
            any::<usize>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (mode, quality, replacement, antithetic, permutations, permutations_per_task),
                (until_stderr, until_top_k, confidence, truncation),
                (retrain_iterations, retrain_l2, retrain_fit_regions, top, sweep_on_device),
            )| ShapleySpec {
                mode,
                quality,
                replacement,
                antithetic,
                permutations,
                permutations_per_task,
                until_stderr,
                until_top_k,
                confidence,
                truncation,
                retrain_iterations,
                retrain_l2,
                retrain_fit_regions,
                top,
                sweep_on_device,
            },
        )
}

fn evaluate() -> impl Strategy<Value = EvaluateSpec> {
    (
        path(),
        proptest::option::of(path()),
        proptest::collection::vec(any::<u32>(), 0..5),
        any::<usize>(),
        any::<u32>(),
        any::<usize>(),
        proptest::option::of(path()),
    )
        .prop_map(
            |(
                annotations,
                masks,
                fractions,
                images_per_concept,
                random_draws,
                bootstrap,
                images,
            )| {
                EvaluateSpec {
                    annotations,
                    masks,
                    fractions,
                    images_per_concept,
                    random_draws,
                    bootstrap,
                    images,
                }
            },
        )
}

fn ablate() -> impl Strategy<Value = AblateSpec> {
    (
        proptest::option::of(path()),
        any::<usize>(),
        proptest::collection::vec(any::<u32>(), 0..5),
        proptest::collection::vec(select(&Removal::ALL[..]), 0..3),
        proptest::collection::vec(select(&AblationSelection::ALL[..]), 0..7),
        any::<u32>(),
        any::<usize>(),
    )
        .prop_map(
            |(images, max_images, fractions, removals, selections, random_draws, bootstrap)| {
                AblateSpec {
                    images,
                    max_images,
                    fractions,
                    removals,
                    selections,
                    random_draws,
                    bootstrap,
                }
            },
        )
}

/// Any spec the types can hold (JSON must carry more than what the TOML reader accepts).
pub fn job_spec() -> impl Strategy<Value = JobSpec> {
    (
        (any::<String>(), any::<u64>(), model(), data()),
        (extract(), classify(), shapley()),
        (
            path(),
            any::<u32>(),
            proptest::option::of(evaluate()),
            proptest::option::of(ablate()),
        ),
    )
        .prop_map(
            |(
                (name, seed, model, data),
                (extract, classify, shapley),
                (root, max_attempts, evaluate, ablate),
            )| {
                JobSpec {
                    name,
                    seed,
                    model,
                    data,
                    extract,
                    classify,
                    shapley,
                    storage: StorageSpec { root },
                    scheduler: SchedulerSpec { max_attempts },
                    evaluate,
                    ablate,
                }
            },
        )
}

proptest! {
    #![proptest_config(crate::config(64))]

    /// Every spec reaches a worker as it was: the same floats bit for bit, the same paths,
    /// names and options.
    #[test]
    fn specs_round_trip_through_json(spec in job_spec()) {
        let json = spec.to_json();
        let back = JobSpec::from_json(&json);
        prop_assert_eq!(back.as_ref().ok(), Some(&spec), "{:?}\n{}", back.as_ref().err(), json);
    }

    /// A spec damaged on the way (or written by another version) is an error, not a panic.
    #[test]
    fn damaged_spec_json_never_panics(
        spec in job_spec(),
        edits in crate::edits(&["{", "}", "[", "]", ",", ":", "\"", "null", "1e400", "-1", "18446744073709551616", "\"source\": \"file\"", "\"mode\": \"other\""]),
        text in any::<String>(),
    ) {
        let _ = JobSpec::from_json(&crate::apply(&spec.to_json(), &edits));
        let _ = JobSpec::from_json(&text);
    }
}

/// Found by `specs_round_trip_through_json`: serde_json's default float parser read some
/// 17-digit floats one ulp off, so a worker's spec could differ from the coordinator's. The
/// workspace enables its `float_roundtrip` feature.
#[test]
fn seventeen_digit_floats_reach_workers_bit_for_bit() {
    for x in [
        5.2703720179435035e-241f64,
        -4.5204012524434624e-268,
        -6.158526588829958e-218,
    ] {
        let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
        assert_eq!(back.to_bits(), x.to_bits(), "{x:e}");
    }
}
