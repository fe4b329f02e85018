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
    #[error("the app {app} and the build context {context} must be the same folder or one inside the other")]
    Unrelated { app: PathBuf, context: PathBuf },
}

/// A scratch copy of an app in its own git repository.
pub struct Workspace {
    /// The app (the Go module root) inside the copy; scenario paths are relative to it.
    root: PathBuf,
    /// The copied tree: the app, or the build context when the app lies inside it. The git repository.
    tree: PathBuf,
    /// The build context inside the copy.
    context: PathBuf,
    /// The Dockerfile: inside the copy, or a copy beside it when the original lies outside the copied tree.
    dockerfile: PathBuf,
    repo: git2::Repository,
}

/// What a step's changes did beyond the files: build arguments to set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub build_args: Vec<(String, String)>,
    /// `(module, version)` pairs the module proxy should start serving.
    pub published: Vec<(String, String)>,
    pub notes: Vec<String>,
}

/// Where the app, its build context and the Dockerfile are, for a workspace to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The folder to copy (the app, or the context when it holds the app).
    pub source: PathBuf,
    /// The app, relative to `source`.
    pub app: PathBuf,
    /// The build context, relative to `source`.
    pub context: PathBuf,
    /// The Dockerfile: relative to `source` when inside it, else absolute (it is then copied beside the tree).
    pub dockerfile: PathBuf,
}

impl Layout {
    /// The layout of `app` built from `context` with `dockerfile` (all absolute or relative to the current folder).
    /// The app and the context must be the same folder or one inside the other.
    pub fn new(app: &Path, context: &Path, dockerfile: &Path) -> Result<Layout, WorkspaceError> {
        let abs = |p: &Path| -> Result<PathBuf, WorkspaceError> {
            std::fs::canonicalize(p).map_err(io("find", p))
        };
        let (app, context, dockerfile) = (abs(app)?, abs(context)?, abs(dockerfile)?);
        let source = if app.starts_with(&context) {
            context.clone()
        } else if context.starts_with(&app) {
            app.clone()
        } else {
            return Err(WorkspaceError::Unrelated { app, context });
        };
        let rel = |p: &Path| p.strip_prefix(&source).map(Path::to_path_buf).unwrap_or_default();
        let dockerfile = match dockerfile.strip_prefix(&source) {
            Ok(inside) => inside.to_path_buf(),
            Err(_) => dockerfile.clone(),
        };
        Ok(Layout { app: rel(&app), context: rel(&context), dockerfile, source })
    }
}

impl Workspace {
    /// Copies `layout.source` into `cell_dir/tree` (`cell_dir` must not
    /// exist; `.git` folders are not copied), and a Dockerfile from outside
    /// it into `cell_dir/dockerfile/`; adds `salt` as a comment line at the
    /// end of the app's go.mod when given, initialises a repository and
    /// commits the baseline. Nothing of the source is written.
    pub fn create(layout: &Layout, cell_dir: &Path, salt: Option<&str>) -> Result<Workspace, WorkspaceError> {
        let tree = cell_dir.join("tree");
        copy_tree(&layout.source, &tree)?;
        let dockerfile = if layout.dockerfile.is_absolute() {
            let folder = cell_dir.join("dockerfile");
            std::fs::create_dir_all(&folder).map_err(io("create", &folder))?;
            let copy = folder.join(layout.dockerfile.file_name().unwrap_or_else(|| std::ffi::OsStr::new("Dockerfile")));
            std::fs::copy(&layout.dockerfile, &copy).map_err(io("copy", &layout.dockerfile))?;
            copy
        } else {
            tree.join(&layout.dockerfile)
        };
        let root = tree.join(&layout.app);
        if let Some(salt) = salt {
            let go_mod = root.join("go.mod");
            if go_mod.is_file() {
                let mut text = read(&go_mod)?;
                text.push_str(&format!("\n// layerbench workspace {salt}\n"));
                write(&go_mod, &text)?;
            }
        }
        let git = |action: &'static str| {
            let path = tree.clone();
            move |source| WorkspaceError::Git { action, path, source }
        };
        let repo = git2::Repository::init(&tree).map_err(git("init a repository"))?;
        let ws = Workspace {
            context: tree.join(&layout.context),
            root,
            tree,
            dockerfile,
            repo,
        };
        ws.commit("layerbench baseline")?;
        Ok(ws)
    }

    /// The app inside the copy.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The build context inside the copy.
    pub fn context_dir(&self) -> &Path {
        &self.context
    }

    /// The Dockerfile the build uses (a path inside the workspace).
    pub fn dockerfile(&self) -> &Path {
        &self.dockerfile
    }

    /// The workspace's Dockerfile as it is now.
    pub fn dockerfile_model(&self) -> Result<DockerfileModel, WorkspaceError> {
        Ok(DockerfileModel::parse(&read(&self.dockerfile)?))
    }

    /// Commits every file (added, changed, deleted) with a fixed author.
    pub fn commit(&self, message: &str) -> Result<(), WorkspaceError> {
        let git = |action: &'static str| {
            let path = self.tree.clone();
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
                self.replace_in(&self.dockerfile, pattern, &fill(with), step)
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
        let path = self.dockerfile.clone();
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
        let cell = scratch.path().join("ws");
        let layout = Layout::new(app.path(), app.path(), &app.path().join("d/Dockerfile")).unwrap();
        let ws = Workspace::create(&layout, &cell, Some("cell-1")).unwrap();
        let root = cell.join("tree");
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
    fn a_dockerfile_outside_the_app_is_copied_beside_it_and_edited_there() {
        let app = app();
        let templates = tempfile::tempdir().unwrap();
        let outside = templates.path().join("service.Dockerfile");
        std::fs::write(&outside, "FROM x\nRUN a\n").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let layout = Layout::new(app.path(), app.path(), &outside).unwrap();
        assert!(layout.dockerfile.is_absolute());
        let ws = Workspace::create(&layout, &scratch.path().join("c"), None).unwrap();
        let change = Change::DockerfileReplace { pattern: "RUN a".into(), with: "RUN b".into() };
        ws.apply(&change, "n", "s", &StoreLayout::new(scratch.path()), &mut Applied::default()).unwrap();
        assert_eq!(std::fs::read_to_string(ws.dockerfile()).unwrap(), "FROM x\nRUN b\n");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "FROM x\nRUN a\n", "the user's template is never written");
    }

    #[test]
    fn a_context_holding_the_app_is_copied_whole_and_scenario_paths_stay_relative_to_the_app() {
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(repo.path().join("svc")).unwrap();
        std::fs::write(repo.path().join("svc/go.mod"), "module m\n").unwrap();
        std::fs::write(repo.path().join("shared.txt"), "s").unwrap();
        std::fs::write(repo.path().join("Dockerfile"), "FROM x\n").unwrap();
        let layout = Layout::new(&repo.path().join("svc"), repo.path(), &repo.path().join("Dockerfile")).unwrap();
        assert_eq!(layout.app, Path::new("svc"));
        let scratch = tempfile::tempdir().unwrap();
        let ws = Workspace::create(&layout, &scratch.path().join("c"), Some("x")).unwrap();
        assert!(ws.context_dir().join("shared.txt").is_file());
        assert!(std::fs::read_to_string(ws.root().join("go.mod")).unwrap().contains("layerbench workspace x"));
        let unrelated = tempfile::tempdir().unwrap();
        assert!(Layout::new(&repo.path().join("svc"), unrelated.path(), &repo.path().join("Dockerfile")).is_err());
    }

    #[test]
    fn a_pattern_that_does_not_match_names_the_file_and_pattern() {
        let app = app();
        let scratch = tempfile::tempdir().unwrap();
        let layout = Layout::new(app.path(), app.path(), &app.path().join("d/Dockerfile")).unwrap();
        let ws = Workspace::create(&layout, &scratch.path().join("ws"), None).unwrap();
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
