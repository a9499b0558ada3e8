//! Conversions between proto messages and the engines' types.

use crate::proto;
use crate::shapley::{PartialSums, PermutationBlock, Sampling, ShapleyError};

/// Encodes exact partial sums for a completion.
pub fn sums_to_proto(sums: &PartialSums, seconds: f64) -> proto::ShapleySums {
    let block = sums.covered();
    let encode = |values: &[i128]| {
        let mut bytes = Vec::with_capacity(values.len() * 16);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes
    };
    let (sum, sum_sq) = sums.raw();
    proto::ShapleySums {
        neurons: sums.neurons() as u32,
        samples: sums.samples(),
        antithetic: sums.sampling() == Sampling::Antithetic,
        first_permutation: block.start,
        end_permutation: block.end,
        sum: encode(sum),
        sum_sq: encode(sum_sq),
        seconds,
    }
}

/// Decodes a completion's partial sums; a malformed message is an error, never a panic.
pub fn sums_from_proto(message: &proto::ShapleySums) -> Result<PartialSums, ShapleyError> {
    let neurons = message.neurons as usize;
    let decode = |what: &'static str, bytes: &[u8]| {
        if bytes.len() != neurons * 16 {
            return Err(ShapleyError::Shape {
                what,
                expected: neurons * 16,
                actual: bytes.len(),
            });
        }
        Ok(bytes
            .chunks_exact(16)
            .map(|c| i128::from_le_bytes(c.try_into().expect("16 bytes")))
            .collect::<Vec<i128>>())
    };
    let sampling = if message.antithetic {
        Sampling::Antithetic
    } else {
        Sampling::Independent
    };
    PartialSums::from_raw(
        decode("sum bytes", &message.sum)?,
        decode("sum_sq bytes", &message.sum_sq)?,
        message.samples,
        sampling,
        PermutationBlock::new(message.first_permutation, message.end_permutation),
    )
}
