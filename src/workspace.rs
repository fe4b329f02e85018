//! Scratch workspaces (the only user of git2): a copy of the app in a fresh git repository, where a scenario's changes are applied and committed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::dockerfile::DockerfileModel;
use crate::goproxy::gosum::{self, BumpError};
use crate::goproxy::layout::StoreLayout;
use crate::scenario::Change;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("git in the scratch copy {path}: failed to {action}: {source}")]
    Git {
        action: &'static str,
        path: PathBuf,
        source: git2::Error,
    },
    #[error("{file}: the pattern `{pattern}` does not occur (scenario step `{step}`)")]
    PatternNotFound { file: PathBuf, pattern: String, step: String },
    #[error("{file}: no line contains `{line}` (scenario step `{step}`)")]
    LineNotFound { file: PathBuf, line: String, step: String },
    #[error("{path}: `{file}` leaves the app folder; scenario paths are relative to it")]
    OutsideApp { path: PathBuf, file: String },
    #[error(transparent)]
    Bump(#[from] BumpError),
}

/// A scratch copy of an app in its own git repository.
pub struct Workspace {
    root: PathBuf,
    repo: git2::Repository,
    dockerfile: String,
}

/// What a step's changes did beyond the files: build arguments to set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub build_args: Vec<(String, String)>,
    /// `(module, version)` pairs the module proxy should start serving.
    pub published: Vec<(String, String)>,
    pub notes: Vec<String>,
}

impl Workspace {
    /// Copies `app` into `root` (which must not exist; `.git` folders of the
    /// app are not copied), adds `salt` as a comment line at the end of
    /// go.mod when given, initialises a repository and commits the baseline.
    /// `app` is only read.
    pub fn create(app: &Path, root: &Path, dockerfile: &str, salt: Option<&str>) -> Result<Workspace, WorkspaceError> {
        copy_tree(app, root)?;
        if let Some(salt) = salt {
            let go_mod = root.join("go.mod");
            if go_mod.is_file() {
                let mut text = read(&go_mod)?;
                text.push_str(&format!("\n// layerbench workspace {salt}\n"));
                write(&go_mod, &text)?;
            }
        }
        let git = |action: &'static str| {
            let path = root.to_path_buf();
            move |source| WorkspaceError::Git { action, path, source }
        };
        let repo = git2::Repository::init(root).map_err(git("init a repository"))?;
        let ws = Workspace {
            root: root.to_path_buf(),
            repo,
            dockerfile: dockerfile.to_string(),
        };
        ws.commit("layerbench baseline")?;
        Ok(ws)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dockerfile(&self) -> &str {
        &self.dockerfile
    }

    /// The workspace's Dockerfile as it is now.
    pub fn dockerfile_model(&self) -> Result<DockerfileModel, WorkspaceError> {
        Ok(DockerfileModel::parse(&read(&self.root.join(&self.dockerfile))?))
    }

    /// Commits every file (added, changed, deleted) with a fixed author.
    pub fn commit(&self, message: &str) -> Result<(), WorkspaceError> {
        let git = |action: &'static str| {
            let path = self.root.clone();
            move |source| WorkspaceError::Git { action, path, source }
        };
        let mut index = self.repo.index().map_err(git("open the index"))?;
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .map_err(git("add files"))?;
        index.update_all(["*"].iter(), None).map_err(git("record deletions"))?;
        index.write().map_err(git("write the index"))?;
        let tree_id = index.write_tree().map_err(git("write the tree"))?;
        let tree = self.repo.find_tree(tree_id).map_err(git("find the tree"))?;
        let sig = git2::Signature::now("layerbench", "layerbench@localhost").map_err(git("make a signature"))?;
        let parent = match self.repo.head() {
            Ok(head) => Some(head.peel_to_commit().map_err(git("read HEAD"))?),
            Err(_) => None,
        };
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .map_err(git("commit"))?;
        Ok(())
    }

    /// Applies one change. `nonce` replaces `{nonce}` in texts; `step` names the step in errors.
    pub fn apply(&self, change: &Change, nonce: &str, step: &str, store: &StoreLayout, applied: &mut Applied) -> Result<(), WorkspaceError> {
        let fill = |s: &str| s.replace("{nonce}", nonce);
        match change {
            Change::Append { file, text } => {
                let path = self.path(file)?;
                let mut content = read(&path)?;
                content.push_str(&fill(text));
                write(&path, &content)
            }
            Change::Replace { file, pattern, with } => self.replace_in(&self.path(file)?, pattern, &fill(with), step),
            Change::Write { file, text } => {
                let path = self.path(file)?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
                }
                write(&path, &fill(text))
            }
            Change::Delete { file } => {
                let path = self.path(file)?;
                std::fs::remove_file(&path).map_err(io("delete", &path))
            }
            Change::Touch { file } => {
                let path = self.path(file)?;
                let f = std::fs::File::options().write(true).open(&path).map_err(io("open", &path))?;
                // Move the time forward by at least a second, so even a coarse clock sees a change.
                let now = SystemTime::now() + std::time::Duration::from_secs(2);
                f.set_modified(now).map_err(io("touch", &path))
            }
            Change::Chmod { file, mode } => {
                use std::os::unix::fs::PermissionsExt;
                let path = self.path(file)?;
                let bits = u32::from_str_radix(mode, 8).unwrap_or(0o644);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).map_err(io("chmod", &path))
            }
            Change::GitCommit { message } => self.commit(&fill(message)),
            Change::DockerfileReplace { pattern, with } => {
                self.replace_in(&self.root.join(&self.dockerfile), pattern, &fill(with), step)
            }
            Change::DockerfileMove { line, before } => self.move_line(line, before, step),
            Change::BumpModule { module, version } => {
                let go_mod_path = self.root.join("go.mod");
                let go_sum_path = self.root.join("go.sum");
                let bumped = gosum::bump(&go_mod_path, &read(&go_mod_path)?, &read(&go_sum_path)?, module, version, store)?;
                write(&go_mod_path, &bumped.go_mod)?;
                write(&go_sum_path, &bumped.go_sum)?;
                applied.notes.push(format!("{module} {} -> {version}", bumped.from_version));
                Ok(())
            }
            Change::BuildArg { name, value } => {
                applied.build_args.push((name.clone(), fill(value)));
                Ok(())
            }
            Change::PublishModule { module, version } => {
                applied.published.push((module.clone(), version.clone()));
                applied.notes.push(format!("published {module}@{version}"));
                Ok(())
            }
        }
    }

    fn path(&self, file: &str) -> Result<PathBuf, WorkspaceError> {
        let rel = Path::new(file);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(WorkspaceError::OutsideApp {
                path: self.root.clone(),
                file: file.to_string(),
            });
        }
        Ok(self.root.join(rel))
    }

    fn replace_in(&self, path: &Path, pattern: &str, with: &str, step: &str) -> Result<(), WorkspaceError> {
        let content = read(path)?;
        if !content.contains(pattern) {
            return Err(WorkspaceError::PatternNotFound {
                file: path.to_path_buf(),
                pattern: pattern.to_string(),
                step: step.to_string(),
            });
        }
        write(path, &content.replacen(pattern, with, 1))
    }

    fn move_line(&self, line: &str, before: &str, step: &str) -> Result<(), WorkspaceError> {
        let path = self.root.join(&self.dockerfile);
        let content = read(&path)?;
        let mut lines: Vec<&str> = content.lines().collect();
        let not_found = |l: &str| WorkspaceError::LineNotFound {
            file: path.clone(),
            line: l.to_string(),
            step: step.to_string(),
        };
        let from = lines.iter().position(|l| l.contains(line)).ok_or_else(|| not_found(line))?;
        let moved = lines.remove(from);
        let to = lines.iter().position(|l| l.contains(before)).ok_or_else(|| not_found(before))?;
        lines.insert(to, moved);
        write(&path, &(lines.join("\n") + "\n"))
    }
}

/// The commit checked out in `dir`'s repository, if it is one (for provenance).
pub fn source_commit(dir: &Path) -> Option<String> {
    let repo = git2::Repository::discover(dir).ok()?;
    let head = repo.head().ok()?.peel_to_commit().ok()?;
    let dirty = repo
        .statuses(None)
        .map(|s| s.iter().any(|e| !e.status().is_ignored() && e.status() != git2::Status::CURRENT))
        .unwrap_or(false);
    Some(format!("{}{}", head.id(), if dirty { "+dirty" } else { "" }))
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WorkspaceError + 'a {
    move |source| WorkspaceError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String, WorkspaceError> {
    std::fs::read_to_string(path).map_err(io("read", path))
}

fn write(path: &Path, text: &str) -> Result<(), WorkspaceError> {
    std::fs::write(path, text).map_err(io("write", path))
}

/// Copies files, folders and symlinks, keeping permission bits; skips `.git`.
fn copy_tree(from: &Path, to: &Path) -> Result<(), WorkspaceError> {
    std::fs::create_dir_all(to).map_err(io("create", to))?;
    let entries = std::fs::read_dir(from).map_err(io("read", from))?;
    for entry in entries {
        let entry = entry.map_err(io("read", from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io("stat", &src))?;
        if kind.is_dir() {
            if entry.file_name() == ".git" {
                continue;
            }
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(io("read the link", &src))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(io("create the link", &dst))?;
        } else {
            std::fs::copy(&src, &dst).map_err(io("copy", &src))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("main.go"), "package main\n").unwrap();
        std::fs::write(dir.path().join("go.mod"), "module m\n").unwrap();
        std::fs::write(dir.path().join("d/Dockerfile"), "FROM x\nRUN a\nCOPY . .\nRUN b\n").unwrap();
        dir
    }

    #[test]
    fn changes_apply_to_the_copy_and_never_to_the_app() {
        let app = app();
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("ws");
        let ws = Workspace::create(app.path(), &root, "d/Dockerfile", Some("cell-1")).unwrap();
        let store = StoreLayout::new(scratch.path());
        let mut applied = Applied::default();
        let changes = [
            Change::Append { file: "main.go".into(), text: "// {nonce}\n".into() },
            Change::DockerfileMove { line: "COPY . .".into(), before: "RUN a".into() },
            Change::BuildArg { name: "X".into(), value: "v-{nonce}".into() },
            Change::GitCommit { message: "edit".into() },
        ];
        for c in &changes {
            ws.apply(c, "n42", "s", &store, &mut applied).unwrap();
        }
        assert_eq!(std::fs::read_to_string(root.join("main.go")).unwrap(), "package main\n// n42\n");
        assert_eq!(std::fs::read_to_string(root.join("d/Dockerfile")).unwrap(), "FROM x\nCOPY . .\nRUN a\nRUN b\n");
        assert!(std::fs::read_to_string(root.join("go.mod")).unwrap().contains("layerbench workspace cell-1"));
        assert_eq!(applied.build_args, vec![("X".to_string(), "v-n42".to_string())]);
        assert_eq!(std::fs::read_to_string(app.path().join("main.go")).unwrap(), "package main\n");
        assert_eq!(std::fs::read_to_string(app.path().join("go.mod")).unwrap(), "module m\n");
        let repo = git2::Repository::open(&root).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        assert_eq!(head.message(), Some("edit"));
        assert_eq!(head.parent_count(), 1);
    }

    #[test]
    fn a_pattern_that_does_not_match_names_the_file_and_pattern() {
        let app = app();
        let scratch = tempfile::tempdir().unwrap();
        let ws = Workspace::create(app.path(), &scratch.path().join("ws"), "d/Dockerfile", None).unwrap();
        let change = Change::Replace { file: "main.go".into(), pattern: "func nope".into(), with: "x".into() };
        let err = ws
            .apply(&change, "n", "edit-step", &StoreLayout::new(scratch.path()), &mut Applied::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("main.go") && err.contains("func nope") && err.contains("edit-step"), "{err}");
        let outside = Change::Delete { file: "../x".into() };
        assert!(ws.apply(&outside, "n", "s", &StoreLayout::new(scratch.path()), &mut Applied::default()).is_err());
    }
}
