//! `hint report`: the report of a real (small) job is one self-contained HTML file that
//! headless Chromium (Debian's `chromium`, installed by scripts/bootstrap.sh) renders with
//! no script error — also when its heatmap, tables and tree are used — into a screenshot
//! that is not blank; localisation results, when present, are embedded with their heatmaps,
//! and ablation results are drawn (`report/ablation.rs`); `hint depth` compares jobs at
//! several layers (`report/depth.rs`).

mod ablation;
mod depth;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use hint_common::wsol::{ConceptRow, Heatmap, Selection, SummaryRow, WsolReport, WSOL_FILE};

use crate::support::{hint, succeeded, TinyWorld};

/// A world, a briefly trained tiny CNN and a finished job over them, made once: the job
/// directory.
fn job() -> &'static Path {
    static JOB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, job) = JOB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let tiny = TinyWorld::make(dir.path(), 3, 16, 2);
        let (job, _) = tiny.run_job(
            dir.path(),
            "report-test",
            5,
            r#"[extract]
method = "gradient_x_activation"
background_ratio = 0.25
images_per_task = 64

[shapley]
permutations = 16
permutations_per_task = 16"#,
        );
        (dir, job)
    });
    job
}

/// Chromium, and a copy of the job in a temporary directory as `job-0001` (for a test
/// that writes into its `results/`): (the directory, the copy, the job's spec.json).
fn job_copy() -> (tempfile::TempDir, PathBuf, serde_json::Value) {
    chromium();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("job-0001");
    copy_job(job(), &copy);
    let spec =
        serde_json::from_str(&std::fs::read_to_string(job().join("spec.json")).unwrap()).unwrap();
    (dir, copy, spec)
}

/// The page, with the interaction script added, ran in headless Chromium: the script
/// finished, every image decoded, nothing threw.
fn assert_interacts_cleanly(page: &Path) {
    let dom = dump_dom(&with_script(page, "interact.html", INTERACT));
    let body = body_tag(&dom);
    assert!(body.contains("data-interacted=\"yes\""), "{body}");
    assert!(body.contains("data-broken-images=\"0\""), "{body}");
    assert!(!body.contains("data-script-errors"), "{body}");
}

/// Runs `hint report --job DIR`; the report's path, which it prints.
fn report(job: &Path) -> PathBuf {
    let out = succeeded(
        &hint(&["report", "--job", job.to_str().unwrap()]),
        "hint report",
    );
    let path = PathBuf::from(out.trim());
    assert_eq!(path, job.join("results/report.html"));
    path
}

/// Debian's `chromium`; a missing one fails the test (the report test is not optional).
fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|path| path.is_file())
        })
        .expect("chromium is not installed: run scripts/bootstrap.sh")
}

/// Headless Chromium on `page` with `args`, under a 90-second limit, with its own profile.
fn run_chromium(page: &Path, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().expect("tempdir");
    let output = Command::new("timeout")
        .arg("90")
        .arg(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("starting chromium");
    assert!(
        output.status.success(),
        "chromium failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The DOM of `page` after its scripts ran.
fn dump_dom(page: &Path) -> String {
    String::from_utf8(run_chromium(page, &["--dump-dom"]).stdout).expect("UTF-8 DOM")
}

/// The `<body …>` tag of a dumped DOM.
fn body_tag(dom: &str) -> &str {
    let start = dom.find("<body").expect("a body");
    &dom[start..start + dom[start..].find('>').expect("the body tag ends")]
}

/// A copy of `page` beside it with `script` run at the end of its body.
fn with_script(page: &Path, name: &str, script: &str) -> PathBuf {
    let html = std::fs::read_to_string(page).unwrap();
    let at = html.rfind("</body>").expect("</body>");
    let copy = page.with_file_name(name);
    let text = format!("{}<script>{script}</script>{}", &html[..at], &html[at..]);
    std::fs::write(&copy, text).unwrap();
    copy
}

/// Every `src` / `href` / `url(` target is on the page itself: `#…` or a `data:` URI.
fn assert_self_contained(html: &str) {
    for attribute in ["src=\"", "href=\"", "url("] {
        for (at, _) in html.match_indices(attribute) {
            let target = &html[at + attribute.len()..];
            assert!(
                target.starts_with('#') || target.starts_with("data:"),
                "the page refers outside itself: {}",
                &html[at..(at + 80).min(html.len())]
            );
        }
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<link") && !html.contains("@import"));
}

/// Uses the page as a reader would: every sort of the heatmap, hovering and clicking it,
/// sorting the classifier table by F1 (descending after two clicks: checked), the tree
/// buttons; then counts images that failed to decode. Errors land in data-script-errors.
const INTERACT: &str = r##"
var select = document.getElementById("phi-sort");
for (var i = 0; i < select.options.length; i++) {
  select.value = select.options[i].value;
  select.dispatchEvent(new Event("change"));
}
var canvas = document.getElementById("phi-canvas");
var box = canvas.getBoundingClientRect();
var at = { clientX: box.left + 0.3 * box.width, clientY: box.top + 0.5 * box.height, bubbles: true };
canvas.dispatchEvent(new MouseEvent("mousemove", at));
canvas.dispatchEvent(new MouseEvent("click", at));
if (document.getElementById("phi-tip").hidden) throw new Error("no tooltip over a cell");
var table = document.querySelector("#classifiers table");
table.tHead.rows[0].cells[2].click();
table.tHead.rows[0].cells[2].click();
var f1 = Array.prototype.map.call(table.tBodies[0].rows, function (r) { return Number(r.cells[2].dataset.v); });
document.body.dataset.f1Sorted = f1.every(function (v, i) { return i === 0 || f1[i - 1] >= v; }) ? "yes" : "no";
document.querySelector("button[data-tree=close]").click();
document.querySelector("button[data-tree=open]").click();
document.body.dataset.brokenImages = String(Array.prototype.filter.call(document.images, function (im) { return !im.complete || im.naturalWidth === 0; }).length);
document.body.dataset.interacted = "yes";
"##;

#[test]
fn the_report_of_a_job_is_self_contained_and_renders_in_headless_chromium() {
    let chromium = chromium();
    let job = job();
    let page = report(job);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);

    // Every concept, and the run's metadata.
    let concepts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.join("results/concepts.json")).unwrap())
            .unwrap();
    let concepts = concepts["concepts"].as_array().unwrap();
    assert!(concepts.len() >= 10, "the synthetic world's hierarchy");
    for concept in concepts {
        let name = concept["name"].as_str().unwrap();
        assert!(
            html.contains(&format!(">{name}<")),
            "concept {name} missing"
        );
        let id = &concept["id"];
        assert!(
            html.contains(&format!("id=\"concept-{id}\"")),
            "tree node {id}"
        );
    }
    for needle in [
        "job-0001",
        "report-test",
        "tiny_cnn",
        "features.7",
        "gradient_x_activation",
        "<dt>Seed</dt><dd>5</dd>",
        "16 per concept",
        "F1 0.",
        "run <code>hint evaluate</code> to add localisation results",
        "No concept maps in this job",
        "No attacks in this job",
        "No sanity check in this job",
        "No task was quarantined.",
        "<h2>Responsible regions</h2>",
        "Images with a responsible region",
    ] {
        assert!(html.contains(needle), "the page lacks {needle:?}");
    }
    // The coordinator measured the regions of every shard together.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job.join("results/job.json")).unwrap())
            .unwrap();
    let quality = &summary["region_quality"];
    assert_eq!(quality["images"], summary["images_processed"], "{quality}");
    assert_eq!(quality["layer"], "features.7");
    assert!(
        quality["images_with_regions"].as_u64().unwrap() > 0,
        "{quality}"
    );

    // It runs: ready, no script error.
    let dom = dump_dom(&page);
    let body = body_tag(&dom);
    assert!(body.contains("data-ready=\"yes\""), "{body}");
    assert!(!body.contains("data-script-errors"), "{body}");

    // And is used without error; sorting the table by F1 sorts it.
    let dom = dump_dom(&with_script(&page, "interact.html", INTERACT));
    let body = body_tag(&dom);
    assert!(body.contains("data-interacted=\"yes\""), "{body}");
    assert!(body.contains("data-f1-sorted=\"yes\""), "{body}");
    assert!(!body.contains("data-script-errors"), "{body}\n{dom}");

    // The check itself sees a script error.
    let broken = with_script(&page, "broken.html", "undefinedFunction();");
    let body = body_tag(&dump_dom(&broken)).to_string();
    assert!(body.contains("data-script-errors=\"1\""), "{body}");

    // The screenshot is a page, not a blank: many colours, much ink, and the heatmap's red
    // cells (the legend alone has a few hundred such pixels).
    let shot = page.with_file_name("shot.png");
    let args = [
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,1600".to_string(),
    ];
    run_chromium(&page, &[&args[0], &args[1]]);
    let image = image::open(&shot).expect("a PNG screenshot").to_rgb8();
    assert_eq!(image.dimensions(), (1280, 1600));
    let pixels: Vec<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    let colours: std::collections::HashSet<[u8; 3]> = pixels.iter().copied().collect();
    let ink = pixels.iter().filter(|p| **p != [255, 255, 255]).count() as f64;
    let red = pixels
        .iter()
        .filter(|[r, g, b]| *r > 150 && *g < 110 && *b < 110)
        .count();
    let ink_fraction = ink / pixels.len() as f64;
    assert!(colours.len() > 200, "{} colours", colours.len());
    assert!(
        ink_fraction > 0.2,
        "{ink_fraction} of the pixels are not white"
    );
    assert!(red > 3000, "{red} red pixels: no heatmap drawn");
    eprintln!(
        "{}: screenshot {} colours, {:.0}% ink, {red} heatmap-red pixels",
        String::from_utf8_lossy(
            &Command::new(chromium)
                .arg("--version")
                .output()
                .unwrap()
                .stdout
        )
        .trim(),
        colours.len(),
        100.0 * ink_fraction
    );
}

/// Copies what the report reads of a job (not its region files, nor what the other test
/// writes into its results/ meanwhile) to `to`.
fn copy_job(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("results")).unwrap();
    for file in [
        "spec.json",
        "results/job.json",
        "results/phi.csv",
        "results/top_neurons.csv",
        "results/multimodal.csv",
        "results/concepts.json",
    ] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    for entry in std::fs::read_dir(from.join("classifiers")).unwrap() {
        let dir = to.join("classifiers").join(entry.unwrap().file_name());
        std::fs::create_dir_all(&dir).unwrap();
        let metrics = from.join("classifiers").join(dir.file_name().unwrap());
        std::fs::copy(metrics.join("metrics.json"), dir.join("metrics.json")).unwrap();
    }
}

#[test]
fn localisation_results_and_their_heatmaps_are_embedded() {
    chromium();
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job-0001");
    std::fs::create_dir(&job).unwrap();
    copy_job(self::job(), &job);
    // A wsol.json written through the type `hint evaluate` writes, with three heatmaps of two
    // concepts (this test is about the report, not about localisation).
    let results = job.join("results");
    std::fs::create_dir(results.join("heatmaps")).unwrap();
    let mut heatmaps = Vec::new();
    for (k, (concept, name)) in [(3, "bird"), (3, "bird"), (7, "bus")]
        .into_iter()
        .enumerate()
    {
        let png = format!("heatmaps/{name}-{k}.png");
        image::RgbImage::from_fn(48, 48, |x, y| {
            image::Rgb([(x * 5) as u8, 40, (y * 5) as u8])
        })
        .save(results.join(&png))
        .unwrap();
        heatmaps.push(Heatmap {
            concept,
            name: name.into(),
            image: format!("/data/{name}_{k}.jpg"),
            png,
            selection: Selection::Shapley,
            fraction: 10,
        });
    }
    let row = |selection, fraction, loc_accuracy| SummaryRow {
        selection,
        fraction,
        neurons: 7,
        images: 24,
        draws: 1,
        loc_accuracy,
        pointing: 0.625,
        mask_iou: None,
        loc_accuracy_sd: None,
        pointing_sd: None,
        mask_iou_sd: None,
        max_box_acc: None,
        max_box_threshold: None,
    };
    let (shapley, random) = (Selection::Shapley, Selection::Random);
    let wsol = WsolReport {
        fractions: vec![10, 80],
        selections: vec![shapley, random],
        summary: vec![
            row(shapley, 10, 0.45),
            row(random, 10, 0.125),
            row(shapley, 80, 0.5),
            row(random, 80, 0.25),
        ],
        comparisons: Vec::new(),
        random_draws: 1,
        bootstrap: None,
        concepts: vec![ConceptRow {
            concept: 3,
            name: "bird".into(),
            level: 2,
            selection: shapley,
            fraction: 10,
            images: 8,
            draws: 1,
            loc_accuracy: 0.875,
            pointing: 1.0,
            mask_iou: Some(0.3),
            loc_accuracy_sd: None,
            max_box_acc: None,
        }],
        heatmaps,
        threshold: 0.5,
        seed: 0,
        neurons: 64,
        skipped: Vec::new(),
        image_source: String::new(),
        region_lift: None,
    };
    wsol.write(&results.join(WSOL_FILE)).unwrap();

    let page = report(&job);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    assert!(!html.contains("to add localisation results"));
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 3);
    for needle in [
        "45.0%",
        "12.5%",
        "62.5%",
        "87.5%",
        "30.0%",
        "bird_0.jpg",
        "bus_2.jpg",
    ] {
        assert!(html.contains(needle), "the page lacks {needle:?}");
    }
    assert_interacts_cleanly(&page);
}

/// `hint explain --boxes`, run for real on the job with its maps written into (a copy of) the
/// job's `results/explain/`: the report shows each image's maps with their box checks and
/// the per-concept table, names the image it could not read, and every embedded map decodes
/// in the browser.
#[test]
fn concept_maps_of_hint_explain_are_embedded() {
    let (dir, copy, spec) = job_copy();
    // Two of the world's images and one that is not an image.
    let images = dir.path().join("photos");
    std::fs::create_dir(&images).unwrap();
    let class_dir = std::fs::read_dir(spec["data"]["images"].as_str().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let mut world_images: Vec<PathBuf> = std::fs::read_dir(&class_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    world_images.sort();
    for image in world_images.iter().take(2) {
        std::fs::copy(image, images.join(image.file_name().unwrap())).unwrap();
    }
    let world = Path::new(spec["data"]["images"].as_str().unwrap())
        .parent()
        .unwrap();
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();

    let out = copy.join("results/explain");
    succeeded(
        &hint(&[
            "explain",
            "--job",
            job().to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--boxes",
            world.join("annotations").to_str().unwrap(),
            "--masks",
            world.join("masks").to_str().unwrap(),
        ]),
        "hint explain",
    );
    let explained: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("explain.json")).unwrap()).unwrap();
    let maps = explained["maps"].as_array().unwrap();
    assert!(
        maps.len() >= 4,
        "two images, two concepts or more: {}",
        maps.len()
    );

    let page = report(&copy);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("<a href=\"#explain\">Concept maps</a>"));
    assert!(!html.contains("No concept maps in this job"));
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        maps.len(),
        "every map is embedded"
    );
    for map in maps {
        let caption = format!(
            "p = {:.3} at [{}, {}]",
            map["peak_probability"].as_f64().unwrap(),
            map["peak"][0],
            map["peak"][1]
        );
        assert!(html.contains(&caption), "the page lacks {caption:?}");
    }
    let second = world_images[1].file_name().unwrap().to_str().unwrap();
    assert!(
        html.contains(&format!(">{second}</h3>")),
        "a gallery per image"
    );
    // The world's own boxes: every map is checked, and the table sums them up.
    assert!(html.contains("<h3>Against the given boxes</h3>"));
    assert!(html.contains("<th class=\"num\">mean mask IoU</th>"));
    assert!(
        !html.contains("not checked"),
        "both images have their boxes"
    );
    assert_eq!(
        html.matches("points into a box").count()
            + html.matches("points outside the boxes").count(),
        maps.len()
    );
    assert!(
        html.contains("1 image(s) could not be read"),
        "the broken file is named"
    );
    assert!(html.contains("broken.png"));
    assert_interacts_cleanly(&page);
}

/// `hint attack`, run for real on the job with its output written into (a copy of) the
/// job's `results/attack/`: the report has a table per (source, target) pair with the
/// numbers of attack.json, one example's clean and attacked maps per pair, and every embedded
/// map decodes in the browser.
#[test]
fn attacks_of_hint_attack_are_shown_per_pair() {
    let (dir, copy, spec) = job_copy();
    // The first image of two classes, attacked toward both classes.
    let mut classes: Vec<PathBuf> = std::fs::read_dir(spec["data"]["images"].as_str().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let images = dir.path().join("photos");
    std::fs::create_dir(&images).unwrap();
    for class in &classes[..2] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        std::fs::copy(&files[0], images.join(files[0].file_name().unwrap())).unwrap();
    }
    let name = |p: &PathBuf| p.file_name().unwrap().to_str().unwrap().to_string();
    let targets = format!("{},{}", name(&classes[0]), name(&classes[1]));
    let out = copy.join("results/attack");
    succeeded(
        &hint(&[
            "attack",
            "--job",
            job().to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--targets",
            &targets,
            "--concepts",
            "vehicle,animal",
            "--out",
            out.to_str().unwrap(),
        ]),
        "hint attack",
    );
    let attacked: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("attack.json")).unwrap()).unwrap();
    let pairs = attacked["pairs"].as_array().unwrap();
    assert!(!pairs.is_empty());

    let page = report(&copy);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("<a href=\"#attack\">Attacks</a>"));
    assert!(!html.contains("No attacks in this job"));
    // One example per pair: two concepts, clean and attacked.
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        pairs.len() * 2 * 2,
        "every example map is embedded"
    );
    assert_eq!(
        html.matches(">Example: ").count(),
        pairs.len(),
        "an example per pair"
    );
    for pair in pairs {
        let (source, target) = (
            pair["source"].as_str().unwrap(),
            pair["target"].as_str().unwrap(),
        );
        assert!(
            html.contains(&format!("<h3>{source} → {target}</h3>")),
            "{source} → {target}"
        );
        let probabilities = format!(
            "the target's mean probability {:.3} → {:.3}",
            pair["mean_clean_target_probability"].as_f64().unwrap(),
            pair["mean_target_probability"].as_f64().unwrap()
        );
        assert!(
            html.contains(&probabilities),
            "the page lacks {probabilities:?}"
        );
        for c in pair["concepts"].as_array().unwrap() {
            let change = c["area_attacked"].as_f64().unwrap() - c["area_clean"].as_f64().unwrap();
            assert!(
                html.contains(&format!("{change:+.3}")),
                "Δ area {change:+.3}"
            );
        }
    }
    assert_interacts_cleanly(&page);
}

/// `hint sanity`, run for real into (a copy of) the job's `results/sanity/`: the report
/// has the cascade's table — a row per step with sanity.json's numbers — and renders in the
/// browser without errors.
#[test]
fn the_sanity_check_is_tabled_per_step() {
    let (_dir, copy, spec) = job_copy();
    let class_dir = std::fs::read_dir(spec["data"]["images"].as_str().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let out = copy.join("results/sanity");
    succeeded(
        &hint(&[
            "sanity",
            "--job",
            job().to_str().unwrap(),
            "--images",
            class_dir.to_str().unwrap(),
            "--methods",
            "gradient_x_activation,integrated_gradients",
            "--out",
            out.to_str().unwrap(),
        ]),
        "hint sanity",
    );
    let sanity: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sanity.json")).unwrap()).unwrap();
    let steps = sanity["steps"].as_array().unwrap();

    let page = report(&copy);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("<a href=\"#sanity\">Sanity check</a>"));
    assert!(!html.contains("No sanity check in this job"));
    assert!(html.contains("<th class=\"num\">integrated_gradients IoU</th>"));
    let section = &html[html.find("<section id=\"sanity\">").unwrap()..];
    let section = &section[..section.find("</section>").unwrap()];
    assert_eq!(
        section.matches("<tr><td>").count(),
        steps.len(),
        "a row per step"
    );
    assert!(section.contains("<tr><td>nothing (trained)</td>"));
    assert!(section.contains("<tr><td>head</td>"));
    for step in steps {
        for m in step["methods"].as_array().unwrap() {
            if let Some(rho) = m["rank_correlation"].as_f64() {
                let [low, high] =
                    [0, 1].map(|k| m["rank_correlation_interval"][k].as_f64().unwrap());
                let text = format!(">{rho:.3} [{low:.2}, {high:.2}]</td>");
                assert!(section.contains(&text), "{text}");
            }
        }
    }
    assert_interacts_cleanly(&page);
}
