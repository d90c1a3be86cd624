//! A cache of what compose said (`target/xtask/compose-cache.json`): the detected compose
//! program and the models of projects, so that a warm `docker-up` starts no compose process
//! before `up` itself. Neither [`super::compose`] nor [`super::model`] knows of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::compose::{detect, Compose, Project};
use super::model::{read, Model};

// A cache of what compose said, so that a warm `docker-up` starts no compose process before
// `up` itself (each costs a Python start with v1). Keyed by what decides the answer: the
// programs' paths, sizes and modification times; the compose file's bytes, its `.env` and the
// environment of the call. A stale or unreadable cache is ignored.

/// `target/xtask/compose-cache.json`.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct Cache {
    #[serde(default)]
    detected: Option<(String, Compose)>,
    /// Compose models by [`Project::model_key`].
    #[serde(default)]
    pub(super) models: BTreeMap<String, Model>,
}

impl Cache {
    fn path(work_dir: &Path) -> PathBuf {
        work_dir.join("compose-cache.json")
    }

    pub fn load(work_dir: &Path) -> Cache {
        std::fs::read_to_string(Cache::path(work_dir))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Best effort: a cache that cannot be written only costs time next run.
    pub fn save(&self, work_dir: &Path) {
        // Concurrent runs in one process share the temporary file of the atomic write.
        static ONE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_writer = ONE_WRITER.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(text) = serde_json::to_string_pretty(self) {
            let _ = crate::state::write_atomic(&Cache::path(work_dir), text.as_bytes());
        }
    }
}

/// Identity of the installed compose programs: the `docker` and `docker-compose` on PATH and
/// the compose CLI plugins, each by path, size and modification time.
pub fn programs_key() -> String {
    let mut files: Vec<PathBuf> = ["docker", "docker-compose"]
        .iter()
        .filter_map(|p| which::which(p).ok())
        .collect();
    let mut plugin_dirs: Vec<PathBuf> = Vec::new();
    if let Some(config) = std::env::var_os("DOCKER_CONFIG") {
        plugin_dirs.push(PathBuf::from(config).join("cli-plugins"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        plugin_dirs.push(PathBuf::from(home).join(".docker/cli-plugins"));
    }
    for dir in [
        "/usr/local/lib/docker/cli-plugins",
        "/usr/local/libexec/docker/cli-plugins",
        "/usr/lib/docker/cli-plugins",
        "/usr/libexec/docker/cli-plugins",
    ] {
        plugin_dirs.push(PathBuf::from(dir));
    }
    files.extend(plugin_dirs.into_iter().map(|d| d.join("docker-compose")));
    files
        .iter()
        .map(|file| match std::fs::metadata(file) {
            Ok(meta) => format!(
                "{}:{}:{:?}",
                file.display(),
                meta.len(),
                meta.modified().ok()
            ),
            Err(_) => format!("{}:-", file.display()),
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// [`detect`], remembered in `work_dir` while the installed programs stay the same.
pub async fn detect_cached(work_dir: &Path) -> anyhow::Result<Compose> {
    let key = programs_key();
    let mut cache = Cache::load(work_dir);
    if let Some((cached_key, compose)) = &cache.detected {
        if *cached_key == key {
            return Ok(compose.clone());
        }
    }
    let compose = detect().await?;
    cache.detected = Some((key, compose.clone()));
    cache.save(work_dir);
    Ok(compose)
}

/// [`read`], remembered in `work_dir` while [`Project::model_key`] stays the same.
pub async fn read_cached(project: &Project, work_dir: &Path) -> anyhow::Result<Model> {
    let key = project.model_key();
    // An entry without a digest was written by an earlier version: read again.
    if let Some(found) = Cache::load(work_dir)
        .models
        .get(&key)
        .filter(|m| !m.digest.is_empty())
    {
        return Ok(found.clone());
    }
    let found = read(project).await?;
    // Re-read: another run may have written its own entries meanwhile.
    let mut cache = Cache::load(work_dir);
    cache.models.insert(key.clone(), found.clone());
    if cache.models.len() > 32 {
        let oldest = cache.models.keys().find(|k| **k != key).cloned();
        if let Some(oldest) = oldest {
            cache.models.remove(&oldest);
        }
    }
    cache.save(work_dir);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::super::compose::Flavour;
    use super::super::model::Service;
    use super::*;

    #[tokio::test]
    async fn a_cached_model_is_served_without_running_compose() {
        let work = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, "services: {}\n").unwrap();
        // No such program: only the cache can answer.
        let project = Project {
            compose: Compose {
                flavour: Flavour::Standalone,
                version: "0-test".into(),
            },
            name: "p".into(),
            files: vec![file],
            env: BTreeMap::new(),
            dir: dir.path().to_path_buf(),
        };
        let mut cache = Cache::load(work.path());
        let cached = Model {
            services: BTreeMap::from([("web".to_owned(), Service::default())]),
            digest: "0123456789abcdef".into(),
            ..Model::default()
        };
        cache.models.insert(project.model_key(), cached.clone());
        cache.save(work.path());
        assert_eq!(read_cached(&project, work.path()).await.unwrap(), cached);
        std::fs::write(dir.path().join("compose.yaml"), "services: {a: {}}\n").unwrap();
        assert!(
            !Cache::load(work.path())
                .models
                .contains_key(&project.model_key()),
            "a changed file is read again"
        );
    }
}
