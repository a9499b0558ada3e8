//! The job spec the coordinator's own tests plan and schedule (scheduler, coordinator,
//! compaction): built with `JobSpec::new`, so a new setting needs no edit here.

use std::path::Path;

use hint_common::job::spec::{DataSpec, HierarchySpec, ModelSpec};
use hint_common::job::JobSpec;

/// The tiny CNN (its weights need not exist: nothing here runs a model) on `images` with
/// the custom hierarchy file `hierarchy`, writing under `root`, in small tasks: 4 images per
/// extract task, 2 concepts per train task, 8 permutations in tasks of 4.
pub(crate) fn spec(images: &Path, hierarchy: &Path, root: &Path) -> JobSpec {
    let model = ModelSpec {
        architecture: "tiny_cnn".into(),
        weights: "/none/w.safetensors".into(),
        layer: "features.3".into(),
        layers: Vec::new(),
        resize: None,
        crop: None,
    };
    let data = DataSpec {
        images: images.to_path_buf(),
        labels: None,
        hierarchy: HierarchySpec::File {
            path: hierarchy.to_path_buf(),
        },
    };
    let mut spec = JobSpec::new(model, data, root.to_path_buf());
    spec.name = "coordinator-test".into();
    spec.seed = 7;
    spec.extract.images_per_task = Some(4);
    spec.classify.max_per_class = 1000;
    spec.classify.iterations = 50;
    spec.classify.tolerance = 1e-8;
    spec.classify.concepts_per_task = 2;
    spec.shapley.permutations = 8;
    spec.shapley.permutations_per_task = 4;
    spec.shapley.retrain_iterations = 20;
    spec
}
