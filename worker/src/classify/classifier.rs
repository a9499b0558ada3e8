//! [`ConceptClassifier`]: one concept's linear classifier on raw activations, saved as
//! safetensors (`weight` f32 `[D]`, `bias` f32 `[1]`) that Python loads with
//! `safetensors.torch.load_file`.

use std::collections::BTreeMap;
use std::path::Path;

use hint_common::hierarchy::ConceptId;
use safetensors::{Dtype, SafeTensors};

use super::ClassifyError;

/// A concept's classifier `L_e(r) = σ(weightᵀr + bias)` on raw region activations.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptClassifier {
    /// The concept.
    pub concept: ConceptId,
    /// Its stable key in the hierarchy.
    pub key: String,
    /// Its name for people.
    pub name: String,
    /// Its level in the hierarchy (0 = a root).
    pub level: u32,
    /// The model the activations come from.
    pub model: String,
    /// The layer the activations come from.
    pub layer: String,
    /// `D` weights, one per channel.
    pub weight: Vec<f32>,
    /// The bias.
    pub bias: f32,
}

impl ConceptClassifier {
    /// The file name of concept `id`'s classifier: `concept-<id:05>.safetensors`.
    pub fn file_name(id: ConceptId) -> String {
        format!("concept-{:05}.safetensors", id.0)
    }

    /// `D`.
    pub fn d(&self) -> usize {
        self.weight.len()
    }

    /// `weightᵀr + bias`, accumulated in f64.
    ///
    /// # Panics
    /// If `activation` is not `D` long.
    pub fn logit(&self, activation: &[f32]) -> f64 {
        assert_eq!(
            activation.len(),
            self.weight.len(),
            "activation length is D"
        );
        self.weight
            .iter()
            .zip(activation)
            .map(|(&w, &a)| f64::from(w) * f64::from(a))
            .sum::<f64>()
            + f64::from(self.bias)
    }

    /// Whether the classifier calls the region a positive (`σ(logit) > ½`).
    pub fn predict(&self, activation: &[f32]) -> bool {
        self.logit(activation) > 0.0
    }

    /// Writes the classifier to `path` (through a temporary name, renamed when complete).
    ///
    /// The file is laid out by hand rather than by `safetensors::serialize`, whose metadata
    /// is a `HashMap` written in a random order: the same classifier must give the same
    /// bytes. Layout (the safetensors format): header length (u64 LE), the JSON header with
    /// sorted keys padded with spaces to a multiple of 8, then `bias` and `weight` as f32 LE.
    pub fn save(&self, path: &Path) -> Result<(), ClassifyError> {
        let d = self.weight.len();
        let metadata = BTreeMap::from([
            ("id", self.concept.0.to_string()),
            ("key", self.key.clone()),
            ("layer", self.layer.clone()),
            ("level", self.level.to_string()),
            ("model", self.model.clone()),
            ("name", self.name.clone()),
        ]);
        let header = serde_json::json!({
            "__metadata__": metadata,
            "bias": { "dtype": "F32", "shape": [1], "data_offsets": [0, 4] },
            "weight": { "dtype": "F32", "shape": [d], "data_offsets": [4, 4 + 4 * d] },
        });
        // Keys are inserted in sorted order and the metadata is a BTreeMap, so the text is
        // the same whether or not serde_json preserves insertion order.
        let mut header = serde_json::to_string(&header).expect("plain data serialises");
        while !header.len().is_multiple_of(8) {
            header.push(' ');
        }
        let mut bytes = Vec::with_capacity(8 + header.len() + 4 * (d + 1));
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&self.bias.to_le_bytes());
        for v in &self.weight {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        // What we wrote must read back as a valid file.
        SafeTensors::deserialize(&bytes).map_err(|e| ClassifyError::Safetensors {
            path: path.to_path_buf(),
            problem: format!("internal error: wrote an invalid safetensors file: {e}"),
        })?;
        super::output::write_atomic(path, &bytes)
    }

    /// Reads a classifier written by [`save`](Self::save); a missing tensor or metadata key,
    /// a wrong dtype or shape is an error naming the file and the field.
    pub fn load(path: &Path) -> Result<Self, ClassifyError> {
        let bytes = std::fs::read(path).map_err(|e| ClassifyError::io(path, e))?;
        let bad = |problem: String| ClassifyError::Safetensors {
            path: path.to_path_buf(),
            problem,
        };
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let field = |key: &str| {
            metadata
                .get(key)
                .cloned()
                .ok_or_else(|| bad(format!("metadata has no '{key}'")))
        };
        let number = |key: &str| -> Result<u32, ClassifyError> {
            let value = field(key)?;
            value
                .parse()
                .map_err(|_| bad(format!("metadata '{key}' = '{value}' is not an integer")))
        };
        let tensor = |name: &str| -> Result<Vec<f32>, ClassifyError> {
            let view = file
                .tensor(name)
                .map_err(|_| bad(format!("no tensor '{name}'")))?;
            if view.dtype() != Dtype::F32 || view.shape().len() != 1 {
                return Err(bad(format!(
                    "tensor '{name}' is {:?} {:?}, expected F32 with one dimension",
                    view.dtype(),
                    view.shape()
                )));
            }
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let weight = tensor("weight")?;
        let bias = tensor("bias")?;
        if bias.len() != 1 {
            return Err(bad(format!(
                "tensor 'bias' has shape [{}], expected [1]",
                bias.len()
            )));
        }
        if weight.is_empty() {
            return Err(bad("tensor 'weight' is empty".into()));
        }
        Ok(ConceptClassifier {
            concept: ConceptId(number("id")?),
            key: field("key")?,
            name: field("name")?,
            level: number("level")?,
            model: metadata.get("model").cloned().unwrap_or_default(),
            layer: field("layer")?,
            weight,
            bias: bias[0],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let c = ConceptClassifier {
            concept: ConceptId(12),
            key: "n02084071".into(),
            name: "dog.n.01".into(),
            level: 3,
            model: "vgg16".into(),
            layer: "features.26".into(),
            weight: vec![0.5, -1.25, f32::MIN_POSITIVE, 3.0e7],
            bias: -0.125,
        };
        let path = dir.path().join(ConceptClassifier::file_name(c.concept));
        assert!(path.ends_with("concept-00012.safetensors"));
        c.save(&path).unwrap();
        assert_eq!(ConceptClassifier::load(&path).unwrap(), c);
        let bytes = std::fs::read(&path).unwrap();
        c.save(&path).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "same classifier, same bytes"
        );
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(header_len % 8, 0);
        assert_eq!(bytes.len(), 8 + header_len + 4 * 5);
        assert_eq!(c.logit(&[2.0, 0.0, 0.0, 0.0]), 0.875);
        assert!(c.predict(&[2.0, 0.0, 0.0, 0.0]));

        std::fs::write(&path, b"not safetensors").unwrap();
        let err = ConceptClassifier::load(&path).unwrap_err().to_string();
        assert!(err.contains("concept-00012.safetensors"), "{err}");
    }
}
