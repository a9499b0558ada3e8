//! The gRPC messages (prost decoding of whatever arrives) and the checks the coordinator
//! makes of a decoded completion that are pure functions: the task id and the exact
//! Shapley sums.

use hint_common::job::wire::{sums_from_proto, sums_to_proto};
use hint_common::job::{JobId, Stage, TaskId};
use hint_common::proto;
use hint_common::shapley::{PartialSums, PermutationBlock, Sampling};
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;

/// Decodes `bytes` as `M`: an error, or a message whose encoding decodes to the same
/// encoding (prost's encoding is canonical; comparing bytes also covers NaN floats).
fn decodes_or_fails<M: Message + Default>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(message) = M::decode(bytes) {
        let encoded = message.encode_to_vec();
        let again = M::decode(&encoded[..]);
        prop_assert!(again.is_ok(), "{:?}", again.err());
        prop_assert_eq!(again.unwrap().encode_to_vec(), encoded);
    }
    Ok(())
}

/// Every message a coordinator or a worker decodes from the network.
fn decode_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    decodes_or_fails::<proto::RegisterRequest>(bytes)?;
    decodes_or_fails::<proto::RegisterResponse>(bytes)?;
    decodes_or_fails::<proto::PollRequest>(bytes)?;
    decodes_or_fails::<proto::PollResponse>(bytes)?;
    decodes_or_fails::<proto::Task>(bytes)?;
    decodes_or_fails::<proto::CompleteRequest>(bytes)?;
    decodes_or_fails::<proto::CompleteResponse>(bytes)?;
    decodes_or_fails::<proto::FailRequest>(bytes)?;
    decodes_or_fails::<proto::LeaveRequest>(bytes)?;
    decodes_or_fails::<proto::ShapleySums>(bytes)?;
    decodes_or_fails::<proto::SubmitRequest>(bytes)?;
    decodes_or_fails::<proto::JobRef>(bytes)?;
    decodes_or_fails::<proto::JobStatus>(bytes)?;
    decodes_or_fails::<proto::ResultsResponse>(bytes)?;
    Ok(())
}

/// Raw protobuf pieces: tags of every wire type for the low field numbers, lengths,
/// varints that overflow, so arbitrary sequences often get past the first byte.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        // A key: field 1..16 with any wire type (6 and 7 are invalid).
        (1u8..16, 0u8..8).prop_map(|(field, wire)| vec![(field << 3) | wire]),
        // A length or a value.
        (0u8..40).prop_map(|n| vec![n]),
        Just(vec![0xff; 10]),
        Just(vec![0x80; 11]),
        Just(vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

fn sampling() -> impl Strategy<Value = Sampling> {
    prop_oneof![Just(Sampling::Antithetic), Just(Sampling::Independent)]
}

/// Exact partial sums as a worker sends them: a valid block and as many samples.
fn partial_sums() -> impl Strategy<Value = PartialSums> {
    (0usize..6, sampling(), 0u64..1_000_000, 0u64..64).prop_flat_map(|(n, sampling, start, len)| {
        let per = match sampling {
            Sampling::Antithetic => 2,
            Sampling::Independent => 1,
        };
        let block = PermutationBlock::new(start * per, (start + len) * per);
        (
            proptest::collection::vec(any::<i128>(), n),
            proptest::collection::vec(any::<i128>(), n),
        )
            .prop_map(move |(sum, sum_sq)| {
                PartialSums::from_raw(sum, sum_sq, len, sampling, block).unwrap()
            })
    })
}

/// Shapley sums messages near the valid ones: lengths off by a little, blocks backwards or
/// odd, sample counts that do not fit.
fn sums_message() -> impl Strategy<Value = proto::ShapleySums> {
    let bound = prop_oneof![0u64..64, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()];
    (
        prop_oneof![0u32..5, any::<u32>()],
        prop_oneof![0u64..64, Just(u64::MAX), any::<u64>()],
        any::<bool>(),
        bound.clone(),
        bound,
        proptest::collection::vec(any::<u8>(), 0..90),
        proptest::collection::vec(any::<u8>(), 0..90),
        any::<f64>(),
    )
        .prop_map(
            |(
                neurons,
                samples,
                antithetic,
                first_permutation,
                end_permutation,
                sum,
                sum_sq,
                seconds,
            )| {
                proto::ShapleySums {
                    neurons,
                    samples,
                    antithetic,
                    first_permutation,
                    end_permutation,
                    sum,
                    sum_sq,
                    seconds,
                }
            },
        )
}

/// Task ids: the job part has no `/`.
fn task_id() -> impl Strategy<Value = TaskId> {
    (
        "[a-z0-9._-]{0,12}",
        proptest::sample::select(&Stage::ALL[..]),
        any::<u32>(),
    )
        .prop_map(|(job, stage, index)| TaskId {
            job: JobId(job),
            stage,
            index,
        })
}

/// A completion of any kind, as a worker sends it.
fn complete_request() -> impl Strategy<Value = proto::CompleteRequest> {
    use proto::complete_request::Output;
    let output = prop_oneof![
        (
            any::<String>(),
            proptest::collection::vec(any::<u32>(), 0..4),
            any::<f64>()
        )
            .prop_map(|(dir, trained, seconds)| Output::Train(proto::TrainOutput {
                dir,
                trained,
                seconds
            })),
        (any::<String>(), any::<u64>(), any::<u64>(), any::<f64>()).prop_map(
            |(dir, rows, rows_read, seconds)| Output::Sample(proto::SampleOutput {
                dir,
                rows,
                rows_read,
                seconds
            })
        ),
        (partial_sums(), any::<f64>())
            .prop_map(|(s, seconds)| Output::Shapley(sums_to_proto(&s, seconds))),
        (
            any::<String>(),
            proptest::collection::vec(any::<String>(), 0..3)
        )
            .prop_map(|(dir, files)| {
                Output::Results(proto::ResultFiles {
                    dir,
                    files,
                    ..Default::default()
                })
            }),
        (any::<String>(), any::<u64>()).prop_map(|(url, rows)| Output::Extract(
            proto::ExtractSummary {
                files: vec![proto::RegionFile {
                    url,
                    rows,
                    ..Default::default()
                }],
                ..Default::default()
            }
        )),
    ];
    (
        any::<String>(),
        task_id(),
        any::<u32>(),
        proptest::option::of(output),
    )
        .prop_map(
            |(worker_id, task, attempt, output)| proto::CompleteRequest {
                worker_id,
                task_id: task.to_string(),
                attempt,
                output,
            },
        )
}

/// A byte-level change to an encoded message.
fn byte_edits() -> impl Strategy<Value = Vec<(Index, u8, u8)>> {
    proptest::collection::vec((any::<Index>(), 0u8..4, any::<u8>()), 1..5)
}

fn apply_bytes(mut bytes: Vec<u8>, edits: &[(Index, u8, u8)]) -> Vec<u8> {
    for &(ref at, kind, byte) in edits {
        let i = at.index(bytes.len() + 1);
        match kind {
            0 => bytes.insert(i, byte),
            1 if i < bytes.len() => bytes[i] ^= byte | 1,
            2 if i < bytes.len() => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(crate::config(128))]

    /// Arbitrary bytes and protobuf-shaped bytes decode as every message, or fail, and
    /// what decodes re-encodes stably.
    #[test]
    fn arbitrary_bytes_decode_or_fail(
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
        wire in wire_bytes(),
    ) {
        decode_all(&bytes)?;
        decode_all(&wire)?;
    }

    /// A completion damaged on the wire decodes or fails, never panics; what decodes goes
    /// through the coordinator's pure checks (task id, sums) without panicking.
    #[test]
    fn damaged_completions_decode_or_fail(request in complete_request(), edits in byte_edits()) {
        let bytes = apply_bytes(request.encode_to_vec(), &edits);
        decode_all(&bytes)?;
        if let Ok(request) = proto::CompleteRequest::decode(&bytes[..]) {
            let _ = request.task_id.parse::<TaskId>();
            if let Some(proto::complete_request::Output::Shapley(sums)) = &request.output {
                let _ = sums_from_proto(sums);
            }
        }
    }

    /// A Shapley completion reaches the coordinator with the worker's exact sums.
    #[test]
    fn shapley_sums_survive_the_wire(sums in partial_sums(), seconds in any::<f64>(), task in task_id()) {
        let request = proto::CompleteRequest {
            worker_id: "w-0001".into(),
            task_id: task.to_string(),
            attempt: 1,
            output: Some(proto::complete_request::Output::Shapley(sums_to_proto(&sums, seconds))),
        };
        let decoded = proto::CompleteRequest::decode(&request.encode_to_vec()[..]).unwrap();
        prop_assert_eq!(decoded.task_id.parse::<TaskId>(), Ok(task));
        let Some(proto::complete_request::Output::Shapley(message)) = decoded.output else {
            return Err(TestCaseError::fail("the output is not Shapley sums"));
        };
        prop_assert_eq!(sums_from_proto(&message).unwrap(), sums);
    }

    /// Malformed sums (lengths, blocks, sample counts) are errors; sums that decode have
    /// the message's shape, and merging two of them (as the coordinator does) is an error
    /// or a sum, never a panic.
    #[test]
    fn malformed_sums_are_errors(a in sums_message(), b in sums_message()) {
        let decoded: Vec<PartialSums> = [&a, &b]
            .into_iter()
            .filter_map(|m| {
                let sums = sums_from_proto(m).ok()?;
                Some((m, sums))
            })
            .map(|(m, sums)| {
                assert_eq!(sums.neurons(), m.neurons as usize);
                assert_eq!(sums.samples(), m.samples);
                sums
            })
            .collect();
        let _ = PartialSums::merge(decoded);
    }

    /// Task ids: whatever parses prints back to an id that parses the same; generated ids
    /// round-trip.
    #[test]
    fn task_ids_parse_or_fail(text in any::<String>(), soup in "[a-z0-9/+-]{0,24}", id in task_id()) {
        for text in [text, soup] {
            if let Ok(parsed) = text.parse::<TaskId>() {
                prop_assert_eq!(parsed.to_string().parse::<TaskId>(), Ok(parsed));
            }
        }
        prop_assert_eq!(id.to_string().parse::<TaskId>(), Ok(id));
    }
}
