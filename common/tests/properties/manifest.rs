//! The CSV manifest (`images::scan` on a `.csv` file) and label maps
//! (`images::LabelMap::from_file`, `.txt` and `.csv`).

use std::path::{Path, PathBuf};

use hint_common::images::{self, Dataset, ImageRecord, LabelMap};
use proptest::prelude::*;
use proptest::sample::Index;

/// A field as it survives a reader that trims: no surrounding white space; commas, quotes
/// and line breaks inside, which the CSV writer must quote.
fn field() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_é.,\"-]([a-zA-Z0-9_é .,\"\n/-]{0,10}[a-zA-Z0-9_é.,\"-])?"
}

/// A relative path: no scheme (no `:`), not absolute.
fn relative_path() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_é.-]([a-zA-Z0-9_é .,\"/-]{0,14}[a-zA-Z0-9_é.-])?"
}

/// A manifest: its header (`path`, `label` and extra columns in a drawn order) and rows.
#[derive(Debug, Clone)]
struct Manifest {
    header: Vec<String>,
    rows: Vec<(String, String, Vec<String>)>,
    crlf: bool,
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (0usize..3, any::<bool>())
        .prop_flat_map(|(extra, crlf)| {
            let mut header = vec!["path".to_string(), "label".to_string()];
            header.extend((0..extra).map(|i| format!("extra{i}")));
            let row = (
                relative_path(),
                field(),
                proptest::collection::vec(prop_oneof![field(), Just(String::new())], extra),
            );
            (
                Just(header).prop_shuffle(),
                proptest::collection::vec(row, 1..20),
                Just(crlf),
            )
        })
        .prop_map(|(header, rows, crlf)| Manifest { header, rows, crlf })
}

impl Manifest {
    fn text(&self) -> Vec<u8> {
        let terminator = if self.crlf {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        };
        let mut w = csv::WriterBuilder::new()
            .terminator(terminator)
            .from_writer(Vec::new());
        w.write_record(&self.header).unwrap();
        for (path, label, extra) in &self.rows {
            let mut extra = extra.iter();
            let record: Vec<&str> = self
                .header
                .iter()
                .map(|h| match h.as_str() {
                    "path" => path.as_str(),
                    "label" => label.as_str(),
                    _ => extra.next().unwrap().as_str(),
                })
                .collect();
            w.write_record(record).unwrap();
        }
        w.into_inner().unwrap()
    }

    fn expected(&self, dir: &Path) -> Dataset {
        let mut classes: Vec<String> = self.rows.iter().map(|r| r.1.clone()).collect();
        classes.sort();
        classes.dedup();
        Dataset {
            images: self
                .rows
                .iter()
                .enumerate()
                .map(|(id, (path, label, _))| ImageRecord {
                    id: id as u64,
                    path: dir.join(path),
                    label: label.clone(),
                })
                .collect(),
            classes,
        }
    }
}

/// Pieces of CSV manifests.
const CSV_TOKENS: &[&str] = &[
    "path",
    "label",
    "path,label",
    ",",
    "\"",
    "\"\"",
    "\n",
    "\r\n",
    "\r",
    "a.png",
    "cat",
    " ",
    "\u{feff}",
    "file:///x.png",
    "s3://bucket/x.png",
    "/abs.png",
    "\u{0}",
    "\u{fffd}",
];

proptest! {
    #![proptest_config(crate::config(64))]

    /// A manifest written by a CSV writer gives its rows back in order, with ids from 0,
    /// paths relative to the manifest's directory and the sorted distinct labels.
    #[test]
    fn manifests_give_back_their_rows_in_order(m in manifest()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("images.csv");
        std::fs::write(&file, m.text()).unwrap();
        prop_assert_eq!(images::scan(&file).unwrap(), m.expected(dir.path()));
    }

    /// Arbitrary bytes, CSV token soup and damaged manifests: an error naming the manifest,
    /// or a dataset whose ids are its positions.
    #[test]
    fn arbitrary_manifests_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        tokens in proptest::collection::vec(proptest::sample::select(CSV_TOKENS), 0..30),
        m in manifest(),
        edits in crate::edits(CSV_TOKENS),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("images.csv");
        let damaged = crate::apply(&String::from_utf8(m.text()).unwrap(), &edits);
        for text in [bytes, tokens.concat().into_bytes(), damaged.into_bytes()] {
            std::fs::write(&file, &text).unwrap();
            check_scan(&file)?;
        }
    }
}

fn check_scan(file: &Path) -> Result<(), TestCaseError> {
    match images::scan(file) {
        Err(e) => prop_assert!(e.to_string().contains(&file.display().to_string()), "{e}"),
        Ok(dataset) => {
            prop_assert!(!dataset.images.is_empty());
            for (i, image) in dataset.images.iter().enumerate() {
                prop_assert_eq!(image.id, i as u64);
                prop_assert!(!image.label.is_empty());
                prop_assert!(dataset.classes.binary_search(&image.label).is_ok());
                prop_assert_ne!(&image.path, &PathBuf::new());
            }
        }
    }
    Ok(())
}

/// A label name as the label-map readers keep it: trimmed, on one line.
fn label_name() -> impl Strategy<Value = String> {
    "[\\p{L}\\p{N}_,\"'.-]([\\p{L}\\p{N}_ ,\"'.-]{0,10}[\\p{L}\\p{N}_,\"'.-])?"
}

/// A label map: distinct names at distinct output indices, with gaps (unnamed outputs).
fn label_map() -> impl Strategy<Value = Vec<(String, usize)>> {
    (
        proptest::collection::btree_set(label_name(), 1..12),
        0usize..6,
    )
        .prop_flat_map(|(names, gaps)| {
            let n = names.len();
            (
                Just(names.into_iter().collect::<Vec<_>>()),
                Just((0..n + gaps).collect::<Vec<_>>()).prop_shuffle(),
            )
                .prop_map(|(names, indices)| names.into_iter().zip(indices).collect())
        })
}

/// The names by index that a map gives back (`""` where it names none).
fn names_by_index(map: &[(String, usize)]) -> Vec<String> {
    let size = map.iter().map(|(_, i)| i + 1).max().unwrap_or(0);
    let mut names = vec![String::new(); size];
    for (name, i) in map {
        names[*i] = name.clone();
    }
    names
}

/// Pieces of label maps, indices beyond `MAX_LABEL_INDEX` among them (a map is a table by
/// index: such an index must be an error, not an allocation).
const LABEL_TOKENS: &[&str] = &[
    ",4000000000",
    ",1048576",
    "label",
    "index",
    "label,index",
    ",",
    "\"",
    "\n",
    "\r\n",
    " ",
    "cat",
    "dog",
    ",0",
    ",1",
    ",7",
    "-1",
    "x",
    "1.5",
    "\u{feff}",
    "\u{0}",
];

proptest! {
    #![proptest_config(crate::config(64))]

    /// A label map written as a `.txt` (one name per line, blank lines for unnamed outputs)
    /// and as a `.csv` (rows in any order, columns in any order) gives back each name's
    /// index and the names by index.
    #[test]
    fn label_maps_give_back_their_indices(
        map in label_map(),
        label_first in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let names = names_by_index(&map);
        let txt = dir.path().join("labels.txt");
        let newline = if crlf { "\r\n" } else { "\n" };
        std::fs::write(&txt, names.join(newline) + newline).unwrap();
        let csv_path = dir.path().join("labels.csv");
        let mut w = csv::Writer::from_writer(Vec::new());
        let row = |label: &str, index: &str| {
            if label_first { [label.to_string(), index.to_string()] } else { [index.to_string(), label.to_string()] }
        };
        w.write_record(row("label", "index")).unwrap();
        for (name, i) in &map {
            w.write_record(row(name, &i.to_string())).unwrap();
        }
        std::fs::write(&csv_path, w.into_inner().unwrap()).unwrap();
        for file in [txt, csv_path] {
            let read = LabelMap::from_file(&file);
            prop_assert!(read.is_ok(), "{}: {}", file.display(), read.unwrap_err());
            let read = read.unwrap();
            prop_assert_eq!(read.names(), names.clone());
            for (name, i) in &map {
                prop_assert_eq!(read.index(name), Some(*i as u32));
            }
        }
    }

    /// Arbitrary and token-soup label maps: an error naming the file, or a map whose every
    /// name has the index it is listed at.
    #[test]
    fn arbitrary_label_maps_never_panic(
        text in any::<String>(),
        tokens in proptest::collection::vec(proptest::sample::select(LABEL_TOKENS), 0..30),
        removed in proptest::option::of(any::<Index>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let soup = tokens.concat();
        let soup = match removed {
            Some(at) if !soup.is_empty() => {
                let mut chars: Vec<char> = soup.chars().collect();
                chars.remove(at.index(chars.len()));
                chars.into_iter().collect()
            }
            _ => soup,
        };
        for (name, text) in [("l.txt", &text), ("l.csv", &text), ("l.txt", &soup), ("l.csv", &soup)] {
            let file = dir.path().join(name);
            std::fs::write(&file, text).unwrap();
            match LabelMap::from_file(&file) {
                Err(e) => prop_assert!(e.to_string().contains(&file.display().to_string()), "{e}"),
                Ok(map) => {
                    for (i, n) in map.names().iter().enumerate() {
                        if !n.is_empty() {
                            prop_assert_eq!(map.index(n), Some(i as u32));
                        }
                    }
                }
            }
        }
    }
}
