//! The build context as BuildKit asks a session for it: the sender's side of fsutil's DiffCopy on the session's FileSync service (a listing of what the engine's include and exclude patterns and follow-paths leave, then the bytes of each file it requests), and a log of what every request sent.
//!
//! As the Docker CLI serves it (tonistiigi/fsutil `send.go`, `walker.go`;
//! moby/buildkit `session/filesync`):
//! - the engine opens one DiffCopy call per source it reads (the Dockerfile's
//!   folder as `dockerfile`, the context as `context`), naming it and its
//!   patterns in the call's metadata;
//! - the sender answers with a `STAT` packet per path, depth first in name
//!   order (`/`-separated, Go's `os.FileMode` bits, modification time in
//!   nanoseconds, a symlink's target or a hard link's first path as
//!   `linkname`), then an empty `STAT`;
//! - the engine compares the listing with its copy of the last sync under the
//!   session's shared key and sends `REQ` with the index of each file it lacks;
//!   each goes back as `DATA` packets and an empty `DATA`; `FIN` answers `FIN`;
//! - a folder that is only on the way to an included path, or excluded but
//!   entered for a `!` pattern (Docker 23 and later), is listed just before
//!   the first path below it that is listed.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard_buildkit_proto::fsutil::types::{packet::PacketType, Packet, Stat};
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSync;
use regex::Regex;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use walkdir::WalkDir;

use super::archive::{resolve, slash_path, visit, Resolved, SentContext, Visit};
use super::{ContextError, FileState, IgnoreDialect, IgnoreRules, WalkJudgement};
use crate::results::Builder;

/// Bytes of a file per `DATA` packet.
const DATA_CHUNK: usize = 128 * 1024;

/// Threads that read and send the files the engine asks for.
const SENDERS: usize = 3;

/// Packets waiting for the connection: with `DATA_CHUNK`, at most about 4 MiB.
const PACKETS_IN_FLIGHT: usize = 32;

/// Go's `os.FileMode` bits, which a stat's `mode` carries.
mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
    }

/// A folder the session offers under a name: `context`, or `dockerfile` (the Dockerfile's folder).
#[derive(Debug, Clone)]
pub struct SyncedDir {
    pub name: String,
    pub root: PathBuf,
    /// Sent with owner 0:0, as the CLI maps the context's files.
    pub reset_owner: bool,
}

/// What the engine asked of one DiffCopy call (the call's metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRequest {
    pub dir_name: String,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    pub follow_paths: Vec<String>,
}

impl SyncRequest {
    /// Reads the metadata keys BuildKit's receiver sets (`dir-name`,
    /// `include-patterns`, `exclude-patterns`, `followpaths`), each value
    /// percent-decoded when BuildKit marks the key as encoded.
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> SyncRequest {
        let values = |key: &str| -> Vec<String> {
            let encoded = metadata.get(format!("{key}-encoded").as_str()).is_some();
            metadata
                .get_all(key)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| if encoded { percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned() } else { v.to_string() })
                .collect()
        };
        SyncRequest {
            dir_name: values("dir-name").into_iter().next().unwrap_or_default(),
            include_patterns: values("include-patterns"),
            exclude_patterns: values("exclude-patterns"),
            follow_paths: values("followpaths"),
        }
    }

    /// A read of the ignore files alone (`.dockerignore`, `<Dockerfile>.dockerignore`): not what a `COPY` sees.
    fn is_ignore_file_probe(&self) -> bool {
        let asked: Vec<&String> = self.include_patterns.iter().chain(&self.follow_paths).collect();
        !asked.is_empty() && asked.iter().all(|p| p.ends_with(".dockerignore"))
    }
}

/// One path a call listed, its state (the digest once known) and where it was read.
#[derive(Debug, Clone)]
pub struct ListedPath {
    pub rel: String,
    pub path: PathBuf,
    pub state: FileState,
    /// What the file's stat was when listed, to reuse its digest while it stays so.
    signature: Option<Signature>,
}

/// What one DiffCopy call listed and sent.
#[derive(Debug, Clone, Default)]
pub struct SyncCall {
    pub request: SyncRequest,
    /// In the order sent; a path's index is its id in the engine's requests.
    pub listed: Vec<ListedPath>,
    /// Files the engine asked for, and the bytes sent for them.
    pub requested: usize,
    pub bytes: u64,
    pub error: Option<String>,
    /// How long the listing took (the engine waits for it; waits for the connection to take its packets included).
    pub listing: std::time::Duration,
}

/// Every DiffCopy call of one session.
#[derive(Debug, Clone, Default)]
pub struct SyncLog {
    pub calls: Vec<SyncCall>,
}

impl SyncLog {
    /// Files and bytes that travelled, over all calls.
    pub fn transferred(&self) -> (usize, u64) {
        self.calls.iter().fold((0, 0), |(n, b), c| (n + c.requested, b + c.bytes))
    }

    /// The first error a call met, naming its source.
    pub fn error(&self) -> Option<String> {
        self.calls.iter().find_map(|c| c.error.as_ref().map(|e| format!("sending {}: {e}", c.request.dir_name)))
    }

    /// What the build's `COPY`s could see: the context as the engine's
    /// reads of it listed it (not its reads of the ignore files alone), each
    /// regular file with its digest (hashed as it was sent, else taken from
    /// `digests` while its stat is unchanged, else left to
    /// `SentContext::fill_digests`). `bytes` is what travelled, over every call.
    pub fn sent_context(&self, digests: &DigestCache) -> SentContext {
        let mut sent = SentContext {
            bytes: self.transferred().1,
            ..SentContext::default()
        };
        for call in self.calls.iter().filter(|c| c.request.dir_name == "context" && !c.request.is_ignore_file_probe()) {
            for listed in &call.listed {
                let mut state = listed.state.clone();
                if state.kind == "file" && state.digest.is_empty() {
                    match digests.known(&listed.path, listed.signature.as_ref()) {
                        Some(digest) => state.digest = digest,
                        None => sent.unhashed.push((listed.rel.clone(), listed.path.clone())),
                    }
                }
                if sent.contents.files.insert(listed.rel.clone(), state).is_none() {
                    sent.files.push(listed.rel.clone());
                }
            }
        }
        sent
    }
}

/// What identifies a file's bytes without reading them: if none of these changed, neither did they.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Signature {
    fn of(meta: &Metadata) -> Signature {
        Signature {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// SHA-256 digests of files sent before, by path, kept while their stat stays the same.
#[derive(Debug, Default)]
pub struct DigestCache {
    known: Mutex<HashMap<PathBuf, (Signature, String)>>,
}

impl DigestCache {
    fn remember(&self, path: &Path, signature: Signature, digest: String) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf(), (signature, digest));
    }

    /// The digest of `path` remembered while its stat matched `signature`.
    fn known(&self, path: &Path, signature: Option<&Signature>) -> Option<String> {
        let signature = signature?;
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(path).filter(|(s, _)| s == signature).map(|(_, d)| d.clone())
    }
}

/// Lists `dir` for `request` as fsutil's walk does, calling `each` with every
/// path in the order sent (its stat and state). `dialect` is the CLI's whose
/// sync this stands for (the engine's release).
pub fn list(dir: &SyncedDir, request: &SyncRequest, dialect: IgnoreDialect, mut each: impl FnMut(ListedPath, Stat) -> Result<(), ContextError>) -> Result<(), ContextError> {
    let root = dir.root.canonicalize().map_err(|source| ContextError::Io { path: dir.root.clone(), source })?;
    let rules = IgnoreRules::from_patterns(dialect, &request.exclude_patterns, &root.join(".dockerignore"))?;
    let includes = Includes::new(&root, &request.include_patterns, &request.follow_paths);
    let mut walker = WalkDir::new(&root).min_depth(1).follow_links(false).sort_by_file_name().into_iter();
    let mut folders: Vec<WalkedFolder> = Vec::new();
    let mut first_links: HashMap<(u64, u64), String> = HashMap::new();
    while let Some(item) = walker.next() {
        let entry = item.map_err(|e| ContextError::Io {
            path: e.path().unwrap_or(&root).to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(&root).map(slash_path).unwrap_or_default();
        folders.truncate(entry.depth().saturating_sub(1));
        let is_dir = entry.file_type().is_dir();
        let parent = folders.last();
        let inclusion = includes.judge(&rel, parent.map(|f| f.inclusion));
        if inclusion == Inclusion::Out {
            if is_dir {
                walker.skip_current_dir();
            }
            continue;
        }
        let (visit, judgement) = visit(Builder::Buildkit, &rules, &rel, is_dir, parent.map(|f| &f.judgement));
        let visit = match visit {
            // fsutil of 2020 (Docker 20.10) sends a folder on the way to an include at once, that of 2023 lazily.
            Visit::Send if is_dir && inclusion == Inclusion::Partial && dialect == IgnoreDialect::Docker23 => Visit::EnterLazily,
            other => other,
        };
        let io = |source| ContextError::Io { path: entry.path().to_path_buf(), source };
        match visit {
            Visit::Skip => continue,
            Visit::SkipTree => {
                walker.skip_current_dir();
                continue;
            }
            Visit::EnterLazily | Visit::EnterOnly => {
                let meta = std::fs::symlink_metadata(entry.path()).map_err(io)?;
                let unsent = listed(&rel, entry.path(), &meta, dir.reset_owner, &mut first_links).map_err(io)?;
                folders.push(WalkedFolder { judgement, inclusion, unsent: Some(unsent) });
                continue;
            }
            Visit::Send => {}
        }
        let meta = std::fs::symlink_metadata(entry.path()).map_err(io)?;
        let this = listed(&rel, entry.path(), &meta, dir.reset_owner, &mut first_links).map_err(io)?;
        for folder in &mut folders {
            if let Some((path, stat)) = folder.unsent.take() {
                each(path, stat)?;
            }
        }
        if is_dir {
            folders.push(WalkedFolder { judgement, inclusion, unsent: None });
        }
        each(this.0, this.1)?;
    }
    Ok(())
}

/// A folder the walk is in: what its paths inherit, and its listing while it waits to be sent.
struct WalkedFolder {
    judgement: WalkJudgement,
    inclusion: Inclusion,
    unsent: Option<(ListedPath, Stat)>,
}

/// The stat fsutil sends for `rel`, and its state for the miss reasons (digest unknown yet).
fn listed(rel: &str, path: &Path, meta: &Metadata, reset_owner: bool, first_links: &mut HashMap<(u64, u64), String>) -> std::io::Result<(ListedPath, Stat)> {
    let kind = meta.file_type();
    let unix = meta.mode();
    let mut mode = unix & 0o777;
    for (bit, go) in [(0o4000, go_mode::SETUID), (0o2000, go_mode::SETGID), (0o1000, go_mode::STICKY)] {
        if unix & bit != 0 {
            mode |= go;
        }
    }
    mode |= if kind.is_dir() {
        go_mode::DIR
    } else if kind.is_symlink() {
        go_mode::SYMLINK
    } else if kind.is_fifo() {
        go_mode::NAMED_PIPE
    } else if kind.is_char_device() {
        go_mode::DEVICE | go_mode::CHAR_DEVICE
    } else if kind.is_block_device() {
        go_mode::DEVICE
    } else {
        0
    };
    let (uid, gid) = if reset_owner { (0, 0) } else { (meta.uid(), meta.gid()) };
    let mut stat = Stat {
        path: rel.to_string(),
        mode,
        uid,
        gid,
        size: 0,
        mod_time: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ..Stat::default()
    };
    stat.xattrs = xattrs(path);
    let mut state_kind = "other";
    let mut link = None;
    if kind.is_dir() {
        state_kind = "dir";
    } else {
        stat.size = meta.len() as i64;
        if kind.is_symlink() {
            stat.linkname = std::fs::read_link(path)?.to_string_lossy().into_owned();
            link = Some(stat.linkname.clone());
            state_kind = "symlink";
        } else if kind.is_char_device() || kind.is_block_device() {
            stat.devmajor = i64::from(libc::major(meta.rdev()));
            stat.devminor = i64::from(libc::minor(meta.rdev()));
        } else if kind.is_file() || kind.is_socket() {
            state_kind = "file";
        }
        if meta.nlink() > 1 {
            match first_links.get(&(meta.dev(), meta.ino())) {
                Some(first) => {
                    stat.linkname = first.clone();
                    stat.size = 0;
                    link = Some(first.clone());
                    state_kind = "hardlink";
                }
                None => {
                    first_links.insert((meta.dev(), meta.ino()), rel.to_string());
                }
            }
        }
    }
    // A socket's contents are nothing (BuildKit copies it as an empty file).
    let digest = if kind.is_socket() { hex::encode(Sha256::digest(b"")) } else { String::new() };
    let state = FileState {
        kind: state_kind,
        digest,
        mode: unix & 0o7777,
        uid: u64::from(uid),
        gid: u64::from(gid),
        link,
    };
    let signature = kind.is_file().then(|| Signature::of(meta));
    Ok((
        ListedPath {
            rel: rel.to_string(),
            path: path.to_path_buf(),
            state,
            signature,
        },
        stat,
    ))
}

/// A path's extended attributes, as fsutil lists them (none where the file system has none).
fn xattrs(path: &Path) -> HashMap<String, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = HashMap::new();
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return out };
    // SAFETY: the buffers are as long as the lengths passed; a null buffer with length 0 asks for the size.
    let size = unsafe { libc::llistxattr(c_path.as_ptr(), std::ptr::null_mut(), 0) };
    if size <= 0 {
        return out;
    }
    let mut names = vec![0u8; size as usize];
    let size = unsafe { libc::llistxattr(c_path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if size <= 0 {
        return out;
    }
    names.truncate(size as usize);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(c_name) = std::ffi::CString::new(name) else { continue };
        let len = unsafe { libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            continue;
        }
        let mut value = vec![0u8; len as usize];
        let len = unsafe { libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len >= 0 {
            value.truncate(len as usize);
            out.insert(String::from_utf8_lossy(name).into_owned(), value);
        }
    }
    out
}

/// How a path stands against the include patterns and follow-paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inclusion {
    /// A pattern matches it or one of its folders: sent, and all below it.
    Full,
    /// It is a folder on the way to what a pattern may match: entered, and sent only with something below it.
    Partial,
    Out,
}

/// fsutil's include patterns, each matched element by element with Go's `filepath.Match`, plus the follow-paths and the symlinks on their way.
struct Includes {
    /// No patterns: everything is included.
    patterns: Vec<Vec<Option<Regex>>>,
}

impl Includes {
    fn new(root: &Path, include_patterns: &[String], follow_paths: &[String]) -> Includes {
        let mut patterns: Vec<Vec<Option<Regex>>> = include_patterns.iter().map(|p| clean(p).split('/').map(element_regex).collect()).collect();
        let mut everything = include_patterns.iter().any(|p| clean(p).is_empty());
        for path in follow_paths.iter().flat_map(|p| followed(root, p)) {
            everything |= path.is_empty();
            let elements: Vec<&str> = path.split('/').collect();
            // A wildcard in the last element is expanded in its folder: matched like an include.
            let last = elements.len() - 1;
            patterns.push(
                elements
                    .iter()
                    .enumerate()
                    .map(|(i, e)| if i == last { element_regex(e) } else { Regex::new(&format!("^{}$", regex::escape(e))).ok() })
                    .collect(),
            );
        }
        if everything {
            patterns.clear();
        }
        Includes { patterns }
    }

    /// How `rel` stands, given how its folder stood (`None` at the top).
    fn judge(&self, rel: &str, parent: Option<Inclusion>) -> Inclusion {
        if self.patterns.is_empty() || parent == Some(Inclusion::Full) {
            return Inclusion::Full;
        }
        let elements: Vec<&str> = rel.split('/').collect();
        let mut best = Inclusion::Out;
        for pattern in &self.patterns {
            let n = pattern.len().min(elements.len());
            let matches = pattern[..n].iter().zip(&elements[..n]).all(|(re, e)| re.as_ref().is_some_and(|re| re.is_match(e)));
            if matches {
                if elements.len() >= pattern.len() {
                    return Inclusion::Full;
                }
                best = Inclusion::Partial;
            }
        }
        best
    }
}

/// `path` cleaned as Go's `filepath.Clean` would, without a leading `/` or `./`.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// One path element of a Go `filepath.Match` pattern as a regular expression (`None` for a bad pattern, which matches nothing).
fn element_regex(glob: &str) -> Option<Regex> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => re.push_str(&regex::escape(&chars.next()?.to_string())),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    re.push('^');
                }
                let mut closed = false;
                for c in chars.by_ref() {
                    match c {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '-' => re.push('-'),
                        c => re.push_str(&regex::escape(&c.to_string())),
                    }
                }
                if !closed {
                    return None;
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).ok()
}

/// A follow-path and, when symlinks lie on its way, each link and what it
/// resolves to inside `root` (fsutil's `FollowLinks`).
fn followed(root: &Path, path: &str) -> Vec<String> {
    let mut out = vec![clean(path)];
    let mut pending: Vec<String> = clean(path).split('/').filter(|e| !e.is_empty()).map(str::to_string).collect();
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(element) = pending.pop() {
        resolved.push(element);
        let here = resolved.join("/");
        let Ok(target) = std::fs::read_link(root.join(&here)) else { continue };
        hops += 1;
        if hops > 255 {
            break;
        }
        out.push(here);
        resolved.pop();
        if target.is_absolute() {
            resolved.clear();
        }
        let mut rest: Vec<String> = pending.drain(..).rev().collect();
        let mut next: Vec<String> = Vec::new();
        for part in target.components() {
            match part {
                Component::Normal(p) => next.push(p.to_string_lossy().into_owned()),
                Component::ParentDir => next.push("..".into()),
                _ => {}
            }
        }
        next.append(&mut rest);
        for element in next.into_iter().rev() {
            pending.push(element);
        }
        // `..` steps back within the root.
        while let Some(pos) = pending.iter().rposition(|e| e == "..") {
            if pos + 1 == pending.len() {
                pending.pop();
                resolved.pop();
            } else {
                break;
            }
        }
        out.push(resolved.iter().cloned().chain(pending.iter().rev().cloned()).collect::<Vec<_>>().join("/"));
    }
    out.sort();
    out.dedup();
    out
}

/// The FileSync service of one session: DiffCopy over the folders it offers.
#[derive(Debug, Clone)]
pub struct FileSyncService {
    dirs: Arc<Vec<SyncedDir>>,
    dialect: IgnoreDialect,
    log: Arc<Mutex<SyncLog>>,
    digests: Arc<DigestCache>,
}

impl FileSyncService {
    pub fn new(dirs: Vec<SyncedDir>, dialect: IgnoreDialect, digests: Arc<DigestCache>) -> FileSyncService {
        FileSyncService {
            dirs: Arc::new(dirs),
            dialect,
            log: Arc::default(),
            digests,
        }
    }

    /// What the calls so far listed and sent.
    pub fn log(&self) -> SyncLog {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The cache the sent files' digests go to.
    pub fn digests_handle(&self) -> Arc<DigestCache> {
        self.digests.clone()
    }
}

fn packet(kind: PacketType) -> Packet {
    Packet {
        r#type: kind as i32,
        ..Packet::default()
    }
}

/// Runs `change` on call `index` of `log`.
fn on_call(log: &Mutex<SyncLog>, index: usize, change: impl FnOnce(&mut SyncCall)) {
    if let Some(call) = log.lock().unwrap_or_else(|e| e.into_inner()).calls.get_mut(index) {
        change(call);
    }
}

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = ReceiverStream<Result<Packet, tonic::Status>>;
    type TarStreamStream = ReceiverStream<Result<Packet, tonic::Status>>;

    async fn diff_copy(&self, request: tonic::Request<tonic::Streaming<Packet>>) -> Result<tonic::Response<Self::DiffCopyStream>, tonic::Status> {
        let sync = SyncRequest::from_metadata(request.metadata());
        let Some(dir) = self.dirs.iter().find(|d| d.name == sync.dir_name).cloned() else {
            return Err(tonic::Status::not_found(format!("no access allowed to dir {:?}", sync.dir_name)));
        };
        let index = {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            log.calls.push(SyncCall {
                request: sync.clone(),
                ..SyncCall::default()
            });
            log.calls.len() - 1
        };
        let (out, packets) = mpsc::channel(PACKETS_IN_FLIGHT);
        let mut incoming = request.into_inner();
        let (log, dialect) = (self.log.clone(), self.dialect);
        // The listing, on a thread of its own.
        let walk_out = out.clone();
        let walk_log = log.clone();
        tokio::task::spawn_blocking(move || {
            let listing = std::time::Instant::now();
            let result = list(&dir, &sync, dialect, |path, stat| {
                on_call(&walk_log, index, |call| call.listed.push(path));
                let packet = Packet {
                    stat: Some(stat),
                    ..packet(PacketType::PacketStat)
                };
                walk_out.blocking_send(Ok(packet)).map_err(|_| ContextError::NotRead(dir.root.clone()))
            });
            on_call(&walk_log, index, |call| call.listing = listing.elapsed());
            let end = match result {
                Ok(()) => packet(PacketType::PacketStat),
                Err(e) => {
                    on_call(&walk_log, index, |call| call.error = Some(e.to_string()));
                    Packet {
                        data: e.to_string().into_bytes(),
                        ..packet(PacketType::PacketErr)
                    }
                }
            };
            let _ = walk_out.blocking_send(Ok(end));
        });
        // The files asked for, sent by a few threads (as fsutil's sender does), each file's packets in order.
        let (wanted, asked) = mpsc::unbounded_channel::<u32>();
        let asked = Arc::new(Mutex::new(asked));
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                let (asked, send_log, send_out, digests) = (asked.clone(), log.clone(), out.clone(), self.digests.clone());
                tokio::task::spawn_blocking(move || send_requested(&asked, &send_log, index, &send_out, &digests))
            })
            .collect();
        // The engine's requests.
        tokio::spawn(async move {
            loop {
                match incoming.message().await {
                    Ok(Some(p)) if p.r#type == PacketType::PacketReq as i32 => {
                        let _ = wanted.send(p.id);
                    }
                    Ok(Some(p)) if p.r#type == PacketType::PacketFin as i32 => {
                        drop(wanted);
                        for sender in senders {
                            let _ = sender.await;
                        }
                        let _ = out.send(Ok(packet(PacketType::PacketFin))).await;
                        return;
                    }
                    Ok(Some(p)) if p.r#type == PacketType::PacketErr as i32 => {
                        let message = format!("the engine: {}", String::from_utf8_lossy(&p.data));
                        on_call(&log, index, |call| call.error = Some(message));
                        return;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(status) => {
                        on_call(&log, index, |call| {
                            call.error.get_or_insert_with(|| format!("the call ended: {}", status.message()));
                        });
                        return;
                    }
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(packets)))
    }

    async fn tar_stream(&self, _request: tonic::Request<tonic::Streaming<Packet>>) -> Result<tonic::Response<Self::TarStreamStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("layerbench's session serves DiffCopy only"))
    }
}

/// Takes the ids the engine asks for from `asked` and sends those files of call `index`, until the engine's
/// requests end or sending fails (then a `ERR` packet names the file).
fn send_requested(asked: &Mutex<mpsc::UnboundedReceiver<u32>>, log: &Mutex<SyncLog>, index: usize, out: &mpsc::Sender<Result<Packet, tonic::Status>>, digests: &DigestCache) {
    loop {
        let Some(id) = asked.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv() else { return };
        let listed = log.lock().unwrap_or_else(|e| e.into_inner()).calls.get(index).and_then(|c| c.listed.get(id as usize)).cloned();
        let Some(listed) = listed else {
            let _ = out.blocking_send(Ok(Packet {
                data: format!("invalid file id {id}").into_bytes(),
                ..packet(PacketType::PacketErr)
            }));
            return;
        };
        match send_file(&listed, id, out) {
            Ok(Some((bytes, digest))) => {
                if let Some(signature) = listed.signature {
                    digests.remember(&listed.path, signature, digest.clone());
                }
                on_call(log, index, |call| {
                    call.requested += 1;
                    call.bytes += bytes;
                    if let Some(l) = call.listed.get_mut(id as usize) {
                        l.state.digest = digest;
                    }
                });
            }
            Ok(None) => return,
            Err(e) => {
                let message = format!("{}: {e}", listed.path.display());
                on_call(log, index, |call| call.error = Some(message.clone()));
                let _ = out.blocking_send(Ok(Packet {
                    data: message.into_bytes(),
                    ..packet(PacketType::PacketErr)
                }));
                return;
            }
        }
    }
}

/// Sends one file as `DATA` packets and an empty one; its size and digest,
/// or `None` when the connection is gone.
fn send_file(listed: &ListedPath, id: u32, out: &mpsc::Sender<Result<Packet, tonic::Status>>) -> std::io::Result<Option<(u64, String)>> {
    let data = |data: Vec<u8>| Packet {
        id,
        data,
        ..packet(PacketType::PacketData)
    };
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    // A socket is sent as an empty file.
    if listed.state.kind == "file" && !listed.state.digest.is_empty() && listed.signature.is_none() {
        return Ok(out.blocking_send(Ok(data(Vec::new()))).ok().map(|_| (0, listed.state.digest.clone())));
    }
    let mut file = std::fs::File::open(&listed.path)?;
    loop {
        let mut chunk = vec![0u8; DATA_CHUNK];
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        hasher.update(&chunk);
        bytes += n as u64;
        if out.blocking_send(Ok(data(chunk))).is_err() {
            return Ok(None);
        }
    }
    if out.blocking_send(Ok(data(Vec::new()))).is_err() {
        return Ok(None);
    }
    Ok(Some((bytes, hex::encode(hasher.finalize()))))
}


/// A build context to be served through a session, as the Docker CLI serves a folder: the context, and the Dockerfile's folder apart from it.
#[derive(Debug, Clone)]
pub struct SessionContext {
    context_dir: PathBuf,
    dockerfile_dir: PathBuf,
    dockerfile_name: String,
    dialect: IgnoreDialect,
}

/// Prepares `context_dir` to be served through a build's session, with
/// `dockerfile` (absolute, or relative to `context_dir`; symlinks resolved as
/// the CLI resolves them) from its own folder. `dialect` is the engine's.
pub fn session_context(context_dir: &Path, dockerfile: &Path, dialect: IgnoreDialect) -> Result<SessionContext, ContextError> {
    let Resolved { root, given, dockerfile: resolved } = resolve(context_dir, dockerfile)?;
    let (Some(dir), Some(name)) = (resolved.parent(), resolved.file_name()) else {
        return Err(ContextError::MissingDockerfile(given));
    };
    Ok(SessionContext {
        context_dir: root,
        dockerfile_dir: dir.to_path_buf(),
        dockerfile_name: name.to_string_lossy().into_owned(),
        dialect,
    })
}

impl SessionContext {
    /// The name to pass as the build's `dockerfile` option: the file's name in its folder.
    pub fn dockerfile(&self) -> &str {
        &self.dockerfile_name
    }

    /// The folder served as `context`.
    pub fn context_dir(&self) -> &Path {
        &self.context_dir
    }

    /// The session's name and shared key, as the CLI of the engine's release
    /// makes them: the engine reuses its copy of the last sync under the same
    /// key, so a rebuild sends only what changed.
    pub fn session_name_and_key(&self) -> (String, String) {
        let name = self.context_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let key = hex::encode(Sha256::digest(format!("layerbench:{}", self.context_dir.display()).as_bytes()));
        (name, key)
    }

    /// The FileSync service that serves it: the context with owners 0:0, the
    /// Dockerfile's folder with its own owners (Docker 20.10's CLI) or 0:0 too
    /// (buildx, Docker 23 and later).
    pub fn service(&self, digests: Arc<DigestCache>) -> FileSyncService {
        let dirs = vec![
            SyncedDir {
                name: "context".into(),
                root: self.context_dir.clone(),
                reset_owner: true,
            },
            SyncedDir {
                name: "dockerfile".into(),
                root: self.dockerfile_dir.clone(),
                reset_owner: self.dialect == IgnoreDialect::Docker23,
            },
        ];
        FileSyncService::new(dirs, self.dialect, digests)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::context::build_context;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn listing(root: &Path, request: &SyncRequest, dialect: IgnoreDialect) -> Vec<(String, Stat)> {
        let dir = SyncedDir { name: "context".into(), root: root.to_path_buf(), reset_owner: true };
        let mut out = Vec::new();
        list(&dir, request, dialect, |path, stat| {
            out.push((path.rel, stat));
            Ok(())
        })
        .unwrap();
        out
    }

    fn paths(listed: &[(String, Stat)]) -> Vec<&str> {
        listed.iter().map(|(p, _)| p.as_str()).collect()
    }

    fn excluding(patterns: &[&str]) -> SyncRequest {
        SyncRequest { dir_name: "context".into(), exclude_patterns: patterns.iter().map(|p| p.to_string()).collect(), ..SyncRequest::default() }
    }

    #[test]
    fn the_listing_is_depth_first_in_name_order_as_the_engine_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["a.txt", "a/x", "a/b/y", "b", "A"] {
            write(&dir.path().join(p), p);
        }
        let listed = listing(dir.path(), &SyncRequest::default(), IgnoreDialect::Docker23);
        assert_eq!(paths(&listed), ["A", "a", "a/b", "a/b/y", "a/x", "a.txt", "b"]);
    }

    #[test]
    fn with_the_context_s_own_rules_the_listing_is_what_buildkit_s_tar_holds_in_both_dialects() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["Dockerfile", "main.go", "vendor/m/a.go", "vendor/m/keep.txt", "docs/x.md", "docs/y/z.md", "logs/1.log", ".git/HEAD", "tmp~"] {
            write(&dir.path().join(p), p);
        }
        let rules = "vendor\n!vendor/m/keep.txt\n**/*.md\n!docs/y\nlogs/*\n.git\n*~\n";
        write(&dir.path().join(".dockerignore"), rules);
        let patterns: Vec<&str> = rules.lines().collect();
        for dialect in [IgnoreDialect::Docker20, IgnoreDialect::Docker23] {
            let tar = build_context(dir.path(), Path::new("Dockerfile"), Builder::Buildkit, dialect).unwrap();
            let listed = listing(dir.path(), &excluding(&patterns), dialect);
            assert_eq!(paths(&listed), tar.files.iter().map(String::as_str).collect::<Vec<_>>(), "{dialect:?}");
        }
    }

    #[test]
    fn follow_paths_send_their_folders_at_once_in_docker_20_10_and_lazily_since() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["go.mod", "go.sum", "cmd/app/main.go", "cmd/tool/main.go", "empty/.keep", "z.txt"] {
            write(&dir.path().join(p), p);
        }
        let request = SyncRequest { follow_paths: vec!["go.mod".into(), "cmd/app".into(), "missing/file".into(), "empty/nothing".into()], ..SyncRequest::default() };
        let lazily = listing(dir.path(), &request, IgnoreDialect::Docker23);
        assert_eq!(paths(&lazily), ["cmd", "cmd/app", "cmd/app/main.go", "go.mod"]);
        let at_once = listing(dir.path(), &request, IgnoreDialect::Docker20);
        assert_eq!(paths(&at_once), ["cmd", "cmd/app", "cmd/app/main.go", "empty", "go.mod"]);
        // `.` lifts every filter; a wildcard in the last element is expanded.
        let all = listing(dir.path(), &SyncRequest { follow_paths: vec![".".into()], ..SyncRequest::default() }, IgnoreDialect::Docker23);
        assert_eq!(all.len(), 10);
        let glob = listing(dir.path(), &SyncRequest { follow_paths: vec!["go.*".into()], ..SyncRequest::default() }, IgnoreDialect::Docker23);
        assert_eq!(paths(&glob), ["go.mod", "go.sum"]);
    }

    #[test]
    fn a_followed_symlink_brings_its_target() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("real/Dockerfile"), "FROM scratch\n");
        write(&dir.path().join("other.txt"), "x");
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/real/Dockerfile", dir.path().join("abs")).unwrap();
        let request = SyncRequest { follow_paths: vec!["link/Dockerfile".into(), "abs".into()], ..SyncRequest::default() };
        let listed = listing(dir.path(), &request, IgnoreDialect::Docker23);
        assert_eq!(paths(&listed), ["abs", "link", "real", "real/Dockerfile"]);
    }

    #[test]
    fn stats_carry_go_s_mode_bits_nanosecond_times_link_targets_and_the_owner_the_cli_sends() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("d/run.sh"), "#!/bin/sh\n");
        std::fs::set_permissions(dir.path().join("d/run.sh"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("d/run.sh", dir.path().join("s")).unwrap();
        std::fs::hard_link(dir.path().join("d/run.sh"), dir.path().join("h")).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
        let listed = listing(dir.path(), &SyncRequest::default(), IgnoreDialect::Docker23);
        let stat = |p: &str| listed.iter().find(|(q, _)| q == p).map(|(_, s)| s.clone()).unwrap();
        let meta = std::fs::metadata(dir.path().join("d/run.sh")).unwrap();
        assert_eq!(stat("d").mode, go_mode::DIR | 0o755 & meta.mode() | (std::fs::metadata(dir.path().join("d")).unwrap().mode() & 0o777));
        assert_eq!(stat("d").size, 0, "folders have no size");
        assert_eq!(stat("d/run.sh").mode, go_mode::SETUID | 0o755);
        assert_eq!(stat("d/run.sh").size, 10);
        assert_eq!(stat("d/run.sh").mod_time, meta.mtime() * 1_000_000_000 + meta.mtime_nsec());
        assert_eq!((stat("d/run.sh").uid, stat("d/run.sh").gid), (0, 0));
        assert_eq!((stat("s").mode & go_mode::SYMLINK, stat("s").linkname.as_str(), stat("s").size), (go_mode::SYMLINK, "d/run.sh", 8));
        // The first path of a hard-linked file is sent whole; the others name it (walked in name order: `d/run.sh` first).
        assert_eq!((stat("h").linkname.as_str(), stat("h").size, stat("h").mode), ("d/run.sh", 0, go_mode::SETUID | 0o755));
        assert_eq!(stat("sock").mode & !0o777, 0, "a socket is sent as a regular file, as fsutil clears the bit");
    }

    #[test]
    fn the_engine_s_metadata_is_read_and_decoded_where_it_says_so() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("dir-name", "context".parse().unwrap());
        metadata.append("exclude-patterns", "node_modules".parse().unwrap());
        metadata.append("exclude-patterns", "!keep".parse().unwrap());
        metadata.append("followpaths", "caf%C3%A9+menu.txt".parse().unwrap());
        metadata.insert("followpaths-encoded", "1".parse().unwrap());
        let request = SyncRequest::from_metadata(&metadata);
        assert_eq!(request.dir_name, "context");
        assert_eq!(request.exclude_patterns, ["node_modules", "!keep"]);
        assert_eq!(request.follow_paths, ["café menu.txt"]);
        assert!(request.include_patterns.is_empty());
        assert!(SyncRequest { follow_paths: vec![".dockerignore".into()], ..request.clone() }.is_ignore_file_probe());
        assert!(!request.is_ignore_file_probe());
    }

    #[test]
    fn a_digest_is_kept_while_the_file_s_stat_stays_and_read_when_a_run_needs_it_once_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        write(&file, "one");
        let cache = DigestCache::default();
        let signature = Signature::of(&std::fs::metadata(&file).unwrap());
        cache.remember(&file, signature, "remembered".into());
        assert_eq!(cache.known(&file, Some(&signature)).as_deref(), Some("remembered"));
        write(&file, "two!");
        let changed = Signature::of(&std::fs::metadata(&file).unwrap());
        assert_eq!(cache.known(&file, Some(&changed)), None);
        let listed = ListedPath { rel: "f".into(), path: file.clone(), state: FileState { kind: "file", digest: String::new(), mode: 0o644, uid: 0, gid: 0, link: None }, signature: Some(changed) };
        let log = SyncLog { calls: vec![SyncCall { request: SyncRequest { dir_name: "context".into(), ..SyncRequest::default() }, listed: vec![listed], ..SyncCall::default() }] };
        let mut sent = log.sent_context(&cache);
        assert_eq!(sent.unhashed, [("f".to_string(), file.clone())]);
        sent.fill_digests().unwrap();
        assert_eq!(sent.contents.files["f"].digest, hex::encode(Sha256::digest(b"two!")));
    }
}
