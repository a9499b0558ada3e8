//! The job spec: a TOML file (documented in `docs/job-spec.md`) → a validated
//! [`JobSpec`], with every problem reported at once, each naming its field.
//!
//! - [`load`] reads a file (relative paths are relative to the file's directory);
//!   [`parse`] takes the text.
//! - [`SpecError`]: the file could not be read, is not TOML (with the line), or is TOML with
//!   [`Problem`]s: unknown sections and keys (with the likely intended key), wrong types,
//!   missing required fields, names the engines do not know (their own parsers decide),
//!   numbers out of range, files that do not exist.
//!
//! The table is walked by hand (`fields`) rather than deserialised with serde, which would
//! stop at the first problem; `sections` holds one reader per section.

mod fields;
#[cfg(test)]
mod properties;
mod sections;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use hint_common::architecture::Architecture;
use hint_common::job::JobSpec;

use fields::Section;

/// One thing wrong with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted field name, `model.layer`, or a section name, `data.wordnet`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a spec was refused.
#[derive(Debug)]
pub enum SpecError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The text is not TOML.
    Syntax {
        /// The file name (as given).
        source: String,
        /// 1-based line of the error.
        line: usize,
        /// The TOML parser's message.
        message: String,
    },
    /// The text is TOML, but not a valid job spec.
    Invalid {
        /// The file name (as given).
        source: String,
        /// Every problem, in reading order.
        problems: Vec<Problem>,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Read { path, .. } => write!(f, "reading the job spec {}", path.display()),
            SpecError::Syntax {
                source,
                line,
                message,
            } => write!(f, "{source}:{line}: not valid TOML: {}", message.trim_end()),
            SpecError::Invalid { source, problems } => {
                let n = problems.len();
                write!(f, "{source}: {n} problem{}:", if n == 1 { "" } else { "s" })?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SpecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpecError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads and validates the spec file at `path`; its relative paths are relative to the
/// file's directory.
pub fn load(path: &Path) -> Result<JobSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    parse(&text, base_dir, &path.display().to_string())
}

/// Validates the spec `text`. Relative paths resolve against `base_dir` (itself made
/// absolute against the working directory); `source` names the file in errors, and its
/// stem is the default job name.
pub fn parse(text: &str, base_dir: &Path, source: &str) -> Result<JobSpec, SpecError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let offset = e.span().map_or(0, |span| span.start).min(text.len());
        SpecError::Syntax {
            source: source.to_string(),
            line: text.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
            message: e.message().to_string(),
        }
    })?;
    let base_dir = if base_dir.is_absolute() {
        base_dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(base_dir))
            .unwrap_or_else(|_| base_dir.to_path_buf())
    };

    let mut root = Section::root(&table);
    let mut problems = Vec::new();

    let mut job = root.section("job");
    let stem = Path::new(source)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "job".into());
    let name = job.string_or("name", &stem);
    if name.trim().is_empty() {
        job.problem("name", "must not be empty");
    }
    let seed = job.integer_or::<u64>("seed", 0, 0);
    problems.extend(job.finish());

    let mut model = root.section("model");
    let model_spec = sections::model(&mut model, &base_dir);
    problems.extend(model.finish());

    let mut data = root.section("data");
    let (data_spec, wordnet_problems) = sections::data(&mut data, &base_dir);
    problems.extend(data.finish());
    problems.extend(wordnet_problems);

    let mut extract = root.section("extract");
    let extract_spec = sections::extract(&mut extract);
    // What the model's architecture cannot run (guided backpropagation without ReLUs) is
    // the method's problem.
    if let (Ok(arch), Ok(method)) = (
        Architecture::parse(&model_spec.architecture),
        extract_spec.saliency(),
    ) {
        if let Some(why) = method.unsupported_on(arch) {
            extract.problem("method", why);
        }
    }
    problems.extend(extract.finish());

    let mut classify = root.section("classify");
    let classify_spec = sections::classify(&mut classify);
    problems.extend(classify.finish());

    let mut shapley = root.section("shapley");
    let shapley_spec = sections::shapley(&mut shapley);
    problems.extend(shapley.finish());

    let mut storage = root.section("storage");
    let storage_spec = sections::storage(&mut storage, &base_dir);
    problems.extend(storage.finish());
    // The comparison of a job's layers reads their results as local files.
    if !model_spec.layers.is_empty() && hint_common::storage::is_remote(&storage_spec.root) {
        problems.push(Problem {
            field: "model.layers".into(),
            message: "several layers need a local storage.root for now (the comparison of \
                      the layers reads their results as files); run one job per layer in \
                      object storage"
                .into(),
        });
    }

    let mut scheduler = root.section("scheduler");
    let scheduler_spec = sections::scheduler(&mut scheduler);
    problems.extend(scheduler.finish());

    let mut evaluate = root.section("evaluate");
    let evaluate_spec = sections::evaluate(&mut evaluate, &base_dir);
    problems.extend(evaluate.finish());

    let mut ablate = root.section("ablate");
    let ablate_spec = sections::ablate(&mut ablate, &base_dir);
    problems.extend(ablate.finish());

    problems.extend(root.finish());
    if !problems.is_empty() {
        return Err(SpecError::Invalid {
            source: source.to_string(),
            problems,
        });
    }
    Ok(JobSpec {
        name,
        seed,
        model: model_spec,
        data: data_spec,
        extract: extract_spec,
        classify: classify_spec,
        shapley: shapley_spec,
        storage: storage_spec,
        scheduler: scheduler_spec,
        evaluate: evaluate_spec,
        ablate: ablate_spec,
    })
}

/// What a valid spec will likely make meaningless, for people to read before the job runs
/// (`hint check`, `hint run`, the coordinator's log): a saliency method that is the same at
/// every position of the layer finds no responsible region, and the job would extract
/// every image and then fail at the train stage.
pub fn warnings(spec: &JobSpec) -> Vec<String> {
    let e = &spec.extract;
    let (Ok(arch), Ok(method)) = (Architecture::parse(&spec.model.architecture), e.saliency())
    else {
        return Vec::new();
    };
    let several = !spec.model.layers.is_empty();
    let mut warnings = Vec::new();
    for layer in spec.model.analysed_layers() {
        // With several layers, each warning names its layer.
        let at = if several {
            format!(" (at {layer})")
        } else {
            String::new()
        };
        warnings.extend(
            method
                .spatially_constant_at(arch, &layer)
                .map(|why| format!("extract.method{at}: {why}")),
        );
        warnings.extend(
            method
                .vanishes_under(e.aggregation, arch, &layer)
                .map(|why| format!("extract.aggregation{at}: {why}")),
        );
    }
    warnings
}
