//! Run the createrepo task's local step (what `createrepo` does between `repoInfo` and
//! the uploads) on a repo arch directory laid out as `host.repoInit` lays it out, with
//! the host's createrepo_c. Used by benches/peers/createrepo.sh to compare against
//! running createrepo_c directly.
//!
//! `createrepo-local <topdir> <repos/<tag>/<id>/<arch> dir> <outdir> [<old repodata>]`:
//! writes `<outdir>/repodata` and `<outdir>.log`; exits 1 on failure.

use std::path::PathBuf;

use koji_adjutant::repo::createrepo::LocalRepo;
use koji_adjutant::repo::HostRepoTool;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if !(3..=4).contains(&args.len()) {
        eprintln!("usage: createrepo-local TOPDIR ARCHDIR OUTDIR [OLD_REPODATA]");
        std::process::exit(2);
    }
    let Some(tool) = HostRepoTool::find() else {
        eprintln!("createrepo-local: createrepo_c is not installed");
        std::process::exit(1);
    };
    let repodir = args[1].clone();
    let groupdata = repodir
        .parent()
        .map(|p| p.join("groups/comps.xml"))
        .unwrap_or_default();
    let mut log = args[2].clone().into_os_string();
    log.push(".log");
    let local = LocalRepo {
        topdir: args[0].clone(),
        repodir,
        groupdata,
        outdir: args[2].clone(),
        log: log.into(),
        old_repodata: args.get(3).cloned(),
        skip_stat: true,
    };
    if let Err(e) = local.create(&tool).await {
        eprintln!("createrepo-local: {e}");
        std::process::exit(1);
    }
}
