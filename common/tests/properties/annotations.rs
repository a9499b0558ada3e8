//! VOC and ImageNet XML, CUB-200-2011 text files.
//!
//! Valid files are written here independently of `voc::to_xml` (elements in any order,
//! unknown elements, comments, entity and character references, numbers in several
//! spellings), so reading them back checks the reader against the format, not against our
//! own writer; `to_xml` is checked against the reader separately.

use std::path::{Path, PathBuf};

use hint_common::annotations::{cub, voc, BoundingBox, ImageAnnotation};
use proptest::prelude::*;
use proptest::sample::Index;

/// Pieces of the XML schema and of what breaks XML readers.
const XML_TOKENS: &[&str] = &[
    "<annotation>",
    "</annotation>",
    "<object>",
    "</object>",
    "<name>",
    "</name>",
    "<filename>",
    "</filename>",
    "<size>",
    "</size>",
    "<width>",
    "</width>",
    "<height>",
    "</height>",
    "<bndbox>",
    "</bndbox>",
    "<xmin>",
    "</xmin>",
    "<ymin>",
    "</ymin>",
    "<xmax>",
    "</xmax>",
    "<ymax>",
    "</ymax>",
    "<difficult>",
    "</difficult>",
    "<difficult>2</difficult>",
    "<object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>0</xmax><ymax>1</ymax></bndbox></object>",
    "<!-- comment -->",
    "<![CDATA[<x>]]>",
    "<?xml version=\"1.0\"?>",
    "<!DOCTYPE annotation [<!ENTITY e \"&e;\">]>",
    "&amp;",
    "&lt;",
    "&e;",
    "&#0;",
    "&#x110000;",
    "&#65;",
    "NaN",
    "inf",
    "-1",
    "1e400",
    "4294967296",
    "-0",
    "0.5",
    " ",
    "\n",
    "\"",
    "'",
    "<a/>",
    "<",
    ">",
];

/// An f32 coordinate that VOC's ±1 conversion (done in f64) gives back exactly: 0 or of
/// magnitude at least 2⁻²⁹ (the `annotations` module docs).
fn coordinate() -> impl Strategy<Value = f32> {
    prop_oneof![
        (0u32..5000).prop_map(|v| v as f32),
        (0u32..20_000).prop_map(|v| v as f32 / 4.0),
        -1.0e4f32..1.0e4f32,
        -1.0e30f32..1.0e30f32,
    ]
    .prop_filter("exact after ±1", |x| {
        *x == 0.0 || x.abs() >= 2f32.powi(-29)
    })
}

/// A box's extent along one axis, at least one pixel (the file's 1-based inclusive
/// `max ≥ min`).
fn span() -> impl Strategy<Value = (f32, f32)> {
    (coordinate(), coordinate()).prop_filter_map("at least one pixel", |(a, b)| {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        (f64::from(hi) >= f64::from(lo) + 1.0).then_some((lo, hi))
    })
}

/// A class name as it survives a reader that trims: no surrounding white space, with the
/// characters XML must escape.
fn label() -> impl Strategy<Value = String> {
    "[\\p{L}\\p{N}_&<>'\"][\\p{L}\\p{N}_&<>'\" .:-]{0,10}".prop_map(|s| s.trim_end().to_string())
}

fn bounding_box() -> impl Strategy<Value = BoundingBox> {
    (label(), span(), span(), any::<bool>()).prop_map(
        |(label, (xmin, xmax), (ymin, ymax), difficult)| BoundingBox {
            label,
            xmin,
            ymin,
            xmax,
            ymax,
            difficult,
        },
    )
}

/// An image's annotation as a VOC reader gives it (`path` is the file name, `label` the
/// first object's).
fn annotation() -> impl Strategy<Value = ImageAnnotation> {
    (
        any::<u64>(),
        "[A-Za-z0-9_][A-Za-z0-9_-]{0,8}(\\.[a-zA-Z]{1,4})?",
        proptest::option::of((any::<u32>(), any::<u32>())),
        proptest::collection::vec(bounding_box(), 1..5),
    )
        .prop_map(|(id, file, size, boxes)| ImageAnnotation {
            id,
            path: PathBuf::from(file),
            label: boxes[0].label.clone(),
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
            boxes,
        })
}

/// How the independent writer spells things: choices drawn once per file.
#[derive(Debug, Clone)]
struct Spelling {
    /// Per number: 0 `{}`, 1 `{:e}`, 2 `{:?}`; padded with spaces or not.
    numbers: Vec<(u8, bool)>,
    /// Per escaped character: a named or a numeric reference.
    numeric_refs: Vec<bool>,
    /// Sort keys that shuffle the elements of each level.
    order: Vec<u8>,
    /// Whether `<difficult>0</difficult>` is written or left out.
    explicit_zero: bool,
    comments: bool,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (
        proptest::collection::vec((0u8..3, any::<bool>()), 64),
        proptest::collection::vec(any::<bool>(), 64),
        proptest::collection::vec(any::<u8>(), 64),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(numbers, numeric_refs, order, explicit_zero, comments)| Spelling {
                numbers,
                numeric_refs,
                order,
                explicit_zero,
                comments,
            },
        )
}

/// Cycles through a spelling's choices.
struct Writer<'a> {
    spelling: &'a Spelling,
    n: usize,
}

impl Writer<'_> {
    fn next(&mut self) -> usize {
        self.n += 1;
        self.n
    }

    fn number(&mut self, v: f64) -> String {
        let (form, pad) = self.spelling.numbers[self.next() % 64];
        let text = match form {
            0 => format!("{v}"),
            1 => format!("{v:e}"),
            _ => format!("{v:?}"),
        };
        if pad {
            format!(" {text}\n")
        } else {
            text
        }
    }

    fn text(&mut self, s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            let named = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&apos;",
                _ => {
                    out.push(c);
                    continue;
                }
            };
            if self.spelling.numeric_refs[self.next() % 64] {
                out.push_str(&format!("&#x{:x};", u32::from(c)));
            } else {
                out.push_str(named);
            }
        }
        out
    }

    /// The elements in a drawn order.
    fn shuffle(&mut self, mut items: Vec<String>) -> String {
        let keys: Vec<u8> = (0..items.len())
            .map(|_| self.spelling.order[self.next() % 64])
            .collect();
        let mut keyed: Vec<(u8, String)> = keys.into_iter().zip(items.drain(..)).collect();
        keyed.sort_by_key(|(k, _)| *k);
        let sep = if self.spelling.comments {
            "\n<!-- between -->\n"
        } else {
            "\n"
        };
        keyed
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(sep)
    }
}

/// VOC XML of `a`, written from the format's description (1-based inclusive pixels).
fn voc_text(a: &ImageAnnotation, spelling: &Spelling) -> String {
    let mut w = Writer { spelling, n: 0 };
    let file = a.path.to_string_lossy().into_owned();
    let mut top = vec![
        "<folder>images</folder>".to_string(),
        format!("<filename>{}</filename>", w.text(&file)),
        "<source><database>generated</database></source>".to_string(),
        "<segmented>0</segmented>".to_string(),
    ];
    if let (Some(width), Some(height)) = (a.width, a.height) {
        let (width, height) = (w.number(width.into()), w.number(height.into()));
        let size = w.shuffle(vec![
            format!("<width>{width}</width>"),
            format!("<height>{height}</height>"),
            "<depth>3</depth>".into(),
        ]);
        top.push(format!("<size>{size}</size>"));
    }
    let mut objects = Vec::new();
    for b in &a.boxes {
        let corners = [
            ("xmin", f64::from(b.xmin) + 1.0),
            ("ymin", f64::from(b.ymin) + 1.0),
            ("xmax", f64::from(b.xmax)),
            ("ymax", f64::from(b.ymax)),
        ];
        let corners: Vec<String> = corners
            .iter()
            .map(|(tag, v)| format!("<{tag}>{}</{tag}>", w.number(*v)))
            .collect();
        let bndbox = w.shuffle(corners);
        let mut parts = vec![
            format!("<name>{}</name>", w.text(&b.label)),
            format!("<bndbox>{bndbox}</bndbox>"),
            "<pose>Unspecified</pose>".into(),
            "<truncated>0</truncated>".into(),
        ];
        if b.difficult {
            parts.push("<difficult> 1 </difficult>".into());
        } else if spelling.explicit_zero {
            parts.push("<difficult>0</difficult>".into());
        }
        objects.push(format!("<object>{}</object>", w.shuffle(parts)));
    }
    // Objects keep their order (it is the boxes' order); the rest goes anywhere around them.
    let rest = w.shuffle(top);
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotation>\n{rest}\n{}\n</annotation>\n",
        objects.join("\n")
    )
}

proptest! {
    #![proptest_config(crate::config(64))]

    /// A VOC file written from the format's description reads back as what was written.
    #[test]
    fn voc_files_give_back_their_boxes(a in annotation(), spelling in spelling()) {
        let text = voc_text(&a, &spelling);
        let read = voc::parse_str(&text, Path::new("a.xml"), a.id);
        prop_assert_eq!(read.as_ref().ok(), Some(&a), "{:?}\n{}", read, text);
    }

    /// The ImageNet dialect: the same file, with `.JPEG` added to a name without extension.
    #[test]
    fn imagenet_files_give_back_their_boxes(a in annotation(), spelling in spelling()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ILSVRC2012_val_00000001.xml");
        std::fs::write(&file, voc_text(&a, &spelling)).unwrap();
        let mut expected = a.clone();
        if expected.path.extension().is_none() {
            expected.path.set_extension("JPEG");
        }
        prop_assert_eq!(voc::read_imagenet_file(&file, a.id).unwrap(), expected);
    }

    /// Our writer (used by `hint synth`) and the reader agree.
    #[test]
    fn voc_writer_and_reader_agree(a in annotation(), folder in label()) {
        let text = voc::to_xml(&a, &folder);
        prop_assert_eq!(voc::parse_str(&text, Path::new("a.xml"), a.id).unwrap(), a);
    }

    /// Damaged VOC files: an error naming the file, or a record whose boxes are boxes.
    #[test]
    fn damaged_voc_files_never_panic(
        a in annotation(),
        spelling in spelling(),
        edits in crate::edits(XML_TOKENS),
    ) {
        let text = crate::apply(&voc_text(&a, &spelling), &edits);
        check_voc(&text)?;
    }

    /// XML-ish token soup and arbitrary text.
    #[test]
    fn xml_soup_never_panics(
        tokens in proptest::collection::vec(
            prop_oneof![
                4 => proptest::sample::select(XML_TOKENS).prop_map(String::from),
                1 => any::<String>(),
            ],
            0..40,
        ),
        text in any::<String>(),
    ) {
        check_voc(&tokens.concat())?;
        check_voc(&text)?;
    }
}

/// Reads `text` as VOC: an error names the file; a record has at least one box, each with
/// a non-empty name and finite corners at least a pixel apart.
fn check_voc(text: &str) -> Result<(), TestCaseError> {
    match voc::parse_str(text, Path::new("dir/bad.xml"), 3) {
        Err(e) => prop_assert!(e.to_string().starts_with("dir/bad.xml"), "{e}"),
        Ok(a) => {
            prop_assert!(!a.boxes.is_empty());
            prop_assert_eq!(&a.label, &a.boxes[0].label);
            for b in &a.boxes {
                prop_assert!(!b.label.is_empty());
                for v in [b.xmin, b.ymin, b.xmax, b.ymax] {
                    prop_assert!(v.is_finite() || v.abs() == f32::INFINITY, "{:?}", b);
                }
                prop_assert!(f64::from(b.xmax) >= f64::from(b.xmin), "{:?}", b);
                prop_assert!(f64::from(b.ymax) >= f64::from(b.ymin), "{:?}", b);
            }
        }
    }
    Ok(())
}

/// One CUB image: its id, path, class (index into the classes drawn) and box.
#[derive(Debug, Clone)]
struct CubImage {
    id: u64,
    path: String,
    class: Index,
    bbox: [f64; 4],
}

/// A CUB dataset: classes `(id, name)`, images, and how the files are laid out.
#[derive(Debug, Clone)]
struct CubDataset {
    classes: Vec<(u64, String)>,
    images: Vec<CubImage>,
    /// Per file, sort keys for its lines (files need not be sorted by id).
    order: Vec<u8>,
    /// Separators between fields.
    separators: Vec<&'static str>,
    blank_lines: bool,
}

fn cub_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..2000).prop_map(f64::from),
        0.0f64..2000.0,
        -1.0e6f64..1.0e6,
    ]
}

fn cub_dataset() -> impl Strategy<Value = CubDataset> {
    let classes = proptest::collection::btree_map(any::<u64>(), "\\S{1,12}", 1..5);
    let images = proptest::collection::btree_map(
        any::<u64>(),
        (
            "\\S{1,16}",
            any::<Index>(),
            (cub_number(), cub_number(), 0.0f64..500.0, 0.0f64..500.0),
        ),
        1..10,
    );
    (
        classes,
        images,
        proptest::collection::vec(any::<u8>(), 64),
        proptest::collection::vec(proptest::sample::select(&[" ", "\t", "  ", " \t "][..]), 8),
        any::<bool>(),
    )
        .prop_map(
            |(classes, images, order, separators, blank_lines)| CubDataset {
                classes: classes.into_iter().collect(),
                images: images
                    .into_iter()
                    .map(|(id, (path, class, (x, y, w, h)))| CubImage {
                        id,
                        path,
                        class,
                        bbox: [x, y, w, h],
                    })
                    .collect(),
                order,
                separators,
                blank_lines,
            },
        )
}

impl CubDataset {
    fn class_of(&self, image: &CubImage) -> &(u64, String) {
        &self.classes[image.class.index(self.classes.len())]
    }

    /// One file's text: `rows` of fields, lines in a drawn order.
    fn file(&self, salt: usize, rows: Vec<Vec<String>>) -> String {
        let mut lines: Vec<(u8, String)> = rows
            .into_iter()
            .enumerate()
            .map(|(i, fields)| {
                let sep = self.separators[(i + salt) % self.separators.len()];
                (
                    self.order[(i * 7 + salt) % self.order.len()],
                    fields.join(sep),
                )
            })
            .collect();
        lines.sort_by_key(|(k, _)| *k);
        let sep = if self.blank_lines { "\n\n" } else { "\n" };
        let mut text = lines
            .into_iter()
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join(sep);
        text.push('\n');
        text
    }

    fn write(&self, root: &Path) {
        let classes = self
            .classes
            .iter()
            .map(|(id, name)| vec![id.to_string(), name.clone()])
            .collect();
        let images = self
            .images
            .iter()
            .map(|i| vec![i.id.to_string(), i.path.clone()])
            .collect();
        let labels = self
            .images
            .iter()
            .map(|i| vec![i.id.to_string(), format!("{:03}", self.class_of(i).0)])
            .collect();
        let boxes = self
            .images
            .iter()
            .map(|i| {
                let mut fields = vec![i.id.to_string()];
                fields.extend(i.bbox.iter().enumerate().map(|(k, v)| {
                    if (k + i.path.len()) % 2 == 0 {
                        format!("{v}")
                    } else {
                        format!("{v:e}")
                    }
                }));
                fields
            })
            .collect();
        for (salt, (name, rows)) in [
            ("classes.txt", classes),
            ("images.txt", images),
            ("image_class_labels.txt", labels),
            ("bounding_boxes.txt", boxes),
        ]
        .into_iter()
        .enumerate()
        {
            std::fs::write(root.join(name), self.file(salt, rows)).unwrap();
        }
    }

    /// What the reader must give: one record per image, sorted by id.
    fn expected(&self) -> Vec<ImageAnnotation> {
        self.images
            .iter()
            .map(|i| {
                let label = self.class_of(i).1.clone();
                let [x, y, w, h] = i.bbox;
                ImageAnnotation {
                    id: i.id,
                    path: PathBuf::from(&i.path),
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
                }
            })
            .collect()
    }
}

const CUB_FILES: [&str; 4] = [
    "classes.txt",
    "images.txt",
    "image_class_labels.txt",
    "bounding_boxes.txt",
];

/// Lines of CUB-like fields, or arbitrary text, or no file at all.
fn cub_file() -> impl Strategy<Value = Option<String>> {
    let field = prop_oneof![
        (0u64..4).prop_map(|v| v.to_string()),
        proptest::sample::select(
            &[
                "x",
                "-1",
                "+2",
                "18446744073709551616",
                "nan",
                "inf",
                "-inf",
                "1e400",
                "-0",
                "001.Albatross",
                "a/b.jpg",
                "0.5",
            ][..]
        )
        .prop_map(String::from),
    ];
    let line = proptest::collection::vec(field, 0..7).prop_map(|f| f.join(" "));
    prop_oneof![
        4 => proptest::collection::vec(line, 0..6).prop_map(|l| Some(l.join("\n"))),
        1 => any::<String>().prop_map(Some),
        1 => Just(None),
    ]
}

proptest! {
    #![proptest_config(crate::config(64))]

    /// A CUB dataset (lines in any order, any white space between fields) reads back as
    /// one record per image, sorted by id.
    #[test]
    fn cub_files_give_back_their_boxes(dataset in cub_dataset()) {
        let dir = tempfile::tempdir().unwrap();
        dataset.write(dir.path());
        prop_assert_eq!(cub::read(dir.path()).unwrap(), dataset.expected());
    }

    /// Arbitrary CUB files: an error naming one of the files, or records with boxes.
    #[test]
    fn arbitrary_cub_files_never_panic(files in proptest::array::uniform4(cub_file())) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in CUB_FILES.iter().zip(&files) {
            if let Some(text) = text {
                std::fs::write(dir.path().join(name), text).unwrap();
            }
        }
        match cub::read(dir.path()) {
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    CUB_FILES.iter().any(|f| message.starts_with(&dir.path().join(f).display().to_string())),
                    "{message}"
                );
            }
            Ok(records) => {
                prop_assert!(records.windows(2).all(|w| w[0].id < w[1].id));
                for r in &records {
                    prop_assert_eq!(r.boxes.len(), 1);
                    let b = &r.boxes[0];
                    prop_assert!(b.xmax >= b.xmin && b.ymax >= b.ymin, "{:?}", b);
                }
            }
        }
    }
}
