//! Fixed-mode Monte-Carlo Shapley throughput (permutations per second) side by side with the
//! shap library's PermutationExplainer on the same game, plus retrain mode's cost.
//!
//! ```text
//! cargo bench -p hint-worker --bench shapley -- \
//!     [--d 512] [--n 20000] [--permutations 64] [--shap-pairs 2] \
//!     [--retrain-d 32] [--retrain-n 2000] [--retrain-permutations 2] [--device cpu] \
//!     [--zeros 0.3] [--skip-shap] [--shap-seconds-per-permutation S] \
//!     [--group 64] [--memory-mib 1024] [--check-permutations 64]
//! ```
//!
//! `--device` picks fixed mode's sweep (and retrain mode's device): `cpu` the pure-Rust sweep
//! (rayon), `cpu-tch` the batched libtorch sweep on the CPU, `cuda` / `cuda:N` the batched
//! sweep on a GPU (`--group` permutations at once, chunks sized by `--memory-mib`; timed
//! between `tch::Cuda::synchronize` calls; the timed block is rounded up to whole groups).
//! For a libtorch device the bench then checks the batched sweep against the pure-Rust one
//! on the first `--check-permutations` permutations (|Δφ| against the standard error,
//! efficiency) and that a split of that block into unaligned parts merges bit-identically.
//!
//! The binary needs only itself and libtorch: the game is generated in-process. shap runs
//! through the project's `.venv` when it is there (its path is compiled in); elsewhere — a
//! GPU machine with no Python packages — pass shap's per-permutation wall time measured on
//! another machine with `--shap-seconds-per-permutation S` (the line `shap … s per
//! permutation` of a CPU run), and the printout says that number was given, not measured.
//!
//! The data are synthetic: N regions × D neurons of ReLU-like activations `max(0, u − zeros +
//! signal)`, `u` uniform, half positives, a planted group of 16 neurons carrying the signal.
//! Speed depends on the values only through sparsity: hint sweeps a column sparsely when
//! fewer than 40% of its entries move (activation or replacement nonzero), so `--zeros`
//! (the fraction of zero activations; deep ReLU layers are mostly zeros) matters; shap's
//! cost does not depend on it.
//! The classifier is a fixed linear rule (difference of class means over the pooled variance,
//! bias centring the logits) — both sides get the same weights. hint's side is
//! `ShapleyEngine::run_block` in fixed mode with marginal replacement, log-likelihood quality
//! and antithetic pairs, all cores (rayon). The game (X, R, y, w, b) is written to a temporary
//! directory as .npy and `tests/python/bench_shap.py` explains the same v(S) with shap, as a
//! function of a coalition mask computed with one numpy matmul per batch of masks. Both sides'
//! Σφ are checked against v(all) − v(none), so they compute the same game.
//!
//! Retrain mode (`--retrain-permutations P` > 0) runs P permutations of one game at
//! `--retrain-d` × `--retrain-n` twice, side by side: as hint sweeps them (each nested
//! coalition's fit warm-started from the previous one's) and with every coalition fitted from
//! the cold start (the batched Newton fits of `ShapleyEngine::values`), printing both times,
//! their ratio and the largest difference of the two φ.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use hint_common::shapley::{
    permutation, replacement_rows, PartialSums, PermutationBlock, Replacement, Sampling,
};
use hint_worker::shapley::{ConceptInput, Mode, ShapleyConfig, ShapleyEngine, SweepBackend};
use rand::Rng;
use tch::Device;

struct Options {
    d: usize,
    n: usize,
    permutations: u64,
    shap_pairs: u64,
    retrain_d: usize,
    retrain_n: usize,
    retrain_permutations: u64,
    device: String,
    skip_shap: bool,
    shap_seconds_per_permutation: Option<f64>,
    zeros: f32,
    group: usize,
    memory_mib: usize,
    check_permutations: u64,
}

fn options() -> Options {
    let mut o = Options {
        d: 512,
        n: 20_000,
        permutations: 64,
        shap_pairs: 2,
        retrain_d: 32,
        retrain_n: 2000,
        retrain_permutations: 2,
        device: "cpu".into(),
        skip_shap: false,
        shap_seconds_per_permutation: None,
        zeros: 0.3,
        group: 64,
        memory_mib: 1024,
        check_permutations: 64,
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        if flag == "--skip-shap" {
            o.skip_shap = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<u64>().unwrap_or_else(|_| panic!("{flag} N"));
        match flag.as_str() {
            "--d" => o.d = number() as usize,
            "--n" => o.n = number() as usize,
            "--permutations" => o.permutations = number(),
            "--shap-pairs" => o.shap_pairs = number(),
            "--retrain-d" => o.retrain_d = number() as usize,
            "--retrain-n" => o.retrain_n = number() as usize,
            "--retrain-permutations" => o.retrain_permutations = number(),
            "--device" => o.device = value,
            "--zeros" => o.zeros = value.parse().expect("--zeros FRACTION"),
            "--shap-seconds-per-permutation" => {
                o.shap_seconds_per_permutation = Some(
                    value
                        .parse()
                        .expect("--shap-seconds-per-permutation SECONDS"),
                )
            }
            "--group" => o.group = number() as usize,
            "--memory-mib" => o.memory_mib = number() as usize,
            "--check-permutations" => o.check_permutations = number(),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// Synthetic regions and a fixed linear classifier (see the module docs).
fn game(n: usize, d: usize, zeros: f32) -> ConceptInput {
    let mut rng = hint_common::seed::rng(2026, &[n as u64, d as u64]);
    let targets: Vec<bool> = (0..n).map(|i| i.is_multiple_of(2)).collect();
    let mut x = vec![0.0f32; n * d];
    for i in 0..n {
        for k in 0..d {
            let u = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
            let signal = if targets[i] && k.is_multiple_of((d / 16).max(1)) {
                0.5
            } else {
                0.0
            };
            x[i * d + k] = (u - zeros + signal).max(0.0);
        }
    }
    let (mut mean_pos, mut mean_neg, mut var) = (vec![0.0f64; d], vec![0.0f64; d], vec![0.0f64; d]);
    for i in 0..n {
        let m = if targets[i] {
            &mut mean_pos
        } else {
            &mut mean_neg
        };
        for k in 0..d {
            m[k] += f64::from(x[i * d + k]) * 2.0 / n as f64;
        }
    }
    for i in 0..n {
        let m = if targets[i] { &mean_pos } else { &mean_neg };
        for k in 0..d {
            var[k] += (f64::from(x[i * d + k]) - m[k]).powi(2) / n as f64;
        }
    }
    let weight: Vec<f32> = (0..d)
        .map(|k| ((mean_pos[k] - mean_neg[k]) / var[k].max(1e-6)) as f32)
        .collect();
    let centre: f64 = (0..d)
        .map(|k| f64::from(weight[k]) * (mean_pos[k] + mean_neg[k]) / 2.0)
        .sum();
    ConceptInput {
        concept: 0,
        eval_x: x,
        eval_targets: targets,
        fit_x: Vec::new(),
        fit_targets: Vec::new(),
        weight,
        bias: -centre as f32,
    }
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU seconds of this process so far (user + system, all threads; /proc/self/stat,
/// 100 Hz ticks): with other work on the cores, CPU time compares costs where wall time
/// compares luck.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime are 14 and 15.
            let rest = &s[s.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// Writes a little-endian `.npy` (format 1.0) of f32 or u8 values.
fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let shape = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut file = std::fs::File::create(path).expect("create npy");
    file.write_all(b"\x93NUMPY\x01\x00").unwrap();
    file.write_all(&(header.len() as u16).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.write_all(bytes).unwrap();
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `--device`: fixed mode's sweep backend and retrain mode's device.
fn backend(name: &str) -> (SweepBackend, Device) {
    if name == "cpu-tch" {
        return (SweepBackend::Torch(Device::Cpu), Device::Cpu);
    }
    let device = hint_worker::device::parse(name).expect("--device cpu, cpu-tch, cuda, cuda:N");
    (SweepBackend::for_device(device), device)
}

/// Waits for the device's queued kernels, so wall time covers them.
fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn main() {
    let o = options();
    let threads = rayon::current_num_threads();
    let (sweep, device) = backend(&o.device);
    let sweep_name = match sweep {
        SweepBackend::Rust => format!("pure-Rust sweep, {threads} rayon threads"),
        SweepBackend::Torch(d) => format!(
            "batched libtorch sweep on {d:?} ({} libtorch CPU threads), group {} permutations, chunk budget {} MiB",
            tch::get_num_threads(),
            o.group,
            o.memory_mib
        ),
    };
    println!(
        "Shapley fixed mode: D = {}, N = {} evaluation regions ({:.0}% of activations 0), marginal replacement, log-likelihood, antithetic; {sweep_name} (cores shared with other work)",
        o.d, o.n, 100.0 * o.zeros
    );
    let input = game(o.n, o.d, o.zeros);
    let mut config = ShapleyConfig {
        mode: Mode::Fixed,
        seed: 1,
        ..ShapleyConfig::default()
    }
    .with_device(device);
    config.fixed.backend = sweep;
    config.fixed.group = o.group;
    config.fixed.memory_budget = o.memory_mib << 20;
    let start = Instant::now();
    let engine = ShapleyEngine::new(&input, &config).expect("engine");
    synchronize(device);
    let prepare = start.elapsed().as_secs_f64();
    // The timed block is whole groups on libtorch (a group is computed whole anyway).
    let permutations = match engine.batched() {
        Some(b) => o.permutations.div_ceil(b.group() as u64) * b.group() as u64,
        None => o.permutations.div_ceil(2) * 2,
    };
    // Warm-up (one group, or one pair) on permutations after the timed ones, so the timed
    // block does not start from a kept group.
    let warm = engine.batched().map_or(2, |b| b.group() as u64);
    engine
        .run_block(PermutationBlock::new(permutations, permutations + warm))
        .expect("warm-up");
    synchronize(device);
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    let sums = engine
        .run_block(PermutationBlock::new(0, permutations))
        .expect("run");
    synchronize(device);
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let ours = permutations as f64 / seconds;
    let ours_cpu = permutations as f64 / cpu;
    let v = engine
        .values(&[vec![true; o.d], vec![false; o.d]])
        .expect("values");
    let phi_sum: f64 = sums.estimates().iter().map(|e| e.phi).sum();
    let shape = engine.batched().map_or(String::new(), |b| {
        format!(
            " ({} steps per chunk, {} chunks per group)",
            b.chunk(),
            o.d.div_ceil(b.chunk())
        )
    });
    println!(
        "  hint:  {permutations} permutations in {seconds:.3} s wall = {ours:.1} permutations/s ({:.3} ms each){shape}, {cpu:.2} s CPU = {ours_cpu:.1} permutations per CPU-second; game prepared in {prepare:.2} s; Σφ = {phi_sum:.6}, v(all) − v(none) = {:.6}; peak RSS {:.0} MiB",
        1e3 / ours,
        v[0] - v[1],
        peak_rss_mib()
    );
    if engine.batched().is_some() {
        check_batched(&o, &input, &config, &engine);
    }

    // CPU time compares costs only when both sides run on the CPU.
    let cpu_ratio = !device.is_cuda();
    if let Some(each) = o.shap_seconds_per_permutation {
        println!(
            "  shap:  {each:.4} s per permutation — GIVEN with --shap-seconds-per-permutation (measured elsewhere, not run here; comparable only if measured at D = {}, N = {}) = {:.4} permutations/s",
            o.d,
            o.n,
            1.0 / each
        );
        println!(
            "  speed-up per permutation: {:.0}× in wall time (hint measured here on {device:?}, shap given)",
            ours * each
        );
    } else if !o.skip_shap {
        shap_side(&o, &input, &config, ours, cpu_ratio.then_some(ours_cpu));
    }
    retrain_side(&o, device);
}

/// The batched sweep against the pure-Rust sweep on the first `--check-permutations`
/// permutations, and a split of them into unaligned blocks against the whole.
fn check_batched(
    o: &Options,
    input: &ConceptInput,
    config: &ShapleyConfig,
    engine: &ShapleyEngine,
) {
    let check = o.check_permutations.div_ceil(2) * 2;
    if check < 4 {
        return;
    }
    let block = PermutationBlock::new(0, check);
    let rust_config = ShapleyConfig {
        fixed: hint_worker::shapley::FixedConfig {
            backend: SweepBackend::Rust,
            ..config.fixed
        },
        ..*config
    };
    let rust = ShapleyEngine::new(input, &rust_config).expect("pure-Rust engine");
    let start = Instant::now();
    let reference = rust.run_block(block).expect("pure-Rust sweep");
    let rust_seconds = start.elapsed().as_secs_f64();
    engine.batched().expect("batched").forget();
    let batched = engine.run_block(block).expect("batched sweep");
    let (a, b) = (reference.estimates(), batched.estimates());
    let (mut worst_abs, mut worst_rel) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(&b) {
        let diff = (x.phi - y.phi).abs();
        worst_abs = worst_abs.max(diff);
        worst_rel = worst_rel.max(diff / x.stderr);
    }
    let v = rust
        .values(&[vec![true; o.d], vec![false; o.d]])
        .expect("values");
    let efficiency = (b.iter().map(|e| e.phi).sum::<f64>() - (v[0] - v[1])).abs();
    let agree = worst_rel <= 1e-2 && efficiency <= 1e-5;
    println!(
        "  check: batched vs pure-Rust sweep (same {check} permutations; Rust took {rust_seconds:.2} s): max |Δφ| = {worst_abs:.3e} = {worst_rel:.3e} × stderr, |Σφ − (v(all) − v(none))| = {efficiency:.3e} — {}",
        if agree { "PASS" } else { "FAIL" }
    );
    // Accuracy scores are 0/1 and summed exactly, so they are bit-identical exactly when the
    // device's f32 margins are bit-identical to the pure-Rust sweep's.
    let accuracy = |backend| {
        let config = ShapleyConfig {
            quality: hint_common::shapley::Quality::Accuracy,
            fixed: hint_worker::shapley::FixedConfig {
                backend,
                ..config.fixed
            },
            ..*config
        };
        let engine = ShapleyEngine::new(input, &config).expect("accuracy engine");
        engine
            .run_block(PermutationBlock::new(0, 4))
            .expect("accuracy sweep")
    };
    let same = accuracy(SweepBackend::Rust) == accuracy(config.fixed.backend);
    println!(
        "  check: accuracy quality (0/1 scores, exact sums) on 4 permutations: batched {} pure-Rust — the device's f32 margins are {}",
        if same { "==" } else { "!=" },
        if same { "bit-identical PASS" } else { "NOT bit-identical (allowed: float tolerance only)" }
    );
    // Cuts that fall inside groups, run in reverse order, each part computing its groups
    // afresh; and the whole block once more, afresh.
    let cut = |f: u64| (check * f / 7).div_ceil(2) * 2;
    let mut cuts = vec![0, cut(1), cut(3), cut(6), check];
    cuts.dedup();
    let sweep = engine.batched().expect("batched");
    let parts: Vec<PartialSums> = cuts
        .windows(2)
        .rev()
        .map(|w| {
            sweep.forget();
            engine
                .run_block(PermutationBlock::new(w[0], w[1]))
                .expect("part")
        })
        .collect();
    let merged = PartialSums::merge(parts).expect("merge");
    let whole = PartialSums::merge([batched]).expect("merge");
    sweep.forget();
    let again = PartialSums::merge([engine.run_block(block).expect("again")]).expect("merge");
    let verdict = |same: bool| {
        if same {
            "bit-identical PASS"
        } else {
            "DIFFERENT FAIL"
        }
    };
    println!(
        "  check: blocks {cuts:?} merged vs one block: {}; run to run: {}",
        verdict(merged == whole),
        verdict(again == whole)
    );
}

fn shap_side(
    o: &Options,
    input: &ConceptInput,
    config: &ShapleyConfig,
    ours: f64,
    ours_cpu: Option<f64>,
) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        println!(
            "  shap:  not run — no project Python at {} (pass --shap-seconds-per-permutation S measured elsewhere)",
            python.display()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let rows = replacement_rows(
        &input.eval_x,
        o.n,
        o.d,
        Replacement::Marginal,
        config.seed,
        input.concept,
    )
    .expect("replacement rows");
    let p = dir.path();
    write_npy(
        &p.join("x.npy"),
        "<f4",
        &[o.n, o.d],
        &f32_bytes(&input.eval_x),
    );
    write_npy(&p.join("r.npy"), "<f4", &[o.n, o.d], &f32_bytes(&rows));
    let y: Vec<u8> = input.eval_targets.iter().map(|&t| u8::from(t)).collect();
    write_npy(&p.join("y.npy"), "|u1", &[o.n], &y);
    write_npy(&p.join("w.npy"), "<f4", &[o.d], &f32_bytes(&input.weight));
    write_npy(&p.join("b.npy"), "<f4", &[1], &f32_bytes(&[input.bias]));
    let output = Command::new(&python)
        .arg(root.join("tests/python/bench_shap.py"))
        .arg(p)
        .arg(o.shap_pairs.to_string())
        .output()
        .expect("running the project's python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.code() == Some(3) {
        println!("  shap:  not installed — `.venv/bin/pip install shap` to compare (bench only; not a test dependency)");
        return;
    }
    if !output.status.success() {
        println!(
            "  shap:  failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("bench_shap JSON");
    let theirs = report["permutations_per_second"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let theirs_cpu = report["permutations_per_cpu_second"]
        .as_f64()
        .unwrap_or(f64::NAN);
    println!(
        "  shap {}: PermutationExplainer, {} permutations ({} pairs) in {:.2} s wall = {theirs:.3} permutations/s, {:.2} s CPU = {theirs_cpu:.3} permutations per CPU-second; Σφ = {:.6}, v(all) − v(none) = {:.6}; peak RSS {:.0} MiB",
        report["shap"].as_str().unwrap_or("?"),
        report["permutations"],
        o.shap_pairs,
        report["seconds"].as_f64().unwrap_or(f64::NAN),
        report["cpu_seconds"].as_f64().unwrap_or(f64::NAN),
        report["sum_of_values"].as_f64().unwrap_or(f64::NAN),
        report["v_all"].as_f64().unwrap_or(f64::NAN) - report["v_none"].as_f64().unwrap_or(f64::NAN),
        report["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "  shap {:.4} s per permutation (wall, measured here: pass it to a GPU run as --shap-seconds-per-permutation)",
        1.0 / theirs
    );
    match ours_cpu {
        Some(ours_cpu) => println!(
            "  speed-up per permutation: {:.0}× in wall time, {:.0}× in CPU time",
            ours / theirs,
            ours_cpu / theirs_cpu
        ),
        None => println!(
            "  speed-up per permutation: {:.0}× in wall time",
            ours / theirs
        ),
    }
}

fn retrain_side(o: &Options, device: Device) {
    if o.retrain_permutations == 0 {
        return;
    }
    let d = o.retrain_d;
    let input = game(o.retrain_n, d, o.zeros);
    let config = ShapleyConfig {
        mode: Mode::Retrain,
        seed: 1,
        sampling: Sampling::Independent,
        ..ShapleyConfig::default()
    }
    .with_device(device);
    let built = Instant::now();
    let engine = ShapleyEngine::new(&input, &config).expect("retrain engine");
    let setup = built.elapsed().as_secs_f64();
    let per = o.retrain_permutations;
    // The path: each coalition's fit warm-started from the previous one.
    let start = Instant::now();
    let sums = engine
        .run_block(PermutationBlock::new(0, per))
        .expect("retrain run");
    let path = start.elapsed().as_secs_f64() / per as f64;
    // The same permutations with every nested coalition fitted from the cold start
    // (`values`, batched Newton): how retrain mode swept before the path.
    let start = Instant::now();
    let mut cold = vec![0.0f64; d];
    for k in 0..per {
        let order = permutation(config.seed, input.concept, k, d, config.sampling);
        let masks: Vec<Vec<bool>> = (0..=d)
            .map(|t| {
                let mut mask = vec![false; d];
                for &n in &order[..t] {
                    mask[n as usize] = true;
                }
                mask
            })
            .collect();
        let values = engine.values(&masks).expect("cold fits");
        for (t, &n) in order.iter().enumerate() {
            cold[n as usize] += (values[t + 1] - values[t]) / per as f64;
        }
    }
    let batched = start.elapsed().as_secs_f64() / per as f64;
    let gap = sums
        .estimates()
        .iter()
        .zip(&cold)
        .map(|(e, c)| (e.phi - c).abs())
        .fold(0.0f64, f64::max);
    let scale = cold.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    println!(
        "Shapley retrain mode ({device:?}, f64, at most {} Newton steps per fit): D = {d}, N = {} (fit and evaluation), {per} permutations, same game and permutations:",
        config.retrain.iterations, o.retrain_n,
    );
    println!(
        "  path (warm starts, re-used Hessians): {path:.3} s per permutation (+ {setup:.2} s once: the empty and full fits)"
    );
    println!(
        "  cold fits (every coalition from the start, batched): {batched:.3} s per permutation"
    );
    println!(
        "  path / cold time: {:.3} ({:.1}x faster); max |Δφ| = {gap:.2e} (max |φ| {scale:.2e}); peak RSS {:.0} MiB",
        path / batched,
        batched / path,
        peak_rss_mib()
    );
}
