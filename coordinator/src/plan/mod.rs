//! The plan stage: what a job's tasks are, fixed once before any of them runs.
//!
//! [`plan`] scans the job's images (`data.images`, an ImageFolder, a CSV manifest or tar
//! shards — a remote shard is fetched whole through the cache to read its labels), maps
//! their labels to label indices (`data.labels`, or the sorted class names as `hint extract`
//! does), builds the concept hierarchy above the labels ([`hierarchy::build`], the same
//! function `hint concepts` uses), and writes into the job directory:
//!
//! - `manifest.csv`: `path,label` with absolute paths, one row per image in the order that
//!   defines image ids — the order `hint extract` gives the same dataset, so ids (and
//!   therefore every seeded choice keyed by them) agree with a single-machine run; an image
//!   in a tar shard has its member location as its path (and an empty label when it has
//!   none, which extract tasks then skip and report);
//! - `manifest.offsets`: where every 1,024th row of `manifest.csv` starts, so an extract
//!   task reads only its rows (`hint_common::images::rows`);
//! - `labels.txt`: label k's name on line k, the label map every extract task uses, so the
//!   label indices (and the region files' `labels`) are [`Plan::labels`] even where a
//!   class folder is empty and so has no manifest row;
//! - `concepts.json`: the hierarchy actually used, with image counts.
//!
//! It then cuts the manifest into [`extract_shards`] (one extract task each: a tar shard, or
//! `extract.images_per_task` images) and the concepts into [`train_parts`] (one train task
//! each). [`reload`] rebuilds the same [`Plan`] from those
//! files when a coordinator restarts on a planned job.

pub mod files;
pub mod hierarchy;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hint_common::hierarchy::{Hierarchy, Selection, WordNet};
use hint_common::images::{self, Dataset, ImageRecord, LabelMap, MemberLocation};
use hint_common::job::spec::HierarchySpec;
use hint_common::job::JobSpec;
use hint_common::storage::{self, StorageError};

use hierarchy::{BuildError, HierarchySource};

/// A planned job: its images, labels, hierarchy and task cuts.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Rows of the manifest (image ids are `0..images`).
    pub images: u64,
    /// Label names by label index: the label map's order (`data.labels`), or the sorted
    /// class names. Equal to the region files' `labels` metadata.
    pub labels: Vec<String>,
    /// Images per label, by label index.
    pub label_images: Vec<u64>,
    /// The hierarchy above the labels, with image counts.
    pub hierarchy: Hierarchy,
    /// Where each tar shard's images begin (image ids, ascending, from 0) when every image
    /// is a tar member; empty otherwise. The scheduler cuts extract tasks from these.
    pub tar_shards: Vec<u64>,
    /// Consecutive manifest ranges, one extract task each ([`extract_shards`]).
    pub shards: Vec<Range<u64>>,
    /// Concept ids in id order, in chunks of `classify.concepts_per_task`: one train task
    /// each.
    pub train_parts: Vec<Vec<u32>>,
}

/// Why a job cannot be planned; each names the spec field or the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An input could not be fetched from, or a plan file written to, object storage.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `data.images` is not a usable dataset (missing, no images, a malformed manifest).
    #[error("data.images: {0}")]
    Images(hint_common::images::Error),
    /// `data.labels` does not read as a label map.
    #[error("data.labels: {0}")]
    LabelMap(hint_common::images::Error),
    /// The label map leaves dataset classes without an index.
    #[error(
        "data.labels: {path} does not name {} dataset class(es): {}",
        classes.len(), short_list(classes)
    )]
    UnmappedClasses {
        /// The label map.
        path: PathBuf,
        /// The classes it leaves out.
        classes: Vec<String>,
    },
    /// The label map leaves indices unnamed; the hierarchy needs a name for every label.
    #[error(
        "data.labels: {path} gives no name to output(s) {}: a job's hierarchy and region \
         files name every label index, so the label map must name every output up to the last",
        short_list(&indices.iter().map(u32::to_string).collect::<Vec<_>>())
    )]
    UnnamedLabels {
        /// The label map.
        path: PathBuf,
        /// The unnamed indices.
        indices: Vec<u32>,
    },
    /// The hierarchy cannot be built over the labels (uncovered labels are named).
    #[error("data.hierarchy: {}", describe_build_error(.0))]
    Hierarchy(BuildError),
    /// A path or label the plan's files cannot represent faithfully.
    #[error("data.images: {0}")]
    Unrepresentable(String),
    /// Reading or writing a file of the job directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Writing `concepts.json` failed (the error names the file).
    #[error("writing the hierarchy: {0}")]
    WriteConcepts(hint_common::hierarchy::HierarchyError),
    /// The files of a planned job disagree with each other ([`reload`]).
    #[error("{path}: {problem}; the job's plan is damaged (plan the job again)")]
    Damaged {
        /// The file that disagrees.
        path: PathBuf,
        /// How.
        problem: String,
    },
}

fn describe_build_error(e: &BuildError) -> String {
    match e {
        BuildError::NotWordNetId { label } => format!(
            "label {label:?} is not a WordNet noun id (like n02084071); give a custom \
             hierarchy with source = \"file\""
        ),
        other => other.to_string(),
    }
}

fn short_list(names: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut list = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    list
}

/// Plans the job: scans `spec.data.images`, writes `manifest.csv`, `labels.txt` and
/// `concepts.json` into `job_dir` (created if missing; each file atomically) and returns
/// the plan. See the module docs.
pub fn plan(spec: &JobSpec, job_dir: &Path) -> Result<Plan, PlanError> {
    let source = if storage::is_remote(&spec.data.images) {
        spec.data.images.clone()
    } else {
        std::path::absolute(&spec.data.images).map_err(|source| PlanError::Io {
            path: spec.data.images.clone(),
            source,
        })?
    };
    // The label map first: it names the class indices tar shards' `.cls` members may hold.
    let label_map = match &spec.data.labels {
        Some(path) => {
            Some(LabelMap::from_file(&storage::fetch(path)?).map_err(PlanError::LabelMap)?)
        }
        None => None,
    };
    let dataset = images::scan_with(&source, label_map.as_ref()).map_err(PlanError::Images)?;
    let labels = label_names(spec, label_map, &dataset)?;
    let label_images = count_labels(&dataset, &labels);
    let hierarchy = build_hierarchy(&spec.data.hierarchy, &labels, &label_images)?;

    if !storage::is_remote(job_dir) {
        std::fs::create_dir_all(job_dir).map_err(|source| PlanError::Io {
            path: job_dir.to_path_buf(),
            source,
        })?;
    }
    files::write_labels(&job_dir.join(files::LABELS), &labels)?;
    files::write_manifest(&job_dir.join(files::MANIFEST), &dataset.images)?;
    // concepts.json last: its presence says the plan is complete.
    files::write_concepts(&job_dir.join(files::CONCEPTS), &hierarchy)?;
    Ok(finish(spec, &dataset.images, hierarchy))
}

/// The plan [`plan`] returned, from the files it wrote: `concepts.json` gives the labels,
/// counts and hierarchy, `manifest.csv` the images (read as extract tasks read it, and
/// checked against the counts), `labels.txt` is checked against the labels.
pub fn reload(spec: &JobSpec, job_dir: &Path) -> Result<Plan, PlanError> {
    let concepts = job_dir.join(files::CONCEPTS);
    let hierarchy =
        Hierarchy::read_json(&storage::fetch(&concepts)?).map_err(|e| PlanError::Damaged {
            path: concepts.clone(),
            problem: e.to_string(),
        })?;
    let damaged = |path: &Path, problem: String| PlanError::Damaged {
        path: path.to_path_buf(),
        problem,
    };
    let Some(expected) = hierarchy.label_images() else {
        return Err(damaged(&concepts, "no image counts".into()));
    };

    let labels_file = job_dir.join(files::LABELS);
    let map = LabelMap::from_file(&storage::fetch(&labels_file)?)
        .map_err(|e| damaged(&labels_file, e.to_string()))?;
    if map.names() != hierarchy.labels() {
        return Err(damaged(
            &labels_file,
            format!("its labels differ from {}'s", concepts.display()),
        ));
    }

    let manifest = job_dir.join(files::MANIFEST);
    let dataset = images::scan(&manifest).map_err(|e| damaged(&manifest, e.to_string()))?;
    let counts = count_labels(&dataset, hierarchy.labels());
    if counts != expected || dataset.classes.iter().any(|c| map.index(c).is_none()) {
        return Err(damaged(
            &manifest,
            format!(
                "its images per label differ from {}'s image counts",
                concepts.display()
            ),
        ));
    }
    Ok(finish(spec, &dataset.images, hierarchy))
}

/// The plan from its images and hierarchy: the cuts follow from the spec.
fn finish(spec: &JobSpec, images: &[ImageRecord], hierarchy: Hierarchy) -> Plan {
    let tar_shards = tar_shard_starts(images);
    let images = images.len() as u64;
    Plan {
        images,
        labels: hierarchy.labels().to_vec(),
        label_images: hierarchy
            .label_images()
            .expect("the plan's hierarchy has counts")
            .to_vec(),
        shards: extract_shards(images, &tar_shards, spec.extract.images_per_task),
        tar_shards,
        train_parts: train_parts(hierarchy.concepts().len(), spec.classify.concepts_per_task),
        hierarchy,
    }
}

/// Label names by label index: the label map's, which must name every class and every
/// index; or the sorted classes.
fn label_names(
    spec: &JobSpec,
    map: Option<LabelMap>,
    dataset: &Dataset,
) -> Result<Vec<String>, PlanError> {
    let (Some(path), Some(map)) = (&spec.data.labels, map) else {
        return Ok(LabelMap::sorted(&dataset.classes).names());
    };
    let unmapped: Vec<String> = dataset
        .classes
        .iter()
        .filter(|c| map.index(c).is_none())
        .cloned()
        .collect();
    if !unmapped.is_empty() {
        return Err(PlanError::UnmappedClasses {
            path: path.clone(),
            classes: unmapped,
        });
    }
    let names = map.names();
    let unnamed: Vec<u32> = (0..names.len() as u32)
        .filter(|&i| names[i as usize].is_empty())
        .collect();
    if !unnamed.is_empty() {
        return Err(PlanError::UnnamedLabels {
            path: path.clone(),
            indices: unnamed,
        });
    }
    Ok(names)
}

/// Images per label index. Counted per class first: one hash lookup per distinct label
/// name per image, not a label-map lookup.
fn count_labels(dataset: &Dataset, labels: &[String]) -> Vec<u64> {
    let mut per_class: HashMap<&str, u64> = HashMap::with_capacity(dataset.classes.len());
    for image in &dataset.images {
        *per_class.entry(image.label.as_str()).or_default() += 1;
    }
    labels
        .iter()
        .map(|l| per_class.get(l.as_str()).copied().unwrap_or(0))
        .collect()
}

/// The hierarchy the spec asks for, as `hint concepts` would build it over these labels.
fn build_hierarchy(
    spec: &HierarchySpec,
    labels: &[String],
    counts: &[u64],
) -> Result<Hierarchy, PlanError> {
    let built = match spec {
        HierarchySpec::File { path } => hierarchy::build(
            HierarchySource::File(&storage::fetch(path)?),
            &Selection::default(),
            labels,
            counts,
        ),
        HierarchySpec::Wordnet {
            dir,
            roots,
            min_images,
            collapse,
            max_depth,
            drop_uncovered,
        } => {
            let dir = dir.clone().unwrap_or_else(WordNet::default_dir);
            let selection = Selection {
                roots: roots.clone(),
                min_images: *min_images,
                collapse: *collapse,
                max_depth: *max_depth,
                drop_uncovered: *drop_uncovered,
            };
            hierarchy::build(HierarchySource::WordNet(&dir), &selection, labels, counts)
        }
    };
    built.map_err(PlanError::Hierarchy)
}

/// Where each tar shard's run of images begins in `images` (ids, from 0), when every image
/// is a tar member ([`MemberLocation`]); empty when any is not (loose files, or a mix).
pub fn tar_shard_starts(images: &[ImageRecord]) -> Vec<u64> {
    let mut starts = Vec::new();
    let mut last: Option<PathBuf> = None;
    for (id, image) in images.iter().enumerate() {
        let Some(member) = MemberLocation::parse(&image.path) else {
            return Vec::new();
        };
        if last.as_ref() != Some(&member.shard) {
            starts.push(id as u64);
            last = Some(member.shard);
        }
    }
    starts
}

/// The extract tasks' manifest ranges: [`shards`] of `per_task` images when it is set;
/// otherwise one range per tar shard (`tar_shards`, where each begins; see
/// [`tar_shard_starts`]), or for loose files (`tar_shards` empty) shards of
/// [`ExtractSpec::DEFAULT_IMAGES_PER_TASK`](hint_common::job::spec::ExtractSpec) images.
pub fn extract_shards(images: u64, tar_shards: &[u64], per_task: Option<u64>) -> Vec<Range<u64>> {
    use hint_common::job::spec::ExtractSpec;
    match per_task {
        Some(per_task) => shards(images, per_task),
        None if tar_shards.is_empty() => shards(images, ExtractSpec::DEFAULT_IMAGES_PER_TASK),
        None => tar_shards
            .iter()
            .zip(tar_shards[1..].iter().chain([&images]))
            .map(|(&start, &end)| start..end)
            .collect(),
    }
}

/// Consecutive ranges of `per_task` image ids covering `0..images`, the last one shorter
/// when `per_task` does not divide `images`; none for no images. Panics if `per_task` is 0
/// (the spec's validation rules it out).
pub fn shards(images: u64, per_task: u64) -> Vec<Range<u64>> {
    assert!(per_task > 0, "images per task must be positive");
    (0..images.div_ceil(per_task))
        .map(|k| k * per_task..((k + 1) * per_task).min(images))
        .collect()
}

/// Concept ids `0..concepts` in id order, in chunks of `per_task` (the last may be shorter).
/// Panics if `per_task` is 0 (the spec's validation rules it out).
pub fn train_parts(concepts: usize, per_task: usize) -> Vec<Vec<u32>> {
    assert!(per_task > 0, "concepts per task must be positive");
    let ids: Vec<u32> = (0..concepts as u32).collect();
    ids.chunks(per_task).map(<[u32]>::to_vec).collect()
}
