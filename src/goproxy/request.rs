//! What a request to the module proxy asks for: its target parsed into module, version and file, or the reason it is refused (a path that would leave the store, a malformed escape, an oversized URI or head).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::goproxy::layout::unescape_path;

/// The longest request target (path and query) answered; longer ones are refused with 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names and values) answered; more are refused with 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    List,
    Info,
    Mod,
    Zip,
    Latest,
    /// Anything that is not a GOPROXY request (answered 404, or refused).
    Other,
}

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub module: Option<String>,
    pub version: Option<String>,
    pub kind: RequestKind,
}

impl Target {
    /// A path that is not a GOPROXY request.
    pub fn other() -> Target {
        Target {
            module: None,
            version: None,
            kind: RequestKind::Other,
        }
    }
}

/// Why a request is refused before the store or the upstream is asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request path `{0}` has a `%` not followed by two hexadecimal digits")]
    MalformedEscape(String),
    #[error("the request path `{0}` is not UTF-8 once its escapes are decoded")]
    NotUtf8(String),
    #[error("the request path `{path}` (decoded `{decoded}`) could leave the module store: it has an empty, `.` or `..` segment, a backslash or a control character")]
    OutsideStore { path: String, decoded: String },
    #[error("the request target is {len} bytes long; at most {MAX_URI_BYTES} are answered")]
    UriTooLong { len: usize },
    #[error("the request headers are {len} bytes long; at most {MAX_HEADER_BYTES} are answered")]
    HeadersTooLarge { len: usize },
    #[error("the request path starts with `/lane/` but names no lane (letters, digits, `-` and `_`, at most 64)")]
    BadLane,
}

impl Refusal {
    /// The HTTP status the refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::MalformedEscape(_) | Refusal::NotUtf8(_) | Refusal::OutsideStore { .. } | Refusal::BadLane => 400,
            Refusal::UriTooLong { .. } => 414,
            Refusal::HeadersTooLarge { .. } => 431,
        }
    }
}

/// Refuses a request whose target or headers are longer than the proxy answers.
pub fn check_sizes(target_len: usize, header_bytes: usize) -> Result<(), Refusal> {
    if target_len > MAX_URI_BYTES {
        return Err(Refusal::UriTooLong { len: target_len });
    }
    if header_bytes > MAX_HEADER_BYTES {
        return Err(Refusal::HeadersTooLarge { len: header_bytes });
    }
    Ok(())
}

/// Parses a GOPROXY request path (`/<escaped module>/@v/<file>` or
/// `/<escaped module>/@latest`, without the query). Escapes are decoded
/// first, so `%2e%2e` and `%2f` are judged as the `..` and `/` they stand for.
pub fn parse_target(path: &str) -> Result<Target, Refusal> {
    let decoded = decode(path)?;
    let rest = match decoded.strip_prefix('/') {
        Some(rest) if path.starts_with('/') => rest,
        _ => return Err(outside(path, &decoded)),
    };
    if rest.is_empty() {
        return Ok(Target::other());
    }
    let leaves_store = rest.contains(|c: char| c == '\\' || c.is_control())
        || rest.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if leaves_store {
        return Err(outside(path, &decoded));
    }
    if let Some(escaped) = rest.strip_suffix("/@latest") {
        return Ok(Target {
            module: unescape_path(escaped),
            version: None,
            kind: RequestKind::Latest,
        });
    }
    let Some((escaped, file)) = rest.split_once("/@v/") else {
        return Ok(Target::other());
    };
    if file.contains('/') {
        return Ok(Target::other());
    }
    let (kind, version) = if file == "list" {
        (RequestKind::List, None)
    } else if let Some(v) = file.strip_suffix(".info") {
        (RequestKind::Info, Some(v))
    } else if let Some(v) = file.strip_suffix(".mod") {
        (RequestKind::Mod, Some(v))
    } else if let Some(v) = file.strip_suffix(".zip") {
        (RequestKind::Zip, Some(v))
    } else {
        return Ok(Target::other());
    };
    Ok(Target {
        module: unescape_path(escaped),
        version: version.and_then(unescape_path),
        kind,
    })
}

/// Decodes `%XX` escapes (the go command sends `!` as `%21`); a `%` without two hex digits is refused, not passed through.
fn decode(path: &str) -> Result<Cow<'_, str>, Refusal> {
    let bytes = path.as_bytes();
    let malformed = bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'%' && !bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
    if malformed {
        return Err(Refusal::MalformedEscape(path.to_string()));
    }
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| Refusal::NotUtf8(path.to_string()))
}

fn outside(path: &str, decoded: &str) -> Refusal {
    Refusal::OutsideStore {
        path: path.to_string(),
        decoded: decoded.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(path: &str) -> RequestKind {
        parse_target(path).unwrap().kind
    }

    #[test]
    fn request_paths_are_parsed_with_escapes() {
        let t = parse_target("/github.com/!burnt!sushi/toml/@v/v1.3.2.zip").unwrap();
        assert_eq!(t.module.as_deref(), Some("github.com/BurntSushi/toml"));
        assert_eq!(t.version.as_deref(), Some("v1.3.2"));
        assert_eq!(t.kind, RequestKind::Zip);
        let t = parse_target("/github.com/%21burnt%21sushi/toml/@v/v1.2.0.info").unwrap();
        assert_eq!(t.module.as_deref(), Some("github.com/BurntSushi/toml"));
        assert_eq!(t.kind, RequestKind::Info);
        let t = parse_target("/golang.org/x/sys/@v/v0.22.0.mod").unwrap();
        assert_eq!((t.kind, t.version.as_deref()), (RequestKind::Mod, Some("v0.22.0")));
        assert_eq!(kind("/golang.org/x/sys/@v/list"), RequestKind::List);
        assert_eq!(kind("/golang.org/x/sys/@latest"), RequestKind::Latest);
        assert_eq!(kind("/favicon.ico"), RequestKind::Other);
        assert_eq!(kind("/"), RequestKind::Other);
        assert_eq!(kind("/a/@v/x/y.zip"), RequestKind::Other);
        assert_eq!(parse_target("/A/@v/list").unwrap().module, None, "a capital letter is not an escaped path");
    }

    #[test]
    fn a_path_with_a_dot_dot_segment_is_refused_however_it_is_written() {
        for path in [
            "/../etc/passwd",
            "/a/@v/../../x.zip",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/a/%2e%2E/@v/list",
            "/a/.%2e/@v/list",
            "/a/%2e./@v/list",
            "/a%2f..%2f..%2fetc/@v/list",
            "/a%2F..%2Fb/@v/list",
            "/a/./@v/list",
        ] {
            assert!(matches!(parse_target(path), Err(Refusal::OutsideStore { .. })), "{path} was not refused");
        }
    }

    #[test]
    fn absolute_backslash_and_control_tricks_are_refused() {
        for path in [
            "//etc/passwd/@v/list",
            "/a//@v/list",
            "/a/%2f/@v/list",
            "etc/passwd",
            "%2fetc/@v/list",
            "*",
            "/a\\..\\b/@v/list",
            "/a%5c..%5cb/@v/list",
            "/a%00/@v/list",
            "/a/@v/v1.0.0.zip%0a",
        ] {
            let refused = parse_target(path);
            assert!(matches!(refused, Err(Refusal::OutsideStore { .. })), "{path}: {refused:?}");
            assert_eq!(refused.unwrap_err().status(), 400);
        }
    }

    #[test]
    fn a_malformed_or_non_utf8_escape_is_a_bad_request() {
        for path in ["/a/%zz/@v/list", "/a/%2/@v/list", "/a/@v/list%", "/a/%%41/@v/list", "/a/%g1/@v/list"] {
            let refused = parse_target(path);
            assert_eq!(refused, Err(Refusal::MalformedEscape(path.to_string())));
        }
        assert_eq!(parse_target("/a/%ff/@v/list"), Err(Refusal::NotUtf8("/a/%ff/@v/list".to_string())));
        assert_eq!(Refusal::NotUtf8(String::new()).status(), 400);
    }

    #[test]
    fn oversized_targets_and_headers_are_refused_with_their_own_statuses() {
        assert_eq!(check_sizes(MAX_URI_BYTES, MAX_HEADER_BYTES), Ok(()));
        let long = check_sizes(MAX_URI_BYTES + 1, 0).unwrap_err();
        assert_eq!((long.status(), long.clone()), (414, Refusal::UriTooLong { len: MAX_URI_BYTES + 1 }));
        let large = check_sizes(10, MAX_HEADER_BYTES + 1).unwrap_err();
        assert_eq!(large.status(), 431);
        assert!(large.to_string().contains(&MAX_HEADER_BYTES.to_string()), "{large}");
    }
}
