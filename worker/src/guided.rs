//! Guided backpropagation's ReLU, through the C++ shim in `csrc/guided_relu.cpp`.

use std::ffi::{c_char, c_void, CStr};

use tch::Tensor;

use crate::error::{Error, Result};

extern "C" {
    fn hint_register_guided_relu_hook(tensor: *mut c_void) -> *mut c_char;
    fn hint_free_error(message: *mut c_char);
}

/// How ReLUs behave in the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReluMode {
    /// Ordinary ReLU.
    Plain,
    /// Guided backpropagation: only positive gradients pass back through a ReLU whose
    /// forward input was positive.
    Guided,
}

/// `x.relu()`, with the guided-backpropagation gradient hook when asked for and when
/// gradients flow through `x` at all.
pub fn relu(x: &Tensor, mode: ReluMode) -> Tensor {
    let y = x.relu();
    if mode == ReluMode::Guided && y.requires_grad() {
        register_guided_hook(&y)
            .expect("registering a gradient hook on a tensor that requires grad");
    }
    y
}

/// Registers on `output` (a ReLU's output) a hook that clamps its gradient at zero.
pub fn register_guided_hook(output: &Tensor) -> Result<()> {
    // The hook lives in the autograd graph, not in this handle; the shim only borrows it.
    let ptr = output.as_ptr() as *mut c_void;
    // SAFETY: `ptr` is the live `torch::Tensor*` owned by `output` for the whole call.
    let message = unsafe { hint_register_guided_relu_hook(ptr) };
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: the shim returns a NUL-terminated string from strdup, freed right after copying.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    unsafe { hint_free_error(message) };
    Err(Error::Torch(tch::TchError::Torch(text)))
}
