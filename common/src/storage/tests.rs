//! The storage API on local paths and on `s3://` URLs served by a real moto server.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::test_moto::{bucket, etag, http, open_uploads};
use super::*;

fn url(bucket: &str, key: &str) -> PathBuf {
    PathBuf::from(format!("s3://{bucket}/{key}"))
}

/// Bytes that differ from part to part, so a misplaced part shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
        .collect()
}

/// The same sequence of calls on a local directory and on a bucket prefix.
fn round_trip(root: &Path, fetched_is_local_root: bool) {
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
    assert_eq!(std::fs::read(&copy).unwrap(), b"alpha two");
    assert_eq!(fetched_is_local_root, copy == renamed);

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
fn local_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(dir.path(), true);
}

#[test]
fn s3_round_trip() {
    let bucket = bucket("round-trip");
    round_trip(&url(&bucket, "root"), false);
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
fn missing_things_say_what_and_where() {
    let bucket = bucket("missing");
    let missing = url(&bucket, "no/such/key.bin");
    let error = read(&missing).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("s3://{bucket}/no/such/key.bin: no such object")
    );
    assert!(error.not_found);
    assert_eq!(
        std::io::Error::from(error).kind(),
        std::io::ErrorKind::NotFound
    );
    assert!(fetch(&missing).unwrap_err().not_found);
    assert!(!exists(&missing).unwrap());

    let no_bucket = url("hint-no-such-bucket", "k");
    for error in [
        read(&no_bucket).unwrap_err(),
        write(&no_bucket, b"x").unwrap_err(),
        exists(&no_bucket).unwrap_err(),
        list(&url("hint-no-such-bucket", "")).unwrap_err(),
    ] {
        let text = error.to_string();
        assert!(text.starts_with("s3://hint-no-such-bucket"), "{text}");
        assert!(
            text.ends_with(": no such bucket \"hint-no-such-bucket\""),
            "{text}"
        );
        assert!(error.not_found);
    }

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

/// Parts of 5 MiB: 12.5 MiB go up as three parts, only `finish` makes the object visible, and
/// memory never holds more than the part being filled plus the one in flight.
#[test]
fn large_objects_stream_as_multipart_uploads() {
    let bucket = bucket("multipart");
    let key = "big/object.bin";
    let data = pattern(12 * MIN_PART_SIZE / 5 + (512 << 10));
    let path = url(&bucket, key);
    let target = match target(&path).unwrap() {
        Target::S3(url) => url,
        Target::Local(_) => unreachable!(),
    };
    let mut writer = ObjectWriter::remote(&path, target, MIN_PART_SIZE).unwrap();
    // Writes of odd sizes, as an encoder makes them.
    for chunk in data.chunks(700_001) {
        writer.write_all(chunk).unwrap();
    }
    assert_eq!(open_uploads(&bucket), 1, "parts are already on their way");
    assert!(!exists(&path).unwrap(), "invisible until finished");
    assert!(writer.peak_buffered() <= 2 * MIN_PART_SIZE);
    assert!(writer.peak_buffered() > MIN_PART_SIZE);
    assert_eq!(writer.finish().unwrap(), data.len() as u64);

    assert_eq!(open_uploads(&bucket), 0);
    let tag = etag(&bucket, key);
    assert!(tag.ends_with("-3"), "a 3-part multipart ETag, got {tag}");
    assert!(read(&path).unwrap() == data, "the object reads back whole");
}

#[test]
fn small_objects_are_one_put() {
    let bucket = bucket("small");
    let path = url(&bucket, "small.bin");
    let mut writer = create(&path).unwrap();
    writer.write_all(&pattern(1000)).unwrap();
    writer.finish().unwrap();
    assert!(!etag(&bucket, "small.bin").contains('-'));
    assert_eq!(open_uploads(&bucket), 0);
}

#[test]
fn unfinished_uploads_leave_nothing() {
    let bucket = bucket("aborted");
    let path = url(&bucket, "half.bin");
    let target = match target(&path).unwrap() {
        Target::S3(url) => url,
        Target::Local(_) => unreachable!(),
    };
    let mut writer = ObjectWriter::remote(&path, target, MIN_PART_SIZE).unwrap();
    writer.write_all(&pattern(2 * MIN_PART_SIZE + 10)).unwrap();
    assert_eq!(open_uploads(&bucket), 1);
    drop(writer);
    assert_eq!(open_uploads(&bucket), 0, "the upload was aborted");
    assert!(!exists(&path).unwrap());
    let (status, _, _) = http("HEAD", &format!("/{bucket}/half.bin"));
    assert_eq!(status, 404);

    // Locally: the partial file goes, nothing appears under the final name.
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
fn fetch_reuses_unchanged_objects_and_follows_changes() {
    let bucket = bucket("fetch");
    let path = url(&bucket, "w/weights.safetensors");
    write(&path, b"version one").unwrap();
    let copy = fetch(&path).unwrap();
    assert_eq!(
        copy,
        cache_dir()
            .join("s3")
            .join(&bucket)
            .join("w/weights.safetensors")
    );
    assert_eq!(std::fs::read(&copy).unwrap(), b"version one");

    // An unchanged object is not downloaded again: a local edit of the same size survives.
    std::fs::write(&copy, b"VERSION ONE").unwrap();
    assert_eq!(
        std::fs::read(fetch(&path).unwrap()).unwrap(),
        b"VERSION ONE"
    );

    // A changed object (new ETag) is.
    write(&path, b"version two").unwrap();
    assert_eq!(
        std::fs::read(fetch(&path).unwrap()).unwrap(),
        b"version two"
    );

    // fetch_dir mirrors the prefix: objects deleted since disappear from the copy.
    write(&url(&bucket, "w/extra.txt"), b"extra").unwrap();
    let dir = fetch_dir(&url(&bucket, "w")).unwrap();
    assert!(dir.join("extra.txt").is_file());
    remove_all(&url(&bucket, "w/extra.txt")).unwrap();
    let dir = fetch_dir(&url(&bucket, "w")).unwrap();
    let names: Vec<PathBuf> = list(&dir).unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(names, vec![dir.join("weights.safetensors")]);
}

/// Calling from inside another tokio runtime's thread must not panic.
#[test]
fn callable_from_async_contexts() {
    let bucket = bucket("async");
    let path = url(&bucket, "k.txt");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        write(&path, b"from async").unwrap();
        assert_eq!(read(&path).unwrap(), b"from async");
    });
}
