//! Decoding ahead of the model through a bounded queue.
//!
//! [`spawn_batch_decoder`] starts a background thread that cuts the image list into
//! consecutive chunks of `batch_size`, decodes each chunk in parallel on its own rayon pool
//! (work stealing: a thread that finishes its images takes others'), and sends the batches,
//! in order, through a channel holding at most `queue_depth` batches. Two chunks decode at
//! once ([`CHUNKS_IN_FLIGHT`]): while a chunk's last images finish, the threads that are done
//! with it start the next instead of waiting. Every image is decoded, resized and normalised
//! straight into its slot of the batch's one `[n, 3, crop, crop]` buffer (a
//! [`PixelBatch`]), ready to become the model's input without another copy. Decoding thus
//! overlaps the model's work while memory stays bounded: at most `queue_depth` queued
//! batches, two being decoded and one being used. A bad image becomes a [`SkippedImage`] in
//! its chunk's batch, so a batch may hold fewer images than `batch_size`, but every input
//! image comes out exactly once, decoded or skipped.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use rayon::prelude::*;

use super::decode::{load_into, Preprocess};
use super::memory::{PinnedPool, Pixels};
use crate::error::{Error, Result};

pub use hint_common::images::LabelledImage;

/// An image that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedImage {
    /// The image's id in the dataset.
    pub id: u64,
    /// The image file.
    pub path: PathBuf,
    /// A human reason (`cannot read: …`, `decode error: …`).
    pub reason: String,
}

impl From<&SkippedImage> for hint_common::proto::SkippedImage {
    fn from(skipped: &SkippedImage) -> Self {
        hint_common::proto::SkippedImage {
            path: skipped.path.display().to_string(),
            reason: skipped.reason.clone(),
        }
    }
}

/// The outcome of one chunk of consecutive input images, decoded into one buffer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PixelBatch {
    /// The decoded images' ids, in input order.
    pub ids: Vec<u64>,
    /// Their labels' model output indices.
    pub labels: Vec<u32>,
    /// Their CHW values back to back: `[ids.len(), 3, crop, crop]`.
    pub pixels: Pixels,
    /// The images that did not decode, in input order.
    pub skipped: Vec<SkippedImage>,
    /// Decoding time summed over the batch's images (its threads' busy time).
    pub busy: Duration,
}

impl PixelBatch {
    /// The number of decoded images.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no image of the chunk decoded.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Image `i`'s values (`3 × crop × crop`).
    pub fn image(&self, i: usize) -> &[f32] {
        let per_image = self.pixels.len() / self.len().max(1);
        &self.pixels[i * per_image..(i + 1) * per_image]
    }
}

/// The receiving end of [`spawn_batch_decoder`]: an iterator over batches in input order.
///
/// Dropping it stops the decoding thread (after the chunks it is working on) and waits for
/// it. If the decoding thread panicked, the iterator re-raises the panic instead of ending,
/// so a crash can never look like the end of the data.
#[derive(Debug)]
pub struct DecodeStream {
    /// `None` only during drop, so the channel closes before the thread is joined.
    batches: Option<Receiver<PixelBatch>>,
    thread: Option<JoinHandle<()>>,
}

impl DecodeStream {
    /// Batches decoded and waiting in the queue (at most `queue_depth`).
    pub fn queued(&self) -> usize {
        self.batches.as_ref().map_or(0, Receiver::len)
    }

    /// Whether the decoding thread has finished (all batches sent, or stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Joins the thread once the channel has closed, re-raising a panic.
    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Iterator for DecodeStream {
    type Item = PixelBatch;

    fn next(&mut self) -> Option<PixelBatch> {
        let batch = self.batches.as_ref()?.recv().ok();
        if batch.is_none() {
            self.join();
        }
        batch
    }
}

impl Drop for DecodeStream {
    fn drop(&mut self) {
        // Closing the channel makes the thread's next send fail, which stops it.
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            // Do not panic while dropping (perhaps already unwinding); a panic in the
            // decoder thread has been printed by the panic hook.
            let _ = thread.join();
        }
    }
}

/// Starts decoding `images` in the background; see the [module docs](self).
///
/// `threads` is the decoding pool's size (0: one per core); `queue_depth` bounds the batches
/// decoded ahead (0: the decoder hands over each batch directly). With `pinned` (on a GPU)
/// each batch's pixels are decoded into one of the pool's page-locked buffers while one is
/// free (see [`memory`](super::memory)). Errors if `batch_size` is 0 or the threads cannot
/// be started.
pub fn spawn_batch_decoder(
    images: Vec<LabelledImage>,
    preprocess: Preprocess,
    batch_size: usize,
    threads: usize,
    queue_depth: usize,
    pinned: Option<PinnedPool>,
) -> Result<DecodeStream> {
    if batch_size == 0 {
        return Err(Error::Config("decode batch size must be at least 1".into()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("hint-decode-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot start {threads} decoding threads: {e}")))?;
    let (sender, receiver) = bounded(queue_depth);
    let thread = std::thread::Builder::new()
        .name("hint-decode".into())
        .spawn(move || {
            pool.in_place_scope(|scope| {
                // Chunks being decoded, oldest first: each job hands its batch back through
                // its own channel, so batches leave in order whichever finishes first.
                let mut decoding = VecDeque::with_capacity(CHUNKS_IN_FLIGHT);
                let (pool, preprocess, pinned) = (&pool, &preprocess, pinned.as_ref());
                for chunk in images.chunks(batch_size) {
                    let (done, batch) = bounded(1);
                    scope.spawn(move |_| {
                        // Fails only once the consumer is gone and the batch is not wanted.
                        let _ = done.send(decode_chunk(pool, chunk, preprocess, pinned));
                    });
                    decoding.push_back(batch);
                    if decoding.len() == CHUNKS_IN_FLIGHT && !hand_over(&mut decoding, &sender) {
                        return;
                    }
                }
                while hand_over(&mut decoding, &sender) {}
            });
        })
        .map_err(|e| Error::Config(format!("cannot start the decoding thread: {e}")))?;
    Ok(DecodeStream {
        batches: Some(receiver),
        thread: Some(thread),
    })
}

/// Chunks decoded at once. One chunk alone leaves threads idle at its end, waiting for the
/// last images: with 15 threads and batches of 64 (5 rounds of 15, the last of 4), over a
/// seventh of the pool's time. Two keep every thread busy; the cost is one more batch of
/// pixels in memory.
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// Waits for the oldest chunk in `decoding` and sends its batch on. False when there is
/// nothing left to hand over, when the consumer is gone, or when the chunk's job died (its
/// panic is re-raised as the scope ends).
fn hand_over(decoding: &mut VecDeque<Receiver<PixelBatch>>, sender: &Sender<PixelBatch>) -> bool {
    let Some(oldest) = decoding.pop_front() else {
        return false;
    };
    match oldest.recv() {
        Ok(batch) => sender.send(batch).is_ok(),
        Err(_) => false,
    }
}

/// Decodes `chunk` on `pool` into one buffer: image `i` of the chunk is written into slot
/// `i`; slots of skipped images are closed up afterwards (a move within the buffer, only
/// when the chunk had a bad image).
fn decode_chunk(
    pool: &rayon::ThreadPool,
    chunk: &[LabelledImage],
    preprocess: &Preprocess,
    pinned: Option<&PinnedPool>,
) -> PixelBatch {
    let per_image = preprocess.pixels_per_image();
    let len = chunk.len() * per_image;
    let mut pixels = pinned
        .and_then(|pool| pool.lend(len))
        .unwrap_or_else(|| Pixels::Host(vec![0f32; len]));
    let outcomes: Vec<_> = pool.install(|| {
        chunk
            .par_iter()
            .zip(pixels.par_chunks_mut(per_image.max(1)))
            .map(|(image, slot)| {
                let started = Instant::now();
                (load_labelled(image, preprocess, slot), started.elapsed())
            })
            .collect()
    });
    let mut batch = PixelBatch::default();
    for (slot, (image, (outcome, busy))) in chunk.iter().zip(outcomes).enumerate() {
        batch.busy += busy;
        match outcome {
            Ok(label) => {
                let to = batch.ids.len();
                if to != slot {
                    pixels.copy_within(slot * per_image..(slot + 1) * per_image, to * per_image);
                }
                batch.ids.push(image.id);
                batch.labels.push(label);
            }
            Err(reason) => batch.skipped.push(SkippedImage {
                id: image.id,
                path: image.path.clone(),
                reason,
            }),
        }
    }
    pixels.truncate(batch.ids.len() * per_image);
    batch.pixels = pixels;
    batch
}

/// Why an image without a label is skipped (a tar member without a usable `.cls`).
pub const NO_LABEL: &str = "no label: no .cls member with this key, or an empty one";

/// Decodes `image` into `slot` and returns its label, unless it has no label (then it is
/// not read at all). A panic inside a decoder (a bug triggered by one malformed file)
/// becomes a skip reason, so that one file cannot end the task.
fn load_labelled(
    image: &LabelledImage,
    preprocess: &Preprocess,
    slot: &mut [f32],
) -> Result<u32, String> {
    let label = image.label.ok_or(NO_LABEL)?;
    let decoded = catch_unwind(AssertUnwindSafe(|| {
        load_into(&image.path, preprocess, slot)
    }));
    decoded.map_err(crash_reason)??;
    Ok(label)
}

/// The skip reason of a panic caught inside a decoder.
fn crash_reason(panic: Box<dyn std::any::Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("decoder crashed: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};
    use std::path::Path;
    use std::time::{Duration, Instant};
    use tch::Tensor;

    /// Writes `n` 4×4 PNGs whose red value is the image index, and returns them labelled.
    fn images(dir: &Path, n: usize) -> Vec<LabelledImage> {
        (0..n)
            .map(|i| {
                let path = dir.join(format!("{i}.png"));
                RgbImage::from_pixel(4, 4, Rgb([i as u8, 0, 0]))
                    .save(&path)
                    .unwrap();
                LabelledImage {
                    id: i as u64,
                    path,
                    label: Some((i % 3) as u32),
                }
            })
            .collect()
    }

    fn unit() -> Preprocess {
        Preprocess {
            resize: 4,
            crop: 4,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    #[test]
    fn batches_keep_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let list = images(dir.path(), 23);
        // A large first image: the second chunk, decoding beside the first, finishes first.
        RgbImage::from_pixel(1600, 1600, Rgb([0, 0, 0]))
            .save(&list[0].path)
            .unwrap();
        let stream = spawn_batch_decoder(list, unit(), 5, 3, 2, None).unwrap();
        let batches: Vec<PixelBatch> = stream.collect();
        assert_eq!(
            batches.iter().map(PixelBatch::len).collect::<Vec<_>>(),
            [5, 5, 5, 5, 3]
        );
        let mut i = 0;
        for batch in &batches {
            assert_eq!(batch.pixels.len(), batch.len() * 48);
            assert_eq!(batch.labels.len(), batch.len());
            for (k, (&id, &label)) in batch.ids.iter().zip(&batch.labels).enumerate() {
                assert_eq!(id, i as u64);
                assert_eq!(label, (i % 3) as u32);
                // The red plane identifies the file.
                assert!((batch.image(k)[0] * 255.0 - i as f32).abs() < 1e-3);
                i += 1;
            }
        }
        assert_eq!(i, 23);
    }

    #[test]
    fn batches_decoded_into_a_pool_equal_ordinary_ones_and_its_buffers_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = images(dir.path(), 13);
        std::fs::write(&list[5].path, b"corrupt").unwrap(); // a slot closed up in a pinned buffer
        let plain: Vec<PixelBatch> = spawn_batch_decoder(list.clone(), unit(), 4, 2, 1, None)
            .unwrap()
            .collect();
        // Two buffers for four batches: while the consumer holds both, a batch falls back
        // to ordinary memory instead of waiting.
        let tensors = (0..2)
            .map(|_| Tensor::full([4 * 48], -7.0, (tch::Kind::Float, tch::Device::Cpu)))
            .collect();
        let pool = PinnedPool::of(tensors, 4 * 48);
        let stream = spawn_batch_decoder(list.clone(), unit(), 4, 2, 0, Some(pool)).unwrap();
        let mut held = Vec::new();
        let mut pinned = 0;
        for batch in stream {
            pinned += usize::from(batch.pixels.is_pinned());
            held.push(batch);
        }
        assert!(pinned >= 2, "{pinned} of 4 batches were pinned");
        // Everything but the timing.
        let content = |b: &PixelBatch| {
            (
                b.ids.clone(),
                b.labels.clone(),
                b.pixels.to_vec(),
                b.skipped.clone(),
            )
        };
        assert_eq!(
            held.iter().map(content).collect::<Vec<_>>(),
            plain.iter().map(content).collect::<Vec<_>>()
        );
        // One buffer lent again and again: what an earlier batch left in it never shows.
        list.truncate(12);
        let tensors = (0..1)
            .map(|_| Tensor::zeros([4 * 48], (tch::Kind::Float, tch::Device::Cpu)))
            .collect();
        let stream =
            spawn_batch_decoder(list, unit(), 4, 2, 0, Some(PinnedPool::of(tensors, 4 * 48)));
        for (batch, want) in stream.unwrap().zip(&plain) {
            assert_eq!(content(&batch), content(want));
        }
    }

    #[test]
    fn bad_files_become_skips_and_each_slot_holds_its_own_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = images(dir.path(), 11);
        std::fs::write(&list[1].path, b"corrupt").unwrap();
        list[6].path = dir.path().join("missing.png");
        list[9].label = None;
        let batches: Vec<PixelBatch> = spawn_batch_decoder(list.clone(), unit(), 4, 2, 1, None)
            .unwrap()
            .collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].ids, [0, 2, 3]);
        assert_eq!(batches[1].ids, [4, 5, 7]);
        assert_eq!(batches[2].ids, [8, 10]);
        let corrupt = &batches[0].skipped[0];
        assert_eq!(corrupt.id, 1);
        assert!(corrupt.reason.contains("not a JPEG or PNG"), "{corrupt:?}");
        let missing = &batches[1].skipped[0];
        assert_eq!(
            (missing.id, missing.path.clone()),
            (6, dir.path().join("missing.png"))
        );
        assert!(missing.reason.starts_with("cannot read: "), "{missing:?}");
        let proto = hint_common::proto::SkippedImage::from(missing);
        assert!(proto.path.ends_with("missing.png"));
        assert_eq!(batches[2].skipped[0].id, 9);
        assert_eq!(batches[2].skipped[0].reason, NO_LABEL);
        // Slots after a skipped image were moved up: each holds what the per-image
        // decoder gives its own image, and the buffer holds nothing else.
        for batch in &batches {
            let mut concatenated = Vec::new();
            for (k, &id) in batch.ids.iter().enumerate() {
                let expected = crate::images::load(&list[id as usize].path, &unit()).unwrap();
                assert_eq!(batch.image(k), expected.as_slice(), "image {id}");
                assert_eq!(batch.labels[k], list[id as usize].label.unwrap());
                concatenated.extend(expected);
            }
            assert_eq!(*batch.pixels, *concatenated);
        }
    }

    #[test]
    fn tar_members_decode_and_bad_ones_are_skipped() {
        use hint_common::images::{scan, LabelMap};
        let dir = tempfile::tempdir().unwrap();
        let loose = images(dir.path(), 2);
        let png = |i: usize| std::fs::read(&loose[i].path).unwrap();
        // A shard as tarfile writes it: ustar headers, data padded to 512 bytes.
        let mut tar = Vec::new();
        let (good, other) = (png(0), png(1));
        let members: [(&str, &[u8]); 6] = [
            ("a.png", &good),
            ("a.cls", b"x"),
            ("b.png", b"not an image"),
            ("b.cls", b"x"),
            ("c.png", &other),
            ("d.png", &other),
        ];
        for (name, data) in members {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
            h[156] = b'0';
            h[148..156].fill(b' ');
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
            tar.extend(h);
            tar.extend(data);
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        std::fs::write(dir.path().join("s.tar"), tar).unwrap();
        let dataset = scan(&dir.path().join("s.tar")).unwrap();
        let list = LabelMap::sorted(&dataset.classes)
            .labelled(&dataset)
            .unwrap();
        let batches: Vec<_> = spawn_batch_decoder(list, unit(), 8, 2, 1, None)
            .unwrap()
            .collect();
        assert_eq!(batches[0].ids, [0]);
        assert!((batches[0].image(0)[0] * 255.0).abs() < 1e-3);
        let skipped: Vec<(u64, String, &str)> = batches[0]
            .skipped
            .iter()
            .map(|s| {
                let name = s.path.to_string_lossy();
                let member = name.split_once('#').unwrap().1.split('@').next().unwrap();
                (s.id, member.to_string(), s.reason.as_str())
            })
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    1,
                    "b.png".into(),
                    "not a JPEG or PNG image (unrecognised content)"
                ),
                (2, "c.png".into(), NO_LABEL),
                (3, "d.png".into(), NO_LABEL),
            ]
        );
    }

    #[test]
    fn queue_is_bounded_and_drop_stops_the_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let list = images(dir.path(), 20);
        let stream = spawn_batch_decoder(list.clone(), unit(), 2, 2, 3, None).unwrap();
        // Ten batches to decode, but only three may wait in the queue.
        let deadline = Instant::now() + Duration::from_secs(10);
        while stream.queued() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(stream.queued(), 3);
        assert!(!stream.is_finished(), "the decoder waits for room");
        let all: Vec<_> = stream.flat_map(|b| b.ids).collect();
        assert_eq!(all, (0..20).collect::<Vec<u64>>());

        // Dropping the consumer early ends the thread (drop joins it, so this returns).
        let mut stream = spawn_batch_decoder(list, unit(), 1, 1, 1, None).unwrap();
        assert_eq!(stream.next().unwrap().ids, [0]);
        drop(stream);
    }

    #[test]
    fn zero_batch_size_is_a_config_error_and_no_images_no_batches() {
        assert!(matches!(
            spawn_batch_decoder(vec![], unit(), 0, 1, 1, None),
            Err(Error::Config(_))
        ));
        assert_eq!(
            spawn_batch_decoder(vec![], unit(), 4, 1, 1, None)
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_decoder_panic_is_a_skip_not_the_end_of_the_task() {
        let dir = tempfile::tempdir().unwrap();
        let list = images(dir.path(), 3);
        let mut slot = vec![0f32; 48];
        assert_eq!(load_labelled(&list[0], &unit(), &mut slot), Ok(0));
        // A slot of the wrong size trips `preprocess_into`'s assertion: a panic inside
        // the decoder, which must come back as the image's skip reason.
        let outcome = load_labelled(&list[0], &unit(), &mut slot[..47]);
        assert!(
            matches!(&outcome, Err(reason) if reason.starts_with("decoder crashed: ")),
            "{outcome:?}"
        );
    }
}
