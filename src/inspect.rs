//! What a built image is: its binary's linkage (read from the ELF, never by running `file`/`ldd`), the Go modules embedded in it, and what the process does when started with no network.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::Duration;

use serde::Deserialize;

use crate::engine::{Engine, EngineError, ImageFacts};
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
        inspection.layer_contents = engine.read_saved_image(&image.id, |saved| saved_layer_contents(saved, &is_go_step)).await?;
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

#[derive(Deserialize)]
struct SavedConfig {
    #[serde(default)]
    history: Vec<SavedHistory>,
}

#[derive(Deserialize)]
struct SavedHistory {
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    empty_layer: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedManifest {
    config: String,
    layers: Vec<String>,
}

/// What the layers selected by their history entry hold, read from an image as `docker save` writes it: the config
/// (history, `empty_layer` marks entries with no layer), each layer's tar (`<id>/layer.tar`, or a link to an identical
/// one), and `manifest.json` giving the layers in order.
pub fn saved_layer_contents(saved: &mut dyn Read, wanted: &dyn Fn(&str) -> bool) -> std::io::Result<Vec<LayerContents>> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut layers: HashMap<String, LayerContents> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut configs: HashMap<String, SavedConfig> = HashMap::new();
    let mut manifest: Option<Vec<SavedManifest>> = None;
    for entry in tar::Archive::new(saved).entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        if path == "manifest.json" {
            manifest = Some(serde_json::from_reader(&mut entry).map_err(|e| invalid(format!("manifest.json: {e}")))?);
        } else if path.ends_with("/layer.tar") && kind.is_symlink() {
            // `../<id>/layer.tar`, relative to the link's own folder.
            let target = entry.link_name()?.map(|t| t.to_string_lossy().trim_start_matches("../").to_string()).unwrap_or_default();
            links.insert(path, target);
        } else if path.ends_with("/layer.tar") && kind.is_file() {
            layers.insert(path, summarize_layer(&mut entry)?);
        } else if path.ends_with(".json") && !path.contains('/') {
            configs.insert(path.clone(), serde_json::from_reader(&mut entry).map_err(|e| invalid(format!("{path}: {e}")))?);
        }
    }
    let manifest = manifest.and_then(|m| m.into_iter().next()).ok_or_else(|| invalid("no manifest.json".into()))?;
    let config = configs.get(&manifest.config).ok_or_else(|| invalid(format!("no config {}", manifest.config)))?;
    let made_layers: Vec<&SavedHistory> = config.history.iter().filter(|h| !h.empty_layer).collect();
    if made_layers.len() != manifest.layers.len() {
        return Err(invalid(format!("{} history entries made a layer but the image has {} layers", made_layers.len(), manifest.layers.len())));
    }
    let mut contents = Vec::new();
    for (history, path) in made_layers.into_iter().zip(&manifest.layers).filter(|(h, _)| wanted(&h.created_by)) {
        let path = links.get(path).unwrap_or(path);
        let layer = layers.get(path).ok_or_else(|| invalid(format!("the manifest names {path}, which the image does not hold")))?;
        contents.push(LayerContents { created_by: history.created_by.clone(), ..layer.clone() });
    }
    Ok(contents)
}

/// Counts one layer's regular files by what Go keeps in them.
fn summarize_layer(layer: &mut dyn Read) -> std::io::Result<LayerContents> {
    let mut c = LayerContents::default();
    let mut folders: BTreeMap<String, u64> = BTreeMap::new();
    for entry in tar::Archive::new(layer).entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let size = entry.header().size()?;
        c.files += 1;
        c.bytes += size;
        if path.contains("pkg/mod/") {
            c.module_cache_bytes += size;
        }
        if path.contains("go-build/") {
            c.build_cache_bytes += size;
            c.compiled_outputs += u64::from(path.ends_with("-d"));
        }
        c.package_archives += u64::from(path.ends_with(".a"));
        let folder: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).take(2).collect();
        *folders.entry(folder.join("/")).or_default() += size;
    }
    let mut largest: Vec<(String, u64)> = folders.into_iter().collect();
    largest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    largest.truncate(5);
    c.largest_folders = largest;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, *data).unwrap();
        }
        for (path, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, path, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_saved_image_tells_what_the_download_and_build_layers_hold() {
        let base = tar_of(&[("usr/bin/sh", &[0; 10])], &[]);
        let download = tar_of(&[("go/pkg/mod/cache/download/x/@v/v1.zip", &[0; 300]), ("go/pkg/mod/x@v1/a.go", &[0; 50]), ("root/.cache/go-build/README", &[0; 7])], &[]);
        let build = tar_of(&[("root/.cache/go-build/ab/ab12-d", &[0; 400]), ("root/.cache/go-build/ab/ab12-a", &[0; 8]), ("usr/local/bin/app", &[0; 90]), ("usr/lib/go/pkg/fmt.a", &[0; 20])], &[]);
        let config = br#"{"history":[{"created_by":"FROM base"},{"created_by":"ARG X","empty_layer":true},{"created_by":"RUN go mod download"},{"created_by":"RUN go build ."},{"created_by":"RUN go build . # again"}]}"#;
        let manifest = br#"[{"Config":"c0ffee.json","Layers":["l1/layer.tar","l2/layer.tar","l3/layer.tar","l4/layer.tar"]}]"#;
        let saved = tar_of(&[("c0ffee.json", config), ("l1/layer.tar", &base), ("l2/layer.tar", &download), ("l3/layer.tar", &build), ("manifest.json", manifest)], &[("l4/layer.tar", "../l3/layer.tar")]);
        let contents = saved_layer_contents(&mut saved.as_slice(), &is_go_step).unwrap();
        let names: Vec<&str> = contents.iter().map(|c| c.created_by.as_str()).collect();
        assert_eq!(names, ["RUN go mod download", "RUN go build .", "RUN go build . # again"], "the empty ARG entry shifts no layer");
        let (dl, build) = (&contents[0], &contents[1]);
        assert_eq!((dl.files, dl.bytes, dl.module_cache_bytes, dl.build_cache_bytes, dl.compiled_outputs, dl.package_archives), (3, 357, 350, 7, 0, 0));
        assert_eq!(dl.largest_folders[0], ("go/pkg".to_string(), 350));
        assert_eq!((build.build_cache_bytes, build.compiled_outputs, build.package_archives), (408, 1, 1));
        assert_eq!(contents[2].bytes, build.bytes, "a linked layer is read as its target");
        let broken = tar_of(&[("c0ffee.json", config), ("manifest.json", br#"[{"Config":"c0ffee.json","Layers":["l1/layer.tar"]}]"#)], &[]);
        let err = saved_layer_contents(&mut broken.as_slice(), &is_go_step).unwrap_err();
        assert!(err.to_string().contains("4 history entries made a layer but the image has 1"), "{err}");
    }

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
