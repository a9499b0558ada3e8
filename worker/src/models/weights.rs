//! Loading a torchvision `state_dict` saved as safetensors into a backbone, strictly.
//!
//! Strict because a silently half-loaded model still produces plausible-looking saliency
//! maps: every variable the architecture has must be in the file with its exact shape,
//! and every tensor in the file must be used, except those torchvision saves but eval
//! mode never reads (`num_batches_tracked`, Inception's auxiliary classifier). All
//! problems are reported in one error, so a user fixes a file in one round.

use std::path::Path;

use hint_common::storage;
use safetensors::{Dtype, SafeTensors};
use tch::{nn, Kind, Tensor};

use super::Architecture;
use crate::error::{Error, Result};

/// How many names an error lists before summarising the rest as a count.
const MAX_LISTED: usize = 10;

/// Reads every tensor of a safetensors file, sorted by name (the file's own order is
/// arbitrary, and sorted names make error messages reproducible). An `s3://` file is read
/// from its local copy in the storage cache: every task of a job loads the same weights, so
/// the object is downloaded once per machine, not once per task.
pub(super) fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let local = if storage::is_remote(path) {
        storage::fetch(path).map_err(|e| Error::io(path, e.into_io_at(path)))?
    } else {
        storage::Cached::local(path.to_path_buf())
    };
    let bytes = std::fs::read(&local).map_err(|e| Error::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| weights_error(path, format!("not a readable safetensors file: {e}")))?;
    let mut tensors = Vec::with_capacity(file.len());
    for (name, view) in file.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| {
            weights_error(
                path,
                format!(
                    "tensor '{name}' has dtype {:?}, which hint cannot load \
                     (use F32, F16, BF16 or F64)",
                    view.dtype()
                ),
            )
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind)?;
        tensors.push((name, tensor));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

/// The number of classes: the first dimension of the classifier's weight.
pub(super) fn num_classes(
    arch: Architecture,
    path: &Path,
    tensors: &[(String, Tensor)],
) -> Result<i64> {
    let key = arch.classifier_weight();
    let Some((_, weight)) = tensors.iter().find(|(name, _)| name == key) else {
        return Err(weights_error(
            path,
            format!(
                "no tensor '{key}', the final classifier weight of {arch} (its first \
                 dimension is the number of classes){}",
                naming_hint(arch, tensors.iter().map(|(n, _)| n.as_str()))
            ),
        ));
    };
    match weight.size()[..] {
        [classes, _] if classes > 0 => Ok(classes),
        _ => Err(weights_error(
            path,
            format!(
                "tensor '{key}' has shape {:?} but {arch} needs [num_classes, in_features]",
                weight.size()
            ),
        )),
    }
}

/// A ViT's patch grid side `g`, from the position embeddings `[1, 1 + g², width]` in the
/// file; [`super::vit::DEFAULT_GRID`] for other architectures, or when the tensor is
/// missing (then [`load_into`] names it among the missing ones).
pub(super) fn vit_grid(
    arch: Architecture,
    path: &Path,
    tensors: &[(String, Tensor)],
) -> Result<i64> {
    use super::vit::{DEFAULT_GRID, POSITION_EMBEDDING};
    if arch != Architecture::VitB16 {
        return Ok(DEFAULT_GRID);
    }
    let Some((_, positions)) = tensors.iter().find(|(name, _)| name == POSITION_EMBEDDING) else {
        return Ok(DEFAULT_GRID);
    };
    let width = hint_common::architecture::VIT_B_16.width;
    if let [1, count, w] = positions.size()[..] {
        let grid = ((count - 1).max(0) as f64).sqrt().round() as i64;
        if w == width && grid > 0 && grid * grid + 1 == count {
            return Ok(grid);
        }
    }
    Err(weights_error(
        path,
        format!(
            "tensor '{POSITION_EMBEDDING}' has shape {:?} but {arch} needs [1, 1 + g², {width}] \
             (a class token and a g × g grid of patches)",
            positions.size()
        ),
    ))
}

/// Copies `tensors` into the variables of `vs` (built for `arch`), converting floating
/// dtypes to the variables' (an f16 or bf16 file loads into an f32 model).
pub(super) fn load_into(
    vs: &mut nn::VarStore,
    arch: Architecture,
    path: &Path,
    tensors: Vec<(String, Tensor)>,
) -> Result<()> {
    let mut variables = vs.variables();
    let mut wrong_shape = Vec::new();
    let mut wrong_dtype = Vec::new();
    let mut unexpected = Vec::new();
    let mut pairs = Vec::new();
    for (name, tensor) in tensors {
        if is_ignored(arch, &name) {
            continue;
        }
        let Some(variable) = variables.remove(&name) else {
            unexpected.push(name);
            continue;
        };
        if tensor.size() != variable.size() {
            wrong_shape.push(format!(
                "tensor '{name}' has shape {:?} in the file but {arch} needs {:?}",
                tensor.size(),
                variable.size()
            ));
        } else if !tensor.is_floating_point() {
            wrong_dtype.push(format!(
                "tensor '{name}' has dtype {:?} in the file but {arch} needs a floating-point one",
                tensor.kind()
            ));
        } else {
            pairs.push((variable, tensor));
        }
    }
    let mut missing: Vec<String> = variables.into_keys().collect();
    missing.sort();

    let mut problems = wrong_shape;
    problems.extend(wrong_dtype);
    if !missing.is_empty() {
        problems.push(format!(
            "{} tensor(s) that {arch} needs are missing: {}",
            missing.len(),
            list(&missing)
        ));
    }
    if !unexpected.is_empty() {
        problems.push(format!(
            "{} tensor(s) in the file are not part of {arch}: {}",
            unexpected.len(),
            list(&unexpected)
        ));
    }
    if !problems.is_empty() {
        let mut problem = problems.join("; ");
        if pairs.is_empty() {
            problem.push_str(&naming_hint(arch, unexpected.iter().map(String::as_str)));
        }
        return Err(weights_error(path, problem));
    }

    tch::no_grad(|| -> Result<()> {
        for (mut variable, tensor) in pairs {
            let kind: Kind = variable.kind();
            // `copy_` also moves the values to the variable's device.
            variable.f_copy_(&tensor.f_to_kind(kind)?)?;
        }
        Ok(())
    })
}

/// Tensors a torchvision `state_dict` holds that eval-mode inference never reads.
fn is_ignored(arch: Architecture, name: &str) -> bool {
    name.ends_with("num_batches_tracked")
        || (arch == Architecture::InceptionV3 && name.starts_with("AuxLogits."))
}

/// The loadable safetensors dtypes (floating point; integers only for ignored buffers
/// such as `num_batches_tracked`, which are rejected later if they are not ignored).
fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

/// `'a', 'b', … and N more`.
fn list(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(MAX_LISTED)
        .map(|n| format!("'{n}'"))
        .collect();
    let mut text = shown.join(", ");
    if names.len() > MAX_LISTED {
        text.push_str(&format!(" and {} more", names.len() - MAX_LISTED));
    }
    text
}

/// Why a file's names may not match at all: `nn.DataParallel`'s `module.` prefix, or a
/// `state_dict` of another architecture.
fn naming_hint<'a>(arch: Architecture, mut names: impl Iterator<Item = &'a str>) -> String {
    if names.any(|n| n.starts_with("module.")) {
        " (the file's names start with 'module.', as saved from nn.DataParallel: save \
         model.module.state_dict() instead)"
            .to_string()
    } else {
        format!(" (is this a torchvision {arch} state_dict?)")
    }
}

fn weights_error(path: &Path, problem: String) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn tiny_tensors() -> Vec<(String, Tensor)> {
        let vs = nn::VarStore::new(Device::Cpu);
        super::super::tiny::build(&vs.root(), 5);
        let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        tensors
    }

    fn load(tensors: Vec<(String, Tensor)>) -> Result<nn::VarStore> {
        let mut vs = nn::VarStore::new(Device::Cpu);
        super::super::tiny::build(&vs.root(), 5);
        load_into(
            &mut vs,
            Architecture::TinyCnn,
            Path::new("w.safetensors"),
            tensors,
        )?;
        Ok(vs)
    }

    #[test]
    fn copies_values_and_converts_half_precision() {
        let mut tensors = tiny_tensors();
        for (_, t) in tensors.iter_mut() {
            *t = t.to_kind(Kind::Half);
        }
        let expected = tensors[0].1.to_kind(Kind::Float);
        let vs = load(tensors).unwrap();
        let loaded = &vs.variables()["classifier.0.bias"];
        assert_eq!(loaded.kind(), Kind::Float);
        assert!(loaded.equal(&expected));
    }

    #[test]
    fn ignores_num_batches_tracked_but_not_other_extras() {
        let mut tensors = tiny_tensors();
        tensors.push(("features.0.num_batches_tracked".into(), Tensor::from(3i64)));
        assert!(load(tensors).is_ok());

        let mut tensors = tiny_tensors();
        tensors.push((
            "AuxLogits.fc.weight".into(),
            Tensor::zeros([2], tch::kind::FLOAT_CPU),
        ));
        let message = load(tensors).unwrap_err().to_string();
        assert!(
            message.contains(
                "1 tensor(s) in the file are not part of tiny_cnn: 'AuxLogits.fc.weight'"
            ),
            "{message}"
        );
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mut tensors = tiny_tensors();
        tensors.retain(|(n, _)| !n.starts_with("features.3"));
        tensors[0].1 = Tensor::zeros([65], tch::kind::FLOAT_CPU);
        let message = load(tensors).unwrap_err().to_string();
        assert!(
            message.contains(
                "tensor 'classifier.0.bias' has shape [65] in the file but tiny_cnn needs [64]"
            ),
            "{message}"
        );
        assert!(
            message.contains(
                "2 tensor(s) that tiny_cnn needs are missing: 'features.3.bias', 'features.3.weight'"
            ),
            "{message}"
        );
    }

    #[test]
    fn lists_at_most_ten_names() {
        let names: Vec<String> = (0..13).map(|i| format!("t{i}")).collect();
        let text = list(&names);
        assert!(text.ends_with("'t9' and 3 more"), "{text}");
    }

    #[test]
    fn hints_at_data_parallel_prefixes() {
        let tensors: Vec<(String, Tensor)> = tiny_tensors()
            .into_iter()
            .map(|(n, t)| (format!("module.{n}"), t))
            .collect();
        let message = num_classes(Architecture::TinyCnn, Path::new("w"), &tensors)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("no tensor 'classifier.2.weight'"),
            "{message}"
        );
        assert!(message.contains("nn.DataParallel"), "{message}");
        let message = load(tensors).unwrap_err().to_string();
        assert!(message.contains("nn.DataParallel"), "{message}");
    }
}
