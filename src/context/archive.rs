//! The context tar for one builder: the folder walk, the `.dockerignore` rules and the Dockerfile's place, as `docker build` sends them (Docker 20.10's CLI, or that of Docker 23 and later: `IgnoreDialect`).
//!
//! What the CLI does, and so what this tar does:
//! - **Legacy builder** (`DOCKER_BUILDKIT=0`): the CLI reads only
//!   `<context>/.dockerignore`, re-includes the Dockerfile and `.dockerignore`
//!   when the rules exclude them, and tars the rest; an excluded folder that is
//!   entered for a `!` pattern gets no entry of its own. The engine then
//!   deletes the Dockerfile and `.dockerignore` again if the `.dockerignore`
//!   it received lists them. A Dockerfile outside the context is added as
//!   `.dockerfile.<20 characters>` (random in the CLI, a hash of its text
//!   here) and that name is appended to `.dockerignore` (created as
//!   `.dockerignore` + the name when there is none), so the engine deletes it.
//! - **BuildKit** (`DOCKER_BUILDKIT=1`): the CLI streams the context through
//!   a session instead of a tar, with the rules of
//!   `<Dockerfile's folder>/<Dockerfile's name>.dockerignore` when that file
//!   exists, else `<context>/.dockerignore`; nothing is re-included, and an
//!   excluded folder entered for a `!` pattern is sent (Docker 20.10), or sent
//!   only when something below it is (Docker 23 and later, whose sync enters
//!   excluded folders more often: see `ignore.rs`). The engine applies no
//!   rules to a tar sent to BuildKit, so this tar holds exactly what that
//!   session would sync. Only the Dockerfile must be added when the rules
//!   exclude it or it lies outside the context (the engine reads it from the
//!   tar): it goes in as `.dockerfile.<20 characters>`, and `COPY .` sees that
//!   one file where the CLI's build shows none.
//! - Both: entries carry their own mode, uid/gid 0, symlinks as links (never
//!   followed), hard links as links to the first path; modification times in
//!   whole seconds for the legacy builder and to the nanosecond for BuildKit.
//!   A socket is left out for the legacy builder and sent as an empty file to
//!   BuildKit, as the CLI's session does (BuildKit itself turns devices into
//!   empty files and drops fifos when it copies).

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};
use walkdir::WalkDir;

use super::files::{ContextFiles, FileState};
use super::ignore::{IgnoreDialect, IgnoreRules, WalkJudgement};
use super::ContextError;
use crate::results::Builder;

/// A build context made whole in memory: an uncompressed tar, the paths it
/// holds (in tar order; BuildKit's tar also starts with an entry for the root),
/// the name to pass as the build's `dockerfile` option and what each path holds.
/// For tests and small contexts; a build streams its context (`stream_context`).
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub tar: Vec<u8>,
    pub files: Vec<String>,
    pub dockerfile: String,
    pub contents: ContextFiles,
}

/// What a context walk sent: the paths in tar order, their states as the builder sees them, and the tar's length.
/// (Through a session: the paths listed, the bytes of the files that travelled, and the files whose digest is
/// still to be read, see `fill_digests`.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentContext {
    pub files: Vec<String>,
    pub contents: ContextFiles,
    pub bytes: u64,
    /// Regular files listed but neither sent nor hashed before: their path in the context and where to read them.
    pub unhashed: Vec<(String, PathBuf)>,
}

impl SentContext {
    /// Reads and hashes the files whose digest is not known yet, for the miss
    /// reasons (a session's files the engine did not ask for, which no
    /// earlier build of this process had hashed).
    pub fn fill_digests(&mut self) -> Result<(), ContextError> {
        for (rel, path) in std::mem::take(&mut self.unhashed) {
            let io = |source| ContextError::Io { path: path.clone(), source };
            let mut file = std::fs::File::open(&path).map_err(io)?;
            let mut hasher = Sha256::new();
            std::io::copy(&mut file, &mut hasher).map_err(io)?;
            if let Some(state) = self.contents.files.get_mut(&rel) {
                state.digest = hex::encode(hasher.finalize());
            }
        }
        Ok(())
    }
}

/// Tars `context_dir` as `docker build -f <dockerfile> <context_dir>` of the
/// release that speaks `dialect` makes it visible to `builder`. `dockerfile` is absolute or relative to
/// `context_dir` and may lie outside it. The same folder gives the same bytes,
/// and the same bytes as `stream_context` sends.
pub fn build_context(context_dir: &Path, dockerfile: &Path, builder: Builder, dialect: IgnoreDialect) -> Result<BuildContext, ContextError> {
    let plan = ContextPlan::new(context_dir, dockerfile, builder, dialect)?;
    let mut tar = Vec::new();
    let sent = plan.write(&mut tar)?;
    Ok(BuildContext {
        tar,
        files: sent.files,
        dockerfile: plan.dockerfile,
        contents: sent.contents,
    })
}

/// Everything decided before the walk: the folder, the rules, and the Dockerfile's name and place in the tar.
#[derive(Debug)]
pub(super) struct ContextPlan {
    root: PathBuf,
    builder: Builder,
    rules: IgnoreRules,
    /// The name to pass as the build's `dockerfile` option.
    pub(super) dockerfile: String,
    /// The Dockerfile's path when the walk itself sends it under that name (checked after the walk).
    walked_dockerfile: Option<String>,
    /// A Dockerfile the walk does not send, added after it: its generated name, its text and where it was read.
    added_dockerfile: Option<(String, Vec<u8>, PathBuf)>,
    /// The generated Dockerfile name the legacy builder must delete: the CLI appends it to `.dockerignore`.
    hidden_from_legacy_builder: Option<String>,
}

impl ContextPlan {
    pub(super) fn new(context_dir: &Path, dockerfile: &Path, builder: Builder, dialect: IgnoreDialect) -> Result<ContextPlan, ContextError> {
        let Resolved { root, given, dockerfile: resolved } = resolve(context_dir, dockerfile)?;
        let read_dockerfile = || {
            std::fs::read(&resolved).map_err(|source| ContextError::Io {
                path: resolved.clone(),
                source,
            })
        };
        // Where the Dockerfile sits in the context (symlinks resolved, as the CLI
        // does), or the generated name of one from outside.
        let place = match resolved.strip_prefix(&root) {
            Ok(rel) => Place::Inside(slash_path(rel)),
            Err(_) => {
                let text = read_dockerfile()?;
                Place::Outside {
                    name: generated_dockerfile_name(&text),
                    text,
                }
            }
        };
        let rules = ignore_rules(builder, dialect, &root, &given, &place)?;
        let mut plan = ContextPlan {
            root,
            builder,
            rules,
            dockerfile: String::new(),
            walked_dockerfile: None,
            added_dockerfile: None,
            hidden_from_legacy_builder: None,
        };
        match place {
            // The legacy rules re-include it; BuildKit's walk may send it.
            Place::Inside(rel) if builder == Builder::Legacy || plan.walk_sends(&rel) => {
                plan.dockerfile = rel.clone();
                plan.walked_dockerfile = Some(rel);
            }
            // BuildKit reads the Dockerfile from the tar: one the rules leave out goes in under a generated name.
            Place::Inside(_) => {
                let text = read_dockerfile()?;
                plan.dockerfile = generated_dockerfile_name(&text);
                plan.added_dockerfile = Some((plan.dockerfile.clone(), text, resolved));
            }
            Place::Outside { name, text } => {
                if builder == Builder::Legacy {
                    plan.hidden_from_legacy_builder = Some(name.clone());
                }
                plan.dockerfile = name.clone();
                plan.added_dockerfile = Some((name, text, resolved));
            }
        }
        Ok(plan)
    }

    /// What this context's walk does with `rel` (see `visit`).
    fn visit(&self, rel: &str, is_dir: bool, folder: Option<&WalkJudgement>) -> (Visit, WalkJudgement) {
        visit(self.builder, &self.rules, rel, is_dir, folder)
    }

    /// Whether the walk reaches and sends the regular file `rel` (its folders are real folders: the path is resolved).
    fn walk_sends(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut folder: Option<WalkJudgement> = None;
        for n in 1..parts.len() {
            let (visit, judgement) = self.visit(&parts[..n].join("/"), true, folder.as_ref());
            if visit == Visit::SkipTree {
                return false;
            }
            folder = Some(judgement);
        }
        self.visit(rel, false, folder.as_ref()).0 == Visit::Send
    }

    /// Walks the folder in name order and writes the tar into `sink` entry by
    /// entry, each file read as it is written (memory stays bounded whatever
    /// the context's size). An error names the path that could not be sent.
    pub(super) fn write<W: Write>(&self, sink: W) -> Result<SentContext, ContextError> {
        let mut tar = ContextTar::new(self.builder, self.rules.dialect(), sink);
        tar.hidden_from_legacy_builder = self.hidden_from_legacy_builder.clone();
        if self.builder == Builder::Buildkit {
            tar.append_root(&self.root)?;
        }
        let root = &self.root;
        let mut walker = WalkDir::new(root).min_depth(1).follow_links(false).sort_by_file_name().into_iter();
        // The folders being walked, outermost first.
        let mut folders: Vec<WalkedFolder> = Vec::new();
        while let Some(item) = walker.next() {
            let entry = item.map_err(|e| {
                let path = e.path().unwrap_or(root).to_path_buf();
                ContextError::Io {
                    path,
                    source: e.into(),
                }
            })?;
            let rel = entry.path().strip_prefix(root).map(slash_path).unwrap_or_default();
            folders.truncate(entry.depth().saturating_sub(1));
            let is_dir = entry.file_type().is_dir();
            let (visit, judgement) = self.visit(&rel, is_dir, folders.last().map(|f| &f.judgement));
            let metadata = || {
                std::fs::symlink_metadata(entry.path()).map_err(|source| ContextError::Io {
                    path: entry.path().to_path_buf(),
                    source,
                })
            };
            let send = match visit {
                Visit::Send => true,
                Visit::Skip => continue,
                Visit::SkipTree => {
                    walker.skip_current_dir();
                    continue;
                }
                Visit::EnterOnly => false,
                Visit::EnterLazily => {
                    let unsent = Entry {
                        rel,
                        path: entry.path().to_path_buf(),
                        meta: metadata()?,
                    };
                    folders.push(WalkedFolder { judgement, unsent: Some(unsent) });
                    continue;
                }
            };
            if is_dir {
                folders.push(WalkedFolder { judgement, unsent: None });
            }
            if !send {
                continue;
            }
            let meta = metadata()?;
            // The legacy CLI's tar skips a socket (BuildKit's sync sends it as an empty file).
            if meta.file_type().is_socket() && self.builder == Builder::Legacy {
                continue;
            }
            // Folders entered but not yet sent go first, outermost first (BuildKit's sync, Docker 23 and later).
            for folder in &mut folders {
                if let Some(unsent) = folder.unsent.take() {
                    tar.append(&unsent)?;
                }
            }
            tar.append(&Entry {
                rel,
                path: entry.path().to_path_buf(),
                meta,
            })?;
        }
        if let Some(rel) = self.walked_dockerfile.as_ref().filter(|rel| !tar.contents.files.contains_key(*rel)) {
            return Err(ContextError::Changed {
                path: root.join(rel),
                what: "it was not found when the folder was walked".into(),
            });
        }
        if let Some((name, text, source)) = &self.added_dockerfile {
            tar.append_dockerfile(name, text, source)?;
        }
        tar.finish(&self.dockerfile).map_err(|source| ContextError::Io { path: root.clone(), source })
    }
}

/// A context folder and its Dockerfile as the CLI finds them.
pub(super) struct Resolved {
    /// The folder, symlinks resolved.
    pub(super) root: PathBuf,
    /// The Dockerfile as given, made absolute or joined to the folder (for errors and the own ignore file).
    pub(super) given: PathBuf,
    /// The Dockerfile, symlinks resolved.
    pub(super) dockerfile: PathBuf,
}

/// Resolves `context_dir` (which must be a folder) and `dockerfile` (absolute, or relative to it; it must be a file).
pub(super) fn resolve(context_dir: &Path, dockerfile: &Path) -> Result<Resolved, ContextError> {
    let root = context_dir.canonicalize().map_err(|source| ContextError::Io {
        path: context_dir.to_path_buf(),
        source,
    })?;
    if !root.is_dir() {
        return Err(ContextError::NotAFolder(context_dir.to_path_buf()));
    }
    let given = if dockerfile.is_absolute() { dockerfile.to_path_buf() } else { context_dir.join(dockerfile) };
    let resolved = given.canonicalize().ok().filter(|p| p.is_file()).ok_or_else(|| ContextError::MissingDockerfile(given.clone()))?;
    Ok(Resolved { root, given, dockerfile: resolved })
}

/// What the CLI's walk for `builder` does with `rel` (a folder when `is_dir`)
/// under `rules`, given the judgement of the folder holding it; and `rel`'s
/// own judgement, for the paths below it. BuildKit's session sync walks so too.
pub(super) fn visit(builder: Builder, rules: &IgnoreRules, rel: &str, is_dir: bool, folder: Option<&WalkJudgement>) -> (Visit, WalkJudgement) {
    let judgement = rules.judge(rel, folder);
    let visit = if !judgement.excluded {
        Visit::Send
    } else if !is_dir {
        Visit::Skip
    } else {
        match (builder, rules.dialect()) {
            (Builder::Legacy, _) if rules.may_re_include_below(rel) => Visit::EnterOnly,
            // Docker 20.10's sync sends a folder it enters for a `!` pattern below it.
            (Builder::Buildkit, IgnoreDialect::Docker20) if rules.may_re_include_below(rel) => Visit::Send,
            (Builder::Buildkit, IgnoreDialect::Docker23) if rules.sync_enters(rel) => Visit::EnterLazily,
            _ => Visit::SkipTree,
        }
    };
    (visit, judgement)
}

/// What the walk does with one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visit {
    /// Sent (a folder is also walked).
    Send,
    /// Not sent.
    Skip,
    /// A folder neither sent nor walked.
    SkipTree,
    /// A folder walked but not sent.
    EnterOnly,
    /// A folder walked and sent just before the first path below it that is sent.
    EnterLazily,
}

/// A folder the walk is in: its judgement, which the paths below it inherit,
/// and its entry while it waits to be sent (`Visit::EnterLazily`).
struct WalkedFolder {
    judgement: WalkJudgement,
    unsent: Option<Entry>,
}

/// The rules the CLI applies for `builder`: for the legacy builder the
/// context's `.dockerignore` with the Dockerfile and itself re-included, for
/// BuildKit the Dockerfile's own ignore file when it has one.
fn ignore_rules(builder: Builder, dialect: IgnoreDialect, root: &Path, dockerfile: &Path, place: &Place) -> Result<IgnoreRules, ContextError> {
    let context_rules = root.join(".dockerignore");
    match builder {
        Builder::Legacy => {
            let mut rules = IgnoreRules::read_in(dialect, &context_rules)?;
            rules.keep(".dockerignore")?;
            if let Place::Inside(rel) = place {
                rules.keep(rel)?;
            }
            Ok(rules)
        }
        Builder::Buildkit => {
            let name = dockerfile.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let own = dockerfile.with_file_name(format!("{name}.dockerignore"));
            IgnoreRules::read_in(dialect, if own.is_file() { &own } else { &context_rules })
        }
    }
}

/// Where the Dockerfile goes in the tar.
enum Place {
    /// Its path in the context.
    Inside(String),
    /// From outside the context: a generated name and its text.
    Outside { name: String, text: Vec<u8> },
}

/// The name the CLI gives a Dockerfile from outside the context: `.dockerfile.`
/// and 20 characters (random there, the start of the text's SHA-256 here).
fn generated_dockerfile_name(text: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(text));
    format!(".dockerfile.{}", &digest[..20])
}

/// One path the context sends.
struct Entry {
    rel: String,
    path: PathBuf,
    meta: Metadata,
}

pub(super) fn slash_path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A writer that counts what passes through it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it reads and counts it.
struct Hashed<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The tar under construction, and what each path it holds is.
struct ContextTar<W: Write> {
    builder: Builder,
    /// Whose rules the legacy engine deletes the Dockerfile and `.dockerignore` by.
    dialect: IgnoreDialect,
    tar: tar::Builder<Counted<W>>,
    files: Vec<String>,
    contents: ContextFiles,
    /// The `.dockerignore` text sent, for what the legacy engine deletes.
    ignore_text: Option<Vec<u8>>,
    /// Inode → first path, for hard links.
    seen: HashMap<u64, String>,
    /// The generated Dockerfile name the legacy builder must delete: the CLI
    /// appends it to `.dockerignore`.
    hidden_from_legacy_builder: Option<String>,
}

impl<W: Write> ContextTar<W> {
    fn new(builder: Builder, dialect: IgnoreDialect, sink: W) -> ContextTar<W> {
        ContextTar {
            builder,
            dialect,
            tar: tar::Builder::new(Counted { inner: sink, bytes: 0 }),
            files: Vec::new(),
            contents: ContextFiles::default(),
            ignore_text: None,
            seen: HashMap::new(),
            hidden_from_legacy_builder: None,
        }
    }

    /// Notes a path as sent with `header` (before the tar crate fills in its name), its link target and the hash of its bytes.
    fn record(&mut self, rel: &str, header: &Header, link: Option<String>, digest: Option<Sha256>) -> std::io::Result<()> {
        let state = FileState::of_entry(header.entry_type(), header.mode()?, (header.uid()?, header.gid()?), link, digest);
        self.contents.files.insert(rel.to_string(), state);
        self.files.push(rel.to_string());
        Ok(())
    }

    /// Adds bytes held in memory (a generated or amended file) as a regular file.
    fn append_text(&mut self, header: &mut Header, rel: &str, text: &[u8]) -> std::io::Result<()> {
        header.set_size(text.len() as u64);
        self.record(rel, header, None, Some(Sha256::new_with_prefix(text)))?;
        if rel == ".dockerignore" {
            self.ignore_text = Some(text.to_vec());
        }
        self.tar.append_data(header, rel, text)
    }

    fn append(&mut self, entry: &Entry) -> Result<(), ContextError> {
        let io = |source| ContextError::Io {
            path: entry.path.clone(),
            source,
        };
        let meta = &entry.meta;
        let kind = meta.file_type();
        let mut header = self.header(meta);
        if entry.rel == ".dockerignore" && kind.is_file() {
            let mut text = std::fs::read(&entry.path).map_err(io)?;
            if let Some(name) = &self.hidden_from_legacy_builder {
                text.extend_from_slice(format!("\n{name}\n").as_bytes());
            }
            self.append_pax_time(meta).map_err(io)?;
            return self.append_text(&mut header, &entry.rel, &text).map_err(io);
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(&entry.path).map_err(io)?;
            header.set_entry_type(EntryType::Symlink);
            self.record(&entry.rel, &header, Some(target.to_string_lossy().into_owned()), None).map_err(io)?;
            self.append_pax_time(meta).map_err(io)?;
            self.tar.append_link(&mut header, &entry.rel, target).map_err(io)?;
        } else if kind.is_dir() {
            header.set_entry_type(EntryType::Directory);
            self.record(&entry.rel, &header, None, None).map_err(io)?;
            self.append_pax_time(meta).map_err(io)?;
            self.tar.append_data(&mut header, &entry.rel, std::io::empty()).map_err(io)?;
        } else if let Some(first) = self.first_link(entry) {
            header.set_entry_type(EntryType::Link);
            header.set_size(0);
            self.record(&entry.rel, &header, Some(first.clone()), None).map_err(io)?;
            self.append_pax_time(meta).map_err(io)?;
            self.tar.append_link(&mut header, &entry.rel, first).map_err(io)?;
        } else if kind.is_socket() {
            header.set_entry_type(EntryType::Regular);
            self.record(&entry.rel, &header, None, Some(Sha256::new())).map_err(io)?;
            self.append_pax_time(meta).map_err(io)?;
            self.tar.append_data(&mut header, &entry.rel, std::io::empty()).map_err(io)?;
        } else if kind.is_file() {
            self.append_file(entry, &mut header)?;
        } else {
            header.set_entry_type(if kind.is_fifo() {
                EntryType::Fifo
            } else if kind.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            });
            if kind.is_char_device() || kind.is_block_device() {
                let rdev = meta.rdev();
                header.set_device_major(libc_major(rdev)).map_err(io)?;
                header.set_device_minor(libc_minor(rdev)).map_err(io)?;
            }
            self.record(&entry.rel, &header, None, None).map_err(io)?;
            self.append_pax_time(meta).map_err(io)?;
            self.tar.append_data(&mut header, &entry.rel, std::io::empty()).map_err(io)?;
        }
        Ok(())
    }

    /// A regular file, read as it is written: exactly the size it was listed
    /// with, or an error naming it (a tar whose header promises more bytes
    /// than follow, or fewer, would be read wrongly or cut by the engine).
    fn append_file(&mut self, entry: &Entry, header: &mut Header) -> Result<(), ContextError> {
        let io = |source| ContextError::Io {
            path: entry.path.clone(),
            source,
        };
        let size = entry.meta.len();
        let file = std::fs::File::open(&entry.path).map_err(io)?;
        let mut hashed = Hashed {
            inner: file,
            hasher: Sha256::new(),
            bytes: 0,
        };
        header.set_size(size);
        self.append_pax_time(&entry.meta).map_err(io)?;
        self.tar.append_data(header, &entry.rel, (&mut hashed).take(size)).map_err(io)?;
        let grew = hashed.bytes == size && hashed.inner.read(&mut [0u8; 1]).map_err(io)? > 0;
        if hashed.bytes != size || grew {
            let now = if grew { format!("more than {size}") } else { hashed.bytes.to_string() };
            return Err(ContextError::Changed {
                path: entry.path.clone(),
                what: format!("it had {size} bytes when listed and {now} when read"),
            });
        }
        self.record(&entry.rel, header, None, Some(hashed.hasher)).map_err(io)
    }

    /// BuildKit takes a context for a tar only when the first 1024 bytes hold a
    /// whole tar header, which an entry behind a PAX or long-name header would
    /// not: a plain entry for the root goes first. The engine keeps its own
    /// folder for the root, as the CLI's session never sends the root either.
    fn append_root(&mut self, root: &Path) -> Result<(), ContextError> {
        let io = |source| ContextError::Io {
            path: root.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(root).map_err(io)?;
        let mut header = self.header(&meta);
        header.set_mode(0o755);
        header.set_entry_type(EntryType::Directory);
        self.tar.append_data(&mut header, "./", std::io::empty()).map_err(io)
    }

    /// For a file with several hard links, the path it was first sent under.
    fn first_link(&mut self, entry: &Entry) -> Option<String> {
        if entry.meta.is_dir() || entry.meta.nlink() < 2 {
            return None;
        }
        match self.seen.get(&entry.meta.ino()) {
            Some(first) => Some(first.clone()),
            None => {
                self.seen.insert(entry.meta.ino(), entry.rel.clone());
                None
            }
        }
    }

    /// The header the CLI writes: the entry's own mode, owner root, its modification time.
    fn header(&self, meta: &Metadata) -> Header {
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_size(0);
        header
    }

    /// BuildKit keeps modification times to the nanosecond; a PAX record carries them.
    fn append_pax_time(&mut self, meta: &Metadata) -> std::io::Result<()> {
        if self.builder != Builder::Buildkit || meta.mtime_nsec() == 0 {
            return Ok(());
        }
        let value = format!("{}.{:09}", meta.mtime(), meta.mtime_nsec());
        self.tar.append_pax_extensions([("mtime", value.as_bytes())])
    }

    /// Adds a Dockerfile the walk did not send (mode 0600, owner root, as the
    /// CLI writes one), and for the legacy builder a `.dockerignore` naming it
    /// when the context had none.
    fn append_dockerfile(&mut self, name: &str, text: &[u8], source: &Path) -> Result<(), ContextError> {
        let io = |source_err| ContextError::Io {
            path: source.to_path_buf(),
            source: source_err,
        };
        let meta = std::fs::metadata(source).map_err(io)?;
        let mut header = self.header(&meta);
        header.set_mode(0o600);
        self.append_text(&mut header, name, text).map_err(io)?;
        if self.hidden_from_legacy_builder.is_some() && !self.contents.files.contains_key(".dockerignore") {
            let ignore = format!(".dockerignore\n{name}\n");
            self.append_text(&mut header, ".dockerignore", ignore.as_bytes()).map_err(io)?;
        }
        Ok(())
    }

    /// Ends the tar; for the legacy builder, leaves out of `contents` what the engine deletes before any step sees it.
    fn finish(mut self, dockerfile: &str) -> std::io::Result<SentContext> {
        if let (Builder::Legacy, Some(text)) = (self.builder, &self.ignore_text) {
            self.contents.drop_what_the_legacy_engine_deletes(text, dockerfile, self.dialect);
        }
        let mut sink = self.tar.into_inner()?;
        sink.flush()?;
        Ok(SentContext {
            files: self.files,
            contents: self.contents,
            bytes: sink.bytes,
            unhashed: Vec::new(),
        })
    }
}

/// The major number of a device, as glibc's `major()` computes it.
fn libc_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}

/// The minor number of a device, as glibc's `minor()` computes it.
fn libc_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// One entry of a tar as the engine reads it.
    struct Sent {
        name: String,
        kind: EntryType,
        mode: u32,
        owner: (u64, u64),
        /// Seconds, with nanoseconds when a PAX record gives them.
        mtime: String,
        link: String,
        text: String,
    }

    fn entries(tar: &[u8]) -> Vec<Sent> {
        let mut archive = tar::Archive::new(tar);
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut mtime = entry.header().mtime().unwrap().to_string();
            if let Some(pax) = entry.pax_extensions().unwrap() {
                for ext in pax {
                    let ext = ext.unwrap();
                    if ext.key().unwrap() == "mtime" {
                        mtime = ext.value().unwrap().to_string();
                    }
                }
            }
            let h = entry.header().clone();
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            out.push(Sent {
                name: entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string(),
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                owner: (h.uid().unwrap(), h.gid().unwrap()),
                mtime,
                link,
                text,
            });
        }
        out
    }

    fn find<'a>(entries: &'a [Sent], name: &str) -> Option<&'a Sent> {
        entries.iter().find(|e| e.name == name)
    }

    fn names(ctx: &BuildContext) -> Vec<String> {
        entries(&ctx.tar).into_iter().map(|e| e.name).collect()
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn the_legacy_tar_re_includes_the_dockerfile_and_dockerignore_and_buildkit_s_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("dockerfiles/app.Dockerfile"), "FROM scratch\n");
        write(&d.join("dockerfiles/other"), "o");
        write(&d.join("main.go"), "package main");
        write(&d.join(".dockerignore"), "dockerfiles\n.dockerignore\n");
        let legacy = build_context(d, Path::new("dockerfiles/app.Dockerfile"), Builder::Legacy, IgnoreDialect::Docker20).unwrap();
        assert_eq!(names(&legacy), vec![".dockerignore", "dockerfiles/app.Dockerfile", "main.go"]);
        assert_eq!(legacy.dockerfile, "dockerfiles/app.Dockerfile");
        assert_eq!(legacy.files, names(&legacy));

        let buildkit = build_context(d, Path::new("dockerfiles/app.Dockerfile"), Builder::Buildkit, IgnoreDialect::Docker20).unwrap();
        assert!(buildkit.dockerfile.starts_with(".dockerfile.") && buildkit.dockerfile.len() == ".dockerfile.".len() + 20);
        assert_eq!(buildkit.files, vec!["main.go".to_string(), buildkit.dockerfile.clone()]);
        assert_eq!(names(&buildkit), vec![".", "main.go", buildkit.dockerfile.as_str()]);
    }

    #[test]
    fn the_dockerfile_s_own_ignore_file_applies_to_buildkit_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("build/app.Dockerfile"), "FROM scratch\n");
        write(&d.join("build/app.Dockerfile.dockerignore"), "b.txt\n");
        write(&d.join(".dockerignore"), "a.txt\n");
        write(&d.join("a.txt"), "a");
        write(&d.join("b.txt"), "b");
        let legacy = build_context(d, Path::new("build/app.Dockerfile"), Builder::Legacy, IgnoreDialect::Docker20).unwrap();
        assert!(legacy.files.contains(&"b.txt".to_string()) && !legacy.files.contains(&"a.txt".to_string()));
        let buildkit = build_context(d, &d.join("build/app.Dockerfile"), Builder::Buildkit, IgnoreDialect::Docker20).unwrap();
        assert!(buildkit.files.contains(&"a.txt".to_string()) && !buildkit.files.contains(&"b.txt".to_string()));
        assert_eq!(buildkit.dockerfile, "build/app.Dockerfile");
    }

    #[test]
    fn a_dockerfile_outside_the_context_gets_a_name_from_its_text_and_the_legacy_builder_is_told_to_drop_it() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        write(&ctx.join("a.txt"), "a");
        let dockerfile = dir.path().join("elsewhere/Dockerfile");
        write(&dockerfile, "FROM scratch\n");
        let legacy = build_context(&ctx, &dockerfile, Builder::Legacy, IgnoreDialect::Docker20).unwrap();
        let name = legacy.dockerfile.clone();
        assert_eq!(name, generated_dockerfile_name(b"FROM scratch\n"));
        let all = entries(&legacy.tar);
        let ignore = find(&all, ".dockerignore").expect("a .dockerignore is created");
        assert_eq!(ignore.text, format!(".dockerignore\n{name}\n"));
        let generated = find(&all, &name).unwrap();
        assert_eq!((generated.mode, generated.text.as_str()), (0o600, "FROM scratch\n"));

        // An existing .dockerignore gets the name appended, keeping its own text.
        write(&ctx.join(".dockerignore"), "x");
        let legacy = build_context(&ctx, &dockerfile, Builder::Legacy, IgnoreDialect::Docker20).unwrap();
        let all = entries(&legacy.tar);
        assert_eq!(find(&all, ".dockerignore").unwrap().text, format!("x\n{name}\n"));

        // BuildKit: the file alone, .dockerignore as it is.
        let buildkit = build_context(&ctx, &dockerfile, Builder::Buildkit, IgnoreDialect::Docker20).unwrap();
        assert_eq!(buildkit.dockerfile, name);
        let all = entries(&buildkit.tar);
        assert_eq!(find(&all, ".dockerignore").unwrap().text, "x");
    }

    #[test]
    fn an_excluded_folder_entered_for_a_re_include_is_sent_to_buildkit_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("Dockerfile"), "FROM scratch\n");
        write(&d.join("secret/keep"), "k");
        write(&d.join("secret/drop"), "d");
        write(&d.join("other/keep"), "k");
        write(&d.join(".dockerignore"), "secret\nother\n!secret/keep\n!**/keep\n");
        let legacy = build_context(d, Path::new("Dockerfile"), Builder::Legacy, IgnoreDialect::Docker20).unwrap();
        assert_eq!(names(&legacy), vec![".dockerignore", "Dockerfile", "secret/keep"]);
        let buildkit = build_context(d, Path::new("Dockerfile"), Builder::Buildkit, IgnoreDialect::Docker20).unwrap();
        assert_eq!(names(&buildkit), vec![".", ".dockerignore", "Dockerfile", "secret", "secret/keep"]);
    }

    /// The paths of the `tree` fixture (tests/common/context_fixtures.rs) that its `.dockerignore` tells apart.
    fn tree(d: &Path) {
        write(&d.join("Dockerfile"), "FROM scratch\n");
        for f in [
            "a/keep/k", "a/drop/d", "a/f", "b/x/y/z", "b/x/f", "q/r/x/keep", "q/r/x/f", "q/r/x/y/z", "c/keep", "c/other", "f(1).txt", "f1.txt", "aab",
            "e/keep/k", "e/other", "secret/keep", "secret/s",
        ] {
            write(&d.join(f), f);
        }
        write(&d.join(".dockerignore"), "a\n!a/keep\n**/x\n!b/x/y\n!q/r/x/keep\nc/*\n!c/keep\nf(1).txt\na+b\ne\n!**/keep\nsecret\n!secret/keep\n");
    }

    #[test]
    fn the_tree_fixture_s_context_for_each_builder_in_both_dialects() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        tree(d);
        let sent = |builder, dialect| names(&build_context(d, Path::new("Dockerfile"), builder, dialect).unwrap());
        // Docker 20.10, as its CLI sends it (tests/engine/context_parity.rs): unchanged.
        let common = ["a/keep", "a/keep/k", "b", "b/x/y", "b/x/y/z", "c", "c/keep"];
        let old_legacy: Vec<String> = [".dockerignore", "Dockerfile"].into_iter().chain(common).chain(["f(1).txt", "q", "q/r", "q/r/x/f", "q/r/x/keep", "q/r/x/y", "q/r/x/y/z", "secret/keep"]).map(String::from).collect();
        assert_eq!(sent(Builder::Legacy, IgnoreDialect::Docker20), old_legacy);
        let old_buildkit: Vec<String> = [".", ".dockerignore", "Dockerfile", "a"].into_iter().chain(common[..3].iter().copied()).chain(["b/x"]).chain(common[3..].iter().copied())
            .chain(["f(1).txt", "q", "q/r", "q/r/x", "q/r/x/f", "q/r/x/keep", "q/r/x/y", "q/r/x/y/z", "secret", "secret/keep"]).map(String::from).collect();
        assert_eq!(sent(Builder::Buildkit, IgnoreDialect::Docker20), old_buildkit);
        // Docker 23 and later, as Docker 26.1's CLI sends it (measured): `aab` and `f1.txt` come, `f(1).txt` and all of `q/r/x` but `keep` go.
        let new_legacy: Vec<String> = [".dockerignore", "Dockerfile", "a/keep", "a/keep/k", "aab", "b", "b/x/y", "b/x/y/z", "c", "c/keep", "f1.txt", "q", "q/r", "q/r/x/keep", "secret/keep"]
            .into_iter().map(String::from).collect();
        assert_eq!(sent(Builder::Legacy, IgnoreDialect::Docker23), new_legacy);
        // BuildKit's sync also enters `e` for `!**/keep`, and sends an excluded folder only with something below it.
        let new_buildkit: Vec<String> = [".", ".dockerignore", "Dockerfile", "a", "a/keep", "a/keep/k", "aab", "b", "b/x", "b/x/y", "b/x/y/z", "c", "c/keep", "e", "e/keep", "e/keep/k", "f1.txt", "q", "q/r", "q/r/x", "q/r/x/keep", "secret", "secret/keep"]
            .into_iter().map(String::from).collect();
        assert_eq!(sent(Builder::Buildkit, IgnoreDialect::Docker23), new_buildkit);
    }

    #[test]
    fn the_legacy_engine_deletes_the_dockerfile_by_its_own_release_s_rules() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("Dockerfile"), "FROM scratch\n");
        write(&d.join(".dockerignore"), "Docker(file)\n");
        for (dialect, deleted) in [(IgnoreDialect::Docker20, true), (IgnoreDialect::Docker23, false)] {
            let ctx = build_context(d, Path::new("Dockerfile"), Builder::Legacy, dialect).unwrap();
            assert!(names(&ctx).contains(&"Dockerfile".to_string()), "{dialect:?}: the CLI sends it");
            assert_eq!(!ctx.contents.files.contains_key("Dockerfile"), deleted, "{dialect:?}: `(` groups in 20.10 only");
            let read_back = ContextFiles::from_tar(&ctx.tar, Builder::Legacy, "Dockerfile", dialect).unwrap();
            assert_eq!(read_back, ctx.contents, "{dialect:?}");
        }
    }

    #[test]
    fn modes_owners_links_and_times_are_sent_as_the_cli_sends_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("Dockerfile"), "FROM scratch\n");
        write(&d.join("a.sh"), "x");
        std::fs::set_permissions(d.join("a.sh"), std::fs::Permissions::from_mode(0o4750)).unwrap();
        std::fs::File::options()
            .write(true)
            .open(d.join("a.sh"))
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 123_456_789))
            .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        std::fs::hard_link(d.join("a.sh"), d.join("b.sh")).unwrap();

        let legacy = entries(&build_context(d, Path::new("Dockerfile"), Builder::Legacy, IgnoreDialect::Docker20).unwrap().tar);
        let a = find(&legacy, "a.sh").unwrap();
        assert_eq!((a.kind, a.mode, a.owner, a.mtime.as_str()), (EntryType::Regular, 0o4750, (0, 0), "1600000000"));
        let b = find(&legacy, "b.sh").unwrap();
        assert_eq!((b.kind, b.link.as_str()), (EntryType::Link, "a.sh"));
        let link = find(&legacy, "link").unwrap();
        assert_eq!((link.kind, link.link.as_str()), (EntryType::Symlink, "/etc/passwd"));

        let buildkit = entries(&build_context(d, Path::new("Dockerfile"), Builder::Buildkit, IgnoreDialect::Docker20).unwrap().tar);
        let a = find(&buildkit, "a.sh").unwrap();
        assert_eq!(a.mtime, "1600000000.123456789");
    }

    #[test]
    fn buildkit_finds_a_whole_header_in_the_first_1024_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let long = "l".repeat(150);
        write(&d.join(&long), "x");
        write(&d.join("Dockerfile"), "FROM scratch\n");
        let ctx = build_context(d, Path::new("Dockerfile"), Builder::Buildkit, IgnoreDialect::Docker20).unwrap();
        let first = tar::Header::from_byte_slice(&ctx.tar[..512]);
        assert_eq!((first.entry_type(), first.path().unwrap().to_string_lossy().trim_end_matches('/')), (EntryType::Directory, "."));
        assert!(names(&ctx).contains(&long));
    }

    #[test]
    fn the_same_folder_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("Dockerfile"), "FROM scratch\n");
        write(&d.join("src/main.go"), "package main");
        for builder in [Builder::Buildkit, Builder::Legacy] {
            let once = build_context(d, Path::new("Dockerfile"), builder, IgnoreDialect::Docker20).unwrap();
            let again = build_context(d, Path::new("Dockerfile"), builder, IgnoreDialect::Docker20).unwrap();
            assert_eq!(once.tar, again.tar, "{builder:?}");
        }
    }

    #[test]
    fn errors_name_the_missing_dockerfile_and_the_bad_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let err = build_context(d, Path::new("nope.Dockerfile"), Builder::Legacy, IgnoreDialect::Docker20).unwrap_err();
        assert!(err.to_string().contains("nope.Dockerfile"), "{err}");
        write(&d.join("Dockerfile"), "FROM scratch\n");
        write(&d.join(".dockerignore"), "ok\nbad[\n");
        let err = build_context(d, Path::new("Dockerfile"), Builder::Buildkit, IgnoreDialect::Docker20).unwrap_err();
        assert!(err.to_string().contains(".dockerignore") && err.to_string().contains("bad["), "{err}");
    }
}
