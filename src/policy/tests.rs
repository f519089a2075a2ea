use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::xmlrpc::Fault;

/// A hub double: build configs by (tag, event), counting calls; `fail` makes every
/// call fail once.
#[derive(Default)]
struct Configs {
    map: HashMap<(String, Option<i64>), Value>,
    calls: AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
}

impl Configs {
    fn with(mut self, tag: &str, event: Option<i64>, extra: Vec<(&str, Value)>) -> Self {
        let cfg = Value::struct_from([
            ("id", Value::Int(7)),
            ("name", Value::from(tag)),
            ("arches", Value::from("x86_64 aarch64")),
            ("extra", Value::struct_from(extra)),
        ]);
        self.map.insert((tag.to_owned(), event), cfg);
        self
    }
}

impl BuildConfigSource for Configs {
    fn build_config<'a>(
        &'a self,
        tag: &'a str,
        event: Option<i64>,
    ) -> BoxFuture<'a, Result<Value, HubError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.swap(false, Ordering::SeqCst) {
                return Err(HubError::Fault {
                    method: "getBuildConfig".into(),
                    fault: Fault::new(1014, "Server disabled for maintenance"),
                });
            }
            self.map
                .get(&(tag.to_owned(), event))
                .cloned()
                .ok_or_else(|| HubError::Fault {
                    method: "getBuildConfig".into(),
                    fault: Fault::new(1000, format!("No such tagInfo: '{tag}'")),
                })
        })
    }
}

fn settings() -> PolicySettings {
    PolicySettings {
        enabled: true,
        default_image: "localhost/buildroot:latest".into(),
        ttl: Duration::from_secs(300),
        file: None,
    }
}

fn policy_json(rules: &str) -> Value {
    Value::from(format!(r#"{{"rules": [{rules}]}}"#))
}

const ALL_RULES: &str = r#"
    {"type": "default", "image": "rule-default"},
    {"type": "task_type", "task_type": "rebuildSRPM", "image": "rule-task"},
    {"type": "tag", "tag": "f40-build", "image": "rule-tag"},
    {"type": "tag_arch", "tag": "f40-build", "arch": "aarch64", "image": "rule-tag-arch"}"#;

async fn image(p: &ImagePolicy, src: &Configs, tag: &str, arch: &str, method: &str) -> String {
    p.resolve(src, tag, None, arch, method).await.unwrap().image
}

#[tokio::test]
async fn arch_extra_beats_image_extra_beats_rules() {
    let src = Configs::default().with(
        "f40-build",
        None,
        vec![
            ("adjutant.image.aarch64", Value::from("extra-arm")),
            ("adjutant.image", Value::from("extra-any")),
            (POLICY_KEY, policy_json(ALL_RULES)),
        ],
    );
    let p = ImagePolicy::new(settings()).unwrap();
    let r = p
        .resolve(&src, "f40-build", None, "aarch64", "buildArch")
        .await
        .unwrap();
    assert_eq!(r.image, "extra-arm");
    assert_eq!(r.rule(), "tag f40-build extra adjutant.image.aarch64");
    let r = p
        .resolve(&src, "f40-build", None, "x86_64", "buildArch")
        .await
        .unwrap();
    assert_eq!(r.image, "extra-any");
    assert_eq!(r.source, ImageSource::TagExtra);
    assert_eq!(r.rule(), "tag f40-build extra adjutant.image");
}

#[tokio::test]
async fn tag_rules_by_precedence() {
    let src = Configs::default()
        .with(
            "f40-build",
            None,
            vec![(POLICY_KEY, policy_json(ALL_RULES))],
        )
        .with(
            "el9-build",
            None,
            vec![(POLICY_KEY, policy_json(ALL_RULES))],
        );
    let p = ImagePolicy::new(settings()).unwrap();
    assert_eq!(
        image(&p, &src, "f40-build", "aarch64", "rebuildSRPM").await,
        "rule-tag-arch"
    );
    assert_eq!(
        image(&p, &src, "f40-build", "x86_64", "rebuildSRPM").await,
        "rule-tag"
    );
    assert_eq!(
        image(&p, &src, "el9-build", "x86_64", "rebuildSRPM").await,
        "rule-task"
    );
    assert_eq!(
        image(&p, &src, "el9-build", "x86_64", "buildArch").await,
        "rule-default"
    );
    let r = p
        .resolve(&src, "f40-build", None, "aarch64", "buildArch")
        .await
        .unwrap();
    assert_eq!(
        r.rule(),
        "tag f40-build adjutant_image_policy rule 3 (tag_arch f40-build/aarch64)"
    );
}

#[tokio::test]
async fn policy_as_struct_with_wrapper() {
    let rules = Value::struct_from([(
        "adjutant_image_policy",
        Value::struct_from([
            ("version", Value::Int(1)),
            (
                "rules",
                Value::Array(vec![Value::struct_from([
                    ("type", Value::from("tag")),
                    ("tag", Value::from("f40-build")),
                    ("image", Value::from("from-struct")),
                ])]),
            ),
        ]),
    )]);
    let src = Configs::default().with("f40-build", None, vec![(POLICY_KEY, rules)]);
    let p = ImagePolicy::new(settings()).unwrap();
    assert_eq!(
        image(&p, &src, "f40-build", "x86_64", "buildArch").await,
        "from-struct"
    );
}

#[tokio::test]
async fn no_match_falls_back_to_the_default_image() {
    let src = Configs::default()
        .with(
            "f40-build",
            None,
            vec![(
                POLICY_KEY,
                policy_json(r#"{"type": "tag", "tag": "other", "image": "x"}"#),
            )],
        )
        .with(
            "plain",
            None,
            vec![("rpm.macro.dist", Value::from(".fc40"))],
        );
    let p = ImagePolicy::new(settings()).unwrap();
    for tag in ["f40-build", "plain"] {
        let r = p
            .resolve(&src, tag, None, "x86_64", "buildArch")
            .await
            .unwrap();
        assert_eq!(r.image, "localhost/buildroot:latest");
        assert_eq!(r.source, ImageSource::Default);
    }
}

#[tokio::test]
async fn file_rules_only_when_the_tag_has_no_policy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.json");
    std::fs::write(
        &file,
        r#"{"rules": [{"type": "task_type", "task_type": "buildArch", "image": "file-img"}]}"#,
    )
    .unwrap();
    let src = Configs::default()
        .with("plain", None, vec![])
        .with(
            "own",
            None,
            vec![(
                POLICY_KEY,
                policy_json(r#"{"type": "tag", "tag": "nomatch", "image": "x"}"#),
            )],
        )
        .with(
            "extra",
            None,
            vec![("adjutant.image", Value::from("tag-img"))],
        );
    let p = ImagePolicy::new(PolicySettings {
        file: Some(file.clone()),
        ..settings()
    })
    .unwrap();
    let r = p
        .resolve(&src, "plain", None, "x86_64", "buildArch")
        .await
        .unwrap();
    assert_eq!(r.image, "file-img");
    assert!(r.rule().starts_with("image policy file "), "{}", r.rule());
    // The tag's own policy (even one that matches nothing) replaces the file.
    assert_eq!(
        image(&p, &src, "own", "x86_64", "buildArch").await,
        "localhost/buildroot:latest"
    );
    // Tag extras still come first.
    assert_eq!(
        image(&p, &src, "extra", "x86_64", "buildArch").await,
        "tag-img"
    );
    // The file's rules do not apply to other methods.
    assert_eq!(
        image(&p, &src, "plain", "x86_64", "rebuildSRPM").await,
        "localhost/buildroot:latest"
    );
}

#[tokio::test]
async fn disabled_means_the_default_image_and_no_hub_call() {
    let src = Configs::default().with(
        "f40-build",
        None,
        vec![("adjutant.image", Value::from("x"))],
    );
    let p = ImagePolicy::new(PolicySettings {
        enabled: false,
        file: Some("/nonexistent/policy.json".into()),
        ..settings()
    })
    .unwrap();
    let r = p
        .resolve(&src, "f40-build", None, "x86_64", "buildArch")
        .await
        .unwrap();
    assert_eq!(r.image, "localhost/buildroot:latest");
    assert_eq!(r.source, ImageSource::Disabled);
    assert_eq!(src.calls.load(Ordering::SeqCst), 0);
    let cfg = src.map[&("f40-build".to_string(), None)].clone();
    assert_eq!(
        p.resolve_config(&cfg, "x86_64", "buildArch")
            .unwrap()
            .source,
        ImageSource::Disabled
    );
}

#[tokio::test]
async fn cache_by_tag_and_event_with_ttl() {
    let src = Configs::default()
        .with(
            "f40-build",
            None,
            vec![("adjutant.image", Value::from("now"))],
        )
        .with(
            "f40-build",
            Some(100),
            vec![("adjutant.image", Value::from("then"))],
        );
    let p = ImagePolicy::new(settings()).unwrap();
    for _ in 0..3 {
        assert_eq!(
            image(&p, &src, "f40-build", "x86_64", "buildArch").await,
            "now"
        );
        assert_eq!(
            image(&p, &src, "f40-build", "aarch64", "rebuildSRPM").await,
            "now"
        );
    }
    assert_eq!(
        src.calls.load(Ordering::SeqCst),
        1,
        "one hub call for (tag, now)"
    );
    let r = p
        .resolve(&src, "f40-build", Some(100), "x86_64", "buildArch")
        .await
        .unwrap();
    assert_eq!(r.image, "then");
    assert_eq!(
        src.calls.load(Ordering::SeqCst),
        2,
        "another event is another entry"
    );
    // A clone shares the cache (all tasks of a daemon share one policy).
    let p2 = p.clone();
    assert_eq!(
        image(&p2, &src, "f40-build", "x86_64", "buildArch").await,
        "now"
    );
    assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    // ttl 0: no caching.
    let p0 = ImagePolicy::new(PolicySettings {
        ttl: Duration::ZERO,
        ..settings()
    })
    .unwrap();
    image(&p0, &src, "f40-build", "x86_64", "buildArch").await;
    image(&p0, &src, "f40-build", "x86_64", "buildArch").await;
    assert_eq!(src.calls.load(Ordering::SeqCst), 4);
    p.clear_cache();
    image(&p, &src, "f40-build", "x86_64", "buildArch").await;
    assert_eq!(src.calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn hub_failures_are_errors_and_not_cached() {
    let src = Configs::default().with(
        "f40-build",
        None,
        vec![("adjutant.image", Value::from("img"))],
    );
    src.fail.store(true, Ordering::SeqCst);
    let p = ImagePolicy::new(settings()).unwrap();
    let e = p
        .resolve(&src, "f40-build", None, "x86_64", "buildArch")
        .await
        .unwrap_err();
    assert!(matches!(e, PolicyError::Hub { .. }));
    assert!(
        e.to_string().starts_with("tag f40-build: getBuildConfig:"),
        "{e}"
    );
    assert_eq!(
        image(&p, &src, "f40-build", "x86_64", "buildArch").await,
        "img"
    );
    let e = p
        .resolve(&src, "nope", None, "x86_64", "buildArch")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("No such tagInfo"), "{e}");
}

#[tokio::test]
async fn bad_values_name_the_tag_and_the_rule() {
    let src = Configs::default()
        .with("empty", None, vec![("adjutant.image", Value::from("  "))])
        .with("number", None, vec![("adjutant.image.x86_64", Value::Int(3))])
        .with(
            "badrule",
            None,
            vec![(
                POLICY_KEY,
                policy_json(r#"{"type": "default", "image": "ok"}, {"type": "tag_arch", "tag": "t", "image": "x"}"#),
            )],
        )
        .with("notjson", None, vec![(POLICY_KEY, Value::from("{rules: nope"))]);
    let p = ImagePolicy::new(settings()).unwrap();
    let err = |tag: &'static str| {
        let p = p.clone();
        let src = &src;
        async move {
            p.resolve(src, tag, None, "x86_64", "buildArch")
                .await
                .unwrap_err()
                .to_string()
        }
    };
    assert_eq!(
        err("empty").await,
        "tag empty: extra adjutant.image: the image reference is empty"
    );
    assert_eq!(
        err("number").await,
        "tag number: extra adjutant.image.x86_64: must be an image reference (a string), not 3"
    );
    let m = err("badrule").await;
    assert!(
        m.starts_with("tag badrule: extra adjutant_image_policy: rule 1 ("),
        "{m}"
    );
    assert!(m.contains("\"arch\" is missing"), "{m}");
    let m = err("notjson").await;
    assert!(m.contains("not valid JSON"), "{m}");
    // An arch extra that does not apply is not looked at.
    assert_eq!(
        image(&p, &src, "number", "aarch64", "buildArch").await,
        "localhost/buildroot:latest"
    );
}

#[test]
fn a_bad_policy_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.json");
    std::fs::write(&f, r#"{"rules": [{"type": "tag", "image": "x"}]}"#).unwrap();
    let e = ImagePolicy::new(PolicySettings {
        file: Some(f.clone()),
        ..settings()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "image policy file {}: rule 0 ({{\"image\":\"x\",\"type\":\"tag\"}}): \"tag\" is missing",
            f.display()
        )
    );
    let e = ImagePolicy::new(PolicySettings {
        file: Some(dir.path().join("missing.json")),
        ..settings()
    })
    .unwrap_err();
    assert!(e.to_string().contains("missing.json"), "{e}");
}

#[test]
fn resolve_config_uses_the_given_config() {
    let cfg = Value::struct_from([
        ("name", Value::from("f40-build")),
        (
            "extra",
            Value::struct_from([(POLICY_KEY, policy_json(ALL_RULES))]),
        ),
    ]);
    let p = ImagePolicy::new(settings()).unwrap();
    let r = p.resolve_config(&cfg, "aarch64", "buildArch").unwrap();
    assert_eq!(r.image, "rule-tag-arch");
    assert_eq!(r.tag, "f40-build");
}
