//! Uploading a repodata directory for `host.repoDone`: every file of it, into the
//! task's upload directory, and the `[uploadpath, [files]]` pair the hub expects for one
//! arch (kojid: `uploadWrapper` per file, in directory order).

use std::path::Path;

use tracing::debug;

use super::layout::list_files;
use super::RepoError;
use crate::hub::Uploader;
use crate::xmlrpc::Value;

/// Upload the files of `datadir`; returns `[uploadpath, [names]]`.
pub async fn upload_repodata(uploader: &Uploader, datadir: &Path) -> Result<Value, RepoError> {
    let dir = datadir.to_owned();
    let files = tokio::task::spawn_blocking(move || list_files(&dir))
        .await
        .map_err(|e| RepoError::Invalid(format!("listing {}: {e}", datadir.display())))??;
    let mut total = 0u64;
    for f in &files {
        let s = uploader.upload_file(&datadir.join(f), Some(f)).await?;
        total += s.size;
    }
    debug!(
        dir = uploader.dir(),
        files = files.len(),
        bytes = total,
        "repodata uploaded"
    );
    Ok(Value::Array(vec![
        Value::from(uploader.dir()),
        Value::Array(files.into_iter().map(Value::String).collect()),
    ]))
}
