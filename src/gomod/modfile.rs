//! go.mod text and module versions: semantic-version ordering, Debian-to-Go version mapping and the requirement rewrite that makes a store consistent.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A Go module version (`v1.2.3`, `v1.2.3-pre`, `v0.0.0-20190716064945-2f068394615f`, `v2.0.0+incompatible`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    text: String,
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<String>,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let rest = text.strip_prefix('v')?;
        let core_and_pre = rest.split('+').next()?;
        let (core, pre) = match core_and_pre.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (core_and_pre, None),
        };
        let mut nums = core.split('.');
        let major = parse_num(nums.next()?)?;
        let minor = parse_num(nums.next()?)?;
        let patch = parse_num(nums.next()?)?;
        if nums.next().is_some() {
            return None;
        }
        let pre = match pre {
            Some("") => return None,
            Some(p) => p.split('.').map(str::to_string).collect(),
            None => Vec::new(),
        };
        Some(Version {
            text: text.to_string(),
            major,
            minor,
            patch,
            pre,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn major(&self) -> u64 {
        self.major
    }

    /// A release: neither a pre-release nor a pseudo-version (`+incompatible` is a release).
    pub fn is_release(&self) -> bool {
        self.pre.is_empty()
    }
}

fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(&self.pre, &other.pre),
            })
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn compare_prerelease(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// Maps a Debian package version to the Go module version it packages.
///
/// Strips the epoch, the Debian revision and repack suffixes (`+dfsg`, `~ds1`,
/// `~bpo12+1`). A snapshot `0.0~gitYYYYMMDD.HASH` becomes the pseudo-version
/// that some go.mod in `known` already names for that date and hash, else
/// `v0.0.0-YYYYMMDD000000-HASH`.
pub fn debian_to_go_version(debian: &str, known: &[String]) -> Option<String> {
    let no_epoch = debian.split_once(':').map_or(debian, |(_, v)| v);
    let upstream = match no_epoch.rfind('-') {
        Some(i) => &no_epoch[..i],
        None => no_epoch,
    };
    let upstream = upstream.split(['+', '~']).next()?;
    if let Some(snap) = no_epoch.strip_prefix("0.0~git") {
        let snap = match snap.rfind('-') {
            Some(i) => &snap[..i],
            None => snap,
        };
        let (date, hash) = snap.split_once('.')?;
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) || hash.is_empty() {
            return None;
        }
        let prefix = format!("v0.0.0-{date}");
        if let Some(found) = known.iter().find(|v| {
            v.starts_with(&prefix)
                && v.rsplit('-').next().is_some_and(|h| h.starts_with(hash))
        }) {
            return Some(found.clone());
        }
        return Some(format!("v0.0.0-{date}000000-{hash}"));
    }
    let v = format!("v{upstream}");
    Version::parse(&v).map(|_| v)
}

/// One `require` of a go.mod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub module: String,
    pub version: String,
}

/// The `module` line of a go.mod, if any.
pub fn module_path(go_mod: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let line = strip_comment(line).trim();
        line.strip_prefix("module")
            .filter(|rest| rest.starts_with(char::is_whitespace))
            .map(|rest| rest.trim().trim_matches('"').to_string())
    })
}

/// Every requirement of a go.mod, single-line and block form.
pub fn requirements(go_mod: &str) -> Vec<Requirement> {
    requirement_lines(go_mod).into_iter().map(|(r, _)| r).collect()
}

/// The first requirement of a go.mod, in file order, not marked `// indirect`.
pub fn first_direct_requirement(go_mod: &str) -> Option<Requirement> {
    requirement_lines(go_mod).into_iter().find(|(_, indirect)| !indirect).map(|(r, _)| r)
}

/// Every requirement in file order, with whether its comment marks it `// indirect`.
fn requirement_lines(go_mod: &str) -> Vec<(Requirement, bool)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in go_mod.lines() {
        let code = strip_comment(line).trim();
        let body = if in_block {
            if code == ")" {
                in_block = false;
                None
            } else {
                Some(code)
            }
        } else if code == "require (" || code == "require(" {
            in_block = true;
            None
        } else {
            code.strip_prefix("require ")
        };
        if let Some(r) = body.and_then(parse_requirement) {
            out.push((r, is_indirect(line)));
        }
    }
    out
}

/// Go's rule: the line comment starts with `indirect`, alone or followed by `;`.
fn is_indirect(line: &str) -> bool {
    line.find("//").is_some_and(|i| {
        let comment = line[i + 2..].trim();
        comment == "indirect" || comment.starts_with("indirect;")
    })
}

fn strip_comment(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn parse_requirement(code: &str) -> Option<Requirement> {
    let mut parts = code.split_whitespace();
    let module = parts.next()?.trim_matches('"').to_string();
    let version = parts.next()?.to_string();
    Some(Requirement { module, version })
}

/// Picks the store version that stands in for `wanted`: the same version,
/// else the nearest above it, else the nearest below it.
pub fn pick_version<'a>(wanted: &str, available: &'a [Version]) -> Option<&'a Version> {
    if let Some(v) = available.iter().find(|v| v.as_str() == wanted) {
        return Some(v);
    }
    let wanted = Version::parse(wanted)?;
    let mut sorted: Vec<&Version> = available.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .find(|v| **v > &wanted)
        .or_else(|| sorted.iter().rev().find(|v| **v < &wanted))
        .copied()
}

/// What a rewrite did to one go.mod: the lines it changed, for the store's provenance notes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub text: String,
    pub changes: Vec<String>,
}

/// Points every requirement at a version present in the store (see
/// [`pick_version`]), drops requirements on modules the store lacks and drops
/// `toolchain` lines, so that the store's requirement graph is closed.
pub fn rewrite_requirements(go_mod: &str, store: &BTreeMap<String, Vec<Version>>) -> Rewrite {
    let mut text = String::with_capacity(go_mod.len());
    let mut changes = Vec::new();
    let mut in_block = false;
    for line in go_mod.lines() {
        let code = strip_comment(line).trim();
        let (is_req, body) = if in_block {
            if code == ")" {
                in_block = false;
                (false, "")
            } else {
                (true, code)
            }
        } else if code == "require (" || code == "require(" {
            in_block = true;
            (false, "")
        } else if let Some(rest) = code.strip_prefix("require ") {
            (true, rest)
        } else if code.starts_with("toolchain ") {
            changes.push(format!("dropped `{code}`"));
            continue;
        } else {
            (false, "")
        };
        if is_req {
            if let Some(req) = parse_requirement(body) {
                match store.get(&req.module).and_then(|vs| pick_version(&req.version, vs)) {
                    None => {
                        changes.push(format!("dropped {} {} (not in the store)", req.module, req.version));
                        continue;
                    }
                    Some(v) if v.as_str() != req.version => {
                        changes.push(format!("{} {} -> {}", req.module, req.version, v.as_str()));
                        text.push_str(&line.replacen(&req.version, v.as_str(), 1));
                        text.push('\n');
                        continue;
                    }
                    Some(_) => {}
                }
            }
        }
        text.push_str(line);
        text.push('\n');
    }
    // An emptied block is legal go.mod syntax; leave it as it is.
    Rewrite { text, changes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(list: &[&str]) -> Vec<Version> {
        list.iter().map(|v| Version::parse(v).unwrap()).collect()
    }

    #[test]
    fn versions_order_as_semver() {
        let mut v = vs(&["v1.10.0", "v1.2.0", "v1.2.0-rc.1", "v0.0.0-20190716064945-2f068394615f", "v1.2.0-beta"]);
        v.sort();
        let order: Vec<&str> = v.iter().map(Version::as_str).collect();
        assert_eq!(order, ["v0.0.0-20190716064945-2f068394615f", "v1.2.0-beta", "v1.2.0-rc.1", "v1.2.0", "v1.10.0"]);
        assert!(Version::parse("1.2.0").is_none());
        assert!(Version::parse("v1.02.0").is_none());
    }

    #[test]
    fn debian_versions_map_to_module_versions() {
        assert_eq!(debian_to_go_version("1:0.7.0+dfsg-1", &[]).as_deref(), Some("v0.7.0"));
        assert_eq!(debian_to_go_version("1.3.2-2~bpo12+1", &[]).as_deref(), Some("v1.3.2"));
        assert_eq!(debian_to_go_version("1.0.3-1.1", &[]).as_deref(), Some("v1.0.3"));
        assert_eq!(debian_to_go_version("2.1.1~ds1-2", &[]).as_deref(), Some("v2.1.1"));
    }

    #[test]
    fn snapshots_reuse_the_upstream_pseudo_version_when_known() {
        let known = vec!["v0.0.0-20190716064945-2f068394615f".to_string()];
        assert_eq!(
            debian_to_go_version("0.0~git20190716.2f06839-3", &known).as_deref(),
            Some("v0.0.0-20190716064945-2f068394615f")
        );
        assert_eq!(
            debian_to_go_version("0.0~git20211218.b94a6e3-1", &known).as_deref(),
            Some("v0.0.0-20211218000000-b94a6e3")
        );
    }

    #[test]
    fn requirements_are_read_in_both_forms() {
        let m = "module example.com/x // the module\n\ngo 1.19\n\nrequire github.com/a/b v1.0.0\nrequire (\n\tgithub.com/c/d v0.3.0 // indirect\n)\n";
        assert_eq!(module_path(m).as_deref(), Some("example.com/x"));
        let r = requirements(m);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], Requirement { module: "github.com/c/d".into(), version: "v0.3.0".into() });
    }

    #[test]
    fn the_first_direct_requirement_skips_indirect_ones_in_file_order() {
        let m = "module x\n\nrequire (\n\tgolang.org/x/sys v0.3.0 // indirect\n\tgithub.com/a/b v1.0.0 // pinned\n)\n\nrequire github.com/c/d v0.1.0\n";
        assert_eq!(first_direct_requirement(m), Some(Requirement { module: "github.com/a/b".into(), version: "v1.0.0".into() }));
        let all_indirect = "module x\nrequire golang.org/x/sys v0.3.0 // indirect; for the build\n";
        assert_eq!(first_direct_requirement(all_indirect), None);
        assert_eq!(first_direct_requirement("module x\n\ngo 1.23\n"), None);
        let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sample-go-app/go.mod")).unwrap();
        let first = first_direct_requirement(&sample).unwrap();
        assert_eq!((first.module.as_str(), first.version.as_str()), ("github.com/BurntSushi/toml", "v1.2.0"));
    }

    #[test]
    fn picking_prefers_exact_then_above_then_below() {
        let avail = vs(&["v0.3.0", "v0.22.0"]);
        assert_eq!(pick_version("v0.3.0", &avail).unwrap().as_str(), "v0.3.0");
        assert_eq!(pick_version("v0.5.0", &avail).unwrap().as_str(), "v0.22.0");
        assert_eq!(pick_version("v0.30.0", &avail).unwrap().as_str(), "v0.22.0");
        assert!(pick_version("v1.0.0", &[]).is_none());
    }

    #[test]
    fn rewrite_points_requirements_into_the_store_and_drops_the_rest() {
        let mut store = BTreeMap::new();
        store.insert("golang.org/x/sys".to_string(), vs(&["v0.3.0"]));
        store.insert("github.com/a/b".to_string(), vs(&["v1.0.0"]));
        let m = "module x\n\ngo 1.21\n\ntoolchain go1.21.5\n\nrequire github.com/a/b v1.0.0\n\nrequire (\n\tgolang.org/x/sys v0.1.0 // indirect\n\tgithub.com/gone/away v1.2.3\n)\n";
        let r = rewrite_requirements(m, &store);
        assert_eq!(r.text, "module x\n\ngo 1.21\n\n\nrequire github.com/a/b v1.0.0\n\nrequire (\n\tgolang.org/x/sys v0.3.0 // indirect\n)\n");
        assert_eq!(r.changes.len(), 3, "{:?}", r.changes);
    }
}
