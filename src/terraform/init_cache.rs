//! Reuse of `terraform init` between runs of the same configuration.
//!
//! `init` costs a Terraform start (~70 ms) and, for real clouds, a provider install, yet for a
//! given configuration it always produces the same `.terraform/` and lock file: the backend's
//! settings come from the environment, not from files. After a run initializes, its results
//! are kept under a key made of the Terraform version and every file `init` reads; a later run
//! of an identical configuration copies them into its fresh working directory instead
//! (provider binaries hard-linked, not copied). An entry appears whole or not at all
//! (written aside, then renamed into place). A run that finds a damaged entry (Terraform says
//! to run `init`) forgets it and initializes as usual.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::render::{BACKEND_FILE, CLI_CONFIG, MAIN_FILE};

/// What `init` leaves in a working directory.
const INIT_OUTPUTS: [&str; 2] = [".terraform", ".terraform.lock.hcl"];

#[derive(Clone, Debug)]
pub struct InitCache {
    root: PathBuf,
}

impl InitCache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The key of a working directory written by `render::write_workdir`: what `init` depends
    /// on (the configuration, the backend, the CLI configuration) and Terraform's version.
    pub fn key(terraform_version: &str, dir: &Path) -> io::Result<String> {
        let mut hash = Sha256::new();
        hash.update(terraform_version.as_bytes());
        for file in [MAIN_FILE, BACKEND_FILE, CLI_CONFIG] {
            let content = std::fs::read(dir.join(file))?;
            hash.update((content.len() as u64).to_le_bytes());
            hash.update(&content);
        }
        Ok(format!("{:x}", hash.finalize()))
    }

    fn entry(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Puts a kept `init` result into `dir`. Returns false when there is none for `key`.
    pub fn restore(&self, key: &str, dir: &Path) -> io::Result<bool> {
        let entry = self.entry(key);
        if !entry.is_dir() {
            return Ok(false);
        }
        for name in INIT_OUTPUTS {
            let from = entry.join(name);
            if from.symlink_metadata().is_ok() {
                copy_tree(&from, &dir.join(name), false)?;
            }
        }
        Ok(true)
    }

    /// Keeps the `init` result of `dir` under `key`, unless another run already has.
    pub fn store(&self, key: &str, dir: &Path) -> io::Result<()> {
        let entry = self.entry(key);
        if entry.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.root)?;
        let aside = self
            .root
            .join(format!(".{key}.{}", uuid::Uuid::new_v4().simple()));
        let written = (|| {
            std::fs::create_dir(&aside)?;
            for name in INIT_OUTPUTS {
                let from = dir.join(name);
                if from.symlink_metadata().is_ok() {
                    copy_tree(&from, &aside.join(name), false)?;
                }
            }
            std::fs::rename(&aside, &entry)
        })();
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&aside);
            // Another run stored the same key first: theirs is as good.
            if entry.is_dir() {
                return Ok(());
            }
        }
        written
    }

    /// Drops a damaged entry.
    pub fn forget(&self, key: &str) {
        let _ = std::fs::remove_dir_all(self.entry(key));
    }
}

/// Copies a file or directory tree, symlinks as symlinks. Files under `providers/` are
/// hard-linked where the filesystem allows: provider binaries are hundreds of megabytes and
/// Terraform never rewrites them, while it may rewrite its other files in place.
fn copy_tree(from: &Path, to: &Path, link_files: bool) -> io::Result<()> {
    let meta = from.symlink_metadata()?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if meta.is_dir() {
        std::fs::create_dir(to)?;
        for child in std::fs::read_dir(from)? {
            let child = child?;
            let link_files = link_files || child.file_name() == "providers";
            copy_tree(&child.path(), &to.join(child.file_name()), link_files)?;
        }
        Ok(())
    } else if link_files {
        std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()))
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "strata-init-cache-test-{}",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn workdir(root: &Path, main_tf: &str) -> PathBuf {
        let dir = root.join(uuid::Uuid::new_v4().simple().to_string());
        super::super::render::write_workdir(&dir, main_tf, &serde_json::json!({}), None).unwrap();
        dir
    }

    #[test]
    fn the_key_follows_the_configuration_and_the_version_not_the_variables() {
        let root = Scratch::new();
        let a = workdir(root.path(), "# a");
        let b = workdir(root.path(), "# a");
        std::fs::write(b.join("terraform.tfvars.json"), r#"{"name": "other"}"#).unwrap();
        let c = workdir(root.path(), "# c");
        let key = |dir: &Path, version: &str| InitCache::key(version, dir).unwrap();
        assert_eq!(key(&a, "1.11.4"), key(&b, "1.11.4"));
        assert_ne!(key(&a, "1.11.4"), key(&c, "1.11.4"));
        assert_ne!(key(&a, "1.11.4"), key(&a, "1.12.0"));
    }

    #[test]
    fn a_stored_init_is_restored_with_its_links_and_the_first_store_wins() {
        let root = Scratch::new();
        let cache = InitCache::new(root.path().join("cache"));
        let first = workdir(root.path(), "# x");
        let providers = first.join(".terraform/providers/example");
        std::fs::create_dir_all(&providers).unwrap();
        std::fs::write(providers.join("plugin"), "binary").unwrap();
        std::os::unix::fs::symlink("/nonexistent/mirror", providers.join("mirrored")).unwrap();
        std::fs::write(first.join(".terraform.lock.hcl"), "lock").unwrap();

        assert!(!cache.restore("k", &first).unwrap());
        cache.store("k", &first).unwrap();
        // Rewriting the run's files in place does not reach the kept copy, and a second store
        // of the same key keeps the first.
        std::fs::write(first.join(".terraform.lock.hcl"), "rewritten").unwrap();
        cache.store("k", &first).unwrap();

        let second = workdir(root.path(), "# x");
        assert!(cache.restore("k", &second).unwrap());
        let restored = second.join(".terraform/providers/example");
        assert_eq!(
            std::fs::read_to_string(restored.join("plugin")).unwrap(),
            "binary"
        );
        assert_eq!(
            std::fs::read_link(restored.join("mirrored")).unwrap(),
            Path::new("/nonexistent/mirror")
        );
        assert_eq!(
            std::fs::read_to_string(second.join(".terraform.lock.hcl")).unwrap(),
            "lock"
        );

        cache.forget("k");
        assert!(!cache.restore("k", &workdir(root.path(), "# x")).unwrap());
        // Nothing half-written is left beside the entries.
        let leftovers: Vec<_> = std::fs::read_dir(root.path().join("cache"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
