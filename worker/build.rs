//! Compiles the guided-ReLU shim against the libtorch that torch-sys found, and
//! makes this crate's binaries, tests and benches find libtorch at run time; compiles the
//! libjpeg-turbo shim and links the system's libjpeg-turbo statically where it is there.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    libjpeg_turbo();
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

/// The JPEG fast path (`images::turbo`): `csrc/jpeg_turbo.c` against the system's
/// libjpeg-turbo (Debian: `libjpeg62-turbo-dev`, which `scripts/bootstrap.sh` installs),
/// whose static `libjpeg.a` is linked in, so the binaries need no JPEG library where they
/// run (a GPU node, the worker image). `HINT_LIBJPEG_DIR` names another installation's
/// prefix (`include/`, `lib/libjpeg.a`). Without the headers or the static library — or with
/// `HINT_LIBJPEG=off` — the build goes on without it (cfg `hint_libjpeg_turbo` unset) and
/// every JPEG goes through zune-jpeg and jpeg-decoder, slower and not PIL's pixels exactly;
/// a warning says so.
fn libjpeg_turbo() {
    println!("cargo:rerun-if-changed=csrc/jpeg_turbo.c");
    println!("cargo:rerun-if-env-changed=HINT_LIBJPEG");
    println!("cargo:rustc-check-cfg=cfg(hint_libjpeg_turbo)");
    if std::env::var("HINT_LIBJPEG").is_ok_and(|v| v == "off") {
        println!("cargo:warning=HINT_LIBJPEG=off: JPEGs decode with zune-jpeg, not libjpeg-turbo");
        return;
    }
    // An installation where the C compiler does not look (Homebrew's, one built by hand):
    // its prefix, holding include/jpeglib.h and lib/libjpeg.a.
    println!("cargo:rerun-if-env-changed=HINT_LIBJPEG_DIR");
    let prefix = std::env::var_os("HINT_LIBJPEG_DIR").map(PathBuf::from);
    let library = match &prefix {
        Some(prefix) => Some(prefix.join("lib/libjpeg.a")).filter(|l| l.exists()),
        None => static_library("libjpeg.a"),
    };
    let linked = match library {
        None => Err(match &prefix {
            Some(prefix) => format!("HINT_LIBJPEG_DIR={} has no lib/libjpeg.a", prefix.display()),
            None => "the C compiler finds no static libjpeg.a".to_string(),
        }),
        // Only with the library there: the shim's archive must not be linked without it.
        Some(library) => cc::Build::new()
            .pic(true)
            .opt_level(2)
            .includes(prefix.iter().map(|p| p.join("include")))
            .file("csrc/jpeg_turbo.c")
            .try_compile("hint_jpeg_turbo")
            .map(|()| library)
            // One line: cargo reads a warning up to the line's end.
            .map_err(|e| format!("csrc/jpeg_turbo.c did not compile: {e}").replace('\n', " ")),
    };
    match linked {
        Ok(library) => {
            let dir = library.parent().expect("a library file has a directory");
            println!("cargo:rustc-link-search=native={}", dir.display());
            // After the shim's own archive, which uses it.
            println!("cargo:rustc-link-lib=static=jpeg");
            println!("cargo:rustc-cfg=hint_libjpeg_turbo");
        }
        Err(why) => println!(
            "cargo:warning=libjpeg-turbo not used ({why}): JPEGs decode with zune-jpeg, slower \
             and not bit for bit PIL's; install libjpeg-turbo's headers and static library \
             (Debian: libjpeg62-turbo-dev; Ubuntu: libjpeg-turbo8-dev; Fedora: \
             libjpeg-turbo-devel and libjpeg-turbo-static) where the C compiler finds them, \
             or set HINT_LIBJPEG_DIR to the prefix of an installation (macOS: \
             HINT_LIBJPEG_DIR=$(brew --prefix jpeg-turbo))"
        ),
    }
}

/// Where the C compiler finds the static library `name`, if it does.
fn static_library(name: &str) -> Option<PathBuf> {
    let compiler = cc::Build::new().get_compiler();
    let output = Command::new(compiler.path())
        .arg(format!("-print-file-name={name}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    // Without the library, the compiler prints the bare name back.
    (path.is_absolute() && path.exists()).then_some(path)
}
