//! Which buildroot image a task uses: the image policy (docs/operator-guide.md, "Image policies").
//!
//! For a (build tag, arch, task method), in order:
//!
//! 1. tag extra `adjutant.image.<arch>` (the buildroot arch);
//! 2. tag extra `adjutant.image`;
//! 3. the JSON rules of tag extra `adjutant_image_policy` ([`rules`]: `tag_arch`,
//!    `tag`, `task_type`, `default`, by that precedence);
//! 4. the rules of the `[adjutant] image_policy` file, when the tag has no
//!    `adjutant_image_policy` extra;
//! 5. `[adjutant] default_image`.
//!
//! Tag extras are read through `getBuildConfig(tag, event)`, so inheritance applies
//! (a parent's `adjutant.image` reaches its children unless they override or block
//! it). `policy_enabled = false` skips 1–4.
//!
//! One [`ImagePolicy`] is shared by every task of a daemon: the tag data it fetched is
//! kept for `policy_cache_ttl` seconds per (tag, event), so a burst of buildArch tasks
//! asks the hub once. Hub failures are not cached. A bad value (an empty
//! `adjutant.image`, a malformed policy) is an error naming the tag and the rule —
//! never a silent fallback to the default image.

pub mod rules;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tracing::info;

use crate::config::Config;
use crate::daemon::BoxFuture;
use crate::hub::{HubError, HubSession};
use crate::xmlrpc::{Struct, Value};

pub use rules::{Condition, Query, Rule, RuleSet};

/// Tag extra naming the image for one arch: `adjutant.image.<arch>`.
pub const IMAGE_ARCH_KEY_PREFIX: &str = "adjutant.image.";
/// Tag extra naming the image for every arch.
pub const IMAGE_KEY: &str = "adjutant.image";
/// Tag extra holding JSON rules.
pub const POLICY_KEY: &str = "adjutant_image_policy";

/// Entries kept in the cache at most (oldest dropped first).
const CACHE_MAX: usize = 4096;

/// Why no image could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A tag extra has a value we cannot use.
    #[error("tag {tag}: extra {key}: {reason}")]
    BadExtra {
        /// The build tag.
        tag: String,
        /// The extra key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The `adjutant_image_policy` extra is malformed.
    #[error("tag {tag}: extra {POLICY_KEY}: {reason}")]
    BadTagPolicy {
        /// The build tag.
        tag: String,
        /// What is wrong (names the rule).
        reason: String,
    },
    /// The `image_policy` file is unreadable or malformed.
    #[error("image policy file {path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the rule).
        reason: String,
    },
    /// `getBuildConfig` failed.
    #[error("tag {tag}: getBuildConfig: {source}")]
    Hub {
        /// The build tag.
        tag: String,
        /// The hub's error.
        source: HubError,
    },
}

/// Where the chosen image came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// Tag extra `adjutant.image.<arch>`.
    TagArchExtra {
        /// The extra key.
        key: String,
    },
    /// Tag extra `adjutant.image`.
    TagExtra,
    /// A rule of the tag's `adjutant_image_policy`.
    TagRule(Rule),
    /// A rule of the `image_policy` file.
    FileRule {
        /// The file.
        path: PathBuf,
        /// The rule.
        rule: Rule,
    },
    /// `[adjutant] default_image` (nothing else applied).
    Default,
    /// `[adjutant] default_image` because `policy_enabled` is off.
    Disabled,
    /// Chosen outside the policy (e.g. `rebuild --image`); the text says by what.
    Given(String),
}

/// An image chosen for a buildroot, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The image reference (as the policy wrote it).
    pub image: String,
    /// Where it came from.
    pub source: ImageSource,
    /// The build tag asked about.
    pub tag: String,
}

impl Resolution {
    /// The winning rule in words, for logs, `mock_config.log` and the status page, e.g.
    /// `tag f40-build extra adjutant.image.aarch64` or
    /// `tag f40-build adjutant_image_policy rule 2 (tag_arch f40-build/aarch64)`.
    pub fn rule(&self) -> String {
        let tag = &self.tag;
        match &self.source {
            ImageSource::TagArchExtra { key } => format!("tag {tag} extra {key}"),
            ImageSource::TagExtra => format!("tag {tag} extra {IMAGE_KEY}"),
            ImageSource::TagRule(r) => format!(
                "tag {tag} {POLICY_KEY} rule {} ({})",
                r.index,
                r.condition.describe()
            ),
            ImageSource::FileRule { path, rule } => format!(
                "image policy file {} rule {} ({})",
                path.display(),
                rule.index,
                rule.condition.describe()
            ),
            ImageSource::Default => "default_image (no tag extra or policy rule applies)".into(),
            ImageSource::Disabled => "default_image (policy_enabled is off)".into(),
            ImageSource::Given(by) => by.clone(),
        }
    }
}

/// How the policy is configured (from `[adjutant]`).
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// `policy_enabled`.
    pub enabled: bool,
    /// `default_image`.
    pub default_image: String,
    /// `policy_cache_ttl`.
    pub ttl: Duration,
    /// `image_policy` (a JSON file with the same format as the tag extra).
    pub file: Option<PathBuf>,
}

impl PolicySettings {
    /// From the configuration.
    pub fn from_config(cfg: &Config) -> PolicySettings {
        PolicySettings {
            enabled: cfg.adjutant.policy_enabled,
            default_image: cfg.adjutant.default_image.clone(),
            ttl: Duration::from_secs(cfg.adjutant.policy_cache_ttl),
            file: cfg.adjutant.image_policy.clone(),
        }
    }
}

/// Where tag data comes from: `getBuildConfig(tag, event=event)`. The hub session
/// implements it; tests use a map.
pub trait BuildConfigSource: Send + Sync {
    /// The build config of `tag` at `event` (None: now).
    fn build_config<'a>(
        &'a self,
        tag: &'a str,
        event: Option<i64>,
    ) -> BoxFuture<'a, Result<Value, HubError>>;
}

impl BuildConfigSource for HubSession {
    fn build_config<'a>(
        &'a self,
        tag: &'a str,
        event: Option<i64>,
    ) -> BoxFuture<'a, Result<Value, HubError>> {
        Box::pin(async move {
            let mut kw = Struct::new();
            if let Some(e) = event {
                kw.insert("event".into(), Value::Int(e));
            }
            self.call_kw("getBuildConfig", vec![Value::from(tag)], kw)
                .await
        })
    }
}

/// The policy-relevant extras of one tag (what the cache keeps).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagImageData {
    /// The tag's name (as the build config says).
    pub tag: String,
    /// `adjutant.image` and `adjutant.image.*` extras.
    pub images: Vec<(String, Json)>,
    /// `adjutant_image_policy`, if set.
    pub policy: Option<Json>,
}

impl TagImageData {
    /// Pick the policy keys out of a `getBuildConfig` (or `getTag`) result.
    pub fn from_build_config(tag: &str, cfg: &Value) -> TagImageData {
        let name = cfg
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(tag)
            .to_owned();
        let mut d = TagImageData {
            tag: name,
            ..Default::default()
        };
        if let Some(extra) = cfg.get("extra").and_then(Value::as_struct) {
            for (k, v) in extra {
                if k == IMAGE_KEY || k.starts_with(IMAGE_ARCH_KEY_PREFIX) {
                    d.images.push((k.clone(), to_json(v)));
                } else if k == POLICY_KEY {
                    d.policy = Some(to_json(v));
                }
            }
        }
        d
    }

    fn image(&self, key: &str) -> Option<&Json> {
        self.images.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// XML-RPC value → JSON (tag extras are JSON on the hub).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Int(i) => Json::from(*i),
        Value::Bool(b) => Json::Bool(*b),
        Value::Double(d) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::String(s) | Value::DateTime(s) => Json::String(s.clone()),
        Value::Base64(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Struct(s) => Json::Object(s.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

/// (tag, event).
type CacheKey = (String, Option<i64>);

struct Cached {
    at: Instant,
    data: Arc<TagImageData>,
}

/// The image policy of a daemon (shared by all tasks; cheap to clone).
#[derive(Clone)]
pub struct ImagePolicy {
    settings: Arc<PolicySettings>,
    file_rules: Option<Arc<RuleSet>>,
    cache: Arc<Mutex<HashMap<CacheKey, Cached>>>,
}

impl std::fmt::Debug for ImagePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagePolicy")
            .field("settings", &self.settings)
            .finish()
    }
}

impl ImagePolicy {
    /// A policy with these settings; reads and checks the `image_policy` file now, so
    /// a bad file stops the daemon at start-up.
    pub fn new(settings: PolicySettings) -> Result<ImagePolicy, PolicyError> {
        let file_rules = match (&settings.file, settings.enabled) {
            (Some(p), true) => Some(Arc::new(load_file(p)?)),
            _ => None,
        };
        Ok(ImagePolicy {
            settings: Arc::new(settings),
            file_rules,
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The image for (`tag`, `arch`, `method`) at `event`, asking `source` for the
    /// tag's build config unless it is cached.
    pub async fn resolve(
        &self,
        source: &dyn BuildConfigSource,
        tag: &str,
        event: Option<i64>,
        arch: &str,
        method: &str,
    ) -> Result<Resolution, PolicyError> {
        if !self.settings.enabled {
            return Ok(self.log(
                Resolution {
                    image: self.settings.default_image.clone(),
                    source: ImageSource::Disabled,
                    tag: tag.to_owned(),
                },
                arch,
                method,
            ));
        }
        let data =
            match self.cached(tag, event) {
                Some(d) => d,
                None => {
                    let cfg = source.build_config(tag, event).await.map_err(|source| {
                        PolicyError::Hub {
                            tag: tag.to_owned(),
                            source,
                        }
                    })?;
                    let d = Arc::new(TagImageData::from_build_config(tag, &cfg));
                    self.store(tag, event, d.clone());
                    d
                }
            };
        self.decide(&data, arch, method)
            .map(|r| self.log(r, arch, method))
    }

    /// The image from a build config the caller already has (no hub call, no cache).
    pub fn resolve_config(
        &self,
        tag_config: &Value,
        arch: &str,
        method: &str,
    ) -> Result<Resolution, PolicyError> {
        let tag = tag_config
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed tag)");
        if !self.settings.enabled {
            return Ok(self.log(
                Resolution {
                    image: self.settings.default_image.clone(),
                    source: ImageSource::Disabled,
                    tag: tag.to_owned(),
                },
                arch,
                method,
            ));
        }
        let d = TagImageData::from_build_config(tag, tag_config);
        self.decide(&d, arch, method)
            .map(|r| self.log(r, arch, method))
    }

    /// The decision itself, from a tag's data.
    pub fn decide(
        &self,
        d: &TagImageData,
        arch: &str,
        method: &str,
    ) -> Result<Resolution, PolicyError> {
        let tag = d.tag.clone();
        let res = |image: String, source: ImageSource| Resolution {
            image,
            source,
            tag: tag.clone(),
        };
        if !self.settings.enabled {
            return Ok(res(
                self.settings.default_image.clone(),
                ImageSource::Disabled,
            ));
        }
        let arch_key = format!("{IMAGE_ARCH_KEY_PREFIX}{arch}");
        if let Some(v) = d.image(&arch_key) {
            let image = image_value(&tag, &arch_key, v)?;
            return Ok(res(image, ImageSource::TagArchExtra { key: arch_key }));
        }
        if let Some(v) = d.image(IMAGE_KEY) {
            let image = image_value(&tag, IMAGE_KEY, v)?;
            return Ok(res(image, ImageSource::TagExtra));
        }
        let q = Query {
            tag: &tag,
            arch,
            method,
        };
        if let Some(p) = &d.policy {
            let rules = RuleSet::parse(p).map_err(|reason| PolicyError::BadTagPolicy {
                tag: tag.clone(),
                reason,
            })?;
            if let Some(r) = rules.select(&q) {
                return Ok(res(r.image.clone(), ImageSource::TagRule(r.clone())));
            }
        } else if let (Some(rules), Some(path)) = (&self.file_rules, &self.settings.file) {
            if let Some(r) = rules.select(&q) {
                return Ok(res(
                    r.image.clone(),
                    ImageSource::FileRule {
                        path: path.clone(),
                        rule: r.clone(),
                    },
                ));
            }
        }
        Ok(res(
            self.settings.default_image.clone(),
            ImageSource::Default,
        ))
    }

    fn log(&self, r: Resolution, arch: &str, method: &str) -> Resolution {
        info!(tag = %r.tag, arch, method, image = %r.image, rule = %r.rule(), "buildroot image chosen");
        r
    }

    fn cached(&self, tag: &str, event: Option<i64>) -> Option<Arc<TagImageData>> {
        let c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        c.get(&(tag.to_owned(), event))
            .filter(|e| e.at.elapsed() < self.settings.ttl)
            .map(|e| e.data.clone())
    }

    fn store(&self, tag: &str, event: Option<i64>, data: Arc<TagImageData>) {
        if self.settings.ttl.is_zero() {
            return;
        }
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let ttl = self.settings.ttl;
        c.retain(|_, e| e.at.elapsed() < ttl);
        if c.len() >= CACHE_MAX {
            if let Some(oldest) = c.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| k.clone()) {
                c.remove(&oldest);
            }
        }
        c.insert(
            (tag.to_owned(), event),
            Cached {
                at: Instant::now(),
                data,
            },
        );
    }

    /// Forget everything cached (tests, and an operator's `SIGHUP` some day).
    pub fn clear_cache(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

fn image_value(tag: &str, key: &str, v: &Json) -> Result<String, PolicyError> {
    let bad = |reason: String| PolicyError::BadExtra {
        tag: tag.to_owned(),
        key: key.to_owned(),
        reason,
    };
    match v {
        Json::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Json::String(_) => Err(bad("the image reference is empty".into())),
        other => Err(bad(format!(
            "must be an image reference (a string), not {other}"
        ))),
    }
}

fn load_file(p: &Path) -> Result<RuleSet, PolicyError> {
    let bad = |reason: String| PolicyError::BadFile {
        path: p.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(p).map_err(|e| bad(e.to_string()))?;
    let v: Json = serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    RuleSet::parse(&v).map_err(bad)
}

#[cfg(test)]
mod tests;
