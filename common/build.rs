//! Compiles `proto/hint.proto` into Rust (prost messages; tonic services once the proto has
//! them). `protoc` comes from `protoc-bin-vendored`, so a fresh machine needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../proto/hint.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded here; prost-build reads PROTOC from the
    // environment and offers no other way through tonic-prost-build's builder.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().compile_protos(&["../proto/hint.proto"], &["../proto"])?;
    Ok(())
}
