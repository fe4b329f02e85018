//! The bytes of a proxy answer: small ones in memory, a file of the store or the cache folder opened and read in chunks.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, Take};
use tokio_util::io::ReaderStream;

/// The size of the pieces a file is read (and, unshaped, sent) in: what one
/// answer holds of its file at a time, whatever the file's size.
pub const FILE_CHUNK_BYTES: usize = 64 * 1024;

/// The rest of an opened file, one chunk of at most [`FILE_CHUNK_BYTES`] at a time.
pub(crate) type FileChunks = ReaderStream<Take<tokio::fs::File>>;

/// What a lookup found, ready to be sent.
#[derive(Debug)]
pub enum Content {
    /// Small answers (a filtered `list`, a JSON, a refusal's text) and what the upstream just sent.
    Memory(Bytes),
    /// A file of the store or the upstream's cache folder.
    File(OpenFile),
}

impl Content {
    /// The whole content in memory: only for the small answers that are
    /// parsed (`list`, `@latest`), never for one that is just sent.
    pub async fn read_whole(self) -> Result<Bytes, ReadError> {
        match self {
            Content::Memory(bytes) => Ok(bytes),
            Content::File(file) => file.read_whole().await,
        }
    }
}

impl From<Vec<u8>> for Content {
    fn from(bytes: Vec<u8>) -> Self {
        Content::Memory(Bytes::from(bytes))
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Memory(Bytes::from(text))
    }
}

/// A file opened for an answer, with its length when it was opened (the
/// answer's `Content-Length`: a file that grows later is cut there).
#[derive(Debug)]
pub struct OpenFile {
    file: tokio::fs::File,
    len: u64,
    path: PathBuf,
}

impl OpenFile {
    /// Opens the regular file at `path`; `Ok(None)` when there is none (no
    /// such file, or a folder there).
    pub async fn open(path: &Path) -> io::Result<Option<OpenFile>> {
        let file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let metadata = file.metadata().await?;
        if !metadata.is_file() {
            return Ok(None);
        }
        Ok(Some(OpenFile {
            file,
            len: metadata.len(),
            path: path.to_path_buf(),
        }))
    }

    /// The file's bytes as a stream of chunks, and how many bytes there are in all.
    pub(crate) fn into_chunks(self) -> (FileChunks, u64) {
        (ReaderStream::with_capacity(self.file.take(self.len), FILE_CHUNK_BYTES), self.len)
    }

    async fn read_whole(self) -> Result<Bytes, ReadError> {
        let OpenFile { file, len, path } = self;
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut reader = file.take(len);
        match reader.read_to_end(&mut bytes).await {
            Ok(_) => Ok(Bytes::from(bytes)),
            Err(source) => Err(ReadError { path, source }),
        }
    }
}

/// A file being answered could not be read.
#[derive(Debug, thiserror::Error)]
#[error("failed to read {path}: {source}")]
pub struct ReadError {
    pub path: PathBuf,
    pub source: io::Error,
}
