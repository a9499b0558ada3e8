//! Compiles the guided-ReLU shim against the libtorch that torch-sys found, and
//! makes this crate's binaries, tests and benches find libtorch at run time.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/guided_relu.cpp");
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys did not report its libtorch directory (DEP_TCH_LIBTORCH_LIB)"),
    );
    let root = lib.parent().expect("libtorch lib dir has a parent");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        // The pip wheels of torch >= 2.7 use the C++11 ABI, as does tch's own shim.
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .file("csrc/guided_relu.cpp")
        .compile("hint_guided_relu");
    // Downstream build scripts (the `hint` binary, the tests) read this as
    // DEP_HINT_TORCH_LIBTORCH_LIB to set their own rpath.
    println!("cargo:libtorch_lib={}", lib.display());
    link_libtorch_runtime(&lib);
}

/// Run-time linking for this package's own binaries, tests and benches.
fn link_libtorch_runtime(lib: &std::path::Path) {
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The linker drops libtorch_cuda.so as unused (nothing references its
    // symbols directly), and without it libtorch sees no GPU. Force it in.
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
