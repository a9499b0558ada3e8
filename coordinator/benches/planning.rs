//! The plan stage at ImageNet scale: `plan()` end to end on a synthetic 1,281,167-image CSV
//! manifest (ImageNet-1k train's size) with a custom hierarchy over its 1,000 labels.
//!
//! ```text
//! cargo bench -p hint-coordinator --bench planning -- [--images 1281167] [--classes 1000] \
//!     [--image-folder] [--keep DIR]
//! ```
//!
//! The manifest lists `/data/imagenet/train/nXXXXXXXX/nXXXXXXXX_K.JPEG` paths that need not
//! exist: reading a CSV manifest opens only the CSV (`hint_common::images::scan` never stats
//! the image files; an ImageFolder source, by contrast, stats every entry). Labels are
//! WordNet-shaped ids `n01000000`…, ImageNet's ~1,281 images per class, rows grouped by class
//! as ImageNet's own listings are. The hierarchy file puts the labels under 100 parents
//! under 10 grandparents under one root (1,111 concepts). `plan()` then scans the CSV, counts
//! labels, builds the hierarchy and writes `manifest.csv`, `labels.txt` and `concepts.json`
//! atomically. The input CSV was just written, so it is in the page cache: this measures
//! the planner, not the disk. Printed: seconds, images/s, the process's peak resident memory
//! (VmHWM) at start, before and after planning, whether the goal (< 10 s) is met, `reload()`'s time (a
//! restarted coordinator re-reading the plan), which must return the same plan, and what
//! one extract task's rows cost read through `manifest.offsets` against a whole read.
//!
//! `--image-folder` plans an ImageFolder tree of empty files instead (the same names, one
//! folder per class): that scan lists every folder and stats every entry, so its cost is
//! the file system's. The tree was just created, so its metadata is cached — a cold or
//! network file system is slower. Creating ImageNet's 1.28 M files takes a while: shrink it
//! with `--images` and the printout extrapolates linearly to 1,281,167, labelled as such.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use hint_common::job::spec::{
    ClassifySpec, DataSpec, ExtractSpec, HierarchySpec, ModelSpec, SchedulerSpec, ShapleySpec,
    StorageSpec,
};
use hint_common::job::JobSpec;

/// The goal for planning ImageNet-1k train.
const GOAL_SECONDS: f64 = 10.0;

struct Options {
    images: u64,
    classes: u64,
    keep: Option<std::path::PathBuf>,
    image_folder: bool,
}

fn options() -> Options {
    let mut o = Options {
        images: 1_281_167,
        classes: 1000,
        keep: None,
        image_folder: false,
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        if flag == "--image-folder" {
            o.image_folder = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<u64>().unwrap_or_else(|_| panic!("{flag} N"));
        match flag.as_str() {
            "--images" => o.images = number(),
            "--classes" => o.classes = number(),
            "--keep" => o.keep = Some(value.into()),
            other => panic!("unknown option {other}"),
        }
    }
    assert!(
        o.classes >= 1 && o.images >= o.classes,
        "need images ≥ classes ≥ 1"
    );
    o
}

fn label(class: u64) -> String {
    format!("n{:08}", 1_000_000 + class)
}

/// The synthetic manifest: `images` rows, class c holding ⌊images/classes⌋ rows plus one
/// for the first `images mod classes` classes.
fn write_manifest(path: &Path, images: u64, classes: u64) {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    writeln!(out, "path,label").unwrap();
    let (base, extra) = (images / classes, images % classes);
    for c in 0..classes {
        let name = label(c);
        for k in 0..base + u64::from(c < extra) {
            writeln!(out, "/data/imagenet/train/{name}/{name}_{k}.JPEG,{name}").unwrap();
        }
    }
    out.flush().unwrap();
}

/// The same images as [`write_manifest`], as an ImageFolder of empty files.
fn write_image_folder(root: &Path, images: u64, classes: u64) {
    let (base, extra) = (images / classes, images % classes);
    for c in 0..classes {
        let name = label(c);
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..base + u64::from(c < extra) {
            File::create(dir.join(format!("{name}_{k}.JPEG"))).unwrap();
        }
    }
}

/// 1 root → 10 grandparents → 100 parents → the labels (round robin).
fn write_hierarchy(path: &Path, classes: u64) {
    let mut out = BufWriter::new(File::create(path).unwrap());
    writeln!(out, "name: planning-bench\nchildren:").unwrap();
    let grand: Vec<String> = (0..10).map(|g| format!("group{g:02}")).collect();
    writeln!(out, "  root: [{}]", grand.join(", ")).unwrap();
    for (g, name) in grand.iter().enumerate() {
        let parents: Vec<String> = (0..10)
            .map(|p| format!("family{:03}", g * 10 + p))
            .collect();
        writeln!(out, "  {name}: [{}]", parents.join(", ")).unwrap();
    }
    for p in 0..100 {
        let labels: Vec<String> = (0..classes).filter(|c| c % 100 == p).map(label).collect();
        if !labels.is_empty() {
            writeln!(out, "  family{p:03}: [{}]", labels.join(", ")).unwrap();
        }
    }
    out.flush().unwrap();
}

fn spec(images: &Path, hierarchy: &Path, root: &Path) -> JobSpec {
    JobSpec {
        name: "planning-bench".into(),
        seed: 0,
        model: ModelSpec {
            architecture: "vgg16".into(),
            weights: "/data/vgg16.safetensors".into(),
            layer: "features.26".into(),
            layers: Vec::new(),
            resize: None,
            crop: None,
        },
        data: DataSpec {
            images: images.to_path_buf(),
            labels: None,
            hierarchy: HierarchySpec::File {
                path: hierarchy.to_path_buf(),
            },
        },
        extract: ExtractSpec {
            batch_size: 64,
            images_per_task: Some(10_000),
            ..ExtractSpec::default()
        },
        classify: ClassifySpec::default(),
        shapley: ShapleySpec::default(),
        storage: StorageSpec {
            root: root.to_path_buf(),
        },
        scheduler: SchedulerSpec::default(),
        evaluate: None,
        ablate: None,
    }
}

/// Peak resident memory so far, in MiB (Linux; None elsewhere).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |m| format!("{m:.0} MiB"))
}

fn main() {
    // libtorch (linked through hint-worker) is resident before any planning: report it.
    let at_start = peak_rss_mib();
    let o = options();
    let tmp = tempfile::tempdir().unwrap();
    let dir = o.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    let hierarchy = dir.join("hierarchy.yaml");
    let started = Instant::now();
    write_hierarchy(&hierarchy, o.classes);
    let input = if o.image_folder {
        let input = dir.join("train");
        write_image_folder(&input, o.images, o.classes);
        println!(
            "input: {} images, {} classes, an ImageFolder of empty files, written in {:.2} s",
            o.images,
            o.classes,
            started.elapsed().as_secs_f64()
        );
        input
    } else {
        let input = dir.join("train.csv");
        write_manifest(&input, o.images, o.classes);
        let input_mib = std::fs::metadata(&input).unwrap().len() as f64 / (1 << 20) as f64;
        println!(
            "input: {} images, {} classes, {input_mib:.0} MiB CSV, written in {:.2} s",
            o.images,
            o.classes,
            started.elapsed().as_secs_f64()
        );
        input
    };
    let spec = spec(&input, &hierarchy, &dir);
    let job = dir.join("job-0001");
    let before = peak_rss_mib();

    let started = Instant::now();
    let plan = hint_coordinator::plan::plan(&spec, &job).expect("plan");
    let seconds = started.elapsed().as_secs_f64();
    let after = peak_rss_mib();
    assert_eq!(plan.images, o.images);
    println!(
        "plan: {seconds:.2} s, {:.0} images/s; {} shards of {} images, {} concepts in {} train \
         parts; peak RSS {} (before planning {}, at process start {})",
        o.images as f64 / seconds,
        plan.shards.len(),
        spec.extract.images_per_task.unwrap(),
        plan.hierarchy.concepts().len(),
        plan.train_parts.len(),
        mib(after),
        mib(before),
        mib(at_start),
    );

    let started = Instant::now();
    let again = hint_coordinator::plan::reload(&spec, &job).expect("reload");
    println!("reload: {:.2} s", started.elapsed().as_secs_f64());
    assert!(again == plan, "reload gave another plan");

    // What one extract task reads of the plan's manifest: its shard's rows (through
    // manifest.offsets), against a whole read of the manifest, in this run, for the middle
    // shard. Both are warm in the page cache.
    let manifest = job.join("manifest.csv");
    let shard = plan.shards[plan.shards.len() / 2].clone();
    let started = Instant::now();
    let whole = hint_common::images::scan(&manifest).expect("manifest");
    let whole_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let rows = hint_common::images::rows::read_rows(&manifest, shard.clone())
        .expect("rows")
        .expect("the plan wrote the offsets");
    let rows_seconds = started.elapsed().as_secs_f64();
    assert!(rows[..] == whole.images[shard.start as usize..shard.end as usize]);
    println!(
        "one extract task's rows {}..{}: {:.2} ms through manifest.offsets, {:.0} ms reading \
         the whole manifest ({:.0}x)",
        shard.start,
        shard.end,
        rows_seconds * 1e3,
        whole_seconds * 1e3,
        whole_seconds / rows_seconds
    );

    const IMAGENET: u64 = 1_281_167;
    let verdict = |s: f64| if s < GOAL_SECONDS { "met" } else { "NOT met" };
    if o.images == IMAGENET {
        println!(
            "goal < {GOAL_SECONDS} s for ImageNet-1k train: {}",
            verdict(seconds)
        );
    } else {
        let extrapolated = seconds * IMAGENET as f64 / o.images as f64;
        println!(
            "goal < {GOAL_SECONDS} s for ImageNet-1k train: {} by linear extrapolation from \
             {} images to {IMAGENET}: {extrapolated:.1} s (extrapolated, not measured)",
            verdict(extrapolated),
            o.images
        );
    }
}
