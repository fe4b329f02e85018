//! The build-context tar: the app folder as the Docker CLI would send it, honouring `.dockerignore`.

use std::path::{Path, PathBuf};

use regex::Regex;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: pattern `{pattern}` is not a valid .dockerignore pattern")]
    BadPattern { file: PathBuf, pattern: String },
    #[error("the Dockerfile {0} does not exist in the build context")]
    MissingDockerfile(PathBuf),
}

/// One `.dockerignore` line, compiled.
#[derive(Debug, Clone)]
struct Pattern {
    regex: Regex,
    exclusion: bool,
}

/// The rules of a `.dockerignore` file: the last pattern that matches a path
/// (or one of its parent folders) decides; `!` patterns re-include.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

impl IgnoreRules {
    /// Parses `.dockerignore` text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<IgnoreRules, ContextError> {
        let mut patterns = Vec::new();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(body);
            if cleaned.is_empty() {
                continue;
            }
            let regex = glob_to_regex(&cleaned).ok_or_else(|| ContextError::BadPattern {
                file: origin.to_path_buf(),
                pattern: raw.to_string(),
            })?;
            patterns.push(Pattern { regex, exclusion });
        }
        Ok(IgnoreRules { patterns })
    }

    /// Whether `rel` (a `/`-separated path relative to the context root) is left out.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            let hit = p.regex.is_match(rel) || parents(rel).any(|parent| p.regex.is_match(parent));
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether some `!` pattern could re-include something below an excluded folder.
    fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }
}

fn parents(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

/// Like Go's `filepath.Clean`, without a leading `/`.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in pattern.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// Compiles a Docker glob: `*` and `?` stay within one path element, `**`
/// spans any number of elements, `[...]` is a class and `\` escapes.
fn glob_to_regex(pattern: &str) -> Option<Regex> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    // `**/` matches zero or more whole folders.
                    i += 1;
                    re.push_str("(?:.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let close = chars[i + 1..].iter().position(|&x| x == ']')? + i + 1;
                let mut class: String = chars[i + 1..close].iter().collect();
                if let Some(rest) = class.strip_prefix('^') {
                    class = format!("^{}", rest.replace('\\', "\\\\"));
                } else {
                    class = class.replace('\\', "\\\\");
                }
                re.push('[');
                re.push_str(&class);
                re.push(']');
                i = close;
            }
            '\\' => {
                i += 1;
                re.push_str(&regex::escape(&chars.get(i)?.to_string()));
            }
            other => re.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Regex::new(&re).ok()
}

/// A build context ready to send: an uncompressed tar and the files it holds.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub tar: Vec<u8>,
    pub files: Vec<String>,
    /// The Dockerfile's name inside the tar (the build's `dockerfile` option).
    pub dockerfile: String,
}

/// Tars `dir` as a build context. Files excluded by `dir/.dockerignore` are
/// left out, except the Dockerfile and `.dockerignore` themselves, which the
/// engine always needs (as the Docker CLI does). Entries are sorted and carry
/// fixed owners, so the same folder gives the same tar.
pub fn build_context(dir: &Path, dockerfile: &Path) -> Result<BuildContext, ContextError> {
    let dockerfile_path = if dockerfile.is_absolute() { dockerfile.to_path_buf() } else { dir.join(dockerfile) };
    let dockerfile = dockerfile_path
        .strip_prefix(dir)
        .map_err(|_| ContextError::MissingDockerfile(dockerfile_path.clone()))?
        .to_string_lossy()
        .to_string();
    let dockerfile = dockerfile.as_str();
    // As the Docker CLI does: `<Dockerfile>.dockerignore` beside the Dockerfile wins over `.dockerignore`.
    let specific = dir.join(format!("{dockerfile}.dockerignore"));
    let root_ignore = dir.join(".dockerignore");
    let ignore_path = if specific.is_file() { specific } else { root_ignore };
    let ignore_text = if ignore_path.is_file() {
        Some(std::fs::read_to_string(&ignore_path).map_err(|source| ContextError::Io {
            path: ignore_path.clone(),
            source,
        })?)
    } else {
        None
    };
    let rules = match &ignore_text {
        Some(text) => IgnoreRules::parse(text, &ignore_path)?,
        None => IgnoreRules::default(),
    };
    if !dir.join(dockerfile).is_file() {
        return Err(ContextError::MissingDockerfile(dir.join(dockerfile)));
    }
    let mut entries = Vec::new();
    walk(dir, dir, &rules, &mut entries)?;
    entries.retain(|(rel, _)| rel != ".dockerignore");
    if !entries.iter().any(|(rel, _)| rel == dockerfile) {
        entries.push((dockerfile.to_string(), dir.join(dockerfile)));
    }
    entries.sort();
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut files = Vec::new();
    // The engine reads `.dockerignore` from the context too: send the rules that were applied.
    if let Some(text) = &ignore_text {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, ".dockerignore", text.as_bytes())
            .map_err(|source| ContextError::Io { path: ignore_path.clone(), source })?;
        files.push(".dockerignore".to_string());
    }
    for (rel, path) in &entries {
        append_entry(&mut builder, path, rel)?;
        files.push(rel.clone());
    }
    let tar = builder.into_inner().map_err(|source| ContextError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(BuildContext { tar, files, dockerfile: dockerfile.to_string() })
}

/// Appends a file, folder or symlink with its real mode and modification time
/// (as the CLI sends them) and owner root, like the CLI's context.
fn append_entry(builder: &mut tar::Builder<Vec<u8>>, path: &Path, rel: &str) -> Result<(), ContextError> {
    let io = |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    header.set_uid(0);
    header.set_gid(0);
    let _ = header.set_username("");
    let _ = header.set_groupname("");
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(io)?;
        builder.append_link(&mut header, rel, &target).map_err(io)
    } else if meta.is_dir() {
        header.set_size(0);
        builder.append_data(&mut header, rel, std::io::empty()).map_err(io)
    } else {
        let file = std::fs::File::open(path).map_err(io)?;
        builder.append_data(&mut header, rel, file).map_err(io)
    }
}

fn walk(root: &Path, dir: &Path, rules: &IgnoreRules, out: &mut Vec<(String, PathBuf)>) -> Result<(), ContextError> {
    let io = |source| ContextError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut children: Vec<_> = std::fs::read_dir(dir).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
    children.sort_by_key(|e| e.file_name());
    for entry in children {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let kind = entry.file_type().map_err(|source| ContextError::Io {
            path: path.clone(),
            source,
        })?;
        let excluded = rules.is_excluded(&rel);
        if kind.is_dir() {
            // An excluded folder is skipped unless a `!` pattern may re-include something in it.
            if excluded && !rules.has_exclusions() {
                continue;
            }
            if !excluded {
                out.push((rel.clone(), path.clone()));
            }
            walk(root, &path, rules, out)?;
        } else if !excluded {
            out.push((rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn a_pattern_excludes_a_folder_and_everything_in_it() {
        let r = rules(".git\n");
        assert!(r.is_excluded(".git"));
        assert!(r.is_excluded(".git/objects/ab/cdef"));
        assert!(!r.is_excluded("src/.gitkeep"));
    }

    #[test]
    fn star_stays_within_one_element_and_double_star_spans_many() {
        let r = rules("*.md\n**/*.tmp\n");
        assert!(r.is_excluded("README.md"));
        assert!(!r.is_excluded("docs/guide.md"));
        assert!(r.is_excluded("a.tmp"));
        assert!(r.is_excluded("a/b/c.tmp"));
    }

    #[test]
    fn the_last_matching_pattern_wins_and_bang_re_includes() {
        let r = rules("*.md\n!README.md\n");
        assert!(r.is_excluded("CHANGES.md"));
        assert!(!r.is_excluded("README.md"));
        let r = rules("!README.md\n*.md\n");
        assert!(r.is_excluded("README.md"));
    }

    #[test]
    fn leading_slashes_and_dots_are_cleaned() {
        let r = rules("/build/./out\n# comment\n\n");
        assert!(r.is_excluded("build/out/x"));
        assert!(!r.is_excluded("build/in"));
    }

    #[test]
    fn question_marks_and_classes_match_single_characters() {
        let r = rules("file?.txt\nlog[0-9]\n");
        assert!(r.is_excluded("file1.txt"));
        assert!(!r.is_excluded("file10.txt"));
        assert!(r.is_excluded("log7"));
        assert!(!r.is_excluded("logx"));
    }

    #[test]
    fn an_unclosed_class_is_an_error_naming_the_file() {
        let err = IgnoreRules::parse("ok\nbad[\n", Path::new("app/.dockerignore")).unwrap_err();
        assert!(err.to_string().contains("app/.dockerignore") && err.to_string().contains("bad["), "{err}");
    }

    #[test]
    fn the_context_leaves_out_ignored_files_but_keeps_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join(".git/objects")).unwrap();
        std::fs::create_dir_all(d.join("dockerfiles")).unwrap();
        std::fs::write(d.join(".git/objects/x"), "x").unwrap();
        std::fs::write(d.join("main.go"), "package main").unwrap();
        std::fs::write(d.join("notes.md"), "n").unwrap();
        std::fs::write(d.join("dockerfiles/app.Dockerfile"), "FROM scratch").unwrap();
        std::fs::write(d.join(".dockerignore"), ".git\n*.md\ndockerfiles\n").unwrap();
        let ctx = build_context(d, Path::new("dockerfiles/app.Dockerfile")).unwrap();
        assert_eq!(ctx.files, vec![".dockerignore", "dockerfiles/app.Dockerfile", "main.go"]);
        let again = build_context(d, Path::new("dockerfiles/app.Dockerfile")).unwrap();
        assert_eq!(ctx.tar, again.tar, "the same folder gives the same tar");
    }

    #[test]
    fn a_dockerfile_specific_ignore_file_wins_and_is_sent_as_the_context_ignore() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::create_dir_all(d.join("dockerfiles")).unwrap();
        std::fs::write(d.join(".git/HEAD"), "ref").unwrap();
        std::fs::write(d.join("main.go"), "package main").unwrap();
        std::fs::write(d.join(".dockerignore"), ".git\n").unwrap();
        std::fs::write(d.join("dockerfiles/all.Dockerfile"), "FROM scratch").unwrap();
        std::fs::write(d.join("dockerfiles/all.Dockerfile.dockerignore"), "").unwrap();
        let ctx = build_context(d, Path::new("dockerfiles/all.Dockerfile")).unwrap();
        assert!(ctx.files.contains(&".git/HEAD".to_string()), "{:?}", ctx.files);
        let mut archive = tar::Archive::new(ctx.tar.as_slice());
        let mut ignore = String::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().to_str() == Some(".dockerignore") {
                std::io::Read::read_to_string(&mut entry, &mut ignore).unwrap();
            }
        }
        assert_eq!(ignore, "", "the engine sees the rules that were applied");
    }

    #[test]
    fn modes_are_sent_as_they_are() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("Dockerfile"), "FROM scratch").unwrap();
        std::fs::write(d.join("a.sh"), "x").unwrap();
        std::fs::set_permissions(d.join("a.sh"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let ctx = build_context(d, Path::new("Dockerfile")).unwrap();
        let mut archive = tar::Archive::new(ctx.tar.as_slice());
        let mode = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some("a.sh"))
            .unwrap()
            .header()
            .mode()
            .unwrap();
        assert_eq!(mode & 0o777, 0o600);
    }
}
