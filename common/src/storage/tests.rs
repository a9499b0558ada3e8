//! The storage API on local paths, and the parsing of locations. The same calls on `s3://`
//! URLs are tested against a real S3 server in the end-to-end suite (`tests/tests/hint/s3.rs`),
//! which owns the moto fixture.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

#[test]
fn local_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = root.join("a.txt");
    let nested = root.join("sub/deeper/b.bin");
    assert!(!exists(&a).unwrap());
    write(&a, b"alpha").unwrap();
    write(&nested, &[1, 2, 3]).unwrap();
    assert_eq!(read(&a).unwrap(), b"alpha");
    assert_eq!(read_to_string(&a).unwrap(), "alpha");
    assert!(exists(&a).unwrap());
    assert!(
        !exists(&root.join("sub")).unwrap(),
        "a directory is not a file"
    );
    assert!(is_dir(&root.join("sub")).unwrap());
    assert!(!is_dir(&root.join("nothing")).unwrap());

    // Overwrite is atomic and replaces the content.
    write(&a, b"alpha two").unwrap();
    assert_eq!(read(&a).unwrap(), b"alpha two");

    let listed = list(root).unwrap();
    assert_eq!(
        listed,
        vec![
            Entry {
                path: a.clone(),
                size: 9
            },
            Entry {
                path: nested.clone(),
                size: 3
            },
        ]
    );
    assert!(list(&root.join("nothing")).unwrap().is_empty());

    let renamed = root.join("moved/c.txt");
    rename(&a, &renamed).unwrap();
    assert!(!exists(&a).unwrap());
    assert_eq!(read(&renamed).unwrap(), b"alpha two");

    let copy = fetch(&renamed).unwrap();
    assert_eq!(copy.path(), renamed, "a local file is its own copy");
    assert_eq!(std::fs::read(&copy).unwrap(), b"alpha two");

    let dir = fetch_dir(&root.join("sub")).unwrap();
    assert_eq!(std::fs::read(dir.join("deeper/b.bin")).unwrap(), [1, 2, 3]);

    // upload_dir copies a local tree below the destination.
    let source = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(source.path().join("x/y")).unwrap();
    std::fs::write(source.path().join("top.txt"), "top").unwrap();
    std::fs::write(source.path().join("x/y/leaf.txt"), "leaf").unwrap();
    upload_dir(source.path(), &root.join("up")).unwrap();
    assert_eq!(read(&root.join("up/top.txt")).unwrap(), b"top");
    assert_eq!(read(&root.join("up/x/y/leaf.txt")).unwrap(), b"leaf");

    let mut writer = create(&root.join("streamed.bin")).unwrap();
    writer.write_all(b"stream").unwrap();
    assert!(!exists(&root.join("streamed.bin")).unwrap());
    assert_eq!(writer.finish().unwrap(), 6);
    assert_eq!(read(&root.join("streamed.bin")).unwrap(), b"stream");

    remove_all(&root.join("up")).unwrap();
    assert!(!is_dir(&root.join("up")).unwrap());
    remove_all(&root.join("up")).unwrap(); // missing is fine
    remove_all(&renamed).unwrap();
    assert!(!exists(&renamed).unwrap());
    let left: Vec<PathBuf> = list(root).unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(left, vec![root.join("streamed.bin"), nested]);
}

#[test]
fn locations_and_schemes() {
    assert_eq!(location("file:///data/x.png"), PathBuf::from("/data/x.png"));
    assert_eq!(location("s3://b/k"), PathBuf::from("s3://b/k"));
    assert_eq!(location("rel/x"), PathBuf::from("rel/x"));
    assert!(is_remote(Path::new("s3://b/k")));
    assert!(is_remote(Path::new("gs://b/k")));
    assert!(!is_remote(Path::new("file:///x")));
    assert!(!is_remote(Path::new("/data/s3://odd")));
    assert!(!is_remote(Path::new("relative/x")));
    // Path arithmetic works on URLs.
    let url = Path::new("s3://b/images/cat.png");
    assert_eq!(url.parent().unwrap(), Path::new("s3://b/images"));
    assert_eq!(
        url.with_extension("json"),
        Path::new("s3://b/images/cat.json")
    );

    let error = read(Path::new("gs://bucket/x")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "gs://bucket/x: unsupported URL scheme \"gs://\" (only s3:// URLs and local paths are \
         supported)"
    );
    let error = read(Path::new("s3:///x")).unwrap_err();
    assert!(error.to_string().contains("no bucket"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    write(
        &location(&format!("file://{}", file.display())),
        b"via file url",
    )
    .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"via file url");
}

#[test]
fn missing_local_files_say_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let error = read(&dir.path().join("absent.txt")).unwrap_err();
    assert!(error.not_found);
    assert!(
        error
            .to_string()
            .ends_with("absent.txt: No such file or directory (os error 2)"),
        "{error}"
    );
}

/// The partial file goes when a writer is dropped unfinished; nothing appears under the
/// final name.
#[test]
fn unfinished_local_files_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out/region.parquet");
    let mut writer = create(&file).unwrap();
    writer.write_all(b"half").unwrap();
    writer.flush().unwrap();
    assert!(dir.path().join("out/.region.parquet.partial").is_file());
    drop(writer);
    assert!(list(dir.path()).unwrap().is_empty());
}

#[test]
fn sizes_parse_with_binary_and_decimal_units() {
    use super::parse_bytes;
    assert_eq!(parse_bytes("4096"), Ok(4096));
    assert_eq!(parse_bytes("250GiB"), Ok(250 << 30));
    assert_eq!(parse_bytes(" 80G "), Ok(80 << 30));
    assert_eq!(parse_bytes("300Gi"), Ok(300 << 30));
    assert_eq!(parse_bytes("1.5TB"), Ok(1_500_000_000_000));
    assert_eq!(parse_bytes("2 MiB"), Ok(2 << 20));
    assert!(parse_bytes("lots").unwrap_err().contains("is not a size"));
    assert!(parse_bytes("3 parsecs")
        .unwrap_err()
        .contains("unknown unit"));
}
