//! Where a batch's pixels live: ordinary memory, or page-locked (pinned) memory that a GPU
//! reads by DMA.
//!
//! Uploading a batch from pageable memory makes the driver copy it through its own pinned
//! bounce buffer, holding the model thread for the whole copy: on an H200, 21–51 ms of a
//! 42–73 ms VGG-16 batch (README, Benchmarks). So on a GPU the decoders write each image
//! straight into a [`PinnedPool`]'s buffer — no copy between decoding and the DMA — and the
//! buffer returns to the pool when its batch is dropped. Pinning is slow, so the pool pins
//! its few buffers once; when every buffer is out (a consumer holding batches), a batch
//! falls back to ordinary memory instead of waiting, so the pool can never stall decoding.

use std::ops::{Deref, DerefMut};

use crossbeam_channel::{unbounded, Receiver, Sender};
use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// A batch's `f32` pixel values.
#[derive(Debug)]
pub enum Pixels {
    /// Ordinary (pageable) memory.
    Host(Vec<f32>),
    /// A buffer lent by a [`PinnedPool`].
    Pinned(PinnedBuffer),
}

impl Pixels {
    /// Shortens to the first `len` values.
    pub fn truncate(&mut self, len: usize) {
        match self {
            Pixels::Host(values) => values.truncate(len),
            Pixels::Pinned(buffer) => buffer.len = buffer.len.min(len),
        }
    }

    /// The values as a 1-d CPU tensor: a view of the pinned buffer (so that an upload is
    /// one DMA from it), or a copy of ordinary memory. A view must be used up (uploaded,
    /// copied) before the batch is dropped: the buffer then goes back to be written again.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(match self {
            Pixels::Host(values) => Tensor::f_from_slice(values)?,
            Pixels::Pinned(buffer) => buffer.tensor.f_narrow(0, 0, buffer.len as i64)?,
        })
    }

    /// Whether the values are in pinned memory.
    pub fn is_pinned(&self) -> bool {
        matches!(self, Pixels::Pinned(_))
    }
}

impl Default for Pixels {
    fn default() -> Self {
        Pixels::Host(Vec::new())
    }
}

impl From<Vec<f32>> for Pixels {
    fn from(values: Vec<f32>) -> Self {
        Pixels::Host(values)
    }
}

/// A copy in ordinary memory (a pinned buffer belongs to one batch).
impl Clone for Pixels {
    fn clone(&self) -> Self {
        Pixels::Host(self.to_vec())
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Deref for Pixels {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Pixels::Host(values) => values,
            Pixels::Pinned(buffer) => buffer.values(),
        }
    }
}

impl DerefMut for Pixels {
    fn deref_mut(&mut self) -> &mut [f32] {
        match self {
            Pixels::Host(values) => values,
            Pixels::Pinned(buffer) => buffer.values_mut(),
        }
    }
}

/// One pinned buffer lent by a [`PinnedPool`]: its first `len` values are the batch's. It
/// goes back to the pool when dropped.
#[derive(Debug)]
pub struct PinnedBuffer {
    /// A contiguous 1-d f32 CPU tensor that nothing else references.
    tensor: Tensor,
    len: usize,
    home: Sender<Tensor>,
}

impl PinnedBuffer {
    fn values(&self) -> &[f32] {
        // SAFETY: `tensor` is a contiguous f32 CPU tensor of at least `len` elements (the
        // pool made it so and `len` never grows past its size), its storage lives as long
        // as `self`, and no other handle to it exists (the pool keeps only the tensors it
        // holds, and `to_tensor`'s views are read before the batch is dropped).
        unsafe { std::slice::from_raw_parts(self.tensor.data_ptr() as *const f32, self.len) }
    }

    fn values_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `values`; `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.tensor.data_ptr() as *mut f32, self.len) }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        // The pool may be gone (decoding ended): then the buffer is simply freed.
        let _ = self.home.send(self.tensor.shallow_clone());
    }
}

/// A new 1-d f32 CPU tensor of `len` elements in page-locked memory, for copies to or from
/// `device` (a GPU). Slow: allocate once and reuse.
pub fn pinned_f32(len: usize, device: Device) -> Result<Tensor> {
    let pageable = Tensor::f_empty([len as i64], (Kind::Float, Device::Cpu))?;
    // `_pin_memory`: tch always passes a device, for which `pin_memory` prints a
    // deprecation warning.
    Ok(pageable.f_internal_pin_memory(device)?)
}

/// A few page-locked buffers of one batch's size, lent to batches in turn.
#[derive(Debug)]
pub struct PinnedPool {
    free: Receiver<Tensor>,
    home: Sender<Tensor>,
    elements: usize,
}

impl PinnedPool {
    /// `buffers` buffers of `elements` f32 each, pinned for copies to `device` (a GPU).
    /// Errors if memory cannot be pinned (no CUDA driver, or too little lockable memory).
    pub fn new(buffers: usize, elements: usize, device: Device) -> Result<PinnedPool> {
        let tensors = (0..buffers)
            .map(|_| pinned_f32(elements, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(PinnedPool::of(tensors, elements))
    }

    /// A pool lending `tensors` (contiguous 1-d f32 CPU tensors of `elements` each), which
    /// need not be pinned: tests exercise the lending on machines without a GPU.
    pub(crate) fn of(tensors: Vec<Tensor>, elements: usize) -> PinnedPool {
        let (home, free) = unbounded();
        for tensor in tensors {
            assert!(tensor.numel() >= elements && tensor.kind() == Kind::Float);
            home.send(tensor).expect("the pool holds its receiver");
        }
        PinnedPool {
            free,
            home,
            elements,
        }
    }

    /// `len` values in a free buffer, or `None` when every buffer is out or `len` exceeds
    /// a buffer (the caller then uses ordinary memory).
    pub fn lend(&self, len: usize) -> Option<Pixels> {
        if len > self.elements {
            return None;
        }
        let tensor = self.free.try_recv().ok()?;
        Some(Pixels::Pinned(PinnedBuffer {
            tensor,
            len,
            home: self.home.clone(),
        }))
    }

    /// Buffers in the pool now (not lent).
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(buffers: usize, elements: usize) -> PinnedPool {
        let tensors = (0..buffers)
            .map(|_| Tensor::zeros([elements as i64], (Kind::Float, Device::Cpu)))
            .collect();
        PinnedPool::of(tensors, elements)
    }

    #[test]
    fn a_lent_buffer_holds_its_values_and_returns_when_dropped() {
        let pool = pool(2, 6);
        let mut a = pool.lend(4).expect("a free buffer");
        assert!(a.is_pinned());
        a.copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        a.truncate(3);
        assert_eq!(&*a, &[1.0, 2.0, 3.0]);
        assert_eq!(
            Vec::<f32>::try_from(a.to_tensor().unwrap()).unwrap(),
            [1.0, 2.0, 3.0]
        );
        assert_eq!(a.clone(), Pixels::Host(vec![1.0, 2.0, 3.0]));
        let _b = pool.lend(6).expect("the second buffer");
        assert_eq!(pool.available(), 0);
        assert!(pool.lend(1).is_none(), "every buffer is out");
        drop(a);
        assert_eq!(pool.available(), 1);
        assert!(pool.lend(7).is_none(), "larger than a buffer");
    }
}
