//! CUB-200-2011 (Caltech-UCSD Birds): boxes and labels from the dataset's text files.
//!
//! Under the dataset's root (`CUB_200_2011/`), one record per line, fields separated by
//! spaces:
//!
//! | file | line |
//! |---|---|
//! | `images.txt` | `<image id> <path under images/>` |
//! | `image_class_labels.txt` | `<image id> <class id>` |
//! | `classes.txt` | `<class id> <class name>` (`1 001.Black_footed_Albatross`) |
//! | `bounding_boxes.txt` | `<image id> <x> <y> <width> <height>` (0-based top-left corner) |
//!
//! Every image must have exactly one class and one box, and every id used must be
//! defined; a violation names the file and line. Records come sorted by id, with `path`
//! relative to `images/` (as in `images.txt`) and the class name as label.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{read_text, AnnotationError, BoundingBox, ImageAnnotation};

/// Reads the CUB-200-2011 dataset rooted at `root`.
pub fn read(root: &Path) -> Result<Vec<ImageAnnotation>, AnnotationError> {
    let classes = Table::read(&root.join("classes.txt"), 2, "<class id> <class name>")?;
    let images = Table::read(&root.join("images.txt"), 2, "<image id> <path>")?;
    let labels = Table::read(
        &root.join("image_class_labels.txt"),
        2,
        "<image id> <class id>",
    )?;
    let boxes = Table::read(
        &root.join("bounding_boxes.txt"),
        5,
        "<image id> <x> <y> <width> <height>",
    )?;
    // Every id the label and box files use must be an image of images.txt.
    for table in [&labels, &boxes] {
        for (id, row) in &table.rows {
            if !images.rows.contains_key(id) {
                return Err(table.error(row.line, format!("image id {id} is not in images.txt")));
            }
        }
    }
    let mut records = Vec::with_capacity(images.rows.len());
    for (&id, image) in &images.rows {
        let missing = |what: &str, file: &Table| {
            images.error(
                image.line,
                format!(
                    "image id {id} has no {what} in {}",
                    file.path.file_name().unwrap_or_default().to_string_lossy()
                ),
            )
        };
        let label_row = labels
            .rows
            .get(&id)
            .ok_or_else(|| missing("class", &labels))?;
        let class_id = labels.id(label_row, 1, "class id")?;
        let class = classes.rows.get(&class_id).ok_or_else(|| {
            labels.error(
                label_row.line,
                format!("class id {class_id} is not in classes.txt"),
            )
        })?;
        let label = class.fields[1].clone();
        let box_row = boxes.rows.get(&id).ok_or_else(|| missing("box", &boxes))?;
        let mut numbers = [0f64; 4];
        for (k, (value, name)) in numbers
            .iter_mut()
            .zip(["x", "y", "width", "height"])
            .enumerate()
        {
            let text = &box_row.fields[k + 1];
            *value = match text.parse::<f64>() {
                Ok(v) if v.is_finite() => v,
                _ => {
                    return Err(
                        boxes.error(box_row.line, format!("{name} {text:?} is not a number"))
                    )
                }
            };
        }
        let [x, y, w, h] = numbers;
        if w < 0.0 || h < 0.0 {
            return Err(boxes.error(box_row.line, format!("negative box size {w} × {h}")));
        }
        records.push(ImageAnnotation {
            id,
            path: PathBuf::from(&image.fields[1]),
            label: label.clone(),
            width: None,
            height: None,
            boxes: vec![BoundingBox {
                label,
                xmin: x as f32,
                ymin: y as f32,
                xmax: (x + w) as f32,
                ymax: (y + h) as f32,
                difficult: false,
            }],
        });
    }
    Ok(records)
}

/// One line of a table file: its number and its fields.
struct Row {
    line: usize,
    fields: Vec<String>,
}

/// A CUB text file keyed by its first field (an id).
struct Table {
    path: PathBuf,
    rows: BTreeMap<u64, Row>,
}

impl Table {
    /// Reads `path`: `width` space-separated fields per non-blank line, the first an id
    /// defined once.
    fn read(path: &Path, width: usize, layout: &str) -> Result<Table, AnnotationError> {
        let text = read_text(path)?;
        let mut table = Table {
            path: path.to_path_buf(),
            rows: BTreeMap::new(),
        };
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let fields: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            if fields.is_empty() {
                continue;
            }
            if fields.len() != width {
                return Err(table.error(
                    number,
                    format!("expected {width} fields ({layout}), found {}", fields.len()),
                ));
            }
            let row = Row {
                line: number,
                fields,
            };
            let id = table.id(&row, 0, "id")?;
            if let Some(first) = table.rows.get(&id) {
                return Err(table.error(
                    number,
                    format!("id {id} appears twice (first on line {})", first.line),
                ));
            }
            table.rows.insert(id, row);
        }
        if table.rows.is_empty() {
            return Err(AnnotationError::File {
                path: path.to_path_buf(),
                message: "has no records".into(),
            });
        }
        Ok(table)
    }

    fn id(&self, row: &Row, field: usize, what: &str) -> Result<u64, AnnotationError> {
        let text = &row.fields[field];
        text.parse()
            .map_err(|_| self.error(row.line, format!("{what} {text:?} is not a whole number")))
    }

    fn error(&self, line: usize, message: String) -> AnnotationError {
        AnnotationError::Line {
            path: self.path.clone(),
            line,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSES: &str = "1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n";
    const IMAGES: &str = "1 001.Black_footed_Albatross/a_0046_18.jpg\n\
                          2 002.Laysan_Albatross/b_0002_1.jpg\n";
    const LABELS: &str = "1 1\n2 2\n";
    const BOXES: &str = "1 60.0 27.0 325.0 304.0\n2 139.5 30 153.25 264.0\n";

    fn dataset(files: [(&str, &str); 4]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn good() -> [(&'static str, &'static str); 4] {
        [
            ("classes.txt", CLASSES),
            ("images.txt", IMAGES),
            ("image_class_labels.txt", LABELS),
            ("bounding_boxes.txt", BOXES),
        ]
    }

    /// Replaces the text of one file of the good dataset.
    fn with(name: &str, text: &'static str) -> [(&'static str, &'static str); 4] {
        let mut files = good();
        files.iter_mut().find(|(n, _)| *n == name).unwrap().1 = text;
        files
    }

    fn error_of(files: [(&str, &str); 4]) -> String {
        let dir = dataset(files);
        read(dir.path()).unwrap_err().to_string()
    }

    #[test]
    fn reads_records_with_boxes_converted_to_corners() {
        let dir = dataset(good());
        let records = read(dir.path()).unwrap();
        assert_eq!(records.len(), 2);
        let first = &records[0];
        assert_eq!(first.id, 1);
        assert_eq!(
            first.path,
            PathBuf::from("001.Black_footed_Albatross/a_0046_18.jpg")
        );
        assert_eq!(first.label, "001.Black_footed_Albatross");
        assert_eq!((first.width, first.height), (None, None));
        let b = &first.boxes[0];
        assert_eq!((b.xmin, b.ymin, b.xmax, b.ymax), (60.0, 27.0, 385.0, 331.0));
        assert_eq!(b.label, first.label);
        let b = &records[1].boxes[0];
        assert_eq!(
            (b.xmin, b.ymin, b.xmax, b.ymax),
            (139.5, 30.0, 292.75, 294.0)
        );
        assert_eq!((b.width(), b.height()), (153.25, 264.0));
        assert_eq!(records[1].label, "002.Laysan_Albatross");
    }

    #[test]
    fn unknown_image_id_names_file_and_line() {
        let message = error_of(with(
            "bounding_boxes.txt",
            "1 1 2 3 4\n2 1 2 3 4\n7 1 2 3 4\n",
        ));
        assert!(message.contains("bounding_boxes.txt:3:"), "{message}");
        assert!(
            message.contains("image id 7 is not in images.txt"),
            "{message}"
        );
        let message = error_of(with("image_class_labels.txt", "1 1\n\n9 2\n2 2\n"));
        assert!(message.contains("image_class_labels.txt:3:"), "{message}");
    }

    #[test]
    fn bad_numbers_and_field_counts_name_file_and_line() {
        let message = error_of(with(
            "bounding_boxes.txt",
            "1 60.0 27.0 325.0 304.0\n2 1 2 wide 4\n",
        ));
        assert!(message.contains("bounding_boxes.txt:2:"), "{message}");
        assert!(
            message.contains("width \"wide\" is not a number"),
            "{message}"
        );
        let message = error_of(with("bounding_boxes.txt", "1 60.0 27.0 325.0\n"));
        assert!(
            message.contains("bounding_boxes.txt:1: expected 5 fields"),
            "{message}"
        );
        let message = error_of(with("images.txt", "1 a.jpg\nx b.jpg\n"));
        assert!(
            message.contains("images.txt:2: id \"x\" is not a whole number"),
            "{message}"
        );
        let message = error_of(with("bounding_boxes.txt", "1 1 2 3 4\n2 1 2 -3 4\n"));
        assert!(
            message.contains("bounding_boxes.txt:2: negative box size"),
            "{message}"
        );
    }

    #[test]
    fn missing_labels_boxes_classes_and_duplicates_are_errors() {
        let message = error_of(with("bounding_boxes.txt", "1 1 2 3 4\n"));
        assert!(
            message.contains("images.txt:2: image id 2 has no box in bounding_boxes.txt"),
            "{message}"
        );
        let message = error_of(with("image_class_labels.txt", "1 1\n2 5\n"));
        assert!(
            message.contains("image_class_labels.txt:2: class id 5 is not in classes.txt"),
            "{message}"
        );
        let message = error_of(with("image_class_labels.txt", "1 1\n2 2\n1 2\n"));
        assert!(
            message.contains("image_class_labels.txt:3: id 1 appears twice (first on line 1)"),
            "{message}"
        );
        let message = error_of(with("classes.txt", "\n  \n"));
        assert!(message.contains("classes.txt: has no records"), "{message}");
        let dir = dataset(good());
        std::fs::remove_file(dir.path().join("images.txt")).unwrap();
        let message = read(dir.path()).unwrap_err().to_string();
        assert!(message.contains("images.txt"), "{message}");
    }
}
