// Guided backpropagation needs ReLU's backward pass to let only positive
// gradients through. tch exposes neither custom autograd functions nor tensor
// hooks, so this shim registers a libtorch gradient hook on a ReLU *output*:
// the hook clamps the incoming gradient at zero, and ReLU's own backward then
// masks it by the forward input's sign — together exactly guided ReLU.
#include <ATen/ATen.h>

#include <cstring>
#include <exception>
#include <string>

extern "C" {

// `tensor` is the `torch::Tensor*` behind a tch `Tensor` (tch's C_tensor).
// Returns nullptr on success, or a malloc'ed message the caller must free
// with hint_free_error.
char* hint_register_guided_relu_hook(void* tensor) {
  try {
    auto* t = static_cast<at::Tensor*>(tensor);
    if (!t->requires_grad()) {
      return strdup("guided ReLU hook: the tensor does not require grad");
    }
    t->register_hook([](const at::Tensor& grad) { return grad.clamp_min(0); });
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  }
}

void hint_free_error(char* message) { free(message); }

}  // extern "C"
