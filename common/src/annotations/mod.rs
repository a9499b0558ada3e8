//! Ground-truth object boxes of labelled images, from the formats HINT's datasets ship in.
//!
//! Every reader yields the same record, [`ImageAnnotation`] (`id, path, label, boxes`):
//!
//! - [`voc`]: PASCAL VOC XML (one file per image, or a directory of them) and the ImageNet
//!   validation XML, which uses the same schema; plus the VOC writer that `hint synth` uses.
//! - [`cub`]: CUB-200-2011's text files (`images.txt`, `bounding_boxes.txt`,
//!   `image_class_labels.txt`, `classes.txt`).
//!
//! # Coordinates
//!
//! Boxes are held in **0-based, half-open pixel coordinates** as `f32`: pixel column `x`
//! covers `[x, x + 1)`, so a box over columns 10 to 19 is `xmin = 10, xmax = 20` and its
//! width is `xmax − xmin`. This is the convention of the masks and the image arrays, so a
//! box of a mask is `min` and `max + 1` of its pixel indices.
//!
//! - VOC and ImageNet XML store 1-based inclusive pixel indices: internal `xmin = xml − 1`,
//!   `xmax = xml` (so columns 10–19 are written `11 … 20`). The ILSVRC devkit evaluates
//!   boxes the VOC way (`width = xmax − xmin + 1`), so ImageNet is read the same way.
//! - CUB stores `x y width height` with a 0-based top-left corner: internal `xmin = x`,
//!   `xmax = x + width`.
//!
//! Conversions are done in `f64`, where adding or removing 1 is exact for every `f32`
//! coordinate of magnitude 2⁻²⁹ or more (and 0), so reading what [`voc::to_xml`] wrote
//! gives back the same `f32` values.
//!
//! # Errors
//!
//! A malformed file is an [`AnnotationError`] naming the file and the line (text files) or
//! the element and its line (XML).

pub mod cub;
pub mod voc;

use std::path::{Path, PathBuf};

/// One object's box, in 0-based half-open pixel coordinates (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct BoundingBox {
    /// The object's class (a VOC `<name>`, an ImageNet synset, a CUB class name).
    pub label: String,
    /// Left edge: the first column inside the box.
    pub xmin: f32,
    /// Top edge: the first row inside the box.
    pub ymin: f32,
    /// Right edge: one past the last column inside the box.
    pub xmax: f32,
    /// Bottom edge: one past the last row inside the box.
    pub ymax: f32,
    /// VOC's `<difficult>` flag (evaluations usually ignore such objects); false elsewhere.
    pub difficult: bool,
}

impl BoundingBox {
    /// Width in pixels (`xmax − xmin`).
    pub fn width(&self) -> f32 {
        self.xmax - self.xmin
    }

    /// Height in pixels (`ymax − ymin`).
    pub fn height(&self) -> f32 {
        self.ymax - self.ymin
    }
}

/// The annotation of one image: where it is, its class, its objects' boxes.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageAnnotation {
    /// The image's id: its CUB id, or its position among the files a directory reader
    /// read (sorted by relative path; see [`voc::read_dir`]).
    pub id: u64,
    /// The image file, relative to the dataset's image directory (see each reader).
    pub path: PathBuf,
    /// The image's class: the CUB class, or the first object's name in XML formats.
    pub label: String,
    /// Image width in pixels, where the format records it.
    pub width: Option<u32>,
    /// Image height in pixels, where the format records it.
    pub height: Option<u32>,
    /// The objects' boxes, in file order.
    pub boxes: Vec<BoundingBox>,
}

/// Why an annotation file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    /// The file or directory could not be read (or written).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not well-formed XML (the parser's message has the line and column).
    #[error("{}: not well-formed XML: {source}", path.display())]
    Xml {
        /// The XML file.
        path: PathBuf,
        /// The parser's error.
        source: roxmltree::Error,
    },
    /// An XML element is missing, repeated or holds a bad value.
    #[error("{}:{line}: <{element}>: {message}", path.display())]
    Element {
        /// The XML file.
        path: PathBuf,
        /// The line of the element (or of its parent, when it is missing).
        line: u32,
        /// The element's path from the root, e.g. `annotation/object/bndbox/xmin`.
        element: String,
        /// What is wrong.
        message: String,
    },
    /// A line of a text file is malformed or inconsistent with another file.
    #[error("{}:{line}: {message}", path.display())]
    Line {
        /// The text file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file as a whole is wrong (for example a required file is empty).
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl AnnotationError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        AnnotationError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads a whole text file, naming it on failure.
pub(crate) fn read_text(path: &Path) -> Result<String, AnnotationError> {
    std::fs::read_to_string(path).map_err(|e| AnnotationError::io(path, e))
}
