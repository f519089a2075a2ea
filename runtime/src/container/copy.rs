//! `copy_to` / `copy_from` for a running container.
//!
//! The container side runs in the exec helper's child, after it joined the container's
//! user and mount namespaces: its root *is* the container's root, so no path (and no
//! symlink planted by the container) can lead outside it. Data crosses as a tar stream
//! on the child's stdin/stdout; the host side reads or writes only under the caller's
//! path, and `tar`'s `unpack_in` refuses entries that would escape it.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Name of the single entry of a stream that carries one file (not a directory).
const FILE_ENTRY: &str = "__file__";

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{what} {path}: {}", chain(source))]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: refusing archive entry {entry:?} (it would leave the destination)")]
    Escape { path: PathBuf, entry: PathBuf },
    #[error("{0}")]
    Other(String),
}

/// An error and its sources, `: `-separated (the tar crate nests the errno).
fn chain(e: &std::io::Error) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CopyError + 'a {
    move |source| CopyError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// What the container side unpacks into (`TarIn`): the directory, and whether the
/// stream is a single file to be named `dst`.
pub fn plan_copy_to(src: &Path, dst: &Path) -> Result<(PathBuf, Option<String>), CopyError> {
    let meta = std::fs::symlink_metadata(src).map_err(io("stat", src))?;
    if meta.is_dir() {
        Ok((dst.to_owned(), None))
    } else {
        let name = dst.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            CopyError::Other(format!("destination {} has no file name", dst.display()))
        })?;
        Ok((
            dst.parent().unwrap_or(Path::new("/")).to_owned(),
            Some(name.to_owned()),
        ))
    }
}

/// Host side of `copy_to`: write `src` (file or directory tree, symlinks not followed)
/// as a tar stream. A single file is stored under `file_name`.
pub fn write_host_tar(
    src: &Path,
    file_name: Option<&str>,
    out: impl Write,
) -> Result<(), CopyError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    match file_name {
        Some(name) => b
            .append_path_with_name(src, name)
            .map_err(io("archiving", src))?,
        None => append_tree(&mut b, src, Path::new(""))?,
    }
    b.into_inner()
        .map_err(io("archiving", src))?
        .flush()
        .map_err(io("writing", src))?;
    Ok(())
}

/// Append the children of `dir` (recursively) named relative to it. Sockets are
/// skipped; device nodes and FIFOs too (a copy never creates devices).
fn append_tree<W: Write>(b: &mut tar::Builder<W>, dir: &Path, rel: &Path) -> Result<(), CopyError> {
    let rd = std::fs::read_dir(dir).map_err(io("reading directory", dir))?;
    let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = rel.join(e.file_name());
        let meta = std::fs::symlink_metadata(&path).map_err(io("stat", &path))?;
        let ft = meta.file_type();
        if ft.is_socket() || ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            continue;
        }
        b.append_path_with_name(&path, &name)
            .map_err(io("archiving", &path))?;
        if ft.is_dir() {
            append_tree(b, &path, &name)?;
        }
    }
    Ok(())
}

/// Container side of `copy_to`: unpack stdin into `dir` (created), owned by `uid:gid`.
pub fn tar_in(dir: &Path, uid: u32, gid: u32, input: impl Read) -> Result<(), CopyError> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(false);
    for entry in ar.entries().map_err(io("reading archive for", dir))? {
        let mut entry = entry.map_err(io("reading archive for", dir))?;
        let rel = entry
            .path()
            .map_err(io("reading archive for", dir))?
            .into_owned();
        if !entry.unpack_in(dir).map_err(io("unpacking into", dir))? {
            return Err(CopyError::Escape {
                path: dir.to_owned(),
                entry: rel,
            });
        }
        let target = dir.join(&rel);
        std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).map_err(io("chown", &target))?;
    }
    std::io::copy(&mut ar.into_inner(), &mut std::io::sink())
        .map_err(io("reading archive for", dir))?;
    Ok(())
}

/// Container side of `copy_from`: write `src` as a tar stream (a directory's children
/// relative to it, or one file as [`FILE_ENTRY`]).
pub fn tar_out(src: &Path, out: impl Write) -> Result<(), CopyError> {
    let meta = std::fs::metadata(src).map_err(io("stat", src))?;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    if meta.is_dir() {
        append_tree(&mut b, src, Path::new(""))?;
    } else if meta.is_file() {
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        h.set_size(meta.size());
        let f = std::fs::File::open(src).map_err(io("opening", src))?;
        b.append_data(&mut h, FILE_ENTRY, f)
            .map_err(io("archiving", src))?;
    } else {
        return Err(CopyError::Other(format!(
            "{} is neither a file nor a directory",
            src.display()
        )));
    }
    b.into_inner()
        .map_err(io("archiving", src))?
        .flush()
        .map_err(io("writing", src))?;
    Ok(())
}

/// Host side of `copy_from`: unpack the stream into `dst` (a file path for a single
/// file, else a directory that is created). Set-id bits are dropped and ownership is
/// the caller's; entries that would leave `dst` are refused.
pub fn read_host_tar(dst: &Path, input: impl Read) -> Result<(), CopyError> {
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(false);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(false);
    let mut made_dir = false;
    let mut single_file = false;
    for entry in ar.entries().map_err(io("reading archive for", dst))? {
        let mut entry = entry.map_err(io("reading archive for", dst))?;
        let rel = entry
            .path()
            .map_err(io("reading archive for", dst))?
            .into_owned();
        entry.set_mask(0o6000);
        if single_file {
            return Err(CopyError::Other(format!(
                "{}: unexpected archive entry {} after a single file",
                dst.display(),
                rel.display()
            )));
        }
        if rel == Path::new(FILE_ENTRY) && !made_dir {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            entry.unpack(dst).map_err(io("writing", dst))?;
            single_file = true;
            continue;
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::Symlink => {}
            _ => continue,
        }
        if !made_dir {
            std::fs::create_dir_all(dst).map_err(io("creating", dst))?;
            made_dir = true;
        }
        if !entry.unpack_in(dst).map_err(io("unpacking into", dst))? {
            return Err(CopyError::Escape {
                path: dst.to_owned(),
                entry: rel,
            });
        }
    }
    if !made_dir && !single_file {
        // An empty directory.
        std::fs::create_dir_all(dst).map_err(io("creating", dst))?;
    }
    // Read the end-of-archive blocks too, so the writer never sees a closed pipe.
    std::io::copy(&mut ar.into_inner(), &mut std::io::sink())
        .map_err(io("reading archive for", dst))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_round_trip_keeps_symlinks_and_modes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "data").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let mut buf = Vec::new();
        write_host_tar(&src, None, &mut buf).unwrap();
        let out = d.path().join("out");
        read_host_tar(&out, &buf[..]).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("sub/f")).unwrap(), "data");
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
    }

    #[test]
    fn single_file_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "hello").unwrap();
        let mut buf = Vec::new();
        tar_out(&f, &mut buf).unwrap();
        let dst = d.path().join("x/y/copied");
        read_host_tar(&dst, &buf[..]).unwrap();
        assert_eq!(std::fs::read_to_string(dst).unwrap(), "hello");
    }

    #[test]
    fn host_unpack_refuses_escaping_entries() {
        let d = tempfile::tempdir().unwrap();
        // A symlink pointing out, then a file written "through" it.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "evil", d.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "evil/pwned", &b"x"[..]).unwrap();
        let buf = b.into_inner().unwrap();
        let dst = d.path().join("dst");
        assert!(read_host_tar(&dst, &buf[..]).is_err());
        assert!(!d.path().join("pwned").exists());
    }
}
