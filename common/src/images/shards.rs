//! WebDataset-style tar shards as a dataset, and the locations of images inside them.
//!
//! See the [parent module](super) for the rules (which members are images, where labels come
//! from, the order of ids). An image in a shard is addressed by a [`MemberLocation`], whose
//! text — `<shard>#<member>@<offset>+<size>` — is the image's path in manifests, skip
//! records and region files' provenance, so every stage that reads images reads these too.
//! Decoding one is one ranged read (a positioned read locally, a ranged GET on S3) of the
//! member's header and data, because a shard is large and the images of one task may come
//! from two shards: fetching whole shards through the bounded cache would download a shard
//! per task per process and, under a small cache limit, once per image.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use super::{braces, tar, Dataset, Error, ImageRecord, LabelMap, Result, IMAGE_EXTENSIONS};
use crate::storage;

/// The largest `.cls` member read as a label (a label is a short line of text).
const MAX_LABEL_BYTES: u64 = 4096;

/// Where an image inside a tar shard lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLocation {
    /// The shard (a local path or an `s3://` URL).
    pub shard: PathBuf,
    /// The member's name in the shard.
    pub member: String,
    /// Byte offset of the member's data in the shard.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl MemberLocation {
    /// The location as a path: `<shard>#<member>@<offset>+<size>`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "{}#{}@{}+{}",
            self.shard.display(),
            self.member,
            self.offset,
            self.size
        ))
    }

    /// The member location `path` names, if it names one: the text up to the first `.tar#`
    /// (any case) is the shard, the text after the last `@` the data's `offset+size`.
    pub fn parse(path: &Path) -> Option<Self> {
        let text = path.to_str()?;
        let split = text.to_ascii_lowercase().find(".tar#")? + ".tar".len();
        let (shard, rest) = (&text[..split], &text[split + 1..]);
        let (member, span) = rest.rsplit_once('@')?;
        let (offset, size) = span.split_once('+')?;
        Some(MemberLocation {
            shard: storage::location(shard),
            member: member.to_string(),
            offset: offset.parse().ok()?,
            size: size.parse().ok()?,
        })
    }

    /// The member's data: one read of its header and data, checked against each other so a
    /// shard rewritten since it was scanned is an error rather than someone else's bytes.
    /// A problem is a short human reason, as the decoder records it.
    pub fn read(&self) -> std::result::Result<Vec<u8>, String> {
        let Some(header_at) = self.offset.checked_sub(tar::BLOCK) else {
            return Err(format!("no tar header before byte {}", self.offset));
        };
        let mut bytes = storage::read_range(&self.shard, header_at..self.offset + self.size)
            .map_err(|e| e.message)?;
        let header: &[u8; tar::BLOCK as usize] = bytes[..tar::BLOCK as usize]
            .try_into()
            .expect("read a whole block");
        match tar::check_header(header) {
            Ok(size) if size == self.size => {}
            Ok(size) => {
                return Err(format!(
                    "the shard changed since it was scanned: the header at byte {header_at} \
                     gives {size} bytes, not {}",
                    self.size
                ))
            }
            Err(problem) => {
                return Err(format!(
                    "the shard changed since it was scanned: at byte {header_at}: {problem}"
                ))
            }
        }
        bytes.drain(..tar::BLOCK as usize);
        Ok(bytes)
    }
}

/// The bytes of the image at `path`: a member of a tar shard ([`MemberLocation`]) or a
/// whole file or object. A problem is a short human reason (`cannot read: …`).
pub fn read_image(path: &Path) -> std::result::Result<Vec<u8>, String> {
    match MemberLocation::parse(path) {
        Some(member) => member.read().map_err(|e| format!("cannot read: {e}")),
        None => storage::read(path).map_err(|e| format!("cannot read: {}", e.message)),
    }
}

/// Whether `source` names tar shards: its text ends in `.tar` (any case), braces included.
pub fn names_shards(source: &Path) -> bool {
    source
        .to_str()
        .is_some_and(|t| t.to_ascii_lowercase().ends_with(".tar"))
}

/// The shards `source` names, in order ([`braces::expand`]).
pub fn shard_paths(source: &Path) -> Result<Vec<PathBuf>> {
    let text = source.to_str().ok_or_else(|| {
        Error::Input(format!(
            "{}: a shard pattern must be UTF-8",
            source.display()
        ))
    })?;
    let names = braces::expand(text).map_err(|e| Error::Input(e.to_string()))?;
    Ok(names.iter().map(|n| storage::location(n)).collect())
}

/// Reads the shards `source` names into a dataset; `labels` names the class indices `.cls`
/// members may hold.
pub(super) fn scan(source: &Path, labels: Option<&LabelMap>) -> Result<Dataset> {
    let mut images = Vec::new();
    let mut classes = BTreeSet::new();
    for shard in shard_paths(source)? {
        scan_shard(&shard, labels, &mut images, &mut classes)?;
    }
    Ok(Dataset {
        images,
        classes: classes.into_iter().collect(),
    })
}

/// A member name split as WebDataset splits it: the key is everything before the first dot
/// of the last path component (which must not start with a dot), the extension the rest.
fn key_and_extension(name: &str) -> Option<(&str, &str)> {
    let start = name.rfind('/').map_or(0, |i| i + 1);
    let dot = start + name[start..].find('.')?;
    (dot > start).then(|| (&name[..dot], &name[dot + 1..]))
}

fn scan_shard(
    shard: &Path,
    labels: Option<&LabelMap>,
    images: &mut Vec<ImageRecord>,
    classes: &mut BTreeSet<String>,
) -> Result<()> {
    let at = |problem: String| Error::Input(format!("{}: {problem}", shard.display()));
    // A remote shard is scanned from a local copy, pinned while it is read.
    let cached = storage::fetch(shard).map_err(|e| Error::io(shard, e.into_io_at(shard)))?;
    let mut file = File::open(cached.path()).map_err(|e| Error::io(shard, e))?;
    let len = file.metadata().map_err(|e| Error::io(shard, e))?.len();
    let members = tar::members(&mut file, len).map_err(|e| at(e.to_string()))?;

    // The last `.cls` of a key wins, as a later member of the same name wins in tar.
    let mut label_members: HashMap<&str, &tar::Member> = HashMap::new();
    for member in &members {
        if let Some((key, ext)) = key_and_extension(&member.name) {
            if ext.eq_ignore_ascii_case("cls") {
                label_members.insert(key, member);
            }
        }
    }
    for member in &members {
        let Some((key, ext)) = key_and_extension(&member.name) else {
            continue;
        };
        if !IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)) {
            continue;
        }
        let label = match label_members.get(key) {
            Some(cls) => label_of(&mut file, cls, labels).map_err(at)?,
            None => String::new(),
        };
        if !label.is_empty() {
            classes.insert(label.clone());
        }
        images.push(ImageRecord {
            id: images.len() as u64,
            path: MemberLocation {
                shard: shard.to_path_buf(),
                member: member.name.clone(),
                offset: member.data,
                size: member.size,
            }
            .path(),
            label,
        });
    }
    Ok(())
}

/// The label a `.cls` member gives: its trimmed text; digits are a class index, named by
/// `labels`. Empty (or not UTF-8): no label, `""`.
fn label_of(
    file: &mut File,
    cls: &tar::Member,
    labels: Option<&LabelMap>,
) -> std::result::Result<String, String> {
    use std::os::unix::fs::FileExt;
    if cls.size > MAX_LABEL_BYTES {
        return Err(format!(
            "{} holds {} bytes, more than a label ({MAX_LABEL_BYTES} at most)",
            cls.name, cls.size
        ));
    }
    let mut bytes = vec![0u8; cls.size as usize];
    file.read_exact_at(&mut bytes, cls.data)
        .map_err(|e| format!("cannot read {}: {e}", cls.name))?;
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(String::new());
    };
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(text.to_string());
    }
    let Some(labels) = labels else {
        return Err(format!(
            "{} holds the class index {text}: class indices need a label map to name them \
             (data.labels in a job spec, --labels on the command line)",
            cls.name
        ));
    };
    let name = text
        .parse::<usize>()
        .ok()
        .and_then(|k| labels.names().get(k).cloned())
        .filter(|n| !n.is_empty());
    name.ok_or_else(|| {
        format!(
            "{} holds the class index {text}, which the label map does not name",
            cls.name
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::tar::write::archive;

    #[test]
    fn keys_split_like_webdataset() {
        assert_eq!(
            key_and_extension("a/b/n01_1.jpg"),
            Some(("a/b/n01_1", "jpg"))
        );
        assert_eq!(key_and_extension("x.seg.png"), Some(("x", "seg.png")));
        assert_eq!(key_and_extension("d.v/x"), None);
        assert_eq!(key_and_extension("d/.hidden.jpg"), None);
        assert_eq!(key_and_extension("__key__"), None);
    }

    #[test]
    fn locations_round_trip() {
        let loc = MemberLocation {
            shard: "s3://b/train-{x}.TAR".into(),
            member: "dir/a@b.tar#c.jpg".into(),
            offset: 1536,
            size: 20,
        };
        assert_eq!(
            loc.path(),
            PathBuf::from("s3://b/train-{x}.TAR#dir/a@b.tar#c.jpg@1536+20")
        );
        assert_eq!(MemberLocation::parse(&loc.path()), Some(loc));
        assert_eq!(MemberLocation::parse(Path::new("/d/x.tar")), None);
        assert_eq!(MemberLocation::parse(Path::new("/d/x.tar#a.jpg")), None);
        assert_eq!(MemberLocation::parse(Path::new("/d/x.jpg")), None);
    }

    fn png(red: u8) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(2, 2, image::Rgb([red, 0, 0]))
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn members_pair_by_key_in_member_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (png(1), png(2));
        std::fs::write(
            dir.path().join("s-0.tar"),
            archive(&[
                ("k/b.cls", b"dog\n"),
                ("k/b.png", &b),
                ("a.jpg", &a),
                ("a.json", b"{}"),
                ("a.cls", b" cat "),
                ("nolabel.jpg", &a),
                ("a.seg.png", &a),
                ("blank.jpg", &a),
                ("blank.cls", b"  \n"),
            ]),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("s-1.tar"),
            archive(&[("z.JPEG", &b), ("z.cls", b"7"), ("z.cls", b"bird")]),
        )
        .unwrap();
        let ds = crate::images::scan(&dir.path().join("s-{0..1}.tar")).unwrap();
        assert_eq!(ds.classes, ["bird", "cat", "dog"]);
        let got: Vec<(String, &str)> = ds
            .images
            .iter()
            .map(|i| {
                let loc = MemberLocation::parse(&i.path).unwrap();
                let shard = loc
                    .shard
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (format!("{shard}#{}", loc.member), i.label.as_str())
            })
            .collect();
        assert_eq!(
            got,
            [
                ("s-0.tar#k/b.png".to_string(), "dog"),
                ("s-0.tar#a.jpg".into(), "cat"),
                ("s-0.tar#nolabel.jpg".into(), ""),
                ("s-0.tar#blank.jpg".into(), ""),
                ("s-1.tar#z.JPEG".into(), "bird"),
            ]
        );
        assert!(ds.images.iter().enumerate().all(|(i, r)| r.id == i as u64));
        assert_eq!(read_image(&ds.images[0].path).unwrap(), b);
        assert_eq!(read_image(&ds.images[4].path).unwrap(), b);
        // The unlabelled images are listed without a class and named by the decoder.
        let labelled = LabelMap::sorted(&ds.classes).labelled(&ds).unwrap();
        assert_eq!(
            labelled.iter().map(|l| l.label).collect::<Vec<_>>(),
            [Some(2), Some(1), None, None, Some(0)]
        );
    }

    #[test]
    fn class_indices_need_a_label_map() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("x.tar");
        std::fs::write(&shard, archive(&[("a.png", &png(0)), ("a.cls", b"1\n")])).unwrap();
        let err = crate::images::scan(&shard).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "x.tar: a.cls holds the class index 1: class indices need a label \
                           map to name them (data.labels in a job spec, --labels on the \
                           command line)"
            ),
            "{err}"
        );
        let txt = dir.path().join("labels.txt");
        std::fs::write(&txt, "n01\nn02\n").unwrap();
        let map = LabelMap::from_file(&txt).unwrap();
        let ds = crate::images::scan_with(&shard, Some(&map)).unwrap();
        assert_eq!(ds.images[0].label, "n02");
        std::fs::write(&txt, "n01\n").unwrap();
        let map = LabelMap::from_file(&txt).unwrap();
        let err = crate::images::scan_with(&shard, Some(&map))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("class index 1, which the label map does not name"),
            "{err}"
        );
    }

    #[test]
    fn damaged_shards_and_members() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("t.tar");
        let bytes = archive(&[("a.png", &png(0)), ("a.cls", b"x"), ("b.png", b"junk")]);
        std::fs::write(&shard, &bytes[..1024 + 100]).unwrap();
        let err = crate::images::scan(&shard).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "t.tar: at byte 1024: a header is cut off after 100 of 512 bytes \
                           (a truncated shard)"
            ),
            "{err}"
        );
        let missing = crate::images::scan(&dir.path().join("u-{1..2}.tar")).unwrap_err();
        assert!(missing.to_string().contains("u-1.tar"), "{missing}");

        // A member rewritten after the scan is not read as someone else's bytes.
        std::fs::write(&shard, &bytes).unwrap();
        let ds = crate::images::scan(&shard).unwrap();
        let loc = MemberLocation::parse(&ds.images[1].path).unwrap();
        let mut moved = loc.clone();
        moved.offset += 512;
        let err = moved.read().unwrap_err();
        assert!(
            err.starts_with("the shard changed since it was scanned"),
            "{err}"
        );
        assert_eq!(loc.read().unwrap(), b"junk");
    }
}
