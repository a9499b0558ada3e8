//! `deploy/` and `docs/operators-guide.md`, checked offline against the code:
//!
//! - every kustomization renders (`kubectl kustomize`) and validates against the bundled
//!   Kubernetes schemas (`kubernetes-validate --strict`, no cluster, no network);
//! - the manifests have the shape the design needs: one coordinator on its volume, GPU
//!   workers that drain before they are killed, a submit Job that never retries, every file a
//!   flag names mounted from a Secret or ConfigMap that has it, no credential in the tree;
//! - every flag a manifest, the guide or deploy/README.md passes to `hint` / `hint-worker`
//!   is one their `--help` lists, so the documents cannot drift from the binaries;
//! - the ImageNet overlay's job spec passes `hint check` with its URLs pointed at local files;
//! - the manifests' own command lines — the coordinator's, a worker's, the probe, the submit
//!   Job's script — run a job over TLS with a token on this machine, with the certificates
//!   the guide's commands make, and the submit Job refuses to submit the same spec twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{example, failed, hint, hint_bin, python, root, succeeded};

/// The overlay the tests know in detail.
const OVERLAY: &str = "overlays/imagenet-vgg19-8gpu";
/// The marker before the guide's certificate block, which these tests run.
const SECRETS_BLOCK: &str = "<!-- deploy.rs runs this block -->";
/// The oldest and newest Kubernetes versions the manifests are validated against.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

// ---------------------------------------------------------------------------------------
// Tools

/// `kubectl`, which renders kustomizations with its built-in kustomize (v5: the manifests
/// use `labels`, `replicas` and per-generator options).
fn kubectl() -> Command {
    let version = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let Some(version) = version else {
        panic!(
            "kubectl is missing: run scripts/bootstrap.sh (it installs Debian's kubernetes-client)"
        );
    };
    let kustomize_major = version
        .lines()
        .find_map(|l| l.strip_prefix("Kustomize Version: v"))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    assert!(
        kustomize_major.is_some_and(|major| major >= 5),
        "kubectl's kustomize is older than v5 (kubectl >= 1.27 has v5; Debian bookworm's \
         kubernetes-client is 1.20):\n{version}"
    );
    Command::new("kubectl")
}

/// The project's offline validator of Kubernetes manifests.
fn kubernetes_validate() -> PathBuf {
    let bin = root().join(".venv/bin/kubernetes-validate");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/bootstrap.sh",
        bin.display()
    );
    bin
}

fn hint_worker_bin() -> PathBuf {
    let bin = hint_bin().with_file_name("hint-worker");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build -p hint-worker`",
        bin.display()
    );
    bin
}

// ---------------------------------------------------------------------------------------
// The deploy tree, with secrets made by the guide's commands

/// A copy of `deploy/kubernetes` in a temporary directory, its overlay's `secrets/` filled
/// by running the guide's certificate block (so no real credential is ever read).
struct Deploy {
    dir: tempfile::TempDir,
}

impl Deploy {
    fn new() -> Deploy {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(
            &root().join("deploy/kubernetes"),
            &dir.path().join("deploy/kubernetes"),
        );
        let block = guide_block(SECRETS_BLOCK);
        let output = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &block])
            .current_dir(dir.path())
            .output()
            .expect("starting bash");
        assert!(
            output.status.success(),
            "the guide's certificate block failed (is openssl installed?):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Deploy { dir }
    }

    fn kubernetes(&self) -> PathBuf {
        self.dir.path().join("deploy/kubernetes")
    }

    /// A file the guide's block wrote into the overlay's `secrets/`.
    fn secret_file(&self, name: &str) -> PathBuf {
        self.kubernetes().join(OVERLAY).join("secrets").join(name)
    }

    /// Every directory with a kustomization, relative to `deploy/kubernetes`.
    fn kustomizations(&self) -> Vec<String> {
        let base = self.kubernetes();
        let mut found = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.file_name().unwrap() == "kustomization.yaml" {
                    let rel = dir.strip_prefix(&base).unwrap();
                    found.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    fn render(&self, kustomization: &str) -> Rendered {
        render(&self.kubernetes().join(kustomization))
    }
}

/// Copies `from` to `to`, leaving out whatever an operator put in a `secrets/` directory.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_dir() {
            copy_tree(&path, &to.join(name));
        } else {
            let in_secrets = from.file_name().is_some_and(|n| n == "secrets");
            if !in_secrets || name == "README.md" || name == ".gitignore" {
                fs::copy(&path, to.join(name)).unwrap();
            }
        }
    }
}

/// The guide.
fn guide() -> String {
    fs::read_to_string(root().join("docs/operators-guide.md")).expect("docs/operators-guide.md")
}

/// The code block right after `marker` in the guide.
fn guide_block(marker: &str) -> String {
    let text = guide();
    let after = &text[text.find(marker).expect("the guide's marker")..];
    let (_, blocks) = markdown_code(after);
    blocks
        .into_iter()
        .next()
        .expect("a code block after the marker")
}

/// A kustomization rendered: the YAML, and its documents as JSON.
struct Rendered {
    yaml: String,
    docs: Vec<Value>,
}

fn render(dir: &Path) -> Rendered {
    let output = kubectl()
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("starting kubectl");
    let yaml = succeeded(&output, &format!("kubectl kustomize {}", dir.display()));
    Rendered {
        docs: yaml_documents(&yaml),
        yaml,
    }
}

/// YAML documents as JSON values, read by PyYAML (the validator's own dependency).
fn yaml_documents(yaml: &str) -> Vec<Value> {
    let mut child = Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml\n\
             json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let json = succeeded(&output, "reading the rendered YAML");
    match serde_json::from_str(&json).unwrap() {
        Value::Array(docs) => docs,
        other => panic!("not a list of documents: {other}"),
    }
}

impl Rendered {
    fn find(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
    }

    fn kinds(&self) -> BTreeMap<String, usize> {
        let mut kinds = BTreeMap::new();
        for doc in &self.docs {
            *kinds.entry(text(&doc["kind"])).or_insert(0) += 1;
        }
        kinds
    }

    /// The pod templates: (owner, pod spec).
    fn pods(&self) -> Vec<(String, &Value)> {
        self.docs
            .iter()
            .filter(|d| !d["spec"]["template"]["spec"].is_null())
            .map(|d| {
                let owner = format!("{}/{}", text(&d["kind"]), text(&d["metadata"]["name"]));
                (owner, &d["spec"]["template"]["spec"])
            })
            .collect()
    }

    /// The data of a Secret (decoded) or a ConfigMap, by key.
    fn data(&self, kind: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
        let doc = self.find(kind, name);
        let mut data = BTreeMap::new();
        if let Some(map) = doc["data"].as_object() {
            for (key, value) in map {
                let bytes = if kind == "Secret" {
                    base64(value.as_str().unwrap())
                } else {
                    value.as_str().unwrap().as_bytes().to_vec()
                };
                data.insert(key.clone(), bytes);
            }
        }
        data
    }
}

fn text(value: &Value) -> String {
    value.as_str().map(String::from).unwrap_or_default()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default()
}

/// Standard base64 (a Secret's data).
fn base64(encoded: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let digits: Vec<u8> = encoded
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * k);
        }
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The value of `--flag=value` in an argument list.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    args.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(String::from))
}

/// A container's full command line: its command, or the image's entrypoint (`hint`), then
/// its arguments.
fn command_line(container: &Value) -> Vec<String> {
    let mut argv = strings(&container["command"]);
    if argv.is_empty() {
        argv.push("hint".into());
    }
    argv.extend(strings(&container["args"]));
    argv
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env_value(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| text(&e["value"]))
}

// ---------------------------------------------------------------------------------------
// Command lines in shell text and in manifests

/// One `hint` / `hint-worker` command: the binary, its subcommand, the flags it passes.
#[derive(Debug)]
struct Invocation {
    bin: String,
    sub: Option<String>,
    flags: Vec<String>,
    origin: String,
}

/// Markdown's fenced code blocks, and the text outside them.
fn markdown_code(markdown: &str) -> (String, Vec<String>) {
    let mut prose = String::new();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some(String::new()),
            }
        } else if let Some(block) = &mut current {
            block.push_str(line);
            block.push('\n');
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    (prose, blocks)
}

/// The `hint` and `hint-worker` commands of a shell text: lines joined at a trailing `\`,
/// comments dropped, split into simple commands at `|`, `;`, `&&`, `$(`…; a command word is
/// the first word (after `VAR=value`s and `if`, `then`, `exec`…) or the word after `--`
/// (`kubectl exec … -- hint status …`).
fn shell_invocations(script: &str, origin: &str) -> Vec<Invocation> {
    let mut joined = String::new();
    for line in script.lines() {
        let line = match line.find(" #") {
            _ if line.trim_start().starts_with('#') => "",
            Some(at) => &line[..at],
            None => line,
        };
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
            }
            None => {
                joined.push_str(line);
                joined.push('\n');
            }
        }
    }
    let separated = joined
        .replace("$(", "\n")
        .replace("&&", "\n")
        .replace("||", "\n")
        .replace(['|', ';', '&', ')', '`'], "\n");
    let mut found = Vec::new();
    for piece in separated.lines() {
        let words: Vec<String> = piece
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
            .map(String::from)
            .collect();
        let mut starts = Vec::new();
        let mut k = 0;
        while k < words.len() {
            let w = words[k].as_str();
            let assignment = w.contains('=') && w.starts_with(|c: char| c.is_ascii_uppercase());
            if assignment || ["if", "then", "else", "do", "exec", "time", "!"].contains(&w) {
                k += 1;
            } else {
                break;
            }
        }
        starts.push(k);
        starts.extend(
            words
                .iter()
                .enumerate()
                .filter(|(_, w)| *w == "--")
                .map(|(i, _)| i + 1),
        );
        for start in starts {
            if let Some(invocation) = invocation(&words[start.min(words.len())..], origin) {
                found.push(invocation);
            }
        }
    }
    found
}

/// The invocation an argument vector is, if its program is `hint` or `hint-worker`.
fn invocation(argv: &[String], origin: &str) -> Option<Invocation> {
    let program = argv.first()?;
    let bin = program.rsplit('/').next().unwrap();
    if bin != "hint" && bin != "hint-worker" {
        return None;
    }
    let mut rest = &argv[1..];
    let mut sub = None;
    if bin == "hint" {
        if let Some(first) = rest.first().filter(|w| !w.starts_with('-')) {
            sub = Some(first.clone());
            rest = &rest[1..];
        }
    }
    let flags = rest
        .iter()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split('=').next().unwrap().to_string())
        .collect();
    Some(Invocation {
        bin: bin.to_string(),
        sub,
        flags,
        origin: origin.to_string(),
    })
}

/// The invocations in a Markdown file: its code blocks, and inline code that starts with
/// `hint ` or `hint-worker ` (`hint status`, `hint-worker --coordinator URL`).
fn markdown_invocations(markdown: &str, origin: &str) -> Vec<Invocation> {
    let (prose, blocks) = markdown_code(markdown);
    let mut found: Vec<Invocation> = blocks
        .iter()
        .flat_map(|block| shell_invocations(block, origin))
        .collect();
    for span in prose.split('`').skip(1).step_by(2) {
        let words: Vec<String> = span.split_whitespace().map(String::from).collect();
        let named = words
            .first()
            .is_some_and(|w| w == "hint" || w == "hint-worker");
        let plain_sub = words.get(1).is_none_or(|w| {
            w.starts_with('-') || w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        });
        if named && words.len() > 1 && plain_sub {
            found.extend(invocation(&words, &format!("{origin} (inline)")));
        }
    }
    found
}

/// Every invocation in rendered manifests: containers' command lines and exec probes, and
/// the commands of `bash -c` scripts.
fn manifest_invocations(rendered: &Rendered, origin: &str) -> Vec<Invocation> {
    let mut found = Vec::new();
    for (owner, pod) in rendered.pods() {
        for container in pod["containers"].as_array().unwrap() {
            let mut lines = vec![command_line(container)];
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                let exec = strings(&container[probe]["exec"]["command"]);
                if !exec.is_empty() {
                    lines.push(exec);
                }
            }
            let where_ = format!("{origin}: {owner}");
            for argv in lines {
                let shell = argv
                    .first()
                    .is_some_and(|p| p.ends_with("bash") || p.ends_with("sh"));
                match argv.iter().position(|a| a == "-c") {
                    Some(at) if shell => {
                        found.extend(shell_invocations(&argv[at + 1], &where_));
                    }
                    _ => found.extend(invocation(&argv, &where_)),
                }
            }
        }
    }
    found
}

/// `--help` of a binary's subcommand: the flags it defines and the environment variables
/// it reads; an error when the subcommand does not exist.
struct Help {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

fn help(bin: &str, sub: Option<&str>) -> Result<Help, String> {
    let program = if bin == "hint" {
        hint_bin()
    } else {
        hint_worker_bin()
    };
    let mut command = Command::new(program);
    command.args(sub).arg("--help");
    let output = command.output().expect("starting the binary");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut flags = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        for word in line.split_whitespace() {
            if !word.starts_with('-') {
                break;
            }
            if let Some(flag) = word.trim_end_matches(',').strip_prefix("--") {
                flags.insert(format!("--{flag}"));
            }
        }
    }
    let env = text
        .split("[env: ")
        .skip(1)
        .map(|rest| rest.split('=').next().unwrap().to_string())
        .collect();
    Ok(Help { flags, env })
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn every_kustomization_renders_and_validates_offline() {
    let deploy = Deploy::new();
    let kustomizations = deploy.kustomizations();
    for expected in ["base", "base/submit", OVERLAY, &format!("{OVERLAY}/submit")] {
        assert!(
            kustomizations.iter().any(|k| k == expected),
            "no kustomization {expected} in {kustomizations:?}"
        );
    }
    let out = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for kustomization in &kustomizations {
        let rendered = deploy.render(kustomization);
        assert!(!rendered.docs.is_empty(), "{kustomization} renders nothing");
        let file = out
            .path()
            .join(format!("{}.yaml", kustomization.replace('/', "_")));
        fs::write(&file, &rendered.yaml).unwrap();
        files.push(file);
    }
    for version in KUBERNETES_VERSIONS {
        let output = Command::new(kubernetes_validate())
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(&files)
            .output()
            .expect("starting kubernetes-validate");
        assert!(
            output.status.success(),
            "the manifests do not validate against Kubernetes {version}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // The validator is not a rubber stamp: a misplaced key is refused.
    let broken = deploy
        .render(OVERLAY)
        .yaml
        .replacen("strategy:", "strategee:", 1);
    let file = out.path().join("broken.yaml");
    fs::write(&file, broken).unwrap();
    let output = Command::new(kubernetes_validate())
        .args(["--strict", "--quiet"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "kubernetes-validate accepted an unknown field"
    );
}

#[test]
fn the_manifests_have_the_shape_the_design_needs() {
    let deploy = Deploy::new();
    let base = deploy.render("base");
    let overlay = deploy.render(OVERLAY);
    let submit = deploy.render(&format!("{OVERLAY}/submit"));

    // What is deployed; the base holds no Secret (no placeholder credential to deploy).
    let kinds: BTreeMap<&str, usize> = [
        ("ConfigMap", 1),
        ("Deployment", 2),
        ("Namespace", 1),
        ("NetworkPolicy", 3),
        ("PersistentVolumeClaim", 1),
        ("PodDisruptionBudget", 1),
        ("Secret", 4),
        ("Service", 1),
        ("ServiceAccount", 1),
    ]
    .into_iter()
    .collect();
    let found = overlay.kinds();
    let found: BTreeMap<&str, usize> = found.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(found, kinds, "the overlay's objects");
    assert_eq!(
        submit.kinds().into_iter().collect::<Vec<_>>(),
        [("Job".to_string(), 1)]
    );
    assert!(
        !base.kinds().contains_key("Secret"),
        "the base defines a Secret"
    );
    // The overlay's secret files come from a directory git ignores, all but its README and
    // its .gitignore.
    let ignore = fs::read_to_string(
        root()
            .join("deploy/kubernetes")
            .join(OVERLAY)
            .join("secrets/.gitignore"),
    )
    .unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(rules, ["*", "!.gitignore", "!README.md"]);
    for doc in &base.docs {
        assert!(
            doc["metadata"]["namespace"].is_null(),
            "the base names a namespace: {doc}"
        );
    }
    for doc in overlay.docs.iter().chain(&submit.docs) {
        if doc["kind"] != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], "hint", "{}", doc["metadata"]);
        }
    }

    // The coordinator: one replica, Recreate, its --state on the PersistentVolumeClaim.
    let coordinator = overlay.find("Deployment", "hint-coordinator");
    assert_eq!(coordinator["spec"]["replicas"], 1);
    assert_eq!(coordinator["spec"]["strategy"]["type"], "Recreate");
    let pod = &coordinator["spec"]["template"]["spec"];
    let main = container(pod, "coordinator");
    let args = command_line(main);
    assert_eq!(args[..2], ["hint", "coordinator"]);
    let state = flag_value(&args, "--state").expect("--state");
    let mount = main["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == state.as_str())
        .expect("a volume at --state");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let claim = text(&volume["persistentVolumeClaim"]["claimName"]);
    overlay.find("PersistentVolumeClaim", &claim);
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(
            strings(&main[probe]["exec"]["command"])[..2],
            ["hint", "health"],
            "{probe}"
        );
    }

    // The Service: gRPC and metrics, on the container's named ports.
    let service = overlay.find("Service", "hint-coordinator");
    let ports: BTreeMap<String, (u64, String)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let target = text(&p["targetPort"]);
            (text(&p["name"]), (p["port"].as_u64().unwrap(), target))
        })
        .collect();
    assert_eq!(ports["grpc"].0, 50051);
    assert_eq!(ports["metrics"].0, 9464);
    let container_ports: BTreeMap<String, u64> = main["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (text(&p["name"]), p["containerPort"].as_u64().unwrap()))
        .collect();
    assert_eq!(container_ports[&ports["grpc"].1], 50051);
    assert_eq!(container_ports[&ports["metrics"].1], 9464);
    assert!(flag_value(&args, "--listen").unwrap().ends_with(":50051"));
    assert!(flag_value(&args, "--http-listen")
        .unwrap()
        .ends_with(":9464"));

    // Workers: 8 in the overlay, one GPU each, drained before they are killed, and they
    // dial the Service.
    let workers = overlay.find("Deployment", "hint-worker");
    assert_eq!(workers["spec"]["replicas"], 8);
    let pod = &workers["spec"]["template"]["spec"];
    let worker = container(pod, "worker");
    let gpus = &worker["resources"]["limits"]["nvidia.com/gpu"];
    assert!(gpus == 1 || gpus == "1", "nvidia.com/gpu: {gpus}");
    let args = command_line(worker);
    assert_eq!(args[0], "hint-worker");
    let drain: f64 = flag_value(&args, "--drain-seconds")
        .expect("--drain-seconds")
        .parse()
        .unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_f64().unwrap();
    assert!(
        grace > drain,
        "grace {grace} s is not longer than the drain {drain} s"
    );
    assert_eq!(
        flag_value(&args, "--coordinator").unwrap(),
        format!(
            "https://{}:{}",
            text(&service["metadata"]["name"]),
            ports["grpc"].0
        )
    );
    let cache = env_value(worker, "HINT_CACHE_DIR").expect("HINT_CACHE_DIR");
    let cache_mount = worker["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == cache.as_str())
        .expect("a volume at HINT_CACHE_DIR");
    let cache_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == cache_mount["name"])
        .unwrap();
    assert!(cache_volume["emptyDir"].is_object(), "{cache_volume}");
    // The cache evicts before the kubelet would evict the pod for outgrowing its volume,
    // and keeps the job's ~161 GB of region files (deploy/README.md).
    let bytes = |text: &str| hint_common::storage::parse_bytes(text).unwrap();
    let limit = bytes(&flag_value(&args, "--cache-limit").expect("--cache-limit"));
    let volume = bytes(&text(&cache_volume["emptyDir"]["sizeLimit"]));
    assert!(
        limit < volume && limit > 161_000_000_000,
        "cache limit {limit} B, volume {volume} B"
    );
    let pdb = overlay.find("PodDisruptionBudget", "hint-worker");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        workers["spec"]["selector"]["matchLabels"]
    );

    // The submit Job: never retried, kept after it finishes, sends the overlay's spec.
    let job = submit.find("Job", "hint-submit");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert!(job["spec"]["ttlSecondsAfterFinished"].is_null());
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(
        env_value(container(pod, "submit"), "HINT_COORDINATOR").unwrap(),
        format!("https://hint-coordinator:{}", ports["grpc"].0)
    );
    let spec = overlay.data("ConfigMap", "hint-job-spec");
    let file = fs::read(
        root()
            .join("deploy/kubernetes")
            .join(OVERLAY)
            .join("job.toml"),
    )
    .unwrap();
    assert_eq!(
        spec["job.toml"], file,
        "the ConfigMap is not the overlay's job.toml"
    );

    // Every pod: no API token, non-root, read-only root, no capabilities; every Secret and
    // ConfigMap it mounts exists, and every file a flag names is in one of them.
    let account = overlay.find("ServiceAccount", "hint");
    assert_eq!(account["automountServiceAccountToken"], false);
    let pods: Vec<(String, &Value)> = overlay.pods().into_iter().chain(submit.pods()).collect();
    assert_eq!(pods.len(), 3);
    for (owner, pod) in pods {
        assert_eq!(pod["serviceAccountName"], "hint", "{owner}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{owner}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{owner}");
        let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let volumes = pod["volumes"].as_array().unwrap();
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{owner}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{owner}");
            assert_eq!(
                strings(&security["capabilities"]["drop"]),
                ["ALL"],
                "{owner}"
            );
            for source in container["envFrom"].as_array().into_iter().flatten() {
                overlay.find("Secret", source["secretRef"]["name"].as_str().unwrap());
            }
            for mount in container["volumeMounts"].as_array().unwrap() {
                let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
                let keys = if let Some(name) = volume["secret"]["secretName"].as_str() {
                    overlay.data("Secret", name).into_keys().collect()
                } else if let Some(name) = volume["configMap"]["name"].as_str() {
                    overlay.data("ConfigMap", name).into_keys().collect()
                } else {
                    continue;
                };
                files.insert(text(&mount["mountPath"]), keys);
            }
            let mut lines = vec![command_line(container).join(" ")];
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                lines.push(strings(&container[probe]["exec"]["command"]).join(" "));
            }
            for word in lines
                .join(" ")
                .split(|c: char| c.is_whitespace() || "=\"'".contains(c))
            {
                if !word.starts_with("/etc/hint/") {
                    continue;
                }
                let (dir, key) = word.rsplit_once('/').unwrap();
                assert!(
                    files.get(dir).is_some_and(|keys| keys.contains(key)),
                    "{owner}: {word} is not a key of what is mounted at {dir} ({files:?})"
                );
            }
        }
    }

    // Who may talk to whom.
    let policy = overlay.find("NetworkPolicy", "hint-coordinator");
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    let rule_for = |port: u64| {
        ingress
            .iter()
            .find(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == port)
            })
            .unwrap_or_else(|| panic!("no ingress rule for {port}"))
    };
    let grpc_from = &rule_for(50051)["from"][0]["podSelector"]["matchExpressions"];
    assert!(grpc_from.to_string().contains("worker"), "{grpc_from}");
    assert_eq!(
        rule_for(9464)["from"][0]["namespaceSelector"]["matchLabels"]
            ["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let policy = overlay.find("NetworkPolicy", "hint-worker");
    assert!(strings(&policy["spec"]["policyTypes"]).contains(&"Ingress".to_string()));
    assert!(
        policy["spec"]["ingress"].is_null(),
        "workers accept no connection"
    );
    let egress = policy["spec"]["egress"].to_string();
    for port in ["50051", "53", "443"] {
        assert!(
            egress.contains(&format!("\"port\":{port}")),
            "worker egress to {port}: {egress}"
        );
    }
}

#[test]
fn every_flag_in_the_manifests_and_the_guide_is_in_the_binaries_help() {
    let deploy = Deploy::new();
    let mut invocations = Vec::new();
    for kustomization in deploy.kustomizations() {
        let rendered = deploy.render(&kustomization);
        invocations.extend(manifest_invocations(&rendered, &kustomization));
    }
    let from_manifests = invocations.len();
    // The submit Job's script is read too: its three commands.
    let script_subs: BTreeSet<&str> = invocations
        .iter()
        .filter(|i| i.origin.ends_with("Job/hint-submit"))
        .filter_map(|i| i.sub.as_deref())
        .collect();
    assert_eq!(
        script_subs,
        ["health", "status", "submit"].into_iter().collect(),
        "the submit Job's commands"
    );
    let guide_invocations = markdown_invocations(&guide(), "docs/operators-guide.md");
    let guide_subs: BTreeSet<String> = guide_invocations
        .iter()
        .filter_map(|i| i.sub.clone())
        .collect();
    let guide_flags: usize = guide_invocations.iter().map(|i| i.flags.len()).sum();
    invocations.extend(guide_invocations);
    let readme = fs::read_to_string(root().join("deploy/README.md")).unwrap();
    invocations.extend(markdown_invocations(&readme, "deploy/README.md"));

    // The extraction finds what is there (a broken parser would check nothing).
    assert!(from_manifests >= 6, "{invocations:#?}");
    assert!(
        guide_flags >= 20,
        "{guide_flags} flags in the guide's commands"
    );
    for sub in ["check", "submit", "status", "results", "cancel", "health"] {
        assert!(
            guide_subs.contains(sub),
            "the guide shows no `hint {sub}`: {guide_subs:?}"
        );
    }

    let mut helps: BTreeMap<(String, Option<String>), Result<Help, String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for i in &invocations {
        let help = helps
            .entry((i.bin.clone(), i.sub.clone()))
            .or_insert_with(|| help(&i.bin, i.sub.as_deref()));
        let command = format!("{} {}", i.bin, i.sub.as_deref().unwrap_or(""))
            .trim_end()
            .to_string();
        match help {
            Err(error) => {
                problems.push(format!("{}: `{command}` does not exist: {error}", i.origin))
            }
            Ok(help) => {
                for flag in &i.flags {
                    if !help.flags.contains(flag) {
                        problems.push(format!("{}: `{command}` has no {flag}", i.origin));
                    }
                }
            }
        }
    }

    // Environment variables the manifests set for hint: read by clap (listed in --help) or
    // by the code itself.
    let sources: String = ["common/src", "worker/src", "coordinator/src"]
        .iter()
        .flat_map(|dir| rust_files(&root().join(dir)))
        .map(|f| fs::read_to_string(f).unwrap())
        .collect();
    let all_help_env: BTreeSet<String> = helps
        .values()
        .filter_map(|h| h.as_ref().ok())
        .flat_map(|h| h.env.iter().cloned())
        .collect();
    for kustomization in deploy.kustomizations() {
        let rendered = deploy.render(&kustomization);
        for (owner, pod) in rendered.pods() {
            for container in pod["containers"].as_array().unwrap() {
                for env in container["env"].as_array().into_iter().flatten() {
                    let name = text(&env["name"]);
                    let known =
                        all_help_env.contains(&name) || sources.contains(&format!("\"{name}\""));
                    if name.starts_with("HINT_") && !known {
                        problems.push(format!(
                            "{kustomization}: {owner} sets {name}, which hint does not read"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "flags that drifted from the code:\n{}",
        problems.join("\n")
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_overlay_job_spec_passes_hint_check_with_its_urls_made_local() {
    let spec = fs::read_to_string(
        root()
            .join("deploy/kubernetes")
            .join(OVERLAY)
            .join("job.toml"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Every s3:// URL becomes a local path; inputs (names with an extension) exist, the
    // storage root does not need to.
    let mut local = String::new();
    let mut rest = spec.as_str();
    let mut urls = Vec::new();
    while let Some(at) = rest.find("\"s3://") {
        local.push_str(&rest[..at + 1]);
        let end = rest[at + 1..].find('"').unwrap() + at + 1;
        let url = &rest[at + 1..end];
        let path = dir.path().join(url.trim_start_matches("s3://"));
        if path.extension().is_some() {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "path,label\n").unwrap();
        }
        local.push_str(path.to_str().unwrap());
        urls.push(url.to_string());
        rest = &rest[end..];
    }
    local.push_str(rest);
    assert_eq!(urls.len(), 3, "weights, images and storage root: {urls:?}");
    let file = dir.path().join("job.toml");
    fs::write(&file, &local).unwrap();

    let summary = succeeded(&hint(&["check", file.to_str().unwrap()]), "hint check");
    assert!(summary.contains("valid"), "{summary}");
    let json = succeeded(
        &hint(&["check", file.to_str().unwrap(), "--json"]),
        "hint check --json",
    );
    let spec: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(spec["name"], "imagenet-vgg19-features30");
    assert_eq!(spec["model"]["architecture"], "vgg19");
    assert_eq!(spec["model"]["layer"], "features.30");
    assert_eq!(spec["data"]["hierarchy"]["source"], "wordnet");
    assert_eq!(spec["extract"]["activation_type"], "f16");
    assert!(!json.contains("s3://"), "a URL was left: {json}");
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Replaces the manifests' mount points (`/etc/hint/ca` …) by directories holding the
/// rendered Secrets' and ConfigMaps' files, as the kubelet would.
struct Mounts(Vec<(String, PathBuf)>);

impl Mounts {
    fn new(pods: &[&Value], rendered: &Rendered, dir: &Path) -> Mounts {
        let mut mounts = Vec::new();
        for pod in pods {
            let volumes = pod["volumes"].as_array().unwrap();
            for container in pod["containers"].as_array().unwrap() {
                for mount in container["volumeMounts"].as_array().unwrap() {
                    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
                    // Only Secrets and ConfigMaps: the other volumes are the processes'
                    // own directories, given by flags and variables of the test.
                    let data = if let Some(name) = volume["secret"]["secretName"].as_str() {
                        rendered.data("Secret", name)
                    } else if let Some(name) = volume["configMap"]["name"].as_str() {
                        rendered.data("ConfigMap", name)
                    } else {
                        continue;
                    };
                    let path = text(&mount["mountPath"]);
                    if mounts.iter().any(|(p, _)| *p == path) {
                        continue;
                    }
                    // A directory per mount whose name holds no mount path, so one
                    // replacement never feeds another.
                    let local = dir.join(format!("volume-{}", mounts.len()));
                    fs::create_dir_all(&local).unwrap();
                    for (key, bytes) in data {
                        fs::write(local.join(key), bytes).unwrap();
                    }
                    mounts.push((path, local));
                }
            }
        }
        Mounts(mounts)
    }

    fn apply(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (path, local) in &self.0 {
            text = text.replace(&format!("{path}/"), &format!("{}/", local.display()));
            text = text.replace(&format!("={path}"), &format!("={}", local.display()));
        }
        text
    }
}

/// The tiny job the submit Job's script sends in this test: the generated example images
/// and its seeded tiny CNN. Gradient × activation: at the tiny CNN's last layer, before
/// global pooling, the plain gradient is the same at every position (no region stands out).
fn tiny_job(dir: &Path, name: &str) -> String {
    example(dir, 16, 0);
    fs::write(
        dir.join("hierarchy.yaml"),
        "children:\n  shape: [disc, square, stripes]\n",
    )
    .unwrap();
    format!(
        "[job]\nname = \"{name}\"\n\n[model]\narchitecture = \"tiny_cnn\"\n\
         weights = \"{dir}/tiny_cnn.safetensors\"\nlayer = \"features.7\"\n\n[data]\n\
         images = \"{dir}/images\"\nhierarchy = \"{dir}/hierarchy.yaml\"\n\n\
         [extract]\nmethod = \"gradient_x_activation\"\n\n[shapley]\npermutations = 4\npermutations_per_task = 2\n\n[storage]\nroot = \"{dir}/runs\"\n",
        dir = dir.display()
    )
}

#[test]
fn the_manifests_command_lines_run_a_job_over_tls_with_a_token() {
    let deploy = Deploy::new();
    let overlay = deploy.render(OVERLAY);
    let submit = deploy.render(&format!("{OVERLAY}/submit"));
    let work = tempfile::tempdir().unwrap();

    // The ConfigMap the submit Job mounts holds the tiny job instead of ImageNet's.
    let spec = tiny_job(&work.path().join("world"), "submit-once");
    let mut overlay = overlay;
    for doc in &mut overlay.docs {
        if doc["kind"] == "ConfigMap" && doc["metadata"]["name"] == "hint-job-spec" {
            doc["data"]["job.toml"] = Value::String(spec.clone());
        }
    }
    let coordinator_pod =
        &overlay.find("Deployment", "hint-coordinator")["spec"]["template"]["spec"];
    let worker_pod = &overlay.find("Deployment", "hint-worker")["spec"]["template"]["spec"];
    let job_pod = &submit.find("Job", "hint-submit")["spec"]["template"]["spec"];
    let mounts = Mounts::new(
        &[coordinator_pod, worker_pod, job_pod],
        &overlay,
        &work.path().join("mounts"),
    );

    // The coordinator with the manifest's flags, on a free port of every interface (so the
    // exposure rule is judged as in the cluster), its state in a local directory.
    let main = container(coordinator_pod, "coordinator");
    let address_file = work.path().join("address");
    let state = work.path().join("state");
    let args: Vec<String> = command_line(main)[1..]
        .iter()
        .map(|a| match a.split_once('=') {
            Some(("--listen", _)) => "--listen=0.0.0.0:0".to_string(),
            Some(("--http-listen", _)) => "--http-listen=127.0.0.1:0".to_string(),
            Some(("--state", _)) => format!("--state={}", state.display()),
            _ => mounts.apply(a),
        })
        .collect();
    let _coordinator = Process(
        Command::new(hint_bin())
            .args(&args)
            .arg(format!("--address-file={}", address_file.display()))
            .env("HINT_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("starting hint coordinator"),
    );
    let start = Instant::now();
    let address = loop {
        if let Ok(address) = fs::read_to_string(&address_file) {
            break address;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the coordinator did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(address.starts_with("https://"), "{address}");
    let port = address.rsplit(':').next().unwrap().to_string();
    // Clients dial localhost here, not the Service: the certificate names the Service.
    let local_url = format!("https://localhost:{port}");

    // The probe, as the kubelet runs it.
    let probe: Vec<String> = strings(&main["readinessProbe"]["exec"]["command"])
        .iter()
        .map(|a| {
            mounts
                .apply(a)
                .replace("localhost:50051", &format!("localhost:{port}"))
        })
        .collect();
    let output = Command::new(hint_bin()).args(&probe[1..]).output().unwrap();
    assert_eq!(succeeded(&output, "the readiness probe").trim(), "SERVING");

    // The submit Job's script: it submits once …
    let script = mounts.apply(&strings(&container(job_pod, "submit")["command"])[2]);
    let bin_dir = hint_bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let run_script = || {
        Command::new("bash")
            .args(["-c", &script])
            .env("PATH", &path)
            .env("HINT_COORDINATOR", &local_url)
            .env("OMP_WAIT_POLICY", "passive")
            .output()
            .expect("starting bash")
    };
    let first = run_script();
    let job = succeeded(&first, "the submit Job's script")
        .trim()
        .to_string();
    assert!(job.starts_with("job-"), "{job}");
    // … and refuses a second time.
    let second = run_script();
    let refusal = failed(&second, "the submit Job's script, again");
    assert!(
        refusal.contains("already has a job named submit-once"),
        "{refusal}"
    );

    // A worker with the manifest's flags (on the CPU, dialling localhost) runs the job.
    let worker = container(worker_pod, "worker");
    let mut worker_args: Vec<String> = command_line(worker)[1..]
        .iter()
        .map(|a| match a.split_once('=') {
            Some(("--device", _)) => "--device=cpu".to_string(),
            Some(("--coordinator", _)) => format!("--coordinator={local_url}"),
            Some(("--decode-threads", _)) => "--decode-threads=1".to_string(),
            _ => mounts.apply(a),
        })
        .collect();
    worker_args.push("--tls-domain=hint-coordinator".into());
    let _worker = Process(
        Command::new(hint_worker_bin())
            .args(&worker_args)
            .env("HINT_WORKER_NAME", "deploy-test")
            .env("HINT_CACHE_DIR", work.path().join("cache"))
            .env("HINT_LOG", "warn")
            .env("OMP_WAIT_POLICY", "passive")
            .env("OMP_NUM_THREADS", "1")
            .spawn()
            .expect("starting hint-worker"),
    );
    let token = deploy.secret_file("token");
    let ca = deploy.secret_file("ca.crt");
    let start = Instant::now();
    loop {
        let output = hint(&[
            "status",
            &job,
            "--coordinator",
            &local_url,
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-domain",
            "hint-coordinator",
            "--token-file",
            token.to_str().unwrap(),
        ]);
        let status = succeeded(&output, "hint status");
        if status.contains("succeeded") {
            break;
        }
        assert!(
            !status.contains("failed") && start.elapsed() < Duration::from_secs(90),
            "the job did not succeed:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
