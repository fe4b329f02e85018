//! What a built image is: its binary's linkage (read from the ELF, never by running `file`/`ldd`), the Go modules embedded in it, and what the process does when started with no network.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineError, ImageFacts};

/// Image label naming more files to read (space-separated paths): ELF binaries are inspected like the entrypoint, other files are kept as text.
pub const INSPECT_LABEL: &str = "io.layerbench.inspect";

/// Everything inspection learned about one image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Inspection {
    /// The entrypoint binary.
    pub binary: Option<BinaryFacts>,
    /// Binaries named by the image's `io.layerbench.inspect` label.
    pub tools: Vec<BinaryFacts>,
    /// Other files named by that label: path and text (at most 2,000 characters).
    #[serde(default)]
    pub files: Vec<(String, String)>,
    pub runtime: Option<RuntimeCheck>,
    /// The image's history, oldest first: what created each entry and its size in bytes.
    #[serde(default)]
    pub layer_sizes: Vec<LayerSize>,
    /// Problems met while inspecting (a missing file, an unreadable ELF).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerSize {
    pub created_by: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BinaryFacts {
    pub path: String,
    pub size_bytes: u64,
    /// `static` (no program interpreter, no needed libraries) or `dynamic`.
    pub linkage: String,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    /// `path version` of the main module and every dependency, from the binary's Go build info.
    pub go_modules: Vec<String>,
}

/// The sample's self-test run in a container with no network, as the image's user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeCheck {
    /// How the facts were gathered.
    pub method: String,
    pub exit_code: i64,
    /// The self-test printed its success line.
    pub selftest_passed: bool,
    pub uid: Option<u32>,
    pub can_write_binary: Option<bool>,
    pub can_write_etc: Option<bool>,
    /// The container's output (at most 2,000 characters).
    pub output: String,
}

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

/// Reads the self-test's report lines.
pub fn parse_selftest(exit_code: i64, output: &str) -> RuntimeCheck {
    let after = |prefix: &str| output.lines().find_map(|l| l.strip_prefix(prefix).map(str::trim));
    let permission = |what: &str| {
        after(&format!("selftest: write-{what} ")).map(|rest| rest.starts_with("allowed"))
    };
    let mut shown: String = output.chars().take(2000).collect();
    if shown.len() < output.len() {
        shown.push_str("\n[...]");
    }
    RuntimeCheck {
        method: "the image's entrypoint run with `selftest` in a container with no network; the process reports its uid and tries to open its own binary for writing and to create a file in /etc".into(),
        exit_code,
        selftest_passed: exit_code == 0 && output.lines().any(|l| l.trim() == "selftest: ok"),
        uid: after("selftest: running as uid ").and_then(|u| u.parse().ok()),
        can_write_binary: permission("binary"),
        can_write_etc: permission("etc"),
        output: shown,
    }
}

/// Inspects a built image: reads the entrypoint binary and any labelled
/// tools out of it, then runs the self-test. Failures to start are recorded
/// outcomes, not errors; only engine failures are errors.
pub async fn inspect_image(engine: &Engine, image: &ImageFacts) -> Result<Inspection, EngineError> {
    let mut inspection = Inspection {
        layer_sizes: engine
            .layer_sizes(&image.id)
            .await?
            .into_iter()
            .map(|(created_by, size_bytes)| LayerSize { created_by, size_bytes })
            .collect(),
        ..Inspection::default()
    };
    let read = |path: String| async move { engine.read_file_from_image(&image.id, &path).await.map(|b| (path, b)) };
    if let Some(entry) = image.entrypoint.first().filter(|p| p.starts_with('/')) {
        match read(entry.clone()).await? {
            (path, Some(bytes)) => match elf_facts(&path, &bytes) {
                Some(f) => inspection.binary = Some(f),
                None => inspection.notes.push(format!("{path} is not an ELF binary")),
            },
            (path, None) => inspection.notes.push(format!("the entrypoint {path} is not in the image")),
        }
    } else {
        inspection.notes.push("the image has no absolute entrypoint path to inspect".into());
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
    let run = engine.run_to_completion(&image.id, &["selftest"], "none", Duration::from_secs(60)).await?;
    inspection.runtime = Some(parse_selftest(run.exit_code, &run.output));
    Ok(inspection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selftest_lines_are_read() {
        let out = "selftest: version dev\nselftest: running as uid 65532\nselftest: write-binary denied (open /sample: permission denied)\nselftest: write-etc denied (open /etc/x: no such file or directory)\nselftest: ok\n";
        let r = parse_selftest(0, out);
        assert!(r.selftest_passed);
        assert_eq!(r.uid, Some(65532));
        assert_eq!(r.can_write_binary, Some(false));
        assert_eq!(r.can_write_etc, Some(false));
        let r = parse_selftest(1, "exec /sample: no such file or directory\n");
        assert!(!r.selftest_passed);
        assert_eq!(r.uid, None);
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
