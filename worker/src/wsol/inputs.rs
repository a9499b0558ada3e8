//! What an evaluation reads from a finished job directory and an annotation tree: the spec,
//! the plan (manifest, hierarchy), Φ, the classifier directories, and the match between the
//! job's images and their annotation (and mask) files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use hint_common::annotations::{cub, BoundingBox};
use hint_common::hierarchy::{ConceptId, Hierarchy};
use hint_common::job::JobSpec;

use super::WsolError;
use crate::classify::ClassifierDir;
use crate::images::{self, Preprocess};
use crate::models::Architecture;

/// The job's Φ file read by the evaluation (`results/phi.csv`).
pub const PHI_CSV: &str = "phi.csv";

/// A finished job, read back.
#[derive(Debug)]
pub struct Job {
    /// The job directory.
    pub dir: PathBuf,
    /// `spec.json`.
    pub spec: JobSpec,
    /// The architecture of `spec.model`.
    pub arch: Architecture,
    /// The preprocessing extraction used (the spec's sizes or the architecture's).
    pub preprocess: Preprocess,
    /// `concepts.json`: the hierarchy the classifiers and Φ are over.
    pub hierarchy: Hierarchy,
    /// `manifest.csv`: image `id` is its row.
    pub images: Vec<images::ImageRecord>,
    /// Every committed classifier directory, in name order.
    pub classifiers: Vec<ClassifierDir>,
    /// Which directory holds each trained concept's classifier.
    pub classifier_of: BTreeMap<ConceptId, usize>,
    /// Φ per concept: one value per neuron (concepts with a complete row only).
    pub phi: BTreeMap<ConceptId, Vec<f64>>,
}

impl Job {
    /// Reads the job directory `dir`.
    pub fn open(dir: &Path) -> Result<Job, WsolError> {
        let spec_path = dir.join("spec.json");
        let text = read(&spec_path)?;
        let spec = JobSpec::from_json(&text).map_err(|e| WsolError::Input {
            path: spec_path.clone(),
            problem: e.to_string(),
        })?;
        let arch = Architecture::parse(&spec.model.architecture)?;
        let defaults = arch.default_input();
        let preprocess = Preprocess::imagenet(
            spec.model.resize.unwrap_or(defaults.resize),
            spec.model.crop.unwrap_or(defaults.crop),
        );
        let hierarchy = Hierarchy::read_json(&dir.join("concepts.json"))
            .map_err(|e| WsolError::other(dir.join("concepts.json"), e))?;
        let images = images::scan(&dir.join("manifest.csv"))?.images;
        let (classifiers, classifier_of) = open_classifiers(&dir.join("classifiers"))?;
        let phi = read_phi(&dir.join("results").join(PHI_CSV), &hierarchy)?;
        Ok(Job {
            dir: dir.to_path_buf(),
            spec,
            arch,
            preprocess,
            hierarchy,
            images,
            classifiers,
            classifier_of,
            phi,
        })
    }

    /// A user's image set (ImageFolder or CSV) whose labels must all be the job's: a held-out
    /// set for `hint evaluate --images` and `hint ablate --images`. An unknown label is an
    /// error naming the image.
    pub fn image_set(&self, path: &Path) -> Result<Vec<images::ImageRecord>, WsolError> {
        let dataset = images::scan(path)?;
        let labels = self.hierarchy.labels();
        if let Some(img) = dataset
            .images
            .iter()
            .find(|img| !labels.contains(&img.label))
        {
            let problem = if img.label.is_empty() {
                "has no label (a tar member without a .cls)".to_string()
            } else {
                format!(
                    "label '{}' is not one of the job's labels ({})",
                    img.label,
                    labels.join(", ")
                )
            };
            return Err(WsolError::Input {
                path: img.path.clone(),
                problem,
            });
        }
        Ok(dataset.images)
    }

    /// The hierarchy's index of a label name.
    pub fn label_index(&self) -> HashMap<&str, u32> {
        self.hierarchy
            .labels()
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i as u32))
            .collect()
    }
}

fn read(path: &Path) -> Result<String, WsolError> {
    std::fs::read_to_string(path).map_err(|e| WsolError::io(path, e))
}

/// Every `classifiers/*/` directory with a `classify.json`, and the directory of each
/// trained concept (a concept trained twice is an error: the job would be inconsistent).
fn open_classifiers(
    root: &Path,
) -> Result<(Vec<ClassifierDir>, BTreeMap<ConceptId, usize>), WsolError> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| WsolError::io(root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(crate::classify::SETTINGS_FILE).is_file())
        .collect();
    dirs.sort();
    let mut classifiers = Vec::new();
    let mut of = BTreeMap::new();
    for dir in dirs {
        let opened = ClassifierDir::open(&dir)?;
        for id in opened.trained() {
            if of.insert(id, classifiers.len()).is_some() {
                return Err(WsolError::Input {
                    path: dir.clone(),
                    problem: format!("concept {id} has a classifier in two directories"),
                });
            }
        }
        classifiers.push(opened);
    }
    if classifiers.is_empty() {
        return Err(WsolError::Input {
            path: root.to_path_buf(),
            problem: "no classifier directory (is the job finished?)".into(),
        });
    }
    Ok((classifiers, of))
}

/// `phi.csv` (`concept,concept_name,level,neuron,phi,stderr,n_permutations`) as one vector
/// per concept; a concept whose neurons are not all there is left out.
pub fn read_phi(
    path: &Path,
    hierarchy: &Hierarchy,
) -> Result<BTreeMap<ConceptId, Vec<f64>>, WsolError> {
    let bad = |problem: String| WsolError::Input {
        path: path.to_path_buf(),
        problem,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("no '{name}' column")))
    };
    let (c_concept, c_neuron, c_phi) = (column("concept")?, column("neuron")?, column("phi")?);
    let mut rows: BTreeMap<ConceptId, Vec<(usize, f64)>> = BTreeMap::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let field = |c: usize| record.get(c).unwrap_or("");
        let parse_err = |what: &str| bad(format!("row {}: bad {what}", line + 2));
        let concept: u32 = field(c_concept).parse().map_err(|_| parse_err("concept"))?;
        let neuron: usize = field(c_neuron).parse().map_err(|_| parse_err("neuron"))?;
        let phi: f64 = field(c_phi).parse().map_err(|_| parse_err("phi"))?;
        if concept as usize >= hierarchy.concepts().len() {
            return Err(bad(format!(
                "row {}: concept {concept} is not in the hierarchy",
                line + 2
            )));
        }
        rows.entry(ConceptId(concept))
            .or_default()
            .push((neuron, phi));
    }
    let mut phi = BTreeMap::new();
    for (concept, mut values) in rows {
        values.sort_by_key(|&(n, _)| n);
        if values.iter().enumerate().all(|(i, &(n, _))| i == n) {
            phi.insert(concept, values.into_iter().map(|(_, v)| v).collect());
        }
    }
    Ok(phi)
}

/// The annotations of a tree, found by the images they describe: a tree of PASCAL VOC /
/// ImageNet XML files, or a CUB-200-2011 root (`images.txt`, `bounding_boxes.txt`, … read
/// by `hint_common::annotations::cub`).
///
/// An image matches the annotation with its file stem whose path relative to the
/// annotation root (for CUB: its path in `images.txt`) agrees with the image's path on the
/// most trailing directories (`world/images/dog/dog_00007.png` ↔
/// `annotations/dog/dog_00007.xml`; `CUB_200_2011/images/001.Albatross/x.jpg` ↔
/// `001.Albatross/x.jpg`); a stem unique in the tree matches whatever its directories
/// (VOC's flat `Annotations/000005.xml` for `JPEGImages/000005.jpg`, ImageNet's
/// `val/ILSVRC2012_val_00000001.xml`). Two equally good candidates match nothing. A mask is
/// the annotation's relative path under the mask root with the extension `.png` (CUB's
/// `segmentations/` has that layout).
#[derive(Debug, Default)]
pub struct AnnotationIndex {
    /// File stem → (relative path without extension, as components; its boxes).
    by_stem: HashMap<String, Vec<(Vec<String>, Boxes)>>,
}

/// Where an image's boxes are.
#[derive(Debug, Clone, PartialEq)]
pub enum Boxes {
    /// A VOC XML file, read when the image is scored.
    Xml(PathBuf),
    /// Read already (CUB's one box per image).
    Given(Vec<BoundingBox>),
}

impl Boxes {
    /// The boxes (an XML file read now; `id` is the image's id for its reader). A problem
    /// names the file.
    pub fn read(&self, id: u64) -> Result<Vec<BoundingBox>, String> {
        match self {
            Boxes::Xml(path) => Ok(hint_common::annotations::voc::read_file(path, id)
                .map_err(|e| e.to_string())?
                .boxes),
            Boxes::Given(boxes) => Ok(boxes.clone()),
        }
    }
}

/// The object mask PNG at `path` (a pixel above 127 is object) for an image of `size`
/// (width, height), row-major; a problem names the file.
pub fn read_mask(path: &Path, (width, height): (u32, u32)) -> Result<Vec<bool>, String> {
    let m = image::open(path)
        .map_err(|e| format!("mask {}: {e}", path.display()))?
        .to_luma8();
    if m.dimensions() != (width, height) {
        return Err(format!(
            "mask {} is {}×{}, the image {width}×{height}",
            path.display(),
            m.width(),
            m.height()
        ));
    }
    Ok(m.pixels().map(|p| p.0[0] > 127).collect())
}

/// Where one image's ground truth is.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruthFiles {
    /// Its boxes.
    pub boxes: Boxes,
    /// The mask PNG, when a mask root was given and the file is there.
    pub mask: Option<PathBuf>,
}

fn components(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

impl AnnotationIndex {
    /// Indexes the CUB-200-2011 root `root` (it holds `images.txt` and
    /// `bounding_boxes.txt`), or else every `*.xml` under `root`.
    pub fn scan(root: &Path) -> Result<Self, WsolError> {
        let mut index = AnnotationIndex::default();
        let mut add = |relative: &Path, boxes: Boxes| {
            let parts = components(&relative.with_extension(""));
            if let Some(stem) = parts.last() {
                index
                    .by_stem
                    .entry(stem.clone())
                    .or_default()
                    .push((parts, boxes));
            }
        };
        if root.join("images.txt").is_file() && root.join("bounding_boxes.txt").is_file() {
            for record in cub::read(root).map_err(|e| WsolError::other(root, e))? {
                add(&record.path, Boxes::Given(record.boxes));
            }
        } else {
            let mut pending = vec![root.to_path_buf()];
            while let Some(dir) = pending.pop() {
                for entry in std::fs::read_dir(&dir).map_err(|e| WsolError::io(&dir, e))? {
                    let path = entry.map_err(|e| WsolError::io(&dir, e))?.path();
                    if path.is_dir() {
                        pending.push(path);
                    } else if path
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
                    {
                        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                        add(&relative, Boxes::Xml(path));
                    }
                }
            }
        }
        if index.by_stem.is_empty() {
            return Err(WsolError::Input {
                path: root.to_path_buf(),
                problem: "no annotation files (*.xml) and no CUB-200-2011 images.txt".into(),
            });
        }
        Ok(index)
    }

    /// The annotation (and mask under `masks`) of the image at `image`, if one matches. An
    /// image in a tar shard matches by its member name (WebDataset keys that keep the
    /// original file names, `n01440764/n01440764_10026`, find their annotations).
    pub fn find(&self, image: &Path, masks: Option<&Path>) -> Option<GroundTruthFiles> {
        let member = images::MemberLocation::parse(image).map(|m| PathBuf::from(m.member));
        let image = member.as_deref().unwrap_or(image);
        let parts = components(&image.with_extension(""));
        let candidates = self.by_stem.get(parts.last()?)?;
        let agreement = |c: &Vec<String>| {
            c.iter()
                .rev()
                .zip(parts.iter().rev())
                .take_while(|(a, b)| a == b)
                .count()
        };
        let best = candidates.iter().map(|(c, _)| agreement(c)).max()?;
        let mut winners = candidates.iter().filter(|(c, _)| agreement(c) == best);
        let (winner, boxes) = winners.next()?;
        if winners.next().is_some() {
            return None;
        }
        let relative: PathBuf = winner.iter().collect();
        let mask = masks
            .map(|m| m.join(&relative).with_extension("png"))
            .filter(|m| m.is_file());
        Some(GroundTruthFiles {
            boxes: boxes.clone(),
            mask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_match_annotations_by_stem_and_trailing_directories() {
        let dir = tempfile::tempdir().unwrap();
        let ann = dir.path().join("annotations");
        let masks = dir.path().join("masks");
        for rel in ["dog/dog_00001", "cat/x_00001", "bird/x_00001", "flat"] {
            let xml = ann.join(format!("{rel}.xml"));
            std::fs::create_dir_all(xml.parent().unwrap()).unwrap();
            std::fs::write(&xml, "<annotation/>").unwrap();
        }
        std::fs::create_dir_all(masks.join("dog")).unwrap();
        std::fs::write(masks.join("dog/dog_00001.png"), b"").unwrap();
        let index = AnnotationIndex::scan(&ann).unwrap();
        let found = index
            .find(Path::new("/w/images/dog/dog_00001.png"), Some(&masks))
            .unwrap();
        assert_eq!(found.boxes, Boxes::Xml(ann.join("dog/dog_00001.xml")));
        assert_eq!(found.mask, Some(masks.join("dog/dog_00001.png")));
        // Same stem in two folders: the image's folder decides.
        let found = index
            .find(Path::new("/w/images/bird/x_00001.jpg"), Some(&masks))
            .unwrap();
        assert_eq!(found.boxes, Boxes::Xml(ann.join("bird/x_00001.xml")));
        assert_eq!(found.mask, None);
        // …and an image in neither folder is ambiguous.
        assert_eq!(index.find(Path::new("/w/fish/x_00001.jpg"), None), None);
        // A unique stem matches whatever its folders.
        assert_eq!(
            index
                .find(Path::new("/voc/JPEGImages/flat.jpg"), None)
                .unwrap()
                .boxes,
            Boxes::Xml(ann.join("flat.xml"))
        );
        assert_eq!(index.find(Path::new("/w/images/dog/none.png"), None), None);
        // An image in a tar shard: by its member's name.
        let member = Path::new("/w/train-0.tar#bird/x_00001.png@1536+40");
        let found = index.find(member, Some(&masks)).unwrap();
        assert_eq!(found.boxes, Boxes::Xml(ann.join("bird/x_00001.xml")));
    }
}
