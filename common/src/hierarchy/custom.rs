//! Custom hierarchy files, YAML (`.yaml`, `.yml`) or JSON (`.json`): the format and its errors
//! are in the [`hierarchy`](super) module docs. Line numbers come from the parsers (syntax)
//! or from scanning the text for an entry's key (duplicates).

use std::fmt;
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::graph::ConceptGraph;
use super::{HierarchyError, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomFile {
    #[serde(default)]
    name: Option<String>,
    children: Entries,
}

/// The parent → children mapping in file order, duplicates kept (serde's maps would silently
/// keep only the last of two equal keys).
struct Entries(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping from concept names to lists of children")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some((parent, children)) =
                    map.next_entry::<String, Option<Vec<String>>>()?
                {
                    entries.push((parent, children.unwrap_or_default()));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

impl ConceptGraph {
    /// Reads a custom hierarchy file (format and errors in this module's docs) over the
    /// dataset's `labels`.
    pub fn from_custom_file(path: &Path, labels: &[String]) -> Result<ConceptGraph> {
        let text = std::fs::read_to_string(path).map_err(|source| HierarchyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let syntax = |line: Option<usize>, problem: String| HierarchyError::Syntax {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let file: CustomFile = match ext.as_str() {
            "yaml" | "yml" => serde_norway::from_str(&text)
                .map_err(|e| syntax(e.location().map(|l| l.line()), e.to_string()))?,
            "json" => serde_json::from_str(&text)
                .map_err(|e| syntax(Some(e.line()).filter(|&l| l > 0), e.to_string()))?,
            _ => {
                return Err(syntax(
                    None,
                    "a custom hierarchy must end in .yaml, .yml or .json".into(),
                ))
            }
        };
        let lines = entry_lines(&text, &file.children.0);
        ConceptGraph::from_entries(path, file.name, labels, &file.children.0, &lines)
    }
}

/// The line of each entry's key, found by scanning the text for a line that starts (after
/// indentation) with the key, plain or quoted, followed by `:`. Equal keys get successive
/// matches, so a duplicate's second definition gets its own line. `None` where the text does
/// not have that shape (e.g. YAML flow style).
fn entry_lines(text: &str, entries: &[(String, Vec<String>)]) -> Vec<Option<usize>> {
    let mut after: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    entries
        .iter()
        .map(|(key, _)| {
            let from = after.get(key.as_str()).copied().unwrap_or(0);
            let found = text.lines().enumerate().skip(from).find(|(_, line)| {
                let t = line.trim_start().trim_start_matches(['{', ',', ' ']);
                [
                    format!("{key}:"),
                    format!("\"{key}\":"),
                    format!("'{key}':"),
                ]
                .iter()
                .any(|p| t.starts_with(p.as_str()))
                    || [format!("\"{key}\" :"), format!("{key} :")]
                        .iter()
                        .any(|p| t.starts_with(p.as_str()))
            });
            found.map(|(i, _)| {
                after.insert(key.as_str(), i + 1);
                i + 1
            })
        })
        .collect()
}
