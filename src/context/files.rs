//! What a sent context holds, path by path (kind, content digest, mode, owner, link target): what the miss reasons compare between builds, without the contents.

use std::collections::BTreeMap;
use std::io::Read;

use sha2::{Digest, Sha256};

use super::{IgnoreDialect, IgnoreRules};
use crate::results::Builder;

/// One path of the context as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// `file`, `dir`, `symlink`, `hardlink` or `other`.
    pub kind: &'static str,
    /// SHA-256 of a regular file's bytes (empty for the others).
    pub digest: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// A link's target.
    pub link: Option<String>,
}

impl FileState {
    /// The state of a tar entry of type `entry_type`; `digest` is the SHA-256 of its bytes for a regular file.
    pub(super) fn of_entry(entry_type: tar::EntryType, mode: u32, (uid, gid): (u64, u64), link: Option<String>, digest: Option<Sha256>) -> FileState {
        let kind = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hardlink",
            _ => "other",
        };
        let digest = match digest {
            Some(hasher) if kind == "file" => hex::encode(hasher.finalize()),
            _ => String::new(),
        };
        FileState { kind, digest, mode, uid, gid, link }
    }
}

/// The context's paths (relative, `/`-separated, no trailing `/`) and their states.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextFiles {
    pub files: BTreeMap<String, FileState>,
}

impl ContextFiles {
    /// Reads a context tar as `context::build_context` makes it. For the legacy
    /// builder, the Dockerfile and `.dockerignore` are dropped when the sent
    /// `.dockerignore` lists them, as the engine deletes them before any `COPY`.
    /// (`context::stream_context` computes the same while it writes the tar.)
    /// `dialect` is the engine's: the legacy engine of Docker 23 and later
    /// deletes them when a pattern matches any of their folders.
    pub fn from_tar(tar: &[u8], builder: Builder, dockerfile: &str, dialect: IgnoreDialect) -> std::io::Result<ContextFiles> {
        let mut files = ContextFiles::default();
        let mut ignore_text = None;
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let path = path.trim_start_matches("./").trim_end_matches('/').to_string();
            if path.is_empty() || path == "." {
                continue;
            }
            let header = entry.header();
            let (entry_type, mode, owner) = (header.entry_type(), header.mode()?, (header.uid()?, header.gid()?));
            let link = entry.link_name()?.map(|l| l.to_string_lossy().into_owned());
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            if path == ".dockerignore" && entry_type.is_file() {
                ignore_text = Some(bytes.clone());
            }
            files.files.insert(path, FileState::of_entry(entry_type, mode, owner, link, Some(Sha256::new_with_prefix(&bytes))));
        }
        if let (Builder::Legacy, Some(text)) = (builder, ignore_text) {
            files.drop_what_the_legacy_engine_deletes(&text, dockerfile, dialect);
        }
        Ok(files)
    }

    /// The legacy engine deletes the Dockerfile and `.dockerignore` from the context it received when the sent `.dockerignore` (`text`) lists them.
    pub(super) fn drop_what_the_legacy_engine_deletes(&mut self, text: &[u8], dockerfile: &str, dialect: IgnoreDialect) {
        if let Ok(rules) = IgnoreRules::parse_in(dialect, &String::from_utf8_lossy(text), std::path::Path::new(".dockerignore")) {
            for name in [dockerfile, ".dockerignore"] {
                if rules.is_excluded(name) {
                    self.files.remove(name);
                }
            }
        }
    }
}
