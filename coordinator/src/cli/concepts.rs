//! `hint concepts`: the concept hierarchy above a dataset's labels, printed as a tree with the
//! images at or under each concept, optionally written as `concepts.json`.
//!
//! The labels are the dataset's sorted class names (ImageFolder folders or the CSV manifest's
//! `label` column), the order `hint extract` uses by default. The hierarchy is a custom file
//! or a `concepts.json` (`--hierarchy`) or, when every label is a WordNet noun id
//! (`n02084071`), WordNet 3.0 — built by [`hierarchy::build`], as a job's plan builds it.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hint_common::hierarchy::{ConceptId, Hierarchy, Selection, DEFAULT_WORDNET_DIR};
use hint_coordinator::plan::hierarchy::{self, BuildError, HierarchySource};

/// Flags of `hint concepts`.
#[derive(Args, Debug)]
pub struct ConceptsArgs {
    /// An ImageFolder directory (one folder per class) or a CSV manifest with `path,label`.
    #[arg(long)]
    images: PathBuf,
    /// A custom hierarchy (.yaml, .yml or .json: parent → children, leaves = labels), or a
    /// concepts.json (taken as it is: no selection flags).
    /// Default: WordNet 3.0, when the labels are WordNet ids.
    #[arg(long)]
    hierarchy: Option<PathBuf>,
    /// Directory with the WordNet 3.0 database (data.noun, index.noun).
    #[arg(long, env = "HINT_WORDNET", default_value = DEFAULT_WORDNET_DIR)]
    wordnet: PathBuf,
    /// Keep only this concept and what is below it (key `n00015388`, name `animal.n.01`, or
    /// an unambiguous lemma `animal`); repeatable. Default: every root.
    #[arg(long = "root")]
    roots: Vec<String>,
    /// Remove concepts with fewer images at or under them.
    #[arg(long)]
    min_images: Option<u64>,
    /// Remove every concept with exactly one child (not a label); the child takes its place.
    #[arg(long)]
    collapse: bool,
    /// Remove concepts deeper than this level (0 = roots only), after --collapse.
    #[arg(long)]
    max_depth: Option<u32>,
    /// Leave out labels that no selected concept covers, instead of failing.
    #[arg(long)]
    drop_uncovered: bool,
    /// Write the selected hierarchy here as concepts.json.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Builds, prints and optionally writes the hierarchy.
pub fn run(args: ConceptsArgs) -> anyhow::Result<()> {
    let dataset = hint_common::images::scan(&args.images)?;
    let labels = dataset.classes.clone();
    let mut counts = vec![0u64; labels.len()];
    // An image without a label (a tar member without a `.cls`) counts for no class.
    for image in dataset.images.iter().filter(|i| !i.label.is_empty()) {
        let l = labels
            .binary_search(&image.label)
            .expect("classes hold every label");
        counts[l] += 1;
    }
    let selection = Selection {
        roots: args.roots,
        min_images: args.min_images,
        collapse: args.collapse,
        max_depth: args.max_depth,
        drop_uncovered: args.drop_uncovered,
    };
    let wordnet_dir;
    let source = match &args.hierarchy {
        Some(path) => HierarchySource::File(path),
        None => {
            wordnet_dir = args.wordnet;
            HierarchySource::WordNet(&wordnet_dir)
        }
    };
    let hierarchy = match hierarchy::build(source, &selection, &labels, &counts) {
        Ok(hierarchy) => hierarchy,
        Err(BuildError::NotWordNetId { label }) => anyhow::bail!(
            "{}: label {label:?} is not a WordNet noun id (like n02084071); \
             pass --hierarchy FILE for a custom hierarchy",
            args.images.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let describe = |id: ConceptId| describe(&hierarchy, id);
    print!("{}", render_tree(&hierarchy, describe));
    println!("{}", summary(&hierarchy));
    if let Some(out) = &args.json {
        hierarchy
            .write_json(out)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// What follows a concept's name: its key (the WordNet id) where that differs.
fn describe(hierarchy: &Hierarchy, id: ConceptId) -> String {
    let concept = hierarchy.concept(id);
    if concept.key == concept.name {
        String::new()
    } else {
        format!(" ({})", concept.key)
    }
}

/// The hierarchy as an indented tree, one concept per line with its image count. A concept
/// with several parents appears under each, marked; its subtree is drawn the first time only.
fn render_tree(hierarchy: &Hierarchy, describe: impl Fn(ConceptId) -> String) -> String {
    let labels: HashSet<&str> = hierarchy.labels().iter().map(String::as_str).collect();
    let mut out = String::new();
    let mut drawn = HashSet::new();
    // (concept, parent it is drawn under, prefix of its line, prefix of its children's lines)
    let mut stack: Vec<(ConceptId, Option<ConceptId>, String, String)> = hierarchy
        .roots()
        .map(|r| (r.id, None, String::new(), String::new()))
        .collect();
    stack.reverse();
    while let Some((id, under, line_prefix, child_prefix)) = stack.pop() {
        let concept = hierarchy.concept(id);
        let images = hierarchy.images(id).map_or_else(String::new, |n| {
            format!("  {n} image{}", if n == 1 { "" } else { "s" })
        });
        let mut marks = String::new();
        if labels.contains(concept.key.as_str()) {
            marks.push_str("  [label]");
        }
        let first_time = drawn.insert(id);
        if concept.parents.len() > 1 {
            let others: Vec<&str> = concept
                .parents
                .iter()
                .filter(|&&p| Some(p) != under)
                .map(|&p| hierarchy.concept(p).name.as_str())
                .collect();
            let _ = write!(
                marks,
                "  [{} parents; also under {}",
                concept.parents.len(),
                others.join(", ")
            );
            if !first_time && !concept.children.is_empty() {
                marks.push_str("; children shown above");
            }
            marks.push(']');
        }
        let _ = writeln!(
            out,
            "{line_prefix}{}{}{images}{marks}",
            concept.name,
            describe(id)
        );
        if !first_time {
            continue;
        }
        let n = concept.children.len();
        for (i, &child) in concept.children.iter().enumerate().rev() {
            let last = i + 1 == n;
            stack.push((
                child,
                Some(id),
                format!("{child_prefix}{}", if last { "└─ " } else { "├─ " }),
                format!("{child_prefix}{}", if last { "   " } else { "│  " }),
            ));
        }
    }
    out
}

/// One line: concepts, labels, images, concepts per level, dropped labels.
fn summary(hierarchy: &Hierarchy) -> String {
    let per_level: Vec<String> = hierarchy
        .concepts_per_level()
        .iter()
        .enumerate()
        .map(|(level, n)| format!("{level}:{n}"))
        .collect();
    let dropped: Vec<&str> = (0..hierarchy.labels().len())
        .filter(|&l| hierarchy.concepts_of_label(l as u32).is_empty())
        .map(|l| hierarchy.labels()[l].as_str())
        .collect();
    let images: u64 = hierarchy.label_images().map_or(0, |c| c.iter().sum());
    let mut line = format!(
        "{} concepts over {} labels and {images} images; concepts per level {}",
        hierarchy.concepts().len(),
        hierarchy.labels().len(),
        per_level.join(" ")
    );
    if !dropped.is_empty() {
        let _ = write!(
            line,
            "; dropped labels (no concept): {}",
            dropped.join(", ")
        );
    }
    line
}
