//! A whole job on object storage: the images, the weights, the hierarchy and the storage
//! root on a real S3 server (moto's, over HTTP), run by `hint run` with 2 workers. Φ is
//! bit-identical to the same job on local files; the plan, the region files and the
//! classifiers are where the job says; nothing is left under `attempts/`. Objects are
//! put and read back by the fixture's own HTTP client, independent of ours. The evaluate
//! and ablate stages run on the job in S3 (the workers mirror what they read; `[evaluate]`'s
//! annotations and masks are in the bucket too) and write
//! the local run's wsol.json, heatmaps and ablation.json — all with a cache limit of one byte
//! (every fetch evicts what no task holds). A commit cut short by a crash
//! (some objects moved, some not) is finished by redoing it.

use std::path::Path;

use hint_coordinator::coordinator::move_committed;
use hint_coordinator::scheduler::records::CommittedFile;
use hint_coordinator::scheduler::Output as Committed;

use crate::moto::Moto;
use crate::support::{failed, hint, job_spec, succeeded, TinyWorld};

/// The job's settings after `[data]`: small, and the same for both runs (with the world's
/// [`TinyWorld::assessments`]).
const SECTIONS: &str = r#"[extract]
method = "gradient_x_activation"
background_ratio = 0.25
batch_size = 8
images_per_task = 32

[classify]
concepts_per_task = 8

[shapley]
permutations = 16
permutations_per_task = 8"#;

#[test]
fn a_job_on_s3_gives_the_local_phi_bit_for_bit() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let tiny = TinyWorld::make(dir, 5, 12, 1);
    // `[ablate]` on an image set named by `images` (here the job's own images): a URL in
    // the S3 run.
    let sections = format!("{SECTIONS}\n\n{}", tiny.assessments()).replace(
        "[ablate]\n",
        &format!("[ablate]\nimages = \"{}\"\n", tiny.images().display()),
    );

    // The reference: the same job on local files.
    let local_runs = dir.join("local-runs");
    let local = dir.join("local.toml");
    std::fs::write(&local, tiny.spec("s3-test", 11, &local_runs, &sections)).unwrap();
    succeeded(
        &hint(&[
            "run",
            local.to_str().unwrap(),
            "--workers",
            "2",
            "--device",
            "cpu",
        ]),
        "hint run (local)",
    );
    let local_phi = std::fs::read(local_runs.join("job-0001/results/phi.csv")).unwrap();

    let moto = Moto::start();
    moto.create_bucket("hint-data");
    moto.create_bucket("hint-runs");
    moto.put_dir(&tiny.images(), "hint-data", "world/images");
    // `[evaluate]` reads its annotations and masks from the bucket too.
    let mut remote_sections = sections.replace(
        &format!("images = \"{}\"", tiny.images().display()),
        "images = \"s3://hint-data/world/images\"",
    );
    assert!(remote_sections.contains("images = \"s3://hint-data/world/images\""));
    for tree in ["annotations", "masks"] {
        let local = tiny.world.join(tree);
        moto.put_dir(&local, "hint-data", &format!("world/{tree}"));
        remote_sections = remote_sections.replace(
            local.to_str().unwrap(),
            &format!("s3://hint-data/world/{tree}"),
        );
        assert!(remote_sections.contains(&format!("s3://hint-data/world/{tree}")));
    }
    let read = |p: &Path| std::fs::read(p).unwrap();
    moto.put(
        "hint-data",
        "model/tiny_cnn.safetensors",
        &read(&tiny.weights),
    );
    moto.put(
        "hint-data",
        "model/hierarchy.yaml",
        &read(&tiny.hierarchy()),
    );
    let remote = dir.join("s3.toml");
    let inputs = [
        "s3://hint-data/world/images",
        "s3://hint-data/model/tiny_cnn.safetensors",
        "s3://hint-data/model/hierarchy.yaml",
    ];
    std::fs::write(
        &remote,
        job_spec(
            "s3-test",
            11,
            inputs,
            "s3://hint-runs/runs",
            &remote_sections,
        ),
    )
    .unwrap();
    let cache = dir.join("cache");

    // `hint check` asks the store: a missing object is named with its URL.
    let wrong = std::fs::read_to_string(&remote)
        .unwrap()
        .replace("model/tiny_cnn.safetensors", "model/missing.safetensors");
    std::fs::write(dir.join("wrong.toml"), wrong).unwrap();
    let check = moto.hint(&cache, &["check", dir.join("wrong.toml").to_str().unwrap()]);
    let stderr = failed(&check, "hint check of a spec naming a missing object");
    assert!(
        stderr.contains("model.weights")
            && stderr.contains("s3://hint-data/model/missing.safetensors"),
        "{stderr}"
    );
    // A remote storage root needs a local state directory for the journal.
    let no_state = moto.hint(&cache, &["run", remote.to_str().unwrap()]);
    assert!(failed(&no_state, "hint run without --state").contains("--state"));

    let state = dir.join("state");
    // A cache limit far below the job's files: every fetch evicts what no task holds, and
    // the results must not change.
    let run = moto.hint_with_env(
        &cache,
        &[("HINT_CACHE_LIMIT", "1")],
        &[
            "run",
            remote.to_str().unwrap(),
            "--workers",
            "2",
            "--device",
            "cpu",
            "--state",
            state.to_str().unwrap(),
        ],
    );
    succeeded(&run, "hint run (s3)");

    let names = moto.keys("hint-runs", "runs/job-0001/");
    // The limit was honoured: of everything fetched, at most what a task held at the end
    // is left (the region files alone are far over one byte).
    let regions = names.iter().filter(|n| n.contains("/regions/")).count();
    let cached = std::fs::read_dir(cache.join("s3/hint-runs/runs/job-0001/regions"))
        .map_or(0, |entries| entries.count());
    assert!(
        regions >= 2 && cached < regions,
        "{cached} of {regions} region files left in the cache"
    );
    let keys = names.join("\n");
    for expected in [
        "runs/job-0001/spec.json",
        "runs/job-0001/manifest.csv",
        "runs/job-0001/labels.txt",
        "runs/job-0001/concepts.json",
        "runs/job-0001/regions/regions-s00000-00000.parquet",
        "runs/job-0001/results/phi.parquet",
        "runs/job-0001/results/report.html",
        "runs/job-0001/results/job.json",
        "runs/job-0001/results/wsol.json",
        "runs/job-0001/results/ablation.json",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from:\n{keys}"
        );
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("runs/job-0001/classifiers/") && n.ends_with(".safetensors")),
        "no classifier in:\n{keys}"
    );
    assert!(
        !names.iter().any(|n| n.contains("/attempts/")),
        "attempts left behind:\n{keys}"
    );

    let remote_phi = moto
        .get("hint-runs", "runs/job-0001/results/phi.csv")
        .expect("phi.csv");
    assert!(
        remote_phi == local_phi,
        "Φ on S3 differs from Φ on local files"
    );
    // The assessments of the job in S3 are the local job's (which name the images by their
    // local paths), heatmaps included, and the second report read them.
    let local_results = local_runs.join("job-0001/results");
    for name in ["wsol.json", "ablation.json"] {
        let remote = moto
            .get("hint-runs", &format!("runs/job-0001/results/{name}"))
            .unwrap_or_else(|| panic!("{name}"));
        let local = std::fs::read_to_string(local_results.join(name))
            .unwrap()
            .replace(tiny.images().to_str().unwrap(), inputs[0]);
        assert!(
            String::from_utf8(remote).unwrap() == local,
            "{name} on S3 differs from the local run's"
        );
    }
    let heatmaps: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("runs/job-0001/results/heatmaps/"))
        .collect();
    assert!(!heatmaps.is_empty(), "no heatmap in:\n{keys}");
    for key in heatmaps {
        let relative = key.trim_start_matches("runs/job-0001/results/");
        assert!(
            moto.get("hint-runs", key) == std::fs::read(local_results.join(relative)).ok(),
            "{key} differs from the local run's"
        );
    }
    let report = String::from_utf8(
        moto.get("hint-runs", "runs/job-0001/results/report.html")
            .expect("report.html"),
    )
    .unwrap();
    // A section with results opens with a line break; an empty one with "No …".
    for section in [
        "<h2>Localisation (WSOL)</h2>\n",
        "<h2>Causal ablation</h2>\n",
    ] {
        assert!(report.contains(section), "the report lacks {section:?}");
    }
}

#[test]
fn a_commit_cut_short_on_s3_is_finished_by_redoing_it() {
    let moto = Moto::shared();
    moto.create_bucket("hint-commit");
    let attempt = "job-0001/attempts/train-00000-a1";
    let committed = "job-0001/classifiers/train-00000";
    let names = [
        "concept-00000.safetensors",
        "concept-00001.safetensors",
        "metrics.json",
    ];
    for name in names {
        moto.put("hint-commit", &format!("{attempt}/{name}"), name.as_bytes());
    }
    // The coordinator died after moving the first object (copied, then deleted).
    moto.put(
        "hint-commit",
        &format!("{committed}/{}", names[0]),
        names[0].as_bytes(),
    );
    let deleted = moto.request(
        "DELETE",
        &format!("/hint-commit/{attempt}/{}", names[0]),
        &[],
    );
    assert_eq!(deleted.status, 204, "{}", deleted.text());

    let output = Committed::Train {
        from: format!("s3://hint-commit/{attempt}"),
        dir: format!("s3://hint-commit/{committed}"),
        trained: vec![0, 1],
    };
    let expected: Vec<String> = names.iter().map(|n| format!("{committed}/{n}")).collect();
    for _ in 0..2 {
        // Redone from the journal, and redone again: the same end state.
        move_committed(&output).expect("the commit is redone");
        assert_eq!(moto.keys("hint-commit", "job-0001/"), expected);
    }
    for name in names {
        let body = moto.get("hint-commit", &format!("{committed}/{name}"));
        assert_eq!(body.as_deref(), Some(name.as_bytes()));
    }

    // A committed region file that is neither in the attempt nor in place is an error naming
    // both (the job's files were removed behind the coordinator's back).
    let lost = Committed::Extract {
        files: vec![CommittedFile {
            from: "s3://hint-commit/job-0001/attempts/extract-00000-a1/r.parquet".into(),
            path: "s3://hint-commit/job-0001/regions/r.parquet".into(),
            rows: 1,
            foreground: 1,
            background: 0,
        }],
        skipped: Vec::new(),
        images: 1,
    };
    let error = move_committed(&lost).unwrap_err();
    assert!(
        error.contains("attempts/extract-00000-a1/r.parquet is missing")
            && error.contains("regions/r.parquet was never committed"),
        "{error}"
    );
}
