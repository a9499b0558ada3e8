//! [`ConceptSamples`]: every concept's training and evaluation rows, read off a finished
//! [`RegionSampler`] (see the [module docs](super) for what they are and why).

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::pool::{BottomK, Entry};
use super::{
    check_labels, check_region_set, region_files, ConceptLabels, Negatives, RegionSampler,
    RegionSetInfo, SampleConfig, SampleError, SampleProgress,
};
use crate::hierarchy::{ConceptId, Hierarchy};

/// Where a sampled row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SampledRegion {
    /// The image.
    pub image_id: u64,
    /// The image's label.
    pub label: u32,
    /// Feature-map row.
    pub y: u16,
    /// Feature-map column.
    pub x: u16,
    /// Foreground (responsible) or background.
    pub foreground: bool,
}

/// One split of one concept: rows of the shared store with their targets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConceptSplit {
    /// Indices into [`ConceptSamples::activations`] / [`ConceptSamples::regions`]:
    /// positives first, then negatives, each in sampling-key order.
    pub rows: Vec<u32>,
    /// 1.0 for a positive, 0.0 for a negative, one per row.
    pub targets: Vec<f32>,
}

impl ConceptSplit {
    /// Rows in the split.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the split has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Positive rows.
    pub fn positives(&self) -> usize {
        self.targets.iter().filter(|&&t| t > 0.5).count()
    }

    /// Negative rows.
    pub fn negatives(&self) -> usize {
        self.len() - self.positives()
    }

    fn push(&mut self, row: u32, positive: bool) {
        self.rows.push(row);
        self.targets.push(if positive { 1.0 } else { 0.0 });
    }
}

/// How many rows of the dataset each of a concept's pools had (before sampling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSizes {
    /// Foreground rows of images under the concept.
    pub positives: u64,
    /// Foreground rows of images not under it.
    pub other_foreground: u64,
    /// Background rows.
    pub background: u64,
}

/// A concept's training and evaluation rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptSample {
    /// The concept.
    pub concept: ConceptId,
    /// The training split.
    pub train: ConceptSplit,
    /// The evaluation (held-out) split.
    pub eval: ConceptSplit,
    /// The pools the rows were drawn from.
    pub pool: PoolSizes,
    /// The negative set its negatives were drawn from: the configured one, except
    /// [`Negatives::Others`] for a concept with no sibling images under
    /// [`Negatives::Siblings`].
    pub negatives: Negatives,
}

/// Activations and 0/1 targets of one split, materialised.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledRegions {
    /// `D`.
    pub d: usize,
    /// `n × D`, row-major.
    pub activations: Vec<f32>,
    /// `n` targets, 1.0 = positive.
    pub targets: Vec<f32>,
}

impl LabelledRegions {
    /// Rows.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// The concepts `only` (all when `None`) of `hierarchy` with the labels each covers.
fn concept_labels(hierarchy: &Hierarchy, only: Option<&[ConceptId]>) -> Vec<ConceptLabels> {
    hierarchy
        .concepts()
        .iter()
        .filter(|c| only.is_none_or(|only| only.contains(&c.id)))
        .map(|c| ConceptLabels::of(hierarchy, c.id))
        .collect()
}

/// Every concept's samples over one shared store of rows; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ConceptSamples {
    info: RegionSetInfo,
    config: SampleConfig,
    images_per_label: Vec<u64>,
    held_out: HashSet<(u32, u64)>,
    activations: Vec<f32>,
    regions: Vec<SampledRegion>,
    concepts: Vec<ConceptSample>,
}

impl ConceptSamples {
    /// Samples every concept of `hierarchy` from the region files of `dir`.
    pub fn build(
        dir: &Path,
        hierarchy: &Hierarchy,
        config: &SampleConfig,
    ) -> Result<Self, SampleError> {
        Self::build_with(dir, hierarchy, config, None, &mut |_| {})
    }

    /// [`build`](Self::build) for the concepts `only` (all when `None`), reporting progress.
    /// A concept's samples are the same whichever other concepts are built with it.
    pub fn build_with(
        dir: &Path,
        hierarchy: &Hierarchy,
        config: &SampleConfig,
        only: Option<&[ConceptId]>,
        progress: &mut dyn FnMut(SampleProgress),
    ) -> Result<Self, SampleError> {
        config.validate()?;
        let files = region_files(dir)?;
        let info = check_region_set(&files)?;
        check_labels(hierarchy.labels(), &info)?;
        let mut sampler = RegionSampler::new(config, info.channels, info.labels.len())?;
        let mut state = SampleProgress {
            rows_done: 0,
            rows_total: info.rows,
            files_done: 0,
            files_total: files.len(),
        };
        progress(state);
        for path in &files {
            sampler.offer_file(path, &mut |rows| {
                state.rows_done += rows;
                progress(state);
            })?;
            state.files_done += 1;
            progress(state);
        }
        Ok(Self::from_sampler(
            sampler,
            info,
            &concept_labels(hierarchy, only),
        ))
    }

    /// The samples of the concepts `only` (all when `None`) read off a sample stored in
    /// `dir` by the sample stage (see [`RegionSampler::read_from`]), which must have been
    /// drawn with `config`: the same samples [`build_with`](Self::build_with) gives on the
    /// region files it was drawn from.
    pub fn from_stored(
        dir: &Path,
        hierarchy: &Hierarchy,
        config: &SampleConfig,
        only: Option<&[ConceptId]>,
    ) -> Result<Self, SampleError> {
        config.validate()?;
        let (sampler, info) = RegionSampler::read_from(dir, config)?;
        check_labels(hierarchy.labels(), &info)?;
        Ok(Self::from_sampler(
            sampler,
            info,
            &concept_labels(hierarchy, only),
        ))
    }

    /// Reads every concept's samples off a finished sampler; `concepts` gives each concept
    /// with the labels at or under it (and its siblings', for [`Negatives::Siblings`]).
    pub fn from_sampler(
        sampler: RegionSampler,
        info: RegionSetInfo,
        concepts: &[ConceptLabels],
    ) -> Self {
        let RegionSampler {
            config,
            d,
            foreground,
            background,
            images,
        } = sampler;
        let images_per_label: Vec<u64> = images.iter().map(|s| s.len() as u64).collect();
        let held_out: HashSet<(u32, u64)> = images
            .iter()
            .enumerate()
            .flat_map(|(l, ids)| {
                config
                    .held_out(ids)
                    .into_iter()
                    .map(move |id| (l as u32, id))
            })
            .collect();
        drop(images);
        let k = config.max_per_class;
        let labels = foreground.len();
        let fg_population: Vec<u64> = foreground.iter().map(BottomK::offered).collect();
        let bg_population = background.offered();
        let total_fg: u64 = fg_population.iter().sum();

        // One store: each pool's slab in turn; a pooled row's store index is its pool's
        // offset plus its slot.
        let mut activations = Vec::new();
        let mut regions = Vec::new();
        let mut per_label: Vec<Vec<(Entry, u32)>> = Vec::with_capacity(labels);
        let mut append = |pool: BottomK, foreground: bool| {
            let offset = regions.len() as u32;
            let (entries, data) = pool.into_sorted();
            activations.extend_from_slice(&data);
            regions.resize(
                regions.len() + entries.len(),
                SampledRegion {
                    image_id: 0,
                    label: 0,
                    y: 0,
                    x: 0,
                    foreground,
                },
            );
            let mut indexed = Vec::with_capacity(entries.len());
            for e in entries {
                let row = offset + e.slot;
                regions[row as usize] = SampledRegion {
                    image_id: e.key.image_id,
                    label: e.label,
                    y: e.key.y,
                    x: e.key.x,
                    foreground,
                };
                indexed.push((e, row));
            }
            indexed
        };
        for pool in foreground {
            per_label.push(append(pool, true));
        }
        let background = append(background, false);
        let mut all_fg: Vec<(Entry, u32)> = per_label.iter().flatten().copied().collect();
        all_fg.sort_unstable_by_key(|(e, _)| e.key);

        let mut samples = Vec::with_capacity(concepts.len());
        for concept in concepts {
            let mut inside = vec![false; labels];
            for &l in &concept.labels {
                if let Some(slot) = inside.get_mut(l as usize) {
                    *slot = true;
                }
            }
            let n_inside = inside.iter().filter(|&&b| b).count();
            let positives = bottom_of(&per_label, &all_fg, &inside, true, n_inside, k);
            let n_pos = positives.len();
            // Labels under a sibling and not under the concept (a label under it is a
            // positive, never a negative); none → `others`.
            let mut sibling = vec![false; labels];
            if config.negatives == Negatives::Siblings {
                for &l in &concept.sibling_labels {
                    if let Some(slot) = sibling.get_mut(l as usize) {
                        *slot = !inside[l as usize];
                    }
                }
            }
            let n_sibling = sibling.iter().filter(|&&b| b).count();
            let negatives = match config.negatives {
                Negatives::Siblings if n_sibling == 0 => Negatives::Others,
                set => set,
            };
            // The foreground negatives' pool, and how many of it and of background are used.
            let (other, n_other, n_bg) = match negatives {
                Negatives::Mixed => {
                    let other =
                        bottom_of(&per_label, &all_fg, &inside, false, labels - n_inside, k);
                    // Half each; a short pool is filled from the other.
                    let mut n_other = other.len().min(n_pos.div_ceil(2));
                    let n_bg = background.len().min(n_pos - n_other);
                    n_other = other.len().min(n_pos - n_bg);
                    (other, n_other, n_bg)
                }
                Negatives::Background => (Vec::new(), 0, background.len().min(n_pos)),
                Negatives::Others => {
                    let other =
                        bottom_of(&per_label, &all_fg, &inside, false, labels - n_inside, k);
                    let n_other = other.len().min(n_pos);
                    (other, n_other, 0)
                }
                Negatives::Siblings => {
                    let other = bottom_of(&per_label, &all_fg, &sibling, true, n_sibling, k);
                    let n_other = other.len().min(n_pos);
                    (other, n_other, 0)
                }
            };

            let mut sample = ConceptSample {
                concept: concept.id,
                train: ConceptSplit::default(),
                eval: ConceptSplit::default(),
                pool: PoolSizes {
                    positives: (0..labels)
                        .filter(|&l| inside[l])
                        .map(|l| fg_population[l])
                        .sum(),
                    other_foreground: 0,
                    background: bg_population,
                },
                negatives,
            };
            sample.pool.other_foreground = total_fg - sample.pool.positives;
            let rows = positives
                .iter()
                .map(|&r| (r, true))
                .chain(other[..n_other].iter().map(|&r| (r, false)))
                .chain(background[..n_bg].iter().map(|&(_, r)| (r, false)));
            for (row, positive) in rows {
                let region = regions[row as usize];
                let split = if held_out.contains(&(region.label, region.image_id)) {
                    &mut sample.eval
                } else {
                    &mut sample.train
                };
                split.push(row, positive);
            }
            samples.push(sample);
        }
        let mut samples = ConceptSamples {
            info,
            config,
            images_per_label,
            held_out,
            activations,
            regions,
            concepts: samples,
        };
        samples.compact(d);
        samples
    }

    /// Drops store rows no concept uses and renumbers the rest (order kept).
    fn compact(&mut self, d: usize) {
        let mut new_index = vec![u32::MAX; self.regions.len()];
        for sample in &self.concepts {
            for &row in sample.train.rows.iter().chain(&sample.eval.rows) {
                new_index[row as usize] = 0;
            }
        }
        let mut next = 0usize;
        for (old, index) in new_index.iter_mut().enumerate() {
            if *index == u32::MAX {
                continue;
            }
            *index = next as u32;
            if next != old {
                self.regions[next] = self.regions[old];
                self.activations
                    .copy_within(old * d..(old + 1) * d, next * d);
            }
            next += 1;
        }
        self.regions.truncate(next);
        self.activations.truncate(next * d);
        self.activations.shrink_to_fit();
        self.regions.shrink_to_fit();
        for sample in &mut self.concepts {
            for row in sample.train.rows.iter_mut().chain(&mut sample.eval.rows) {
                *row = new_index[*row as usize];
            }
        }
    }

    /// What the region directory holds.
    pub fn info(&self) -> &RegionSetInfo {
        &self.info
    }

    /// The settings the samples were drawn with.
    pub fn config(&self) -> &SampleConfig {
        &self.config
    }

    /// Images per label in the dataset.
    pub fn images_per_label(&self) -> &[u64] {
        &self.images_per_label
    }

    /// Whether the image `image_id` of label `label` is in the evaluation split (for every
    /// concept).
    pub fn is_held_out(&self, label: u32, image_id: u64) -> bool {
        self.held_out.contains(&(label, image_id))
    }

    /// `D`.
    pub fn d(&self) -> usize {
        self.info.channels
    }

    /// Activations of every row some concept uses, `rows × D`, row-major.
    pub fn activations(&self) -> &[f32] {
        &self.activations
    }

    /// Where each stored row comes from.
    pub fn regions(&self) -> &[SampledRegion] {
        &self.regions
    }

    /// Every built concept, in the order given (hierarchy order for [`build`](Self::build)).
    pub fn concepts(&self) -> &[ConceptSample] {
        &self.concepts
    }

    /// A concept's rows, if it was built.
    pub fn concept(&self, id: ConceptId) -> Option<&ConceptSample> {
        self.concepts.iter().find(|s| s.concept == id)
    }

    /// A concept's training activations and targets.
    pub fn train(&self, id: ConceptId) -> Option<LabelledRegions> {
        self.concept(id).map(|s| self.materialise(&s.train))
    }

    /// A concept's held-out evaluation activations and targets (what Shapley values are
    /// evaluated on).
    pub fn eval(&self, id: ConceptId) -> Option<LabelledRegions> {
        self.concept(id).map(|s| self.materialise(&s.eval))
    }

    /// Gathers a split's rows out of the store.
    pub fn materialise(&self, split: &ConceptSplit) -> LabelledRegions {
        let d = self.d();
        let mut activations = Vec::with_capacity(split.len() * d);
        for &row in &split.rows {
            let row = row as usize;
            activations.extend_from_slice(&self.activations[row * d..(row + 1) * d]);
        }
        LabelledRegions {
            d,
            activations,
            targets: split.targets.clone(),
        }
    }
}

/// The store rows of the `k` smallest-key foreground rows whose label is `inside` (or not,
/// per `want`). `count` labels qualify: few → merge their pools; many → scan the globally
/// sorted list, which then meets a qualifying row often.
fn bottom_of(
    per_label: &[Vec<(Entry, u32)>],
    all_fg: &[(Entry, u32)],
    inside: &[bool],
    want: bool,
    count: usize,
    k: usize,
) -> Vec<u32> {
    if count == 0 {
        return Vec::new();
    }
    if count * 2 <= inside.len() {
        let mut merged: Vec<(Entry, u32)> = per_label
            .iter()
            .enumerate()
            .filter(|&(l, _)| inside[l] == want)
            .flat_map(|(_, pool)| pool.iter().copied())
            .collect();
        merged.sort_unstable_by_key(|(e, _)| e.key);
        merged.truncate(k);
        merged.into_iter().map(|(_, row)| row).collect()
    } else {
        all_fg
            .iter()
            .filter(|(e, _)| inside.get(e.label as usize).copied().unwrap_or(false) == want)
            .take(k)
            .map(|&(_, row)| row)
            .collect()
    }
}
