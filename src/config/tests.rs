use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("kojid.conf");
    std::fs::write(&p, text).unwrap();
    p
}

fn args(path: &Path) -> DaemonArgs {
    DaemonArgs {
        config: Some(path.to_owned()),
        ..Default::default()
    }
}

const BASE: &str =
    "[kojid]\nserver = http://hub.example.com/kojihub\ntopurl = http://hub.example.com/kojifiles\n";

#[test]
fn kojid_types_and_defaults() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        &format!("{BASE}sleeptime = 5\nmaxjobs: 3\noffline_retry = off\nplugins = runroot save_failed_tree\nRLIMIT_NOFILE = 4096\ntimeout = 30\nbuild_arch_can_fail = yes\n"),
    );
    let c = Config::load(&args(&p), Vec::<(String, String)>::new()).unwrap();
    assert_eq!(c.kojid.sleeptime, 5);
    assert_eq!(c.kojid.maxjobs, 3);
    assert!(!c.kojid.offline_retry);
    assert!(c.kojid.build_arch_can_fail);
    assert_eq!(c.kojid.timeout, Some(30));
    assert_eq!(c.kojid.plugin.0, vec!["runroot", "save_failed_tree"]);
    assert_eq!(
        c.rlimits.get("RLIMIT_NOFILE").map(String::as_str),
        Some("4096")
    );
    // defaults
    assert_eq!(c.kojid.minspace, 8192);
    assert_eq!(c.kojid.max_retries, 120);
    assert_eq!(c.kojid.retry_interval, 60);
    assert_eq!(c.kojid.offline_retry_interval, 120);
    assert_eq!(c.kojid.topdir, PathBuf::from("/mnt/koji"));
    assert_eq!(
        c.topurls(),
        &["http://hub.example.com/kojifiles".to_string()]
    );
    assert!(c.warnings.iter().any(|w| w.contains("plugin \"runroot\"")));
}

#[test]
fn bad_values_name_file_line_key_and_reason() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), &format!("{BASE}sleeptime = soon\n"));
    let e = Config::load(&args(&p), Vec::<(String, String)>::new()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("kojid.conf:4"), "{msg}");
    assert!(msg.contains("sleeptime"), "{msg}");
    assert!(msg.contains("not a valid integer"), "{msg}");

    let p = write(d.path(), &format!("{BASE}use_fast_upload = perhaps\n"));
    let msg = Config::load(&args(&p), Vec::<(String, String)>::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("use_fast_upload") && msg.contains("not a boolean"),
        "{msg}"
    );

    let p = write(d.path(), "[kojid]\ntopurl = http://x/\n");
    let msg = Config::load(&args(&p), Vec::<(String, String)>::new())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("server option is required"), "{msg}");

    let p = write(
        d.path(),
        &format!("{BASE}[adjutant]\nstatus_bind = everywhere\n"),
    );
    let msg = Config::load(&args(&p), Vec::<(String, String)>::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("kojid.conf:5") && msg.contains("status_bind"),
        "{msg}"
    );

    let p = write(d.path(), &format!("{BASE}maxjobs = 0\n"));
    let msg = Config::load(&args(&p), Vec::<(String, String)>::new())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("maxjobs") && msg.contains("minimum"), "{msg}");
}

#[test]
fn unknown_keys_and_sections_are_warned() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        &format!("{BASE}frobnicate = 1\n[adjutant]\nwhatever = 2\n[extra]\na = b\n"),
    );
    let c = Config::load(&args(&p), Vec::<(String, String)>::new()).unwrap();
    let w = c.warnings.join("\n");
    assert!(w.contains("\"frobnicate\""), "{w}");
    assert!(w.contains("\"whatever\""), "{w}");
    assert!(w.contains("[extra]"), "{w}");
}

#[test]
fn adjutant_section_prototype_keys_env_and_flags() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        &format!(
            "{BASE}adjutant_task_image_default = quay.io/x/y:1\nadjutant_monitoring_bind = 127.0.0.1:9999\n\
             adjutant_container_timeouts = pull=10,start=5,stop_grace=2\nadjutant_podman_socket = unix:///x\n\
             adjutant_network_enabled = true\nsleeptime = 7\n\
             [adjutant]\npull_policy = never\nmemory_limit = 2G\nid_mapping = 200000:65536\n\
             container_mounts = /mnt/koji:/mnt/koji:rw:z /srv/a:/a:ro\n"
        ),
    );
    let env = vec![
        ("KOJI_ADJUTANT_CPU_LIMIT".to_string(), "1.5".to_string()),
        (
            "KOJI_ADJUTANT_IMAGE_PULL_POLICY".to_string(),
            "always".to_string(),
        ),
        ("KOJI_ADJUTANT_KOJID_SLEEPTIME".to_string(), "9".to_string()),
        (
            "KOJI_ADJUTANT_HOST_MOUNT_MAP".to_string(),
            "/mnt/koji:/srv/koji".to_string(),
        ),
        ("KOJI_ADJUTANT_BOGUS".to_string(), "1".to_string()),
        ("KOJI_ADJUTANT_FIXTURES".to_string(), "/x".to_string()),
        ("PATH".to_string(), "/bin".to_string()),
    ];
    let mut a = args(&p);
    a.maxjobs = Some(2);
    a.force_lock = true;
    let c = Config::load(&a, env).unwrap();
    assert_eq!(c.adjutant.default_image, "quay.io/x/y:1");
    assert_eq!(c.adjutant.status_bind.addr().map(|a| a.port()), Some(9999));
    assert_eq!(
        (
            c.adjutant.pull_timeout,
            c.adjutant.start_timeout,
            c.adjutant.stop_grace
        ),
        (10, 5, 2)
    );
    assert_eq!(c.adjutant.network_default, NetworkDefault::Host);
    assert_eq!(
        c.adjutant.pull_policy,
        PullPolicy::Always,
        "env overrides the file"
    );
    assert_eq!(c.adjutant.memory_limit, Some(Bytes(2 << 30)));
    assert_eq!(c.adjutant.cpu_limit, Some(1.5));
    assert_eq!(
        c.adjutant.id_mapping,
        IdMappingSetting::Range {
            base: 200000,
            count: 65536
        }
    );
    assert_eq!(c.adjutant.mounts.0.len(), 2);
    assert!(c.adjutant.mounts.0[1].read_only);
    assert_eq!(
        c.adjutant.host_mount_map.0,
        vec![("/mnt/koji".to_string(), "/srv/koji".to_string())]
    );
    assert_eq!(c.kojid.sleeptime, 9, "env overrides the file");
    assert_eq!(c.kojid.maxjobs, 2, "flags override everything");
    assert!(c.flags.force_lock);
    let w = c.warnings.join("\n");
    assert!(w.contains("podman_socket ignored"), "{w}");
    assert!(w.contains("KOJI_ADJUTANT_BOGUS"), "{w}");
    assert!(!w.contains("FIXTURES"), "{w}");
}

#[test]
fn every_documented_key_parses_and_no_key_is_undocumented() {
    // docs/config.md must list every key the code knows, with its type and default.
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md")).unwrap();
    for k in KOJID_KEYS.iter().chain(ADJUTANT_KEYS) {
        let row = format!("| `{}` |", k.name);
        assert!(
            doc.contains(&row),
            "docs/config.md lacks a row for {}",
            k.name
        );
    }
    for k in adjutant::PROTOTYPE_KEYS {
        assert!(
            doc.contains(&format!("`{k}`")),
            "docs/config.md lacks prototype key {k}"
        );
    }
    // and the setter knows every key in the tables
    let mut c = Config::defaults();
    for k in KOJID_KEYS {
        assert!(c.kojid.set_key(k.name, "1").is_some(), "{}", k.name);
    }
    for k in ADJUTANT_KEYS {
        assert!(c.adjutant.set_key(k.name, "x").is_some(), "{}", k.name);
    }
}

#[test]
fn docs_config_rows_match_the_key_tables() {
    // Each row of docs/config.md is exactly what the code says: type, default, meaning
    // (`|` inside a cell escaped as `\|`).
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md")).unwrap();
    let cell = |s: &str| s.replace('|', "\\|");
    let mut wrong = Vec::new();
    for k in KOJID_KEYS.iter().chain(ADJUTANT_KEYS) {
        let row = format!(
            "| `{}` | {} | {} | {} |",
            k.name,
            cell((k.type_name)()),
            cell(k.default),
            cell(k.help)
        );
        if !doc.lines().any(|l| l == row) {
            wrong.push(row);
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/config.md rows differ from the code; they should read:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_sample_config_shows_every_adjutant_key() {
    // config/kojid.conf shows every [adjutant] key, set or commented out (`; key = …`).
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kojid.conf")).unwrap();
    let section = text
        .split("[adjutant]")
        .nth(1)
        .expect("no [adjutant] section");
    for k in ADJUTANT_KEYS {
        let shown = section.lines().any(|l| {
            let l = l.trim_start_matches([';', '#', ' ']);
            l.strip_prefix(k.name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        assert!(
            shown,
            "config/kojid.conf does not show [adjutant] {}",
            k.name
        );
    }
}

#[test]
fn the_sample_config_parses_cleanly() {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kojid.conf"));
    let c = Config::load(&args(&path), Vec::<(String, String)>::new()).unwrap();
    assert_eq!(c.server(), "https://hub.example.com/kojihub");
    assert_eq!(
        c.adjutant.default_image,
        "registry.fedoraproject.org/fedora:41"
    );
    assert!(
        c.warnings.iter().all(|w| !w.contains("unknown")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn kojids_own_sample_config_is_accepted() {
    // builder/kojid.conf of koji 1.35.3, abridged to its active lines
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "[kojid]\n; The number of seconds to sleep between tasks\n; sleeptime=15\n\
         server=http://hub.example.com/kojihub\ntopurl=http://hub.example.com/kojifiles\n\
         allowed_scms=scm.example.com:/cvs/example git.example.org:/example svn.example.org:/users/*:no\n\
         smtphost=example.com\nfrom_addr=Koji Build System <buildsys@example.com>\n",
    );
    let c = Config::load(&args(&p), Vec::<(String, String)>::new()).unwrap();
    assert_eq!(
        c.kojid.from_addr,
        "Koji Build System <buildsys@example.com>"
    );
    assert!(c
        .kojid
        .allowed_scms
        .ends_with("svn.example.org:/users/*:no"));
    assert!(
        c.warnings.iter().all(|w| !w.contains("unknown")),
        "{:?}",
        c.warnings
    );
}
