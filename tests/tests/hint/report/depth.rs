//! `hint depth`: three real jobs at three layers of the tiny CNN (`features.1`, `.4`, `.7`),
//! compared. The view sorts them shallow to deep whatever the order given; every F1 is its
//! job's `metrics.json` value; every concentration is recomputed here from the job's
//! `phi.csv`; depth.csv has a row per layer and concept; the page is self-contained and its
//! tables sort in headless Chromium without a script error. Jobs that are not distinct
//! layers of one network are refused, and jobs over different images are warned about.
//!
//! Then the same three layers as one job (`model.layers`) under `hint run`, with
//! `[evaluate]` and `[ablate]`: one extraction pass, each layer's Φ byte for byte the Φ of
//! that layer's own job, each layer's localisation and ablation results and report, and the
//! job's depth view the same figures as `hint depth`'s, drawn in Chromium.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::{failed, hint, succeeded, TinyWorld};

use super::{assert_self_contained, body_tag, chromium, dump_dom, with_script};

const LAYERS: [&str; 3] = ["features.1", "features.4", "features.7"];

/// The sections of every job here.
const SECTIONS: &str = "[extract]\nmethod = \"gradient_x_activation\"\nbackground_ratio = 0.25\n\
                        images_per_task = 64\n\n[shapley]\npermutations = 16\n\
                        permutations_per_task = 16";

/// Runs `spec` (its `[model]` layer line replaced by `layer_line`) under `dir` with `hint
/// run`: the job directory and the output.
fn run_job(tiny: &TinyWorld, dir: &Path, layer_line: &str, sections: &str) -> (PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let spec = tiny
        .spec("depth-test", 5, &dir.join("runs"), sections)
        .replace("layer = \"features.7\"", layer_line);
    let path = dir.join("job.toml");
    std::fs::write(&path, spec).unwrap();
    let out = succeeded(
        &hint(&["run", path.to_str().unwrap(), "--workers", "1"]),
        "hint run",
    );
    (dir.join("runs/job-0001"), out)
}

/// A world and model, and one job per layer of [`LAYERS`] over them: their directories.
fn jobs(dir: &Path) -> (TinyWorld, Vec<PathBuf>) {
    let tiny = TinyWorld::make(dir, 3, 16, 2);
    let jobs = LAYERS
        .iter()
        .map(|layer| {
            let line = format!("layer = \"{layer}\"");
            run_job(&tiny, &dir.join(layer), &line, SECTIONS).0
        })
        .collect();
    (tiny, jobs)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Held-out F1 by concept key, from every `classifiers/*/metrics.json` of a job.
fn f1_by_key(job: &Path) -> BTreeMap<String, f64> {
    let mut f1 = BTreeMap::new();
    for entry in std::fs::read_dir(job.join("classifiers")).unwrap() {
        let metrics = json(&entry.unwrap().path().join("metrics.json"));
        for c in metrics["concepts"].as_array().unwrap() {
            f1.insert(
                c["key"].as_str().unwrap().to_string(),
                c["f1"].as_f64().unwrap(),
            );
        }
    }
    f1
}

/// For each concept name of a job's `phi.csv` with a positive φ, the fewest neurons whose positive φ reach
/// half of the positive sum.
fn half_mass_neurons(job: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(job.join("results/phi.csv")).unwrap();
    let mut phi: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        phi.entry(fields[1].to_string())
            .or_default()
            .push(fields[4].parse::<f64>().unwrap().max(0.0));
    }
    phi.into_iter()
        .filter(|(_, v)| v.iter().sum::<f64>() > 0.0)
        .map(|(name, mut v)| {
            v.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let total: f64 = v.iter().sum();
            let mut k = 0;
            let mut sum = 0.0;
            while sum < total / 2.0 {
                sum += v[k];
                k += 1;
            }
            (name, k)
        })
        .collect()
}

#[test]
fn three_layers_are_compared_shallow_to_deep() {
    chromium();
    let dir = tempfile::tempdir().unwrap();
    let (tiny, jobs) = jobs(dir.path());
    let out = dir.path().join("depth");
    // Given deep, shallow, middle: listed shallow to deep.
    let given = format!("{},{}", jobs[2].display(), jobs[0].display());
    let output = hint(&[
        "depth",
        "--job",
        &given,
        "--job",
        jobs[1].to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = succeeded(&output, "hint depth");
    let at: Vec<usize> = LAYERS.iter().map(|l| stdout.find(l).unwrap()).collect();
    assert!(at[0] < at[1] && at[1] < at[2], "{stdout}");
    assert!(stdout.contains("depth.html"), "{stdout}");

    let depth = json(&out.join("depth.json"));
    assert_eq!(depth["format"], "hint-depth");
    let layers = layers_of(&depth);
    let names: Vec<&str> = layers
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(names, LAYERS);
    let neurons: Vec<u64> = layers
        .iter()
        .map(|l| l["neurons"].as_u64().unwrap())
        .collect();
    assert_eq!(neurons, [16, 32, 64]);
    let concepts = depth["concepts"].as_array().unwrap();
    assert!(concepts.len() >= 10, "{} concepts", concepts.len());
    for (k, job) in jobs.iter().enumerate() {
        let f1 = f1_by_key(job);
        let half = half_mass_neurons(job);
        let mut shared = Vec::new();
        for c in concepts {
            let key = c["key"].as_str().unwrap();
            let at = &c["layers"][k];
            assert_eq!(at["f1"].as_f64(), f1.get(key).copied(), "{key} at {k}");
            if let Some(expected) = half.get(c["name"].as_str().unwrap()) {
                assert_eq!(
                    at["concentration"]["half_mass_neurons"].as_u64(),
                    Some(*expected as u64),
                    "{key} at {k}"
                );
            }
            let top = at["top"].as_array().unwrap();
            assert!(!top.is_empty() && top.len() <= 5, "{key} at {k}");
            if c["shared"].as_bool().unwrap() {
                shared.push(f1[key]);
            }
        }
        let mean = shared.iter().sum::<f64>() / shared.len() as f64;
        let reported = layers[k]["mean_f1"].as_f64().unwrap();
        assert!((mean - reported).abs() < 1e-12, "{mean} vs {reported}");
        let gini = layers[k]["median_gini"].as_f64().unwrap();
        assert!((0.0..1.0).contains(&gini), "{gini}");
    }

    let csv = std::fs::read_to_string(out.join("depth.csv")).unwrap();
    assert!(csv.starts_with("layer,depth,concept,concept_name,level,shared,f1,"));
    assert_eq!(csv.lines().count(), 1 + 3 * concepts.len());

    let page = out.join("depth.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 3);
    let dom = dump_dom(&with_script(&page, "interact.html", SORT_BY_DEEPEST));
    let body = body_tag(&dom);
    assert!(body.contains("data-ready=\"yes\""), "{body}");
    assert!(body.contains("data-f1-sorted=\"yes\""), "{body}");
    assert!(!body.contains("data-script-errors"), "{body}");

    // Refusals: one job; one layer twice (`features.7` given twice).
    let one = failed(
        &hint(&["depth", "--job", jobs[0].to_str().unwrap(), "--out", "x"]),
        "one job",
    );
    assert!(one.contains("at least two"), "{one}");
    let twice = format!("{},{}", jobs[2].display(), jobs[2].display());
    let same = failed(&hint(&["depth", "--job", &twice, "--out", "x"]), "twice");
    assert!(same.contains("the same layer"), "{same}");

    // A job of another network is refused; one over other images is warned about.
    let edited = |k: usize, what: &str, from: &str, to: &str| {
        let copy = dir.path().join(what);
        super::copy_job(&jobs[k], &copy);
        let spec = copy.join("spec.json");
        let text = std::fs::read_to_string(&spec).unwrap();
        assert!(text.contains(from), "{text}");
        std::fs::write(&spec, text.replacen(from, to, 1)).unwrap();
        copy
    };
    let vgg = edited(1, "vgg", "\"tiny_cnn\"", "\"vgg11\"");
    let other = format!("{},{}", jobs[0].display(), vgg.display());
    let refused = failed(&hint(&["depth", "--job", &other, "--out", "x"]), "vgg");
    assert!(refused.contains("one network"), "{refused}");
    let images = dir.path().join("world/images").display().to_string();
    let moved = edited(1, "moved", &images, "/elsewhere/images");
    let pair = format!("{},{}", jobs[0].display(), moved.display());
    let out2 = dir.path().join("depth2");
    let warned = hint(&["depth", "--job", &pair, "--out", out2.to_str().unwrap()]);
    succeeded(&warned, "hint depth over other images");
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert!(
        stderr.contains("warning: the jobs' images differ"),
        "{stderr}"
    );
    let warnings = json(&out2.join("depth.json"))["warnings"].clone();
    assert!(warnings[0].as_str().unwrap().contains("/elsewhere/images"));

    // The three layers as one job, given in another order, with [evaluate] and [ablate].
    let sections = format!("{SECTIONS}\n\n{}", tiny.assessments());
    let line = "layers = [\"features.7\", \"features.1\", \"features.4\"]";
    let (job, stdout) = run_job(&tiny, &dir.path().join("layers"), line, &sections);
    for (k, layer) in LAYERS.iter().enumerate() {
        let own = job.join("layers").join(layer);
        assert!(
            stdout.contains(&format!("{layer} (job-0001.{})", k + 1)),
            "{stdout}"
        );
        assert_eq!(json(&own.join("spec.json"))["model"]["layer"], *layer);
        let phi = std::fs::read(own.join("results/phi.csv")).unwrap();
        let alone = std::fs::read(jobs[k].join("results/phi.csv")).unwrap();
        assert!(phi == alone, "{layer}: Φ differs from the layer's own job");
        for file in ["wsol.json", "ablation.json", "report.html"] {
            assert!(own.join("results").join(file).is_file(), "{layer}: {file}");
        }
    }
    assert!(
        stdout.contains("depth view:") && stdout.contains("mean F1"),
        "{stdout}"
    );
    let layers = json(&job.join("results/layers.json"));
    let outcomes: Vec<&str> = layers
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["succeeded"; 3]);
    let refused = failed(&hint(&["report", "--job", job.to_str().unwrap()]), "report");
    assert!(refused.contains("several layers"), "{refused}");
    // The job's depth view holds the figures `hint depth` computed from the three jobs.
    let in_job = json(&job.join("results/depth.json"));
    for (a, b) in in_job["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(layers_of(&depth))
    {
        for key in [
            "layer",
            "neurons",
            "mean_f1",
            "median_gini",
            "median_half_mass_fraction",
        ] {
            assert_eq!(a[key], b[key], "{key}");
        }
    }
    assert_eq!(in_job["concepts"], depth["concepts"]);
    let page = job.join("results/depth.html");
    let dom = dump_dom(&with_script(&page, "interact.html", SORT_BY_DEEPEST));
    let body = body_tag(&dom);
    assert!(body.contains("data-f1-sorted=\"yes\""), "{body}");
    assert!(!body.contains("data-script-errors"), "{body}");
}

fn layers_of(depth: &serde_json::Value) -> &Vec<serde_json::Value> {
    depth["layers"].as_array().unwrap()
}

/// Sorts the F1 table by its deepest layer's column, descending (two clicks), and checks the
/// order; the page's script marks `data-ready` when it has run.
const SORT_BY_DEEPEST: &str = r##"
var table = document.getElementById("depth-f1");
var column = table.tHead.rows[0].cells.length - 2;
table.tHead.rows[0].cells[column].click();
table.tHead.rows[0].cells[column].click();
var f1 = Array.prototype.map.call(table.tBodies[0].rows, function (r) { return Number(r.cells[column].dataset.v); });
document.body.dataset.f1Sorted = f1.every(function (v, i) { return i === 0 || f1[i - 1] >= v; }) ? "yes" : "no";
"##;
