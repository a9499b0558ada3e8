//! The sample task: a part of the job's bounded sample of regions, drawn from some of the
//! committed region files, or the merge of the parts (see the coordinator's sample stage).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use hint_common::proto::{SampleOutput, SampleTask};
use hint_common::regions::read_region_meta;
use hint_common::regions::sample::{
    check_region_set, RegionSampler, RegionSetInfo, SampleError, SAMPLE_ROWS,
};
use hint_common::storage;

use super::failure::TaskError;
use super::{check_cancel, output_dir, require, Job, TaskRunner};
use crate::classify::ClassifyConfig;

/// Runs the sample task: `region_files` → a part, or `parts` → their merge, written into
/// the attempt's directory.
pub(super) fn run(
    runner: &TaskRunner,
    job: &Job,
    task: &SampleTask,
    progress: &(dyn Fn(u64, u64) + Sync),
    cancel: &AtomicBool,
) -> Result<SampleOutput, TaskError> {
    let started = Instant::now();
    let config = ClassifyConfig::sample_settings(&job.spec.classify, job.spec.seed);
    let out = output_dir(&task.out_dir, "sample output directory")?;
    let (sampler, info, meta_source, rows_read) = match (&task.region_files[..], &task.parts[..]) {
        (files @ [_, ..], []) => {
            let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
            for file in &files {
                require(file, "the region file")?;
            }
            let info = check_region_set(&files)?;
            let (total, done) = (info.rows, AtomicU64::new(0));
            progress(0, total);
            // The worker's decoding threads read the files (the result does not depend on
            // how many).
            let sampler = RegionSampler::from_files(
                &config,
                (info.channels, info.labels.len()),
                &files,
                runner.decode_threads,
                &|rows| progress(done.fetch_add(rows, Ordering::Relaxed) + rows, total),
                cancel,
            )?;
            check_cancel(cancel)?;
            (sampler, info, files[0].clone(), done.into_inner())
        }
        ([], parts @ [_, ..]) => {
            let total = parts.len() as u64;
            progress(0, total);
            let mut merged: Option<(RegionSampler, RegionSetInfo)> = None;
            let mut rows_read = 0;
            for (done, part) in parts.iter().enumerate() {
                let dir = Path::new(part);
                require(&dir.join(SAMPLE_ROWS), "the part's sample")?;
                let (sampler, info) = RegionSampler::read_from(dir, &config)?;
                rows_read += sampler.held_rows() as u64;
                merged = Some(match merged {
                    None => (sampler, info),
                    Some((mut all, mut all_info)) => {
                        // Checked first: samplers of another D or labels do not merge.
                        all_info.merge(info)?;
                        all.merge(sampler);
                        (all, all_info)
                    }
                });
                progress(done as u64 + 1, total);
                check_cancel(cancel)?;
            }
            let (sampler, info) = merged.expect("at least one part");
            (
                sampler,
                info,
                Path::new(&parts[0]).join(SAMPLE_ROWS),
                rows_read,
            )
        }
        _ => {
            return Err(TaskError::BadInput(format!(
                "sample part {} must list either region files ({}) or parts ({}), not {}",
                task.part,
                task.region_files.len(),
                task.parts.len(),
                if task.region_files.is_empty() {
                    "neither"
                } else {
                    "both"
                }
            )))
        }
    };

    // The source files' metadata, less what named the file that wrote them.
    let (mut meta, _) = read_region_meta(&meta_source).map_err(SampleError::from)?;
    meta.task_id = None;
    if !storage::is_remote(&out) {
        std::fs::create_dir_all(&out).map_err(|source| {
            TaskError::from(SampleError::ReadDir {
                dir: out.clone(),
                source,
            })
        })?;
    }
    let rows = sampler.write_to(&out, &info, meta)?;
    tracing::debug!(
        part = task.part,
        rows,
        rows_read,
        seconds = started.elapsed().as_secs_f64(),
        "wrote a sample"
    );
    Ok(SampleOutput {
        dir: out.display().to_string(),
        rows,
        rows_read,
        seconds: started.elapsed().as_secs_f64(),
    })
}
