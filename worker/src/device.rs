//! Parsing the `--device` option into a libtorch device.

use tch::{Cuda, Device};

use crate::error::{Error, Result};

/// `cpu`, `cuda` (GPU 0), `cuda:N`, or `auto` (the first GPU when there is one, else CPU).
/// Asking for a GPU that is not there is an error, not a silent fall-back to the CPU.
pub fn parse(name: &str) -> Result<Device> {
    let gpus = Cuda::device_count() as usize;
    let cuda = |index: usize| {
        if index < gpus {
            Ok(Device::Cuda(index))
        } else if gpus == 0 {
            Err(Error::Config(format!(
                "device '{name}': libtorch sees no CUDA GPU on this machine; use --device cpu"
            )))
        } else {
            Err(Error::Config(format!(
                "device '{name}': only {gpus} CUDA GPU(s) visible (cuda:0..cuda:{})",
                gpus - 1
            )))
        }
    };
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" => cuda(0),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => cuda(index),
            _ => Err(Error::Config(format!(
                "unknown device '{name}'; use cpu, cuda, cuda:N or auto"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(parse("cpu").unwrap(), Device::Cpu);
        assert!(parse("tpu").unwrap_err().to_string().contains("cpu, cuda"));
        if !Cuda::is_available() {
            assert!(parse("cuda")
                .unwrap_err()
                .to_string()
                .contains("no CUDA GPU"));
            assert_eq!(parse("auto").unwrap(), Device::Cpu);
        }
    }
}
