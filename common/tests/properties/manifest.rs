//! The CSV manifest: `images::scan` on a `.csv` file.

use std::path::{Path, PathBuf};

use hint_common::images::{self, Dataset, ImageRecord};
use proptest::prelude::*;

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
