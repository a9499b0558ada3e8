//! Object storage against a real S3 server (moto's, over HTTP): every `hint_common::storage`
//! call on `s3://` URLs in this process (multipart streaming, the fetch cache, errors, calls
//! from inside another tokio runtime), region files streamed as multipart uploads and read back
//! by pyarrow, a writer killed mid-upload, and `hint extract` with its images, weights and
//! output on `s3://`. What we write is checked with the fixture's own HTTP client, independent
//! of ours. `hint-common`'s unit tests cover the same API on local paths.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hint_common::regions::{
    read_regions, ActivationType, RegionFileMeta, RegionRow, RegionRows, RegionWriter,
};
use hint_common::storage;

use crate::moto::Moto;
use crate::support::{example, failed, hint, run_python, succeeded};

/// A new bucket on the shared server, named for the test.
fn bucket(moto: &Moto, hint: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{hint}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    moto.create_bucket(&name);
    name
}

fn url(bucket: &str, key: &str) -> PathBuf {
    PathBuf::from(format!("s3://{bucket}/{key}"))
}

/// Bytes that differ from part to part, so a misplaced part shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
        .collect()
}

/// Every storage call on a bucket prefix, what ours writes read back by the fixture's client
/// and what that client puts read by ours. (The same calls on a local directory are
/// `hint-common`'s unit tests.)
#[test]
fn storage_round_trip_agrees_with_an_independent_client() {
    let moto = Moto::shared();
    let b = bucket(moto, "round-trip");
    let (a, nested) = (url(&b, "dir/a.txt"), url(&b, "dir/sub/deeper/b.bin"));

    // Ours writes, theirs reads; theirs writes, ours reads.
    assert!(!storage::exists(&a).unwrap());
    storage::write(&a, b"alpha").unwrap();
    assert_eq!(moto.get(&b, "dir/a.txt").unwrap(), b"alpha");
    moto.put(&b, "dir/sub/deeper/b.bin", &[7; 300]);
    assert_eq!(storage::read(&nested).unwrap(), [7; 300]);
    assert_eq!(storage::read_to_string(&a).unwrap(), "alpha");
    assert!(storage::exists(&a).unwrap());
    assert!(!storage::exists(&url(&b, "dir/none.txt")).unwrap());
    assert!(
        !storage::exists(&url(&b, "dir/sub")).unwrap(),
        "a prefix is not an object"
    );
    assert!(storage::is_dir(&url(&b, "dir/sub")).unwrap());
    assert!(!storage::is_dir(&url(&b, "dir/nothing")).unwrap());

    // An overwrite replaces the content.
    storage::write(&a, b"alpha two").unwrap();
    assert_eq!(moto.get(&b, "dir/a.txt").unwrap(), b"alpha two");

    let listed: Vec<(PathBuf, u64)> = storage::list(&url(&b, "dir"))
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.size))
        .collect();
    assert_eq!(listed, vec![(a.clone(), 9), (nested.clone(), 300)]);
    assert!(storage::list(&url(&b, "dir/nothing")).unwrap().is_empty());

    let moved = url(&b, "moved/a.txt");
    storage::rename(&a, &moved).unwrap();
    assert!(!storage::exists(&a).unwrap());
    assert_eq!(
        moto.keys(&b, ""),
        [
            "dir/sub/deeper/b.bin".to_string(),
            "moved/a.txt".to_string()
        ]
    );
    let copy = storage::fetch(&moved).unwrap();
    assert!(
        !storage::is_remote(&copy),
        "a local copy: {}",
        copy.display()
    );
    assert_eq!(std::fs::read(copy).unwrap(), b"alpha two");
    let fetched = storage::fetch_dir(&url(&b, "dir/sub")).unwrap();
    assert_eq!(
        std::fs::read(fetched.join("deeper/b.bin")).unwrap(),
        [7; 300]
    );

    let local = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(local.path().join("x/y")).unwrap();
    std::fs::write(local.path().join("top.txt"), "top").unwrap();
    std::fs::write(local.path().join("x/y/leaf.txt"), "leaf").unwrap();
    storage::upload_dir(local.path(), &url(&b, "up")).unwrap();
    assert_eq!(
        moto.keys(&b, "up/"),
        ["up/top.txt".to_string(), "up/x/y/leaf.txt".to_string()]
    );
    let fetched = storage::fetch_dir(&url(&b, "up")).unwrap();
    assert_eq!(
        std::fs::read(fetched.join("x/y/leaf.txt")).unwrap(),
        b"leaf"
    );

    // A streamed object appears only when finished.
    let streamed = url(&b, "streamed.bin");
    let mut writer = storage::create(&streamed).unwrap();
    writer.write_all(b"stream").unwrap();
    assert!(!storage::exists(&streamed).unwrap());
    assert_eq!(moto.etag(&b, "streamed.bin"), None);
    assert_eq!(writer.finish().unwrap(), 6);
    assert_eq!(moto.get(&b, "streamed.bin").unwrap(), b"stream");

    storage::remove_all(&url(&b, "up")).unwrap();
    assert!(!storage::is_dir(&url(&b, "up")).unwrap());
    storage::remove_all(&url(&b, "up")).unwrap(); // missing is fine
    storage::remove_all(&moved).unwrap();
    assert!(!storage::exists(&moved).unwrap());
    assert_eq!(
        moto.keys(&b, ""),
        [
            "dir/sub/deeper/b.bin".to_string(),
            "streamed.bin".to_string()
        ]
    );
}

#[test]
fn storage_errors_say_what_and_where() {
    let moto = Moto::shared();
    let b = bucket(moto, "errors");
    let missing = url(&b, "no/such/key.bin");
    let error = storage::read(&missing).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("s3://{b}/no/such/key.bin: no such object")
    );
    assert!(error.not_found);
    assert_eq!(
        std::io::Error::from(error).kind(),
        std::io::ErrorKind::NotFound
    );
    assert!(storage::fetch(&missing).unwrap_err().not_found);
    assert!(!storage::exists(&missing).unwrap());

    let no_bucket = url("hint-missing-bucket", "k");
    let error = storage::read(&no_bucket).unwrap_err();
    assert_eq!(
        error.to_string(),
        "s3://hint-missing-bucket/k: no such bucket \"hint-missing-bucket\""
    );
    for error in [
        error,
        storage::write(&no_bucket, b"x").unwrap_err(),
        storage::exists(&no_bucket).unwrap_err(),
        storage::list(&url("hint-missing-bucket", "")).unwrap_err(),
    ] {
        let text = error.to_string();
        assert!(text.starts_with("s3://hint-missing-bucket"), "{text}");
        assert!(
            text.ends_with(": no such bucket \"hint-missing-bucket\""),
            "{text}"
        );
        assert!(error.not_found, "{text}");
    }

    let error = storage::read(Path::new("gs://bucket/k")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("gs://bucket/k: unsupported URL scheme \"gs://\""),
        "{error}"
    );
}

/// With 5 MiB parts (the shared server's setting) 12.5 MiB go up as a three-part upload while
/// they are being written, and only `finish` makes the object visible. Memory stays bounded:
/// the writer waits for a part's upload before sending the next, so whenever a write returns,
/// what the server has not yet stored (the part in flight and the part being filled) is at
/// most two parts.
#[test]
fn large_objects_stream_as_multipart_uploads_at_most_two_parts_ahead() {
    let moto = Moto::shared();
    let b = bucket(moto, "multipart");
    let key = "big/object.bin";
    let part = storage::part_size();
    assert_eq!(
        part,
        storage::MIN_PART_SIZE,
        "Moto::shared sets 5 MiB parts"
    );
    let data = pattern(12 * part / 5 + (512 << 10));
    let path = url(&b, key);
    let mut writer = storage::create(&path).unwrap();
    let mut written = 0;
    // Writes of odd sizes, as an encoder makes them.
    for chunk in data.chunks(700_001) {
        writer.write_all(chunk).unwrap();
        written += chunk.len();
        let stored = moto.open_uploads(&b).first().map_or(0, |(_, parts)| *parts);
        assert!(
            written.saturating_sub(stored * part) <= 2 * part,
            "{written} bytes written but only {stored} parts stored"
        );
    }
    assert_eq!(
        moto.open_uploads(&b).len(),
        1,
        "parts are already on their way"
    );
    assert_eq!(moto.etag(&b, key), None, "invisible until finished");
    assert!(!storage::exists(&path).unwrap());
    assert_eq!(writer.finish().unwrap(), data.len() as u64);

    assert!(moto.open_uploads(&b).is_empty());
    let tag = moto.etag(&b, key).expect("the object exists");
    assert!(tag.ends_with("-3"), "a 3-part multipart ETag, got {tag}");
    assert!(
        storage::read(&path).unwrap() == data,
        "the object reads back whole"
    );
}

#[test]
fn small_objects_are_one_put() {
    let moto = Moto::shared();
    let b = bucket(moto, "small");
    let mut writer = storage::create(&url(&b, "small.bin")).unwrap();
    writer.write_all(&pattern(1000)).unwrap();
    writer.finish().unwrap();
    let tag = moto.etag(&b, "small.bin").expect("the object exists");
    assert!(!tag.contains('-'), "a single PUT's ETag, got {tag}");
    assert!(moto.open_uploads(&b).is_empty());
}

/// `fetch` keeps a copy in the cache and reuses it while the object's size and ETag are
/// unchanged; `fetch_dir` mirrors a prefix, so objects deleted since leave the copy.
#[test]
fn fetch_reuses_unchanged_objects_and_follows_changes() {
    let moto = Moto::shared();
    let b = bucket(moto, "fetch");
    let path = url(&b, "w/weights.safetensors");
    storage::write(&path, b"version one").unwrap();
    let copy = storage::fetch(&path).unwrap();
    assert_eq!(
        copy.path(),
        storage::cache_dir()
            .join("s3")
            .join(&b)
            .join("w/weights.safetensors")
    );
    assert_eq!(std::fs::read(&copy).unwrap(), b"version one");

    // An unchanged object is not downloaded again: a local edit of the same size survives.
    std::fs::write(&copy, b"VERSION ONE").unwrap();
    assert_eq!(
        std::fs::read(storage::fetch(&path).unwrap()).unwrap(),
        b"VERSION ONE"
    );

    // A changed object (new ETag), here changed by another client, is.
    moto.put(&b, "w/weights.safetensors", b"version two");
    assert_eq!(
        std::fs::read(storage::fetch(&path).unwrap()).unwrap(),
        b"version two"
    );

    storage::write(&url(&b, "w/extra.txt"), b"extra").unwrap();
    let dir = storage::fetch_dir(&url(&b, "w")).unwrap();
    assert!(dir.join("extra.txt").is_file());
    storage::remove_all(&url(&b, "w/extra.txt")).unwrap();
    let dir = storage::fetch_dir(&url(&b, "w")).unwrap();
    let names: Vec<PathBuf> = storage::list(&dir)
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(names, vec![dir.join("weights.safetensors")]);
}

/// A cache with a size limit smaller than the data: a fetch over the limit removes the least
/// recently used copies nobody holds, never a pinned one (the cache stays over its limit
/// while everything is in use), and an evicted object is fetched again intact.
#[test]
fn a_cache_over_its_limit_evicts_the_least_recently_used_unpinned_copies() {
    let moto = Moto::shared();
    let b = bucket(moto, "limit");
    let dir = tempfile::tempdir().unwrap();
    let cache = storage::Cache::new(dir.path(), Some(2500));
    let objects: Vec<PathBuf> = (0..5).map(|k| url(&b, &format!("r/{k}.bin"))).collect();
    for (k, object) in objects.iter().enumerate() {
        storage::write(object, &vec![k as u8; 1000]).unwrap();
    }
    let copy_of = |k: usize| dir.path().join("s3").join(&b).join(format!("r/{k}.bin"));

    // Three pinned copies: 3000 bytes, over the limit, and all kept.
    let pinned: Vec<storage::Cached> = objects[..3]
        .iter()
        .map(|o| cache.fetch(o).unwrap())
        .collect();
    assert!((0..3).all(|k| copy_of(k).is_file()));
    // Used again: copy 0 becomes the most recently used.
    std::thread::sleep(Duration::from_millis(20));
    drop(cache.fetch(&objects[0]).unwrap());
    drop(pinned);

    // A fourth: 4000 bytes, so the least recently used unpinned copies go (1, then 2) down
    // to 90% of the limit; the new copy, pinned by its handle, stays.
    let fourth = cache.fetch(&objects[3]).unwrap();
    let kept: Vec<bool> = (0..4).map(|k| copy_of(k).is_file()).collect();
    assert_eq!(kept, [true, false, false, true]);
    assert!(!dir
        .path()
        .join("meta/s3")
        .join(&b)
        .join("r/1.bin.json")
        .exists());

    // An evicted object comes back with its bytes.
    let again = cache.fetch(&objects[1]).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), vec![1u8; 1000]);
    drop((fourth, again));

    // A directory's files are pinned together while its handle lives.
    let whole = cache.fetch_dir(&url(&b, "r")).unwrap();
    assert_eq!(
        storage::list(&whole).unwrap().len(),
        5,
        "over the limit, all pinned"
    );
    drop(whole);
    assert!(cache.evict(2500) <= 2500);
}

/// A storage call from a thread that runs another tokio runtime (an async server's handler)
/// must not panic: it waits for the storage runtime over a channel rather than nesting one.
#[test]
fn storage_calls_work_inside_another_tokio_runtime() {
    let moto = Moto::shared();
    let b = bucket(moto, "async");
    let path = url(&b, "k.txt");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        storage::write(&path, b"from async").unwrap();
        assert_eq!(storage::read(&path).unwrap(), b"from async");
    });
    assert_eq!(moto.get(&b, "k.txt").unwrap(), b"from async");
}

const D: usize = 256;

fn meta() -> RegionFileMeta {
    RegionFileMeta {
        model: "tiny_cnn".into(),
        layer: "features.4".into(),
        method: "gradient".into(),
        aggregation: "sum_abs".into(),
        threshold: 0.5,
        channels: D,
        height: 32,
        width: 32,
        activation_type: ActivationType::F32,
        labels: vec!["disc".into(), "square".into(), "stripes".into()],
        job_id: None,
        task_id: None,
        extra: BTreeMap::new(),
    }
}

/// `n` rows whose activations are pseudo-random (so Parquet cannot compress them much).
fn rows(n: usize, seed: u64) -> RegionRows {
    let mut rows = RegionRows::with_capacity(n, D);
    let mut state = seed | 1;
    let mut activation = vec![0f32; D];
    for i in 0..n {
        for value in &mut activation {
            // xorshift64: cheap, and 24 random bits per value.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *value = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        }
        rows.push(RegionRow {
            image_id: (i / 100) as u64,
            label: (i % 3) as u32,
            y: (i % 32) as u16,
            x: ((i / 32) % 32) as u16,
            saliency: (i % 10) as f32 / 10.0,
            foreground: i % 10 >= 5,
            activation: &activation,
        });
    }
    rows
}

/// With 5 MiB parts (the shared server's setting), a 14 MiB region file goes up as a
/// multipart upload of at least three parts, is invisible until finished, and reads back the
/// same in our reader and in pyarrow (after an independent download). How far the writer may
/// get ahead of the server is checked by
/// [`large_objects_stream_as_multipart_uploads_at_most_two_parts_ahead`].
#[test]
fn region_files_stream_to_s3_as_multipart_uploads_that_pyarrow_reads() {
    let moto = Moto::shared();
    let b = bucket(moto, "regions");
    let key = "regions/regions-00000.parquet";
    let written = rows(14_000, 5);
    let mut writer = RegionWriter::create(&url(&b, key), meta()).unwrap();
    for start in (0..written.len()).step_by(2000) {
        let mut batch = RegionRows::default();
        for i in start..(start + 2000).min(written.len()) {
            batch.push(written.row(i, D));
        }
        writer.write(&batch).unwrap();
    }
    assert_eq!(moto.etag(&b, key), None, "invisible until finished");
    let summary = writer.finish().unwrap();
    assert_eq!(summary.rows, 14_000);
    assert_eq!(summary.path, url(&b, key));

    let etag = moto.etag(&b, key).expect("the object exists");
    let parts: usize = etag
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("not a multipart ETag: {etag}"));
    assert!(parts >= 3, "{parts} parts (ETag {etag})");
    assert!(moto.open_uploads(&b).is_empty());

    let (back_meta, back) = read_regions(&url(&b, key)).unwrap();
    assert_eq!(back_meta, meta());
    assert!(back == written, "our reader gives back the rows written");

    let local = tempfile::tempdir().unwrap();
    moto.get_dir(&b, "regions", local.path());
    let file = local.path().join("regions-00000.parquet");
    let read: serde_json::Value =
        serde_json::from_str(&run_python("read_regions.py", &[file.as_os_str()])).unwrap();
    assert_eq!(read["num_rows"], 14_000);
    assert_eq!(read["foreground_rows"], 7_000);
    let image_ids: u64 = written.image_id.iter().sum();
    assert_eq!(read["sums"]["image_id"], image_ids);
    let activations: f64 = written.activation.iter().map(|&a| f64::from(a)).sum();
    let pyarrow = read["sums"]["activation"].as_f64().unwrap();
    assert!((pyarrow - activations).abs() < 1e-6 * activations.abs().max(1.0));
    assert_eq!(read["activation"]["list_size"], D);
}

/// A writer dropped unfinished (a failed task) leaves no object and no upload.
#[test]
fn an_unfinished_region_file_leaves_no_object() {
    let moto = Moto::shared();
    let b = bucket(moto, "unfinished");
    let key = "regions/regions-00000.parquet";
    let mut writer = RegionWriter::create(&url(&b, key), meta()).unwrap();
    writer.write(&rows(100, 9)).unwrap();
    drop(writer);

    let mut object = storage::create(&url(&b, "raw.bin")).unwrap();
    object.write_all(&vec![1u8; 11 << 20]).unwrap();
    let uploads = moto.open_uploads(&b);
    assert!(
        uploads.len() == 1 && uploads[0].1 >= 1,
        "parts went up before the drop: {uploads:?}"
    );
    drop(object);
    assert!(moto.keys(&b, "").is_empty());
    assert!(!storage::exists(&url(&b, "raw.bin")).unwrap());
    assert!(moto.open_uploads(&b).is_empty(), "the upload was aborted");
}

/// The child half of [`a_writer_killed_mid_upload_leaves_no_object`]: run in a process of its
/// own (this test binary again), it streams three 5 MiB parts to `HINT_S3_KILL_TARGET`, says
/// so on stdout and waits to be killed. Without the variable it does nothing.
#[test]
#[ignore = "the child process of s3::a_writer_killed_mid_upload_leaves_no_object"]
fn killed_writer_child() {
    let Some(target) = std::env::var_os("HINT_S3_KILL_TARGET") else {
        return;
    };
    let mut writer = storage::create(Path::new(&target)).unwrap();
    // The third full part waits for the second's upload: two parts are on the server.
    writer.write_all(&vec![3u8; (15 << 20) + 1]).unwrap();
    println!("PARTS SENT");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(120));
    panic!("should have been killed");
}

/// A process killed with SIGKILL in the middle of a multipart upload (parts on the server,
/// upload still open) leaves no object at its key: only `complete` makes one.
#[test]
fn a_writer_killed_mid_upload_leaves_no_object() {
    use std::os::unix::process::ExitStatusExt;

    let moto = Moto::shared();
    let b = bucket(moto, "killed");
    let key = "regions/regions-00007.parquet";
    // This test binary again. Through /proc, so it starts even when a rebuild has replaced
    // the file since this process started.
    let exe = Path::new("/proc/self/exe");
    let exe = if exe.exists() {
        exe.to_path_buf()
    } else {
        std::env::current_exe().unwrap()
    };
    let mut child = Command::new(exe)
        .args([
            "s3::killed_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .envs(moto.env())
        .env("HINT_S3_PART_SIZE", (5 << 20).to_string())
        .env("HINT_S3_KILL_TARGET", url(&b, key))
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting this test binary as the child");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut said = false;
    for line in stdout.lines() {
        if line.unwrap().contains("PARTS SENT") {
            said = true;
            break;
        }
    }
    assert!(said, "the child stopped before sending its parts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let uploads = loop {
        let uploads = moto.open_uploads(&b);
        if uploads.iter().any(|(k, parts)| k == key && *parts >= 2) || Instant::now() > deadline {
            break uploads;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        uploads.iter().any(|(k, parts)| k == key && *parts >= 2),
        "an upload in progress with parts on the server: {uploads:?}"
    );

    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "{status}");
    assert_eq!(moto.etag(&b, key), None, "no object at the key");
    assert!(moto.keys(&b, "").is_empty());
    assert!(
        storage::read(&url(&b, key)).unwrap_err().not_found,
        "a reader finds nothing"
    );
}

fn extract_args<'a>(weights: &'a str, images: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "extract",
        "--model",
        "tiny_cnn",
        "--weights",
        weights,
        "--layer",
        "features.4",
        "--images",
        images,
        "--out",
        out,
        "--batch-size",
        "4",
        "--method",
        "guided_backprop",
        "--background-ratio",
        "0.3",
    ]
}

/// `hint extract` with an ImageFolder, weights and output on S3 writes the same rows as on
/// local files; a missing input or an unsupported URL says what and where.
#[test]
fn extract_from_and_to_s3_gives_the_local_rows() {
    let moto = Moto::shared();
    let b = bucket(moto, "extract");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    example(dir, 5, 3);
    let weights = dir.join("tiny_cnn.safetensors");
    let local_out = dir.join("regions");
    succeeded(
        &hint(&extract_args(
            weights.to_str().unwrap(),
            dir.join("images").to_str().unwrap(),
            local_out.to_str().unwrap(),
        )),
        "hint extract (local)",
    );

    moto.put_dir(&dir.join("images"), &b, "data/images");
    moto.put(
        &b,
        "models/tiny_cnn.safetensors",
        &std::fs::read(&weights).unwrap(),
    );
    let (weights_url, images_url, out_url) = (
        format!("s3://{b}/models/tiny_cnn.safetensors"),
        format!("s3://{b}/data/images"),
        format!("s3://{b}/regions"),
    );
    let cache = dir.join("cache");
    let stdout = succeeded(
        &moto.hint(&cache, &extract_args(&weights_url, &images_url, &out_url)),
        "hint extract (s3)",
    );
    assert!(stdout.contains("extracted 15 of 16 images"), "{stdout}");
    assert_eq!(
        moto.keys(&b, "regions/"),
        [
            "regions/regions-00000.parquet".to_string(),
            "regions/summary.json".to_string()
        ]
    );

    let (local_meta, local_rows) = read_regions(&local_out.join("regions-00000.parquet")).unwrap();
    let downloaded = dir.join("downloaded");
    moto.get_dir(&b, "regions", &downloaded);
    let (mut s3_meta, s3_rows) = read_regions(&downloaded.join("regions-00000.parquet")).unwrap();
    assert!(!local_rows.is_empty());
    assert!(s3_rows == local_rows, "the same rows as the local run");
    assert_eq!(s3_meta.extra.get("weights"), Some(&weights_url));
    s3_meta
        .extra
        .insert("weights".into(), weights.display().to_string());
    assert_eq!(s3_meta, local_meta);
    let summary: serde_json::Value =
        serde_json::from_slice(&moto.get(&b, "regions/summary.json").unwrap()).unwrap();
    let skipped = summary["skipped"][0]["path"].as_str().unwrap();
    assert!(
        skipped.starts_with(&images_url) && skipped.ends_with("broken.jpg"),
        "{skipped}"
    );

    // A second run into the same prefix refuses to mix runs, as it does locally.
    let stderr = failed(
        &moto.hint(&cache, &extract_args(&weights_url, &images_url, &out_url)),
        "hint extract over an earlier run",
    );
    assert!(stderr.contains("already holds region files"), "{stderr}");

    // Errors say what and where.
    let missing = format!("s3://{b}/models/missing.safetensors");
    let stderr = failed(
        &moto.hint(
            &cache,
            &extract_args(&missing, &images_url, &format!("{out_url}2")),
        ),
        "hint extract with missing weights",
    );
    assert!(
        stderr.contains(&format!("{missing}: no such object")),
        "{stderr}"
    );
    let stderr = failed(
        &moto.hint(
            &cache,
            &extract_args(
                &weights_url,
                "gs://elsewhere/images",
                &format!("{out_url}3"),
            ),
        ),
        "hint extract from gs://",
    );
    assert!(stderr.contains("unsupported URL scheme"), "{stderr}");
}
