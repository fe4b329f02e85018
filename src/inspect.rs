//! What a built image is: its binary's linkage (read from the ELF, never by running `file`/`ldd`), the Go modules embedded in it, and what the process does when started with no network.

use std::time::Duration;


use crate::engine::{Engine, EngineError, ImageFacts};
use crate::saved_image::saved_layer_contents;
pub use crate::results::{BinaryFacts, Inspection, LayerContents, LayerSize, Probe, RuntimeCheck};

/// Image label naming more files to read (space-separated paths): ELF binaries are inspected like the entrypoint, other files are kept as text.
pub const INSPECT_LABEL: &str = "io.layerbench.inspect";

/// Reads an ELF binary's linkage. `None` when the bytes are not an ELF file.
pub fn elf_facts(path: &str, bytes: &[u8]) -> Option<BinaryFacts> {
    let elf = goblin::elf::Elf::parse(bytes).ok()?;
    let interpreter = elf.interpreter.map(str::to_string);
    let needed: Vec<String> = elf.libraries.iter().map(|s| s.to_string()).collect();
    let linkage = if interpreter.is_none() && needed.is_empty() { "static" } else { "dynamic" };
    Some(BinaryFacts {
        path: path.to_string(),
        size_bytes: bytes.len() as u64,
        linkage: linkage.to_string(),
        interpreter,
        needed,
        go_modules: go_modules(bytes),
    })
}

/// The modules in a Go binary's embedded build info (`mod` and `dep` lines), as `path version`.
pub fn go_modules(bytes: &[u8]) -> Vec<String> {
    const START: [u8; 16] = [0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18, 0xe6];
    const END: [u8; 16] = [0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8, 0xf2];
    let Some(start) = find(bytes, &START) else {
        return Vec::new();
    };
    let body = &bytes[start + START.len()..];
    let Some(end) = find(body, &END) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&body[..end])
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            match f.next()? {
                "mod" | "dep" => Some(format!("{} {}", f.next()?, f.next()?)),
                _ => None,
            }
        })
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads a probe's run: passed when it exited with the expected code. Facts
/// the probe prints in the sample's self-test format are kept: `selftest:
/// running as uid N`, `selftest: write-binary allowed|denied`, `selftest:
/// write-etc allowed|denied`; a probe printing `selftest: ok` on some line
/// must also print it to pass when it prints any `selftest:` line.
pub fn read_probe(probe: &Probe, exit_code: i64, output: &str) -> RuntimeCheck {
    let after = |prefix: &str| output.lines().find_map(|l| l.strip_prefix(prefix).map(str::trim));
    let permission = |what: &str| after(&format!("selftest: write-{what} ")).map(|rest| rest.starts_with("allowed"));
    let mut shown: String = output.chars().take(2000).collect();
    if shown.len() < output.len() {
        shown.push_str("\n[...]");
    }
    let speaks_selftest = output.lines().any(|l| l.starts_with("selftest: "));
    let success_line = !speaks_selftest || output.lines().any(|l| l.trim() == "selftest: ok");
    RuntimeCheck {
        method: format!(
            "the image run with command {:?} (after its entrypoint, if any) in a container with no network, as the image's user; expected exit code {}",
            probe.command, probe.expected_exit
        ),
        command: probe.command.clone(),
        exit_code,
        expected_exit: probe.expected_exit,
        passed: exit_code == probe.expected_exit && success_line,
        uid: after("selftest: running as uid ").and_then(|u| u.parse().ok()),
        can_write_binary: permission("binary"),
        can_write_etc: permission("etc"),
        output: shown,
    }
}

/// What to inspect beyond the image's own facts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InspectOptions {
    /// The binary to read (default: the entrypoint, else the command's first word).
    pub binary: Option<String>,
    /// A runtime probe; none runs when absent.
    pub probe: Option<Probe>,
    /// Read what the layers of `go mod download` and `go build` steps hold (exports the image: seconds for a large one).
    pub layer_contents: bool,
}

/// The absolute path of the program the image starts: the entrypoint's first word, else the command's.
pub fn program_path(image: &ImageFacts) -> Option<&str> {
    let first = image.entrypoint.first().or_else(|| image.cmd.first())?;
    first.starts_with('/').then_some(first.as_str())
}

/// Inspects a built image: its layer sizes, the binary it starts (or the one
/// named), the files its `io.layerbench.inspect` label names, and the
/// configured probe. Never fails: an engine error or a probe that cannot run
/// is recorded in `error`, and what was learned before it is kept.
pub async fn inspect_image(engine: &Engine, image: &ImageFacts, options: &InspectOptions) -> Inspection {
    let mut inspection = Inspection::default();
    if let Err(e) = inspect_into(engine, image, options, &mut inspection).await {
        inspection.error = Some(e.to_string());
    }
    inspection
}

async fn inspect_into(engine: &Engine, image: &ImageFacts, options: &InspectOptions, inspection: &mut Inspection) -> Result<(), EngineError> {
    inspection.layer_sizes = engine
        .layer_sizes(&image.id)
        .await?
        .into_iter()
        .map(|(created_by, size_bytes)| LayerSize { created_by, size_bytes })
        .collect();
    if options.layer_contents && inspection.layer_sizes.iter().any(|l| l.size_bytes > 0 && is_go_step(&l.created_by)) {
        inspection.layer_contents = engine.read_saved_image(&image.id, |saved| saved_layer_contents(saved, &is_go_step)).await?.layers;
    }
    let read = |path: String| async move { engine.read_file_from_image(&image.id, &path).await.map(|b| (path, b)) };
    match options.binary.as_deref().or_else(|| program_path(image)) {
        Some(binary) => match read(binary.to_string()).await? {
            (path, Some(bytes)) => match elf_facts(&path, &bytes) {
                Some(f) => inspection.binary = Some(f),
                None => inspection.notes.push(format!("{path} is not an ELF binary")),
            },
            (path, None) => inspection.notes.push(format!("the binary {path} is not in the image")),
        },
        None => inspection.notes.push("the image starts no program named by an absolute path (entrypoint or command); name one with --inspect-binary".into()),
    }
    if let Some(paths) = image.labels.get(INSPECT_LABEL) {
        for p in paths.split_whitespace() {
            match read(p.to_string()).await? {
                (path, Some(bytes)) => match elf_facts(&path, &bytes) {
                    Some(f) => inspection.tools.push(f),
                    None => inspection.files.push((path, String::from_utf8_lossy(&bytes).chars().take(2000).collect())),
                },
                (path, None) => inspection.notes.push(format!("{path} (named by {INSPECT_LABEL}) is not in the image")),
            }
        }
    }
    if let Some(probe) = &options.probe {
        let command: Vec<&str> = probe.command.iter().map(String::as_str).collect();
        let timeout = Duration::from_secs(probe.timeout_seconds.max(1));
        let run = engine.run_to_completion(&image.id, &command, "none", timeout).await?;
        inspection.runtime = Some(read_probe(probe, run.exit_code, &run.output));
    }
    Ok(())
}

/// A history entry of a step that downloads modules or compiles: the layers whose contents tell what Go wrote.
fn is_go_step(created_by: &str) -> bool {
    created_by.contains("go mod download") || created_by.contains("go build")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selftest_lines_are_read() {
        let probe = Probe::selftest();
        let out = "selftest: version dev\nselftest: running as uid 65532\nselftest: write-binary denied (open /sample: permission denied)\nselftest: write-etc denied (open /etc/x: no such file or directory)\nselftest: ok\n";
        let r = read_probe(&probe, 0, out);
        assert!(r.passed);
        assert_eq!(r.uid, Some(65532));
        assert_eq!(r.can_write_binary, Some(false));
        assert_eq!(r.can_write_etc, Some(false));
        let r = read_probe(&probe, 1, "exec /sample: no such file or directory\n");
        assert!(!r.passed);
        assert_eq!(r.uid, None);
        let r = read_probe(&probe, 0, "selftest: version dev\nselftest: FAILED /healthz\n");
        assert!(!r.passed, "a self-test that does not print its success line fails");
        let custom = Probe { command: vec!["--check".into()], expected_exit: 3, timeout_seconds: 5 };
        assert!(read_probe(&custom, 3, "fine\n").passed);
        assert!(!read_probe(&custom, 0, "fine\n").passed);
    }

    #[test]
    fn build_info_modules_are_read_between_the_sentinels() {
        let mut bin = b"garbage".to_vec();
        bin.extend([0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18, 0xe6]);
        bin.extend(b"path\tgithub.com/BurntSushi/toml/cmd/tomlv\nmod\tgithub.com/BurntSushi/toml\tv1.2.0\th1:x=\ndep\tgolang.org/x/sys\tv0.3.0\th1:y=\n");
        bin.extend([0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8, 0xf2]);
        assert_eq!(go_modules(&bin), vec!["github.com/BurntSushi/toml v1.2.0", "golang.org/x/sys v0.3.0"]);
        assert!(go_modules(b"no build info").is_empty());
    }

    #[test]
    fn a_file_that_is_not_elf_has_no_facts() {
        assert!(elf_facts("/x", b"#!/bin/sh\n").is_none());
    }
}
