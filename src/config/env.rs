//! `KOJI_ADJUTANT_*` environment overrides: `KOJI_ADJUTANT_<KEY>` sets the `[adjutant]`
//! key `<key>` (or a prototype alias such as `KOJI_ADJUTANT_TASK_IMAGE_DEFAULT`), and
//! `KOJI_ADJUTANT_KOJID_<KEY>` sets a `[kojid]` key. They override the file; flags
//! override them.

use super::{adjutant, Config, ConfigError, Origin};

/// Prefix of our environment variables.
pub const PREFIX: &str = "KOJI_ADJUTANT_";

/// Variables with this prefix that are not config keys (CLI, logging, tests).
const NOT_CONFIG: &[&str] = &["ROOT", "LOG", "FIXTURES"];

/// Apply the environment (pass `std::env::vars()`; tests pass their own).
pub fn apply_env<I>(cfg: &mut Config, vars: I) -> Result<(), ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let rest = &name[PREFIX.len()..];
        if NOT_CONFIG.contains(&rest) || rest.starts_with("TEST") {
            continue;
        }
        let origin = Origin::Env(name.clone());
        if let Some(kkey) = rest.strip_prefix("KOJID_") {
            let key = kkey.to_ascii_lowercase();
            if cfg.kojid.set_key(&key, &value).is_none()
                && key != "plugin"
                && key != "plugins"
                && !key.starts_with("rlimit_")
            {
                cfg.warnings
                    .push(format!("{origin}: unknown [kojid] key {key:?} ignored"));
                continue;
            }
            cfg.set_kojid_key(&key, value.trim(), origin)?;
            continue;
        }
        let key = rest.to_ascii_lowercase();
        if !adjutant::set_adjutant_key(cfg, &key, value.trim(), &origin)? {
            cfg.warnings
                .push(format!("{origin}: not a koji-adjutant setting; ignored"));
        }
    }
    Ok(())
}
