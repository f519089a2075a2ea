//! `koji-adjutant run`, end to end through the binary, as root and as `adjutant-test`.
//! The root filesystem is the fixture busybox layer extracted to a directory (used with
//! `--rootfs` until the image store lands).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use adjutant_testkit::{as_test_user, fixtures_dir, is_root, is_test_user_child};

const BIN: &str = env!("CARGO_BIN_EXE_koji-adjutant");

/// Run `body` as root (when root), then as `adjutant-test`.
fn both(body: impl Fn()) {
    if is_root() && !is_test_user_child() {
        body();
    }
    if as_test_user() {
        body();
    }
}

struct Env {
    dir: tempfile::TempDir,
    rootfs: PathBuf,
    store: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("ka-cli-run.")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        let tar = fixtures_dir().join("layers/busybox.tar");
        let st = Command::new("tar")
            .args(["-xf"])
            .arg(&tar)
            .arg("-C")
            .arg(&rootfs)
            .arg("--no-same-owner")
            .status()
            .unwrap();
        assert!(st.success());
        if is_root() {
            // Container root is host uid 100000 (IdMapping::root).
            let st = Command::new("chown")
                .args(["-hR", "100000:100000"])
                .arg(&rootfs)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let store = dir.path().join("store");
        Env { dir, rootfs, store }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(&self.store).arg("run");
        let (flags, command): (Vec<&str>, Vec<&str>) = split_at_command(args);
        c.args(flags)
            .arg("--rootfs")
            .arg(&self.rootfs)
            .args(command);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Container directories left in the store (the in-memory mount point excluded).
    fn leftovers(&self) -> Vec<String> {
        match std::fs::read_dir(self.store.join("containers")) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".mnt")
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Rootless stores hold files of subordinate ids (layers, kept containers) that
        // only a user namespace with the same mapping can remove.
        if let Ok(cfg) = adjutant_runtime::container::RuntimeConfig::detect(self.dir.path()) {
            if let Err(e) =
                adjutant_runtime::userns::remove_tree(Path::new(BIN), &cfg.mapping, self.dir.path())
            {
                eprintln!("cleaning up {}: {e}", self.dir.path().display());
            }
        }
    }
}

/// `["--rm", "-e", "X=1", "--", "sh", "-c", "..."]` → flags before `--`, command after.
fn split_at_command<'a>(args: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    match args.iter().position(|a| *a == "--") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (Vec::new(), args.to_vec()),
    }
}

/// `koji-adjutant --root STORE run ARGS...` (no `--rootfs`).
fn run_image(store: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--root")
        .arg(store)
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_exit_code_and_stdio() {
    both(|| {
        let env = Env::new();
        let out = env.run(&["--rm", "--", "sh", "-c", "echo out; echo err >&2; exit 42"]);
        assert_eq!(out.status.code(), Some(42), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "out\n");
        assert_eq!(text(&out.stderr), "err\n");

        let mut child = env
            .cmd(&["--rm", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"piped through\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            (out.status.code(), text(&out.stdout).as_str()),
            (Some(0), "piped through\n")
        );

        let out = env.run(&["--rm", "--", "no-such-command"]);
        assert_eq!(out.status.code(), Some(127));
        assert!(
            text(&out.stderr).contains("no-such-command"),
            "{}",
            text(&out.stderr)
        );

        let out = env.run(&["--rm", "--", "sh", "-c", "kill -9 $$"]);
        assert_eq!(out.status.code(), Some(137));

        // Bad usage is the runtime's error (125), with a message.
        let out = Command::new(BIN)
            .args(["--root"])
            .arg(&env.store)
            .args(["run", "--rm", "--rootfs", "/nonexistent-rootfs", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert!(text(&out.stderr).contains("/nonexistent-rootfs"));
        assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    });
}

#[test]
fn run_flags() {
    both(|| {
        let env = Env::new();
        let rw = env.dir.path().join("rw");
        let ro = env.dir.path().join("ro");
        std::fs::create_dir_all(&rw).unwrap();
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::write(ro.join("f"), "ro-data").unwrap();
        std::fs::set_permissions(&rw, std::fs::Permissions::from_mode(0o777)).unwrap();
        let v_rw = format!("{}:/data", rw.display());
        let v_ro = format!("{}:/ro:ro", ro.display());
        let out = env
            .cmd(&[
                "--rm",
                "-e",
                "FOO=bar",
                "-e",
                "KA_FROM_HOST",
                "-w",
                "/tmp",
                "-u",
                "1000:1000",
                "--hostname",
                "cli-host",
                "-v",
                &v_rw,
                "-v",
                &v_ro,
                "--",
                "sh",
                "-c",
                "echo $FOO $KA_FROM_HOST; pwd; id -u; id -g; hostname; cat /ro/f; echo; \
             echo hi > /data/out; echo x > /ro/g 2>/dev/null || echo ro-refused",
            ])
            .env("KA_FROM_HOST", "copied")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "bar copied\n/tmp\n1000\n1000\ncli-host\nro-data\nro-refused\n"
        );
        assert_eq!(std::fs::read_to_string(rw.join("out")).unwrap(), "hi\n");
        assert!(!ro.join("g").exists());
    });
}

#[test]
fn run_network_defaults_to_none() {
    both(|| {
        let env = Env::new();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.write_all(b"pong\n");
            }
        });
        let out = env.run(&["--rm", "--", "nc", "127.0.0.1", &port]);
        assert_ne!(
            out.status.code(),
            Some(0),
            "reached the host with the default network"
        );
        let out = env.run(&["--rm", "--network", "host", "--", "nc", "127.0.0.1", &port]);
        assert_eq!(
            (out.status.code(), text(&out.stdout).as_str()),
            (Some(0), "pong\n")
        );
        server.join().unwrap();
    });
}

#[test]
fn run_rm_and_keep() {
    both(|| {
        let env = Env::new();
        let out = env.run(&["--rm", "--", "sh", "-c", "echo data > /written"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
        assert!(!env.rootfs.join("written").exists());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(env.store.to_str().unwrap()));

        // Without --rm the writable layer is kept (until the next sweep).
        let out = env.run(&["--", "sh", "-c", "echo data > /written"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let left = env.leftovers();
        assert_eq!(left.len(), 1, "{left:?}");
        let upper = env
            .store
            .join("containers")
            .join(&left[0])
            .join("upper/written");
        assert_eq!(std::fs::read_to_string(upper).unwrap(), "data\n");
    });
}

#[test]
fn run_limits() {
    both(|| {
        let env = Env::new();
        let hog = ["awk", "BEGIN { s = \"x\"; while (1) s = s s }"];
        let mut args = vec!["--rm", "--memory", "32m", "--pids-limit", "20", "--"];
        args.extend(hog);
        // Container cgroups (other builds on the machine may have theirs here too).
        let cgroups = || -> Vec<std::path::PathBuf> {
            std::fs::read_dir("/sys/fs/cgroup/memory/koji-adjutant")
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.is_dir())
                        .collect()
                })
                .unwrap_or_default()
        };
        let before = cgroups();
        let out = env.run(&args);
        if is_root() {
            // SIGKILLed by the OOM killer.
            assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
            // no cgroup of ours is left: a new one without processes would be ours (a
            // running container of someone else has its processes in it)
            let leftover: Vec<_> = cgroups()
                .into_iter()
                .filter(|p| !before.contains(p))
                .filter(|p| {
                    std::fs::read_to_string(p.join("cgroup.procs"))
                        .is_ok_and(|s| s.trim().is_empty())
                })
                .collect();
            assert!(leftover.is_empty(), "cgroups left: {leftover:?}");
        } else {
            // No delegated cgroup: the limits are reported as not applied, never faked.
            assert!(
                text(&out.stderr).contains("limits not applied"),
                "{}",
                text(&out.stderr)
            );
        }
        let out = env.run(&["--rm", "--pids-limit", "20", "--", "true"]);
        assert_eq!(out.status.code(), Some(0));
    });
}

fn wait_gone(pid: i32) -> bool {
    for _ in 0..400 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// The container's pid 1 (the only child of the `run` process).
fn container_pid1(cli: u32) -> i32 {
    for _ in 0..400 {
        if let Ok(c) = std::fs::read_to_string(format!("/proc/{cli}/task/{cli}/children")) {
            if let Some(p) = c.split_whitespace().next() {
                return p.parse().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("run process {cli} never started a container");
}

#[test]
fn run_signals_and_death() {
    both(|| {
        let env = Env::new();
        // SIGTERM to `run` reaches the command.
        let mut child = env
            .cmd(&[
                "--rm",
                "--",
                "sh",
                "-c",
                "trap 'echo got-term; exit 3' TERM; echo ready; sleep 1000 & wait",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        stdout.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ready\n");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let st = child.wait().unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert_eq!((st.code(), rest.as_str()), (Some(3), "got-term\n"));

        // SIGKILL of `run` (nothing runs in it any more) takes the container with it.
        let mut child = env.cmd(&["--rm", "--", "sleep", "1000"]).spawn().unwrap();
        let pid1 = container_pid1(child.id());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        assert!(wait_gone(pid1), "container pid 1 {pid1} survived");
    });
}

#[test]
fn run_images_from_the_store() {
    both(|| {
        let env = Env::new();
        let fix = fixtures_dir();
        let busybox = format!("oci:{}:latest", fix.join("oci/busybox").display());
        // A missing image is pulled (imported) first, like podman does.
        let out = run_image(
            &env.store,
            &["--rm", &busybox, "sh", "-c", "echo $PATH; id -u"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        assert_eq!(lines[1], "0");
        assert!(lines[0].contains("/bin"), "{lines:?}");

        // The second container reads no layer data: the unpacked layer is reused as is.
        let layers: Vec<PathBuf> = std::fs::read_dir(env.store.join("layers"))
            .unwrap()
            .filter_map(|e| e.ok())
            .flat_map(|m| std::fs::read_dir(m.path()).unwrap().filter_map(|e| e.ok()))
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(layers.len(), 1, "{layers:?}");
        let stamp = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (
                std::os::unix::fs::MetadataExt::ino(&m),
                m.modified().unwrap(),
            )
        };
        let before = stamp(&layers[0]);
        // Short names work too; no command means the image's (sh, stdin empty).
        let out = run_image(&env.store, &["--rm", "busybox"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(stamp(&layers[0]), before);

        // A multi-layer image with whiteouts, opaque dirs and hardlinks, as the image
        // store unpacked it, merged by overlay.
        let multi = format!("oci:{}:latest", fix.join("oci/multilayer").display());
        let out = run_image(
            &env.store,
            &[
                "--rm",
                &multi,
                "sh",
                "-c",
                "test -e /etc/motd && echo motd; test -e /var/del-dir && echo del-dir; \
                 ls /opt/data; cat /opt/keep/x; stat -c %h /opt/keep/y-hard; \
                 stat -c '%u:%g %a' /opt/owned; echo changed > /opt/keep/x && cat /opt/keep/x",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "c\nnew\n2\n1000:135 750\nchanged\n");

        // The same with the single `lowerdir=` option of kernels before 6.8.
        let out = Command::new(BIN)
            .arg("--root")
            .arg(&env.store)
            .args([
                "run",
                "--rm",
                &multi,
                "sh",
                "-c",
                "ls /opt/data; cat /opt/keep/x",
            ])
            .env("KOJI_ADJUTANT_OVERLAY_LOWERDIR", "legacy")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "c\nnew\n");
    });
}

#[test]
fn helper_subcommands_are_not_for_people() {
    // The hidden helper entry point refuses unknown kinds, and a helper started by
    // hand (without the fds the runtime passes) fails cleanly instead of hanging.
    let out = Command::new(BIN)
        .args(["__adjutant-helper", "bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown helper"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["__adjutant-helper", "userns"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("job config"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_security_opt_seccomp() {
    both(|| {
        let env = Env::new();
        // accepted (the filter itself is tested in runtime/tests/containers.rs)
        let out = env
            .cmd(&["--rm", "--security-opt", "seccomp=unconfined", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // anything else is refused, saying what is supported
        let out = env
            .cmd(&["--rm", "--security-opt", "label=disable", "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125));
        assert!(
            text(&out.stderr).contains("unsupported --security-opt \"label=disable\""),
            "{}",
            text(&out.stderr)
        );
    });
}
