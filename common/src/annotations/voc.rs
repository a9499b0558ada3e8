//! PASCAL VOC XML annotations, and the ImageNet validation XML of the same schema.
//!
//! ```xml
//! <annotation>
//!   <folder>VOC2007</folder>
//!   <filename>000005.jpg</filename>
//!   <size><width>500</width><height>375</height><depth>3</depth></size>
//!   <object>
//!     <name>chair</name><difficult>0</difficult>
//!     <bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox>
//!   </object>
//! </annotation>
//! ```
//!
//! Read: `<filename>` (required) becomes the record's path, `<size>` its width and height
//! when present, each `<object>` (at least one; `<name>` and `<bndbox>` with its four
//! numbers required, `<difficult>` optional) a box. The record's label is the first
//! object's name. Coordinates are 1-based inclusive in the file (see [the module
//! docs](super)). ImageNet's files (`ILSVRC2012_val_00000001.xml`) give `<filename>`
//! without an extension; [`read_imagenet_file`] appends `.JPEG`, the extension of the
//! ILSVRC image files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use roxmltree::{Document, Node};

use super::{read_text, AnnotationError, BoundingBox, ImageAnnotation};

/// Which dialect of the schema a file is read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Voc,
    ImageNet,
}

/// Reads one VOC XML file as the image with id `id`.
pub fn read_file(path: &Path, id: u64) -> Result<ImageAnnotation, AnnotationError> {
    parse(&read_text(path)?, path, id, Dialect::Voc)
}

/// Reads every `*.xml` under `dir` (recursively), sorted by path relative to `dir` (as
/// strings, `/`-separated): ids are positions in that order, so for a tree
/// `annotations/<class>/<image>.xml` mirroring an ImageFolder `images/<class>/<image>.png`
/// the ids are the ImageFolder's image ids.
pub fn read_dir(dir: &Path) -> Result<Vec<ImageAnnotation>, AnnotationError> {
    read_all(dir, Dialect::Voc)
}

/// Reads one ImageNet validation XML file (`<filename>` without extension gets `.JPEG`).
pub fn read_imagenet_file(path: &Path, id: u64) -> Result<ImageAnnotation, AnnotationError> {
    parse(&read_text(path)?, path, id, Dialect::ImageNet)
}

/// Reads a directory of ImageNet validation XML files (`val/ILSVRC2012_val_00000001.xml`
/// …); ids are positions in sorted order as in [`read_dir`], so `…_00000001` is id 0.
pub fn read_imagenet_dir(dir: &Path) -> Result<Vec<ImageAnnotation>, AnnotationError> {
    read_all(dir, Dialect::ImageNet)
}

/// Parses VOC XML `text`; `path` is only used in errors.
pub fn parse_str(text: &str, path: &Path, id: u64) -> Result<ImageAnnotation, AnnotationError> {
    parse(text, path, id, Dialect::Voc)
}

fn read_all(dir: &Path, dialect: Dialect) -> Result<Vec<ImageAnnotation>, AnnotationError> {
    let mut files = Vec::new();
    collect_xml(dir, "", &mut files)?;
    files.sort();
    files
        .iter()
        .enumerate()
        .map(|(id, relative)| {
            let path = dir.join(relative);
            parse(&read_text(&path)?, &path, id as u64, dialect)
        })
        .collect()
}

/// Appends the `/`-joined relative paths of the `.xml` files under `dir/prefix`.
fn collect_xml(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), AnnotationError> {
    let here = dir.join(prefix);
    let entries = std::fs::read_dir(&here).map_err(|e| AnnotationError::io(&here, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| AnnotationError::io(&here, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry
            .file_type()
            .map_err(|e| AnnotationError::io(&entry.path(), e))?;
        if kind.is_dir() {
            collect_xml(dir, &relative, out)?;
        } else if name.to_ascii_lowercase().ends_with(".xml") {
            out.push(relative);
        }
    }
    Ok(())
}

/// Error context: the document (for line numbers) and the file's path.
struct Ctx<'a, 'input> {
    doc: &'a Document<'input>,
    path: &'a Path,
}

impl<'a, 'input> Ctx<'a, 'input> {
    fn line(&self, node: Node<'a, 'input>) -> u32 {
        self.doc.text_pos_at(node.range().start).row
    }

    fn error(&self, node: Node<'a, 'input>, element: &str, message: String) -> AnnotationError {
        AnnotationError::Element {
            path: self.path.to_path_buf(),
            line: self.line(node),
            element: element.to_string(),
            message,
        }
    }

    /// The child element `name` of `parent` (whose path is `at`), if any; twice is an error.
    fn optional(
        &self,
        parent: Node<'a, 'input>,
        at: &str,
        name: &str,
    ) -> Result<Option<Node<'a, 'input>>, AnnotationError> {
        let mut found = parent.children().filter(|n| n.has_tag_name(name));
        let first = found.next();
        if let Some(second) = found.next() {
            return Err(self.error(second, &format!("{at}/{name}"), "appears twice".into()));
        }
        Ok(first)
    }

    fn required(
        &self,
        parent: Node<'a, 'input>,
        at: &str,
        name: &str,
    ) -> Result<Node<'a, 'input>, AnnotationError> {
        self.optional(parent, at, name)?.ok_or_else(|| {
            self.error(
                parent,
                &format!("{at}/{name}"),
                format!("missing (no <{name}> in <{}>)", parent.tag_name().name()),
            )
        })
    }

    /// The trimmed, non-empty text of `node`.
    fn text(&self, node: Node<'a, 'input>, at: &str) -> Result<&'a str, AnnotationError> {
        match node.text().map(str::trim) {
            Some(text) if !text.is_empty() => Ok(text),
            _ => Err(self.error(node, at, "is empty".into())),
        }
    }

    fn number(&self, node: Node<'a, 'input>, at: &str) -> Result<f64, AnnotationError> {
        let text = self.text(node, at)?;
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(value),
            _ => Err(self.error(node, at, format!("{text:?} is not a number"))),
        }
    }

    fn pixels(&self, node: Node<'a, 'input>, at: &str) -> Result<u32, AnnotationError> {
        let value = self.number(node, at)?;
        if value < 0.0 || value.fract() != 0.0 || value > f64::from(u32::MAX) {
            return Err(self.error(node, at, format!("{value} is not a whole number of pixels")));
        }
        Ok(value as u32)
    }
}

fn parse(
    text: &str,
    path: &Path,
    id: u64,
    dialect: Dialect,
) -> Result<ImageAnnotation, AnnotationError> {
    let doc = Document::parse(text).map_err(|source| AnnotationError::Xml {
        path: path.to_path_buf(),
        source,
    })?;
    let ctx = Ctx { doc: &doc, path };
    let root = doc.root_element();
    if !root.has_tag_name("annotation") {
        return Err(ctx.error(
            root,
            root.tag_name().name(),
            "the root element must be <annotation>".into(),
        ));
    }
    let at = "annotation";
    let filename_node = ctx.required(root, at, "filename")?;
    let filename = ctx.text(filename_node, "annotation/filename")?;
    let mut file = PathBuf::from(filename);
    if dialect == Dialect::ImageNet && file.extension().is_none() {
        file.set_extension("JPEG");
    }
    let (mut width, mut height) = (None, None);
    if let Some(size) = ctx.optional(root, at, "size")? {
        let at = "annotation/size";
        let w = ctx.required(size, at, "width")?;
        let h = ctx.required(size, at, "height")?;
        width = Some(ctx.pixels(w, "annotation/size/width")?);
        height = Some(ctx.pixels(h, "annotation/size/height")?);
    }
    let mut boxes = Vec::new();
    for object in root.children().filter(|n| n.has_tag_name("object")) {
        boxes.push(parse_object(&ctx, object)?);
    }
    let Some(first) = boxes.first() else {
        return Err(ctx.error(root, "annotation/object", "missing (no <object>)".into()));
    };
    Ok(ImageAnnotation {
        id,
        path: file,
        label: first.label.clone(),
        width,
        height,
        boxes,
    })
}

fn parse_object<'a, 'input>(
    ctx: &Ctx<'a, 'input>,
    object: Node<'a, 'input>,
) -> Result<BoundingBox, AnnotationError> {
    let at = "annotation/object";
    let name = ctx.text(ctx.required(object, at, "name")?, "annotation/object/name")?;
    let difficult = match ctx.optional(object, at, "difficult")? {
        None => false,
        Some(node) => match ctx.text(node, "annotation/object/difficult")? {
            "0" => false,
            "1" => true,
            other => {
                return Err(ctx.error(
                    node,
                    "annotation/object/difficult",
                    format!("{other:?} is neither 0 nor 1"),
                ))
            }
        },
    };
    let bndbox = ctx.required(object, at, "bndbox")?;
    let at = "annotation/object/bndbox";
    let mut corner = [0f64; 4];
    for (value, name) in corner.iter_mut().zip(["xmin", "ymin", "xmax", "ymax"]) {
        let node = ctx.required(bndbox, at, name)?;
        *value = ctx.number(node, &format!("{at}/{name}"))?;
    }
    let [xmin, ymin, xmax, ymax] = corner;
    if xmax < xmin || ymax < ymin {
        return Err(ctx.error(
            bndbox,
            at,
            format!("empty box: ({xmin}, {ymin}) to ({xmax}, {ymax}) has max < min"),
        ));
    }
    // 1-based inclusive → 0-based half-open (module docs of `annotations`).
    Ok(BoundingBox {
        label: name.to_string(),
        xmin: (xmin - 1.0) as f32,
        ymin: (ymin - 1.0) as f32,
        xmax: xmax as f32,
        ymax: ymax as f32,
        difficult,
    })
}

/// Formats `annotation` as VOC XML (1-based inclusive coordinates, written exactly:
/// [`read_file`] gives back the same record, with `annotation.path`'s file name as
/// `<filename>`). `folder` becomes `<folder>`; `<size>` is written when width and height
/// are known (depth 3).
pub fn to_xml(annotation: &ImageAnnotation, folder: &str) -> String {
    let filename = annotation
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut xml = String::from("<annotation>\n");
    // `write!` into a String cannot fail.
    let _ = writeln!(xml, "\t<folder>{}</folder>", escape(folder));
    let _ = writeln!(xml, "\t<filename>{}</filename>", escape(&filename));
    if let (Some(width), Some(height)) = (annotation.width, annotation.height) {
        let _ = writeln!(
            xml,
            "\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>"
        );
    }
    xml.push_str("\t<segmented>0</segmented>\n");
    for object in &annotation.boxes {
        let _ = writeln!(
            xml,
            "\t<object>\n\t\t<name>{}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n\t\t<difficult>{}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{}</xmin>\n\t\t\t<ymin>{}</ymin>\n\t\t\t<xmax>{}</xmax>\n\t\t\t<ymax>{}</ymax>\n\t\t</bndbox>\n\t</object>",
            escape(&object.label),
            u8::from(object.difficult),
            f64::from(object.xmin) + 1.0,
            f64::from(object.ymin) + 1.0,
            f64::from(object.xmax),
            f64::from(object.ymax),
        );
    }
    xml.push_str("</annotation>\n");
    xml
}

/// Writes [`to_xml`] of `annotation` to `path`.
pub fn write_file(
    annotation: &ImageAnnotation,
    folder: &str,
    path: &Path,
) -> Result<(), AnnotationError> {
    std::fs::write(path, to_xml(annotation, folder)).map_err(|e| AnnotationError::io(path, e))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOC: &str = "<annotation>
\t<folder>VOC2007</folder>
\t<filename>000005.jpg</filename>
\t<size><width>500</width><height>375</height><depth>3</depth></size>
\t<object>
\t\t<name>chair</name>
\t\t<difficult>0</difficult>
\t\t<bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox>
\t</object>
\t<object>
\t\t<name>person</name>
\t\t<difficult>1</difficult>
\t\t<bndbox>
\t\t\t<xmin>1</xmin><ymin>1.5</ymin><xmax>500</xmax><ymax>375</ymax>
\t\t</bndbox>
\t</object>
</annotation>
";

    const IMAGENET: &str = "<annotation>
\t<folder>val</folder>
\t<filename>ILSVRC2012_val_00000001</filename>
\t<source><database>ILSVRC_2012</database></source>
\t<size><width>500</width><height>375</height><depth>3</depth></size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>n01751748</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
\t\t<bndbox><xmin>111</xmin><ymin>108</ymin><xmax>441</xmax><ymax>193</ymax></bndbox>
\t</object>
</annotation>
";

    fn error(text: &str) -> String {
        parse_str(text, Path::new("dir/bad.xml"), 0)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_voc_boxes_in_half_open_zero_based_pixels() {
        let a = parse_str(VOC, Path::new("x.xml"), 7).unwrap();
        assert_eq!(a.id, 7);
        assert_eq!(a.path, PathBuf::from("000005.jpg"));
        assert_eq!(a.label, "chair");
        assert_eq!((a.width, a.height), (Some(500), Some(375)));
        assert_eq!(a.boxes.len(), 2);
        let chair = &a.boxes[0];
        assert_eq!(
            (chair.xmin, chair.ymin, chair.xmax, chair.ymax),
            (262.0, 210.0, 324.0, 339.0)
        );
        // Columns 263..=324 (1-based) are 62 pixels.
        assert_eq!((chair.width(), chair.height()), (62.0, 129.0));
        assert!(!chair.difficult);
        let person = &a.boxes[1];
        assert_eq!(person.label, "person");
        assert!(person.difficult);
        // The whole image: 0..500 × 0.5..375.
        assert_eq!(
            (person.xmin, person.ymin, person.xmax, person.ymax),
            (0.0, 0.5, 500.0, 375.0)
        );
    }

    #[test]
    fn reads_imagenet_val_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let second = IMAGENET
            .replace("00000001", "00000002")
            .replace("n01751748", "n09193705");
        std::fs::write(dir.path().join("ILSVRC2012_val_00000002.xml"), second).unwrap();
        std::fs::write(dir.path().join("ILSVRC2012_val_00000001.xml"), IMAGENET).unwrap();
        std::fs::write(dir.path().join("README.txt"), "not xml").unwrap();
        let all = read_imagenet_dir(dir.path()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, 0);
        assert_eq!(all[0].path, PathBuf::from("ILSVRC2012_val_00000001.JPEG"));
        assert_eq!(all[0].label, "n01751748");
        let b = &all[0].boxes[0];
        assert_eq!(
            (b.xmin, b.ymin, b.xmax, b.ymax),
            (110.0, 107.0, 441.0, 193.0)
        );
        assert_eq!(all[1].id, 1);
        assert_eq!(all[1].label, "n09193705");
        let one = read_imagenet_file(&dir.path().join("ILSVRC2012_val_00000001.xml"), 5).unwrap();
        assert_eq!((one.id, one.label.as_str()), (5, "n01751748"));
        // Read as plain VOC, the file name keeps no extension.
        let plain = read_file(&dir.path().join("ILSVRC2012_val_00000001.xml"), 0).unwrap();
        assert_eq!(plain.path, PathBuf::from("ILSVRC2012_val_00000001"));
    }

    #[test]
    fn directory_ids_follow_sorted_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        for (sub, name) in [
            ("b", "b_00001"),
            ("a", "a_00001"),
            ("b", "b_00000"),
            ("a", "a_00000"),
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            let text = VOC.replace("000005.jpg", &format!("{name}.png"));
            std::fs::write(dir.path().join(sub).join(format!("{name}.xml")), text).unwrap();
        }
        let all = read_dir(dir.path()).unwrap();
        let names: Vec<(u64, String)> = all
            .iter()
            .map(|a| (a.id, a.path.display().to_string()))
            .collect();
        assert_eq!(
            names,
            [
                (0, "a_00000.png".to_string()),
                (1, "a_00001.png".into()),
                (2, "b_00000.png".into()),
                (3, "b_00001.png".into())
            ]
        );
    }

    #[test]
    fn malformed_files_name_the_file_element_and_line() {
        let bad_number = VOC.replace("<xmin>263</xmin>", "<xmin>26x3</xmin>");
        assert_eq!(
            error(&bad_number),
            "dir/bad.xml:8: <annotation/object/bndbox/xmin>: \"26x3\" is not a number"
        );
        let no_bndbox = VOC.replace(
            "<bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox>",
            "",
        );
        assert_eq!(
            error(&no_bndbox),
            "dir/bad.xml:5: <annotation/object/bndbox>: missing (no <bndbox> in <object>)"
        );
        let no_ymax = VOC.replace("<ymax>375</ymax>", "");
        assert!(
            error(&no_ymax).starts_with("dir/bad.xml:13: <annotation/object/bndbox/ymax>: missing"),
            "{}",
            error(&no_ymax)
        );
        let no_filename = VOC.replace("\t<filename>000005.jpg</filename>\n", "");
        assert!(error(&no_filename).starts_with("dir/bad.xml:1: <annotation/filename>: missing"));
        let empty_name = VOC.replace("<name>person</name>", "<name> </name>");
        assert_eq!(
            error(&empty_name),
            "dir/bad.xml:11: <annotation/object/name>: is empty"
        );
        let inverted = VOC.replace("<xmax>324</xmax>", "<xmax>200</xmax>");
        assert!(error(&inverted).contains("dir/bad.xml:8: <annotation/object/bndbox>: empty box"));
        let bad_size = VOC.replace("<width>500</width>", "<width>-5</width>");
        assert!(error(&bad_size).starts_with("dir/bad.xml:4: <annotation/size/width>:"));
        let difficult = VOC.replace("<difficult>1</difficult>", "<difficult>yes</difficult>");
        assert!(error(&difficult).starts_with("dir/bad.xml:12: <annotation/object/difficult>:"));
        let twice = VOC.replace(
            "<name>chair</name>",
            "<name>chair</name>\n<name>table</name>",
        );
        assert_eq!(
            error(&twice),
            "dir/bad.xml:7: <annotation/object/name>: appears twice"
        );
        let no_object = "<annotation>\n<filename>a.jpg</filename>\n</annotation>";
        assert!(error(no_object).starts_with("dir/bad.xml:1: <annotation/object>: missing"));
        let wrong_root = "<?xml version=\"1.0\"?>\n<notes/>";
        assert!(error(wrong_root).starts_with("dir/bad.xml:2: <notes>: the root element"));
        // Not well-formed: the parser's own position (line 9) is in the message.
        let broken = VOC.replace("</object>\n\t<object>", "</objet>\n\t<object>");
        let message = error(&broken);
        assert!(
            message.starts_with("dir/bad.xml: not well-formed XML:"),
            "{message}"
        );
        assert!(message.contains("9:"), "{message}");
        let missing = read_file(Path::new("/nonexistent/a.xml"), 0).unwrap_err();
        assert!(
            missing.to_string().starts_with("/nonexistent/a.xml:"),
            "{missing}"
        );
    }

    #[test]
    fn written_xml_reads_back_exactly() {
        let annotation = ImageAnnotation {
            id: 3,
            path: PathBuf::from("cat_00003.png"),
            label: "cat & <dog>".to_string(),
            width: Some(64),
            height: Some(48),
            boxes: vec![
                BoundingBox {
                    label: "cat & <dog>".to_string(),
                    xmin: 0.0,
                    ymin: 5.0,
                    xmax: 64.0,
                    ymax: 17.0,
                    difficult: false,
                },
                BoundingBox {
                    label: "it's \"x\"".to_string(),
                    xmin: 0.3,
                    ymin: 1.0e-3,
                    xmax: 12.25,
                    ymax: 47.999_996,
                    difficult: true,
                },
            ],
        };
        let xml = to_xml(&annotation, "cats");
        assert!(
            xml.contains("<xmin>1</xmin>") && xml.contains("<xmax>64</xmax>"),
            "{xml}"
        );
        assert!(xml.contains("<folder>cats</folder>"));
        let back = parse_str(&xml, Path::new("x.xml"), 3).unwrap();
        assert_eq!(back, annotation);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.xml");
        write_file(&annotation, "cats", &path).unwrap();
        assert_eq!(read_file(&path, 3).unwrap(), annotation);
        // Without a size, none is written and none is read.
        let sizeless = ImageAnnotation {
            width: None,
            height: None,
            ..annotation
        };
        let back = parse_str(&to_xml(&sizeless, "cats"), Path::new("x.xml"), 3).unwrap();
        assert_eq!(back, sizeless);
    }
}
