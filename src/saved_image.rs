//! Reads an image as the engine exports it (`GET /images/{name}/get`, what `docker save` writes), streamed and
//! never whole in memory: the Docker archive of engines before 25 (`<id>/layer.tar`, `<id>.json`, `manifest.json`)
//! and the OCI image layout of Docker 25 and later (`oci-layout`, `index.json`, `blobs/sha256/<hex>`, and a
//! `manifest.json` naming blobs), with layers plain or gzip-compressed (the containerd image store keeps them so).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use serde::Deserialize;

use crate::results::LayerContents;

/// How many bytes of a blob are read to tell a JSON document, a gzip stream and a tar apart.
const SNIFF: usize = 512;

/// The largest JSON blob kept (configs and OCI manifests are kilobytes; a layer is never JSON).
const MAX_JSON: u64 = 16 << 20;

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

/// One image of `manifest.json` (both formats write it; in the OCI layout its paths name blobs).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedManifest {
    config: String,
    layers: Vec<String>,
}

/// An OCI index (`index.json`, or a blob) or image manifest: only the fields that lead to the config and layers.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciDocument {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
    #[serde(default)]
    config: Option<OciDescriptor>,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    digest: String,
}

/// The path of a blob in the OCI layout, from its digest (`sha256:<hex>` → `blobs/sha256/<hex>`).
fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// The format an exported image came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedFormat {
    /// Docker's own archive (engines before 25): `<id>/layer.tar`, `<id>.json`, `manifest.json`.
    DockerArchive,
    /// The OCI image layout (Docker 25 and later): `index.json`, `blobs/sha256/…`.
    OciLayout,
}

/// What was read of an exported image: its format and the contents of the layers asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedImage {
    pub format: SavedFormat,
    pub layers: Vec<LayerContents>,
}

/// What one entry of the export turned out to be.
enum Blob {
    Layer(LayerContents),
    Json(Vec<u8>),
    /// Neither a tar nor JSON (a compression this reader does not know, named), or empty.
    Other(Option<&'static str>),
}

/// What the layers selected by their history entry hold (`wanted` sees each layer's `created_by`), read from an
/// exported image in either format. Layers are matched to history entries in order, skipping `empty_layer` ones.
pub fn saved_layer_contents(saved: &mut dyn Read, wanted: &dyn Fn(&str) -> bool) -> std::io::Result<SavedImage> {
    let mut layers: HashMap<String, LayerContents> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut json: HashMap<String, Vec<u8>> = HashMap::new();
    let mut unreadable: HashMap<String, &'static str> = HashMap::new();
    let mut manifest: Option<Vec<SavedManifest>> = None;
    let mut oci = false;
    for entry in tar::Archive::new(saved).entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_string();
        let kind = entry.header().entry_type();
        if path == "manifest.json" {
            manifest = Some(serde_json::from_reader(&mut entry).map_err(|e| invalid(format!("manifest.json: {e}")))?);
        } else if path == "index.json" || path == "oci-layout" {
            oci = true;
            if path == "index.json" {
                json.insert(path, read_json(&mut entry, "index.json")?);
            }
        } else if path.ends_with("/layer.tar") && kind.is_symlink() {
            // `../<id>/layer.tar`, relative to the link's own folder.
            let target = entry.link_name()?.map(|t| t.to_string_lossy().trim_start_matches("../").to_string()).unwrap_or_default();
            links.insert(path, target);
        } else if path.ends_with("/layer.tar") && kind.is_file() {
            layers.insert(path, summarize_layer(&mut entry)?);
        } else if path.starts_with("blobs/") && kind.is_file() {
            oci = true;
            match read_blob(&mut entry, &path)? {
                Blob::Layer(c) => {
                    layers.insert(path, c);
                }
                Blob::Json(bytes) => {
                    json.insert(path, bytes);
                }
                Blob::Other(Some(compression)) => {
                    unreadable.insert(path, compression);
                }
                Blob::Other(None) => {}
            }
        } else if path.ends_with(".json") && !path.contains('/') && kind.is_file() {
            json.insert(path.clone(), read_json(&mut entry, &path)?);
        }
    }
    let format = if oci { SavedFormat::OciLayout } else { SavedFormat::DockerArchive };
    let (config_path, layer_paths) = match manifest.and_then(|m| m.into_iter().next()) {
        Some(m) => (m.config, m.layers),
        None if oci => oci_image(&json)?,
        None => return Err(invalid("no manifest.json".into())),
    };
    let config: SavedConfig = match json.get(&config_path) {
        Some(bytes) => serde_json::from_slice(bytes).map_err(|e| invalid(format!("the config {config_path}: {e}")))?,
        None => return Err(invalid(format!("no config {config_path}"))),
    };
    let made_layers: Vec<&SavedHistory> = config.history.iter().filter(|h| !h.empty_layer).collect();
    if made_layers.len() != layer_paths.len() {
        return Err(invalid(format!("{} history entries made a layer but the image has {} layers", made_layers.len(), layer_paths.len())));
    }
    let mut contents = Vec::new();
    for (history, path) in made_layers.into_iter().zip(&layer_paths).filter(|(h, _)| wanted(&h.created_by)) {
        let path = links.get(path).unwrap_or(path);
        let layer = match (layers.get(path), unreadable.get(path)) {
            (Some(layer), _) => layer,
            (None, Some(compression)) => return Err(invalid(format!("the layer {path} is {compression}-compressed, which layerbench cannot read"))),
            (None, None) => return Err(invalid(format!("the manifest names {path}, which the image does not hold"))),
        };
        contents.push(LayerContents { created_by: history.created_by.clone(), ..layer.clone() });
    }
    Ok(SavedImage { format, layers: contents })
}

/// The config and layer paths of the image an OCI layout holds without a `manifest.json`: `index.json` → (an index
/// →) the first image manifest → its config and layers.
fn oci_image(json: &HashMap<String, Vec<u8>>) -> std::io::Result<(String, Vec<String>)> {
    let parse = |path: &str| -> std::io::Result<OciDocument> {
        let bytes = json.get(path).ok_or_else(|| invalid(format!("no {path}")))?;
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("{path}: {e}")))
    };
    let mut document = parse("index.json")?;
    // An index may name another index (one per platform): follow the first entry until a manifest.
    for _ in 0..4 {
        if let Some(config) = &document.config {
            return Ok((blob_path(&config.digest), document.layers.iter().map(|l| blob_path(&l.digest)).collect()));
        }
        let first = document.manifests.first().ok_or_else(|| invalid("an OCI index names no manifest".into()))?;
        document = parse(&blob_path(&first.digest))?;
    }
    Err(invalid("OCI indexes nested more than four deep".into()))
}

fn read_json(entry: &mut dyn Read, path: &str) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry.take(MAX_JSON + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(invalid(format!("{path} is over {} MB: not a config", MAX_JSON >> 20)));
    }
    Ok(bytes)
}

/// Tells a blob's kind from its first bytes and reads it: a tar (plain or gzip) is summarized as it streams, JSON is
/// kept, anything else is named and skipped.
fn read_blob(entry: &mut dyn Read, path: &str) -> std::io::Result<Blob> {
    let mut head = Vec::with_capacity(SNIFF);
    entry.take(SNIFF as u64).read_to_end(&mut head)?;
    let mut whole = std::io::Cursor::new(head.clone()).chain(entry);
    if head.is_empty() {
        return Ok(Blob::Other(None));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return summarize_layer(&mut flate2::read::GzDecoder::new(whole)).map(Blob::Layer);
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Blob::Other(Some("zstd")));
    }
    if is_tar(&head) {
        return summarize_layer(&mut whole).map(Blob::Layer);
    }
    if head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return read_json(&mut whole, path).map(Blob::Json);
    }
    Ok(Blob::Other(None))
}

/// Whether a block starts a tar archive: the `ustar` magic at offset 257, or an all-zero block (an empty layer).
fn is_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar".as_slice()) || (head.len() == SNIFF && head.iter().all(|b| *b == 0))
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
    use sha2::Digest;

    fn is_go_step(created_by: &str) -> bool {
        created_by.contains("go mod download") || created_by.contains("go build")
    }

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

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, bytes).unwrap();
        e.finish().unwrap()
    }

    fn digest(bytes: &[u8]) -> String {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        format!("sha256:{hex}")
    }

    /// Four layers (base, download, build, the build's layer again) and a config with an empty ARG entry.
    fn layers_and_config() -> (Vec<Vec<u8>>, &'static [u8]) {
        let base = tar_of(&[("usr/bin/sh", &[0; 10])], &[]);
        let download = tar_of(&[("go/pkg/mod/cache/download/x/@v/v1.zip", &[0; 300]), ("go/pkg/mod/x@v1/a.go", &[0; 50]), ("root/.cache/go-build/README", &[0; 7])], &[]);
        let build = tar_of(&[("root/.cache/go-build/ab/ab12-d", &[0; 400]), ("root/.cache/go-build/ab/ab12-a", &[0; 8]), ("usr/local/bin/app", &[0; 90]), ("usr/lib/go/pkg/fmt.a", &[0; 20])], &[]);
        let config = br#"{"history":[{"created_by":"FROM base"},{"created_by":"ARG X","empty_layer":true},{"created_by":"RUN go mod download"},{"created_by":"RUN go build ."},{"created_by":"RUN go build . # again"}]}"#;
        (vec![base, download, build], config)
    }

    fn assert_go_layers(contents: &[LayerContents]) {
        let names: Vec<&str> = contents.iter().map(|c| c.created_by.as_str()).collect();
        assert_eq!(names, ["RUN go mod download", "RUN go build .", "RUN go build . # again"], "the empty ARG entry shifts no layer");
        let (dl, build) = (&contents[0], &contents[1]);
        assert_eq!((dl.files, dl.bytes, dl.module_cache_bytes, dl.build_cache_bytes, dl.compiled_outputs, dl.package_archives), (3, 357, 350, 7, 0, 0));
        assert_eq!(dl.largest_folders[0], ("go/pkg".to_string(), 350));
        assert_eq!((build.build_cache_bytes, build.compiled_outputs, build.package_archives), (408, 1, 1));
        assert_eq!(contents[2].bytes, build.bytes, "a repeated layer is read as the one it repeats");
    }

    #[test]
    fn a_docker_archive_tells_what_the_download_and_build_layers_hold() {
        let (layers, config) = layers_and_config();
        let manifest = br#"[{"Config":"c0ffee.json","Layers":["l1/layer.tar","l2/layer.tar","l3/layer.tar","l4/layer.tar"]}]"#;
        let saved = tar_of(&[("c0ffee.json", config), ("l1/layer.tar", &layers[0]), ("l2/layer.tar", &layers[1]), ("l3/layer.tar", &layers[2]), ("manifest.json", manifest)], &[("l4/layer.tar", "../l3/layer.tar")]);
        let image = saved_layer_contents(&mut saved.as_slice(), &is_go_step).unwrap();
        assert_eq!(image.format, SavedFormat::DockerArchive);
        assert_go_layers(&image.layers);
        let broken = tar_of(&[("c0ffee.json", config), ("manifest.json", br#"[{"Config":"c0ffee.json","Layers":["l1/layer.tar"]}]"#)], &[]);
        let err = saved_layer_contents(&mut broken.as_slice(), &is_go_step).unwrap_err();
        assert!(err.to_string().contains("4 history entries made a layer but the image has 1"), "{err}");
    }

    /// The OCI layout as Docker 25+ writes it: blobs (config, layers, the image manifest) before `index.json`,
    /// `manifest.json` and `oci-layout`; `compress` gzips the layers as the containerd image store keeps them.
    fn oci_export(compress: bool, with_docker_manifest: bool) -> Vec<u8> {
        let (layers, config) = layers_and_config();
        let layers: Vec<Vec<u8>> = layers.iter().map(|l| if compress { gzip(l) } else { l.clone() }).collect();
        let layer_digests: Vec<String> = [0, 1, 2, 2].iter().map(|i| digest(&layers[*i])).collect();
        let descriptor = |d: &str| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":1}}"#);
        let image_manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[{}]}}"#,
            digest(config),
            layer_digests.iter().map(|d| descriptor(d)).collect::<Vec<_>>().join(",")
        );
        let index = format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1}}]}}"#, digest(image_manifest.as_bytes()));
        let docker_manifest = format!(
            r#"[{{"Config":"{}","RepoTags":null,"Layers":[{}],"LayerSources":{{}}}}]"#,
            blob_path(&digest(config)),
            layer_digests.iter().map(|d| format!("\"{}\"", blob_path(d))).collect::<Vec<_>>().join(",")
        );
        let mut files: Vec<(String, Vec<u8>)> = layers.iter().map(|l| (blob_path(&digest(l)), l.clone())).collect();
        files.push((blob_path(&digest(config)), config.to_vec()));
        files.push((blob_path(&digest(image_manifest.as_bytes())), image_manifest.into_bytes()));
        files.push(("index.json".into(), index.into_bytes()));
        if with_docker_manifest {
            files.push(("manifest.json".into(), docker_manifest.into_bytes()));
        }
        files.push(("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
        let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        tar_of(&borrowed, &[])
    }

    #[test]
    fn an_oci_layout_tells_what_the_download_and_build_layers_hold() {
        for (compress, docker_manifest) in [(false, true), (true, true), (false, false), (true, false)] {
            let saved = oci_export(compress, docker_manifest);
            let image = saved_layer_contents(&mut saved.as_slice(), &is_go_step).unwrap_or_else(|e| panic!("gzip {compress}, manifest.json {docker_manifest}: {e}"));
            assert_eq!(image.format, SavedFormat::OciLayout);
            assert_go_layers(&image.layers);
        }
    }

    #[test]
    fn an_oci_layout_missing_a_layer_or_with_zstd_layers_names_it() {
        let saved = oci_export(false, true);
        let mut archive = tar::Archive::new(saved.as_slice());
        let (layers, _) = layers_and_config();
        let dropped = blob_path(&digest(&layers[1]));
        let mut kept = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if path == dropped {
                // Stands for a zstd blob: the magic, then anything.
                bytes = [0x28, 0xb5, 0x2f, 0xfd, 0, 0].to_vec();
            }
            kept.push((path, bytes));
        }
        let borrowed: Vec<(&str, &[u8])> = kept.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
        let zstd = tar_of(&borrowed, &[]);
        let err = saved_layer_contents(&mut zstd.as_slice(), &is_go_step).unwrap_err().to_string();
        assert!(err.contains(&dropped) && err.contains("zstd"), "{err}");
        let without: Vec<(&str, &[u8])> = borrowed.into_iter().filter(|(p, _)| *p != dropped).collect();
        let missing = tar_of(&without, &[]);
        let err = saved_layer_contents(&mut missing.as_slice(), &is_go_step).unwrap_err().to_string();
        assert!(err.contains(&format!("the manifest names {dropped}")), "{err}");
    }
}
