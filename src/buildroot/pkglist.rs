//! The packages installed in a buildroot, in the forms Koji wants: the hub's rpmlist
//! entries (koji-protocol §4.1, kojid `BuildRoot.getPackageList`) and mock's
//! `installed_pkgs.log`.
//!
//! The list is read with `rpm -qa --qf` inside the buildroot (the image's rpm reads
//! its own database, whatever its format). Each entry is matched by N-V-R.A against the
//! repo's `rpmlist.jsonl` (kojid `mapInternalRPMs`): a match with the same payloadhash
//! gets the hub's rpm `id`; a different payloadhash is an error, as in kojid.
//!
//! **Deviation from kojid**: an installed package that is not in the repo's
//! `rpmlist.jsonl` is left out of the hub list. In a mock buildroot every package
//! comes from the Koji repo; here the image is the base of the buildroot and brings
//! packages the hub has never heard of, which `setBuildRootList` would refuse (its
//! strict lookup by NVRA fails). They stay in `installed_pkgs.log`.

use std::collections::HashMap;

use serde::Deserialize;

use crate::xmlrpc::Value;

/// `rpm -qa --qf` format: one tab-separated line per package.
pub const QUERY_FORMAT: &str = "%{NAME}\\t%{VERSION}\\t%{RELEASE}\\t%{EPOCH}\\t%{ARCH}\\t%{SIGMD5}\\t%{LONGSIZE}\\t%{BUILDTIME}\\t%{INSTALLTIME}\\t%{PKGID}\\n";

/// Names kojid leaves out of the list (its fake packages).
const SKIP: &[&str] = &["buildsys-build", "gpg-pubkey"];

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRpm {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Epoch (None when unset).
    pub epoch: Option<i64>,
    /// Arch.
    pub arch: String,
    /// Hex SIGMD5 (the hub's `payloadhash`).
    pub sigmd5: String,
    /// Installed size.
    pub size: i64,
    /// Build time (epoch seconds).
    pub buildtime: i64,
    /// Install time (epoch seconds).
    pub installtime: i64,
    /// Header SHA1/MD5 id (`%{PKGID}`), as mock lists it.
    pub pkgid: String,
}

impl InstalledRpm {
    /// `N-V-R.A`.
    pub fn nvra(&self) -> String {
        format!(
            "{}-{}-{}.{}",
            self.name, self.version, self.release, self.arch
        )
    }

    /// mock's `%{nevra}`: `N-[E:]V-R.A`.
    pub fn nevra(&self) -> String {
        match self.epoch {
            Some(e) => format!(
                "{}-{e}:{}-{}.{}",
                self.name, self.version, self.release, self.arch
            ),
            None => self.nvra(),
        }
    }

    /// The hub's rpmlist entry (`id` added when known).
    pub fn to_hub(&self, id: Option<i64>) -> Value {
        let mut v = vec![
            ("name", Value::from(self.name.as_str())),
            ("version", Value::from(self.version.as_str())),
            ("release", Value::from(self.release.as_str())),
            ("epoch", self.epoch.map(Value::Int).unwrap_or(Value::Nil)),
            ("arch", Value::from(self.arch.as_str())),
            ("payloadhash", Value::from(self.sigmd5.as_str())),
            ("size", Value::Int(self.size)),
            ("buildtime", Value::Int(self.buildtime)),
        ];
        if let Some(id) = id {
            v.push(("id", Value::Int(id)));
        }
        Value::struct_from(v)
    }
}

/// Parse `rpm -qa --qf QUERY_FORMAT` output. Lines that do not have the ten fields
/// are refused (with the line), as is a field that should be a number and is not.
pub fn parse_query(text: &str) -> Result<Vec<InstalledRpm>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 10 {
            return Err(format!("unexpected rpm -qa line {line:?}"));
        }
        let num = |i: usize, what: &str| -> Result<i64, String> {
            f[i].trim()
                .parse()
                .map_err(|_| format!("rpm -qa line {line:?}: {what} {:?} is not a number", f[i]))
        };
        let epoch = match f[3] {
            "(none)" | "" => None,
            _ => Some(num(3, "epoch")?),
        };
        out.push(InstalledRpm {
            name: f[0].to_owned(),
            version: f[1].to_owned(),
            release: f[2].to_owned(),
            epoch,
            arch: f[4].to_owned(),
            sigmd5: if f[5] == "(none)" {
                String::new()
            } else {
                f[5].to_owned()
            },
            size: num(6, "size")?,
            buildtime: num(7, "buildtime")?,
            installtime: num(8, "installtime")?,
            pkgid: if f[9] == "(none)" {
                String::new()
            } else {
                f[9].to_owned()
            },
        });
    }
    out.sort_by_key(|a| a.nvra());
    Ok(out)
}

/// mock's `installed_pkgs.log`: `%{nevra} %{buildtime} %{size} %{pkgid} %{installtime}`.
pub fn installed_pkgs_log(pkgs: &[InstalledRpm]) -> String {
    let mut s = String::new();
    for p in pkgs {
        s.push_str(&format!(
            "{} {} {} {} {}\n",
            p.nevra(),
            p.buildtime,
            p.size,
            if p.pkgid.is_empty() {
                "(none)"
            } else {
                &p.pkgid
            },
            p.installtime
        ));
    }
    s
}

#[derive(Deserialize)]
struct RepoRpm {
    name: String,
    version: String,
    release: String,
    arch: String,
    id: i64,
    payloadhash: String,
}

/// What [`hub_list`] left out, for the logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HubListReport {
    /// Packages not in the repo (from the image), by NVRA.
    pub not_in_repo: Vec<String>,
}

/// Map installed packages to the hub's entries using `rpmlist.jsonl` (one JSON object
/// per line). Err: a malformed line, or a payloadhash mismatch (kojid's
/// `BuildrootError` wording).
pub fn hub_list(
    pkgs: &[InstalledRpm],
    rpmlist_jsonl: &str,
) -> Result<(Vec<Value>, HubListReport), String> {
    let mut repo: HashMap<String, RepoRpm> = HashMap::new();
    for (i, line) in rpmlist_jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: RepoRpm =
            serde_json::from_str(line).map_err(|e| format!("rpmlist.jsonl line {}: {e}", i + 1))?;
        repo.insert(
            format!("{}-{}-{}.{}", r.name, r.version, r.release, r.arch),
            r,
        );
    }
    let mut out = Vec::new();
    let mut rep = HubListReport::default();
    for p in pkgs.iter().filter(|p| !SKIP.contains(&p.name.as_str())) {
        let nvra = p.nvra();
        match repo.get(&nvra) {
            None => rep.not_in_repo.push(nvra),
            Some(r) if r.payloadhash != p.sigmd5 => {
                return Err(format!(
                    "RPM: {nvra}: payloadhash: {} mismatch expected {} in rpmlist.jsonl",
                    p.sigmd5, r.payloadhash
                ))
            }
            Some(r) => out.push(p.to_hub(Some(r.id))),
        }
    }
    Ok((out, rep))
}

/// Every package, without ids (no Koji repo to map against).
pub fn plain_list(pkgs: &[InstalledRpm]) -> Vec<Value> {
    pkgs.iter()
        .filter(|p| !SKIP.contains(&p.name.as_str()))
        .map(|p| p.to_hub(None))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const QA: &str = "gcc\t12.2.0\t14\t(none)\tnoarch\t0123abcd\t0\t1704067200\t1704067300\tabcdef\n\
                      koji-only-dep\t1.0\t1\t(none)\tnoarch\tfeedface\t31\t1704067200\t1704067400\t(none)\n\
                      epochy\t2\t3\t4\tx86_64\tcafe\t5000000000\t10\t20\tff\n\
                      gpg-pubkey\tabc\tdef\t(none)\t(none)\t(none)\t0\t1\t2\t(none)\n";

    #[test]
    fn parse_and_log() {
        let p = parse_query(QA).unwrap();
        assert_eq!(p.len(), 4);
        let e = p.iter().find(|x| x.name == "epochy").unwrap();
        assert_eq!(e.epoch, Some(4));
        assert_eq!(e.size, 5_000_000_000);
        assert_eq!(e.nevra(), "epochy-4:2-3.x86_64");
        let log = installed_pkgs_log(&p);
        assert!(
            log.contains("gcc-12.2.0-14.noarch 1704067200 0 abcdef 1704067300\n"),
            "{log}"
        );
        assert!(log.contains("koji-only-dep-1.0-1.noarch 1704067200 31 (none) 1704067400\n"));
        assert!(parse_query("a\tb\n").is_err());
        let e = parse_query("n\tv\tr\tx\ta\th\t1\t2\t3\tid\n").unwrap_err();
        assert!(e.contains("epoch \"x\" is not a number"), "{e}");
    }

    #[test]
    fn hub_entries_only_for_repo_rpms() {
        let p = parse_query(QA).unwrap();
        let jsonl = r#"{"name":"koji-only-dep","version":"1.0","release":"1","arch":"noarch","id":42,"epoch":null,"payloadhash":"feedface","size":31,"buildtime":1704067200,"draft":false}
{"name":"other","version":"1","release":"1","arch":"noarch","id":43,"epoch":null,"payloadhash":"00","size":1,"buildtime":1}
"#;
        let (list, rep) = hub_list(&p, jsonl).unwrap();
        assert_eq!(list.len(), 1);
        let e = &list[0];
        assert_eq!(e.get("id"), Some(&Value::Int(42)));
        assert_eq!(e.get("payloadhash"), Some(&Value::from("feedface")));
        assert_eq!(e.get("epoch"), Some(&Value::Nil));
        assert_eq!(e.get("size"), Some(&Value::Int(31)));
        let keys: Vec<&str> = e.as_struct().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "name",
                "version",
                "release",
                "epoch",
                "arch",
                "payloadhash",
                "size",
                "buildtime",
                "id"
            ]
        );
        assert_eq!(
            rep.not_in_repo,
            vec!["epochy-2-3.x86_64", "gcc-12.2.0-14.noarch"]
        );
        let bad = jsonl.replace("feedface", "beef");
        let e = hub_list(&p, &bad).unwrap_err();
        assert_eq!(
            e,
            "RPM: koji-only-dep-1.0-1.noarch: payloadhash: feedface mismatch expected beef in rpmlist.jsonl"
        );
        assert!(hub_list(&p, "{not json").unwrap_err().contains("line 1"));
        let all = plain_list(&p);
        assert_eq!(all.len(), 3, "gpg-pubkey is skipped");
    }
}
