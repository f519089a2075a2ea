//! The JSON image policy (`adjutant_image_policy` tag extra, or the `image_policy`
//! file): rules of four types, matched by precedence — `tag_arch`, then `tag`, then
//! `task_type`, then `default` — never by their order in the list (within one type the
//! first matching rule wins).
//!
//! ```json
//! {"adjutant_image_policy": {            // optional wrapper
//!   "version": 1,                        // ignored
//!   "rules": [
//!     {"type": "default",   "image": "registry.example.com/buildroot:el9"},
//!     {"type": "tag",       "tag": "f40-build", "image": "registry.example.com/buildroot:f40"},
//!     {"type": "tag_arch",  "tag": "f40-build", "arch": "aarch64", "image": "…:f40-arm"},
//!     {"type": "task_type", "task_type": "buildSRPMFromSCM", "image": "…:scm"}
//!   ]}}
//! ```
//!
//! The value may be a JSON object or a string holding one (tag extras are often set
//! as strings). Anything else — malformed JSON, a rule of an unknown type, a rule
//! without its fields or with an empty image — is refused with an error naming the
//! rule, so a typo in a policy is noticed instead of silently building with the
//! default image.

use serde_json::Value as Json;

/// One rule's condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The build tag and the buildroot arch.
    TagArch {
        /// Build tag name.
        tag: String,
        /// Koji arch (compared with the buildroot arch).
        arch: String,
    },
    /// The build tag.
    Tag {
        /// Build tag name.
        tag: String,
    },
    /// The Koji task method (`buildArch`, `rebuildSRPM`, `buildSRPMFromSCM`, …).
    TaskType {
        /// Method name.
        task_type: String,
    },
    /// Always matches.
    Default,
}

impl Condition {
    /// Precedence: lower wins.
    fn rank(&self) -> u8 {
        match self {
            Condition::TagArch { .. } => 0,
            Condition::Tag { .. } => 1,
            Condition::TaskType { .. } => 2,
            Condition::Default => 3,
        }
    }

    fn matches(&self, q: &Query<'_>) -> bool {
        match self {
            Condition::TagArch { tag, arch } => tag == q.tag && arch == q.arch,
            Condition::Tag { tag } => tag == q.tag,
            Condition::TaskType { task_type } => task_type == q.method,
            Condition::Default => true,
        }
    }

    /// The rule as logs and the status page show it, e.g. `tag_arch f40-build/aarch64`.
    pub fn describe(&self) -> String {
        match self {
            Condition::TagArch { tag, arch } => format!("tag_arch {tag}/{arch}"),
            Condition::Tag { tag } => format!("tag {tag}"),
            Condition::TaskType { task_type } => format!("task_type {task_type}"),
            Condition::Default => "default".into(),
        }
    }
}

/// A rule: a condition and the image it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Position in the policy's `rules` list (0-based), for messages.
    pub index: usize,
    /// When it applies.
    pub condition: Condition,
    /// The image reference it selects.
    pub image: String,
}

/// What the rules are matched against.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// Build tag name.
    pub tag: &'a str,
    /// Buildroot arch.
    pub arch: &'a str,
    /// Task method.
    pub method: &'a str,
}

/// A parsed policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    /// The rules, in list order.
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// Parse a policy value (an object, or a string holding one). `Err` is the reason,
    /// naming the rule (`rule 2 ({"type":"tag"}): "tag" is missing`).
    pub fn parse(value: &Json) -> Result<RuleSet, String> {
        let parsed;
        let mut v = match value {
            Json::String(s) => {
                parsed = serde_json::from_str::<Json>(s)
                    .map_err(|e| format!("the policy is not valid JSON: {e}"))?;
                &parsed
            }
            other => other,
        };
        if let Some(inner) = v.get("adjutant_image_policy") {
            v = inner;
        }
        let obj = v
            .as_object()
            .ok_or_else(|| format!("the policy must be a JSON object, not {}", kind(v)))?;
        let rules = obj
            .get("rules")
            .ok_or_else(|| "the policy has no \"rules\" list".to_string())?
            .as_array()
            .ok_or_else(|| "\"rules\" must be a list".to_string())?;
        let mut out = Vec::with_capacity(rules.len());
        for (index, r) in rules.iter().enumerate() {
            out.push(parse_rule(index, r).map_err(|why| {
                format!("rule {index} ({}): {why}", truncate(&r.to_string(), 200))
            })?);
        }
        Ok(RuleSet { rules: out })
    }

    /// The winning rule for `q`: the first matching rule of the highest-precedence type.
    pub fn select(&self, q: &Query<'_>) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.condition.matches(q))
            .min_by_key(|r| (r.condition.rank(), r.index))
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn parse_rule(index: usize, r: &Json) -> Result<Rule, String> {
    let obj = r
        .as_object()
        .ok_or_else(|| format!("a rule must be an object, not {}", kind(r)))?;
    let field = |name: &str| -> Result<String, String> {
        match obj.get(name) {
            None => Err(format!("\"{name}\" is missing")),
            Some(Json::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(Json::String(_)) => Err(format!("\"{name}\" is empty")),
            Some(other) => Err(format!("\"{name}\" must be a string, not {}", kind(other))),
        }
    };
    let ty = field("type")?;
    let condition = match ty.as_str() {
        "tag_arch" => Condition::TagArch {
            tag: field("tag")?,
            arch: field("arch")?,
        },
        "tag" => Condition::Tag { tag: field("tag")? },
        "task_type" => Condition::TaskType {
            task_type: field("task_type")?,
        },
        "default" => Condition::Default,
        other => {
            return Err(format!(
                "unknown rule type {other:?} (tag_arch, tag, task_type, default)"
            ))
        }
    };
    Ok(Rule {
        index,
        condition,
        image: field("image")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q<'a>(tag: &'a str, arch: &'a str, method: &'a str) -> Query<'a> {
        Query { tag, arch, method }
    }

    #[test]
    fn precedence_not_list_order() {
        let p = RuleSet::parse(&json!({"rules": [
            {"type": "default", "image": "d"},
            {"type": "task_type", "task_type": "buildArch", "image": "tt"},
            {"type": "tag", "tag": "f40-build", "image": "t"},
            {"type": "tag_arch", "tag": "f40-build", "arch": "aarch64", "image": "ta"},
        ]}))
        .unwrap();
        let img = |t, a, m| p.select(&q(t, a, m)).map(|r| r.image.as_str());
        assert_eq!(img("f40-build", "aarch64", "buildArch"), Some("ta"));
        assert_eq!(img("f40-build", "x86_64", "buildArch"), Some("t"));
        assert_eq!(img("other", "x86_64", "buildArch"), Some("tt"));
        assert_eq!(img("other", "x86_64", "rebuildSRPM"), Some("d"));
        assert_eq!(
            p.select(&q("f40-build", "aarch64", "x")).unwrap().index,
            3,
            "the rule's position is kept for messages"
        );
    }

    #[test]
    fn first_of_a_type_wins_and_no_default_means_none() {
        let p = RuleSet::parse(&json!({"rules": [
            {"type": "tag", "tag": "a", "image": "first"},
            {"type": "tag", "tag": "a", "image": "second"},
        ]}))
        .unwrap();
        assert_eq!(p.select(&q("a", "x86_64", "m")).unwrap().image, "first");
        assert!(p.select(&q("b", "x86_64", "m")).is_none());
    }

    #[test]
    fn string_values_and_the_wrapper() {
        let s = json!(
            r#"{"adjutant_image_policy": {"version": 1, "rules": [{"type": "default", "image": " img "}]}}"#
        );
        let p = RuleSet::parse(&s).unwrap();
        assert_eq!(p.rules[0].image, "img");
        assert_eq!(p.rules[0].condition.describe(), "default");
        let p = RuleSet::parse(&json!({"rules": []})).unwrap();
        assert!(p.rules.is_empty());
    }

    #[test]
    fn bad_policies_name_the_rule() {
        let e = |v: Json| RuleSet::parse(&v).unwrap_err();
        assert!(e(json!("{not json")).contains("not valid JSON"));
        assert!(e(json!([1])).contains("must be a JSON object, not a list"));
        assert!(e(json!({"version": 1})).contains("no \"rules\""));
        assert!(e(json!({"rules": {"type": "default"}})).contains("must be a list"));
        let m =
            e(json!({"rules": [{"type": "default", "image": "x"}, {"type": "tag", "image": "y"}]}));
        assert!(m.starts_with("rule 1 ("), "{m}");
        assert!(m.contains("\"tag\" is missing"), "{m}");
        let m = e(json!({"rules": [{"type": "tagg", "tag": "a", "image": "y"}]}));
        assert!(m.contains("unknown rule type \"tagg\""), "{m}");
        let m = e(json!({"rules": [{"type": "default", "image": ""}]}));
        assert!(m.contains("\"image\" is empty"), "{m}");
        let m = e(json!({"rules": [{"type": "default", "image": 5}]}));
        assert!(
            m.contains("\"image\" must be a string, not a number"),
            "{m}"
        );
        let m = e(json!({"rules": ["default"]}));
        assert!(m.contains("a rule must be an object, not a string"), "{m}");
        let m = e(json!({"rules": [{"image": "x"}]}));
        assert!(m.contains("\"type\" is missing"), "{m}");
        let m = e(json!({"rules": [{"type": "tag_arch", "tag": "t", "image": "x"}]}));
        assert!(m.contains("\"arch\" is missing"), "{m}");
    }
}
