//! Git history, read with `gix`: every blob reachable from a ref, once.
//!
//! 1. List the commits reachable from `HEAD` and every ref (annotated tags
//!    peeled), reading each commit's parents, tree and committer time.
//! 2. Order them parents first (Kahn's algorithm; among commits that are
//!    ready together, the oldest committer time first).
//! 3. For each commit, walk its tree, skipping every tree and blob already
//!    seen: what is left is exactly what the commit introduced. Each new
//!    blob is scanned, attributed to this commit and path.
//!
//! Skipping seen trees makes the walk cost proportional to the objects in
//! the repository, not to commits × files, and it needs no tree diff.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::hashtable::{HashMap, HashSet};
use gix::objs::Kind;

use crate::chunk;
use crate::{
    CommitInfo, ItemError, Progress, Report, Source, SourceScanner, Stage, has_binary_extension,
};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why git history could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The path is not a git repository, or it cannot be opened.
    #[error("cannot open `{path}` as a git repository")]
    Open {
        /// The path given.
        path: PathBuf,
        /// What gix said.
        #[source]
        source: BoxError,
    },
    /// The references (or `HEAD`) cannot be read.
    #[error("cannot read the references of `{path}`")]
    References {
        /// The repository.
        path: PathBuf,
        /// What gix said.
        #[source]
        source: BoxError,
    },
    /// An object cannot be read or decoded.
    #[error("cannot read {kind} {id} in `{path}`: the object is corrupt or unreadable")]
    Object {
        /// The repository.
        path: PathBuf,
        /// What the object should be: `commit`, `tree`, `blob`, `tag`.
        kind: &'static str,
        /// Its hex id.
        id: String,
        /// What gix said.
        #[source]
        source: BoxError,
    },
    /// An object that history refers to is not in the repository.
    #[error("{kind} {id} is missing from `{path}` (referred to by {referrer})")]
    Missing {
        /// The repository.
        path: PathBuf,
        /// What the object should be.
        kind: &'static str,
        /// Its hex id.
        id: String,
        /// What refers to it (a ref name, or `commit <id>`).
        referrer: String,
    },
    /// An object is not of the kind history says it is.
    #[error("object {id} in `{path}` is a {actual}, expected a {expected}")]
    WrongKind {
        /// The repository.
        path: PathBuf,
        /// Its hex id.
        id: String,
        /// The kind history expects.
        expected: &'static str,
        /// The kind it is.
        actual: String,
    },
}

/// What the walk needs of a commit.
struct Node {
    id: ObjectId,
    tree: ObjectId,
    parents: Vec<ObjectId>,
    time: i64,
}

struct History<'r> {
    repo: &'r gix::Repository,
    path: &'r Path,
}

impl History<'_> {
    fn object_error(&self, kind: &'static str, id: ObjectId, source: BoxError) -> GitError {
        GitError::Object {
            path: self.path.to_owned(),
            kind,
            id: id.to_string(),
            source,
        }
    }

    /// The object `id`, which must be of kind `kind`.
    fn find(
        &self,
        id: ObjectId,
        kind: Kind,
        referrer: &dyn Fn() -> String,
    ) -> Result<gix::Object<'_>, GitError> {
        let name = kind_name(kind);
        let object = self
            .repo
            .try_find_object(id)
            .map_err(|e| self.object_error(name, id, e.into()))?
            .ok_or_else(|| GitError::Missing {
                path: self.path.to_owned(),
                kind: name,
                id: id.to_string(),
                referrer: referrer(),
            })?;
        if object.kind != kind {
            return Err(GitError::WrongKind {
                path: self.path.to_owned(),
                id: id.to_string(),
                expected: name,
                actual: object.kind.to_string(),
            });
        }
        Ok(object)
    }

    /// The commits that `HEAD` and the refs point to (through tags). A ref
    /// that cannot be read or resolved (a dangling symbolic ref such as a
    /// stale `refs/remotes/origin/HEAD`) is an item error, not a failure.
    fn tips(&self, errors: &mut Vec<ItemError>) -> Result<Vec<(ObjectId, String)>, GitError> {
        let refs_error = |e: BoxError| GitError::References {
            path: self.path.to_owned(),
            source: e,
        };
        let mut tips = Vec::new();
        match self.repo.head() {
            Ok(head) => {
                if let Some(id) = head.id() {
                    tips.push((id.detach(), "HEAD".to_owned()));
                }
            }
            Err(e) => errors.push(ItemError {
                path: "HEAD".to_owned(),
                reason: e.to_string(),
            }),
        }
        let platform = self.repo.references().map_err(|e| refs_error(e.into()))?;
        for reference in platform.all().map_err(|e| refs_error(e.into()))? {
            let mut reference = match reference {
                Ok(reference) => reference,
                Err(e) => {
                    errors.push(ItemError {
                        path: "refs".to_owned(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let name = reference.name().as_bstr().to_string();
            match reference.peel_to_id() {
                Ok(id) => tips.push((id.detach(), name)),
                Err(e) => errors.push(ItemError {
                    path: name,
                    reason: e.to_string(),
                }),
            }
        }
        // Peel annotated tags down to what they point to.
        let mut commits = Vec::with_capacity(tips.len());
        for (mut id, name) in tips {
            loop {
                let header = self
                    .repo
                    .try_find_header(id)
                    .map_err(|e| self.object_error("object", id, e.into()))?;
                let Some(header) = header else {
                    return Err(GitError::Missing {
                        path: self.path.to_owned(),
                        kind: "object",
                        id: id.to_string(),
                        referrer: name,
                    });
                };
                match header.kind() {
                    Kind::Commit => {
                        commits.push((id, name));
                        break;
                    }
                    Kind::Tag => {
                        let tag = self.find(id, Kind::Tag, &|| name.clone())?.into_tag();
                        id = tag
                            .target_id()
                            .map_err(|e| self.object_error("tag", id, e.into()))?
                            .detach();
                    }
                    // A ref to a bare tree or blob holds no history; it is
                    // rare enough to leave out.
                    Kind::Tree | Kind::Blob => break,
                }
            }
        }
        Ok(commits)
    }

    /// Every commit reachable from `tips`, parents before children.
    fn commits_oldest_first(&self, tips: Vec<(ObjectId, String)>) -> Result<Vec<Node>, GitError> {
        let shallow = self.repo.is_shallow().unwrap_or(false);
        let mut index: HashMap<ObjectId, usize> = HashMap::default();
        let mut nodes: Vec<Node> = Vec::new();
        let mut queue: Vec<(ObjectId, String)> = tips;
        while let Some((id, referrer)) = queue.pop() {
            if index.contains_key(&id) {
                continue;
            }
            let object = match self.find(id, Kind::Commit, &|| referrer.clone()) {
                Err(GitError::Missing { .. }) if shallow => continue,
                other => other?,
            };
            let commit = object.into_commit();
            let decoded = commit
                .decode()
                .map_err(|e| self.object_error("commit", id, e.into()))?;
            let tree = decoded.tree();
            let parents: Vec<ObjectId> = decoded.parents().collect();
            let time = decoded.committer().map(|c| c.seconds()).unwrap_or_default();
            for parent in &parents {
                if !index.contains_key(parent) {
                    queue.push((*parent, format!("commit {id}")));
                }
            }
            index.insert(id, nodes.len());
            nodes.push(Node {
                id,
                tree,
                parents,
                time,
            });
        }

        // Kahn's algorithm over parent -> child edges.
        let mut pending: Vec<usize> = vec![0; nodes.len()];
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (child, node) in nodes.iter().enumerate() {
            let mut parents: Vec<usize> = node
                .parents
                .iter()
                .filter_map(|p| index.get(p).copied())
                .collect();
            parents.sort_unstable();
            parents.dedup();
            pending[child] = parents.len();
            for parent in parents {
                children[parent].push(child);
            }
        }
        let mut ready: BinaryHeap<Reverse<(i64, usize)>> = pending
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == 0)
            .map(|(i, _)| Reverse((nodes[i].time, i)))
            .collect();
        let mut order = Vec::with_capacity(nodes.len());
        while let Some(Reverse((_, i))) = ready.pop() {
            order.push(i);
            for &child in &children[i] {
                pending[child] -= 1;
                if pending[child] == 0 {
                    ready.push(Reverse((nodes[child].time, child)));
                }
            }
        }
        // Every node is ordered: commit graphs have no cycles (a cycle
        // would need a hash collision), and each edge was counted once.
        let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
        Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
    }

    fn commit_info(&self, id: ObjectId) -> Result<CommitInfo, GitError> {
        let commit = self
            .find(id, Kind::Commit, &|| "the walk".to_owned())?
            .into_commit();
        let author = commit
            .author()
            .map_err(|e| self.object_error("commit", id, e.into()))?;
        let time = author.time().unwrap_or_default();
        Ok(CommitInfo {
            id: id.to_string(),
            author_name: author.name.to_string(),
            author_email: author.email.to_string(),
            time: time.format_or_unix(gix::date::time::format::ISO8601_STRICT),
            seconds: time.seconds,
        })
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Commit => "commit",
        Kind::Tree => "tree",
        Kind::Blob => "blob",
        Kind::Tag => "tag",
    }
}

pub(crate) fn scan_history(
    sources: &SourceScanner<'_>,
    path: &Path,
    progress: &mut dyn Progress,
) -> Result<Report, GitError> {
    let repo = gix::open(path).map_err(|e| GitError::Open {
        path: path.to_owned(),
        source: e.into(),
    })?;
    let history = History { repo: &repo, path };

    progress.stage(Stage::ListingCommits);
    let mut report = Report::default();
    let tips = history.tips(&mut report.stats.errors)?;
    let commits = history.commits_oldest_first(tips)?;
    progress.total_items(commits.len() as u64);
    progress.stage(Stage::ScanningCommits);

    let options = sources.options();
    report.stats.commits = Some(commits.len() as u64);
    let mut seen_trees: HashSet<ObjectId> = HashSet::default();
    let mut seen_blobs: HashSet<ObjectId> = HashSet::default();
    let mut skipped_blobs: HashSet<ObjectId> = HashSet::default();
    // (fingerprint, path) already reported: a secret that stays in a file
    // while the file changes is reported once, where it first appeared.
    let mut reported: std::collections::HashSet<(String, String)> = Default::default();
    // Trees still to walk for the current commit: id and path prefix.
    let mut stack: Vec<(ObjectId, String)> = Vec::new();
    for commit in &commits {
        let mut info: Option<CommitInfo> = None;
        stack.push((commit.tree, String::new()));
        while let Some((tree_id, prefix)) = stack.pop() {
            if !seen_trees.insert(tree_id) {
                continue;
            }
            let referrer = || format!("commit {}", commit.id);
            let tree = history.find(tree_id, Kind::Tree, &referrer)?;
            for entry in gix::objs::TreeRefIter::from_bytes(&tree.data, repo.object_hash()) {
                let entry = entry.map_err(|e| history.object_error("tree", tree_id, e.into()))?;
                let id = entry.oid.to_owned();
                if entry.mode.is_tree() {
                    if !seen_trees.contains(&id) {
                        stack.push((id, format!("{prefix}{}/", entry.filename)));
                    }
                    continue;
                }
                // Submodules (gitlinks) and symbolic links hold no content.
                if !entry.mode.is_blob() || seen_blobs.contains(&id) {
                    continue;
                }
                let name = format!("{prefix}{}", entry.filename);
                if options.skip_binary_extensions && has_binary_extension(&name) {
                    // Not marked seen: the same bytes under a text name
                    // are still scanned.
                    if skipped_blobs.insert(id) {
                        report.stats.skipped_binary += 1;
                    }
                    continue;
                }
                seen_blobs.insert(id);
                let blob = history.find(id, Kind::Blob, &referrer)?;
                let ctx = sources.context(Some(&name));
                let mut scanned =
                    chunk::scan_bytes(sources.scanner, &ctx, options, &blob.data, progress);
                drop(blob);
                scanned
                    .findings
                    .retain(|(f, _)| reported.insert((f.fingerprint.clone(), name.clone())));
                if !scanned.findings.is_empty() && info.is_none() {
                    info = Some(history.commit_info(commit.id)?);
                }
                sources.record(
                    scanned,
                    Source::Git,
                    &name,
                    info.as_ref(),
                    &mut report,
                    progress,
                );
            }
        }
        progress.item_done(&commit.id.to_string());
    }
    Ok(report)
}
