//! The `hint` binary links libtorch through hint-worker: give it an rpath so it runs
//! without LD_LIBRARY_PATH, and force libtorch_cuda in so `--device cuda` can see a GPU
//! (the linker would drop it as unused; see ../shared/GPU.md).

fn main() {
    let lib = std::env::var("DEP_HINT_TORCH_LIBTORCH_LIB")
        .expect("hint-worker reports the libtorch directory (DEP_HINT_TORCH_LIBTORCH_LIB)");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
