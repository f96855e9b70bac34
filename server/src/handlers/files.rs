//! The file packets: listing, metadata, uploads and downloads.
//!
//! Uploads are written to a temporary body and only become visible once
//! every chunk is on disk, synced and renamed. Transactions belong to the
//! session that opened them (see `transfers`); every disk operation runs on
//! the blocking pool, holding no lock but the transfer's own.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use proto::limits::validate_file_name;
use proto::{kind, ErrorCode, Packet};
use tokio::sync::OwnedSemaphorePermit;

use crate::connection::Connection;
use crate::hub::Session;
use crate::observe::names;
use crate::transfers::download::Download;
use crate::transfers::quota::QuotaRefused;
use crate::transfers::upload::{Accepted, Upload};
use crate::transfers::Kind;

/// The format's list length is 16 bits: at most this many files are listed.
const MAX_LISTED: usize = u16::MAX as usize;

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

/// FILES REQUEST: every complete file (the newest 65535 if there are more).
pub(super) async fn list(conn: &Connection) {
    match conn.ctx.store.files().await {
        Ok(mut files) => {
            if files.len() > MAX_LISTED {
                files.drain(..files.len() - MAX_LISTED);
            }
            conn.reply(Packet::FilesResponse { files })
        }
        Err(e) => super::session::server_error(conn, kind::FILES_REQUEST, 0, &e),
    }
}

/// FILE DATA REQUEST: a complete file's name and size.
pub(super) async fn data(conn: &Connection, file: u64) {
    const T: u16 = kind::FILE_DATA_REQUEST;
    match conn.ctx.store.file(file).await {
        Ok(Some(meta)) if meta.complete => conn.reply(Packet::FileDataResponse {
            file,
            size: meta.size,
            name: meta.name,
        }),
        Ok(_) => conn.error(
            T,
            ErrorCode::UnknownFile,
            file,
            format!("no file has number {file}"),
        ),
        Err(e) => super::session::server_error(conn, T, file, &e),
    }
}

/// Checks the session's limit for `kind` and takes a permit of the
/// server's open-files cap; `None` (answered) when either is reached.
fn open_slot(
    conn: &Connection,
    session: &Session,
    kind: Kind,
    t: u16,
    subject: u64,
) -> Option<OwnedSemaphorePermit> {
    let config = &conn.ctx.config;
    let (max, what) = match kind {
        Kind::Upload => (config.max_uploads, "uploads"),
        Kind::Download => (config.max_downloads, "downloads"),
    };
    if session.transfers.count(kind) >= max {
        conn.error(
            t,
            ErrorCode::RateLimited,
            subject,
            format!("at most {max} {what} may be open at once; finish one first"),
        );
        return None;
    }
    match conn.ctx.open_files.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) => {
            conn.error(
                t,
                ErrorCode::Busy,
                subject,
                format!(
                    "the server has {} transfers open, its limit; try again in a moment",
                    config.max_open_transfers
                ),
            );
            None
        }
    }
}

/// FILE UPLOAD REQUEST: checks name, size, limits and quotas, creates the
/// partial body and opens a transaction.
pub(super) async fn upload(conn: &Connection, session: &Arc<Session>, size: u32, name: String) {
    const T: u16 = kind::FILE_UPLOAD_REQUEST;
    let ctx = conn.ctx.clone();
    if let Err(e) = validate_file_name(&name) {
        return conn.error(
            T,
            ErrorCode::InvalidName,
            0,
            format!("invalid file name: {e}"),
        );
    }
    let max = ctx.config.max_file_size();
    if u64::from(size) > max {
        return conn.error(
            T,
            ErrorCode::TooLarge,
            0,
            format!("the file is {size} bytes; at most {max} are accepted"),
        );
    }
    if let Some(why) = ctx.disk.refuse(u64::from(size)) {
        return conn.error(T, ErrorCode::InsufficientStorage, 0, why);
    }
    let Some(permit) = open_slot(conn, session, Kind::Upload, T, 0) else {
        return;
    };
    let mut reservation = match ctx.quota.reserve(session.user, u64::from(size)) {
        Ok(r) => r,
        Err(QuotaRefused::Server) => {
            return conn.error(
                T,
                ErrorCode::TooLarge,
                0,
                "the server's storage quota is used up",
            )
        }
        Err(QuotaRefused::User(reserved)) => {
            return conn.error(
                T,
                ErrorCode::TooLarge,
                0,
                format!(
                    "your unfinished uploads already reserve {reserved} bytes (at most {}); finish or abandon one first",
                    ctx.config.max_user_reserved
                ),
            )
        }
    };
    let file = match ctx
        .store
        .create_file(&name, size, session.user, ctx.node())
        .await
    {
        Ok(Ok(file)) => file,
        Ok(Err(crate::store::FileRefused::TooManyFiles(n))) => {
            return conn.error(
                T,
                ErrorCode::TooLarge,
                0,
                format!("you have {n} files on the server, the most one user may have"),
            )
        }
        Ok(Err(crate::store::FileRefused::StorageFull)) => {
            return conn.error(
                T,
                ErrorCode::TooLarge,
                0,
                "the server's storage quota is used up",
            )
        }
        Err(e) => return super::session::server_error(conn, T, 0, &e),
    };
    reservation.attach(file, ctx.blobs.clone(), ctx.store.clone());
    let blobs = ctx.blobs.clone();
    let created = blocking(move || {
        let part = blobs.create_part(file, size)?;
        if size == 0 {
            blobs.commit(file, &part)?;
        }
        Ok(part)
    })
    .await;
    let part = match created {
        Ok(part) => part,
        Err(e) => {
            tracing::error!(error = %e, file, "could not create an upload body");
            return conn.error(
                T,
                ErrorCode::ServerError,
                0,
                "the server could not store the file; try again",
            );
        }
    };
    if size == 0 {
        if let Err(e) = ctx.store.complete_file(file).await {
            return super::session::server_error(conn, T, 0, &e);
        }
        reservation.keep();
        tracing::info!(file, %name, "empty file stored");
        // An empty file has no chunks: its transaction is done already.
        let transaction = rand::random::<u64>() | 1;
        return conn.reply(Packet::FileUploadResponse { file, transaction });
    }
    let upload = Upload::new(file, size, part, reservation, permit);
    if session.state().ended {
        return; // dropping the upload discards it
    }
    let transaction = session.transfers.add_upload(upload);
    conn.reply(Packet::FileUploadResponse { file, transaction });
}

/// UPLOAD CHUNK REQUEST: takes one chunk; blocks of them are written as
/// they fill, and the last one syncs and commits the file.
pub(super) async fn upload_chunk(
    conn: &Connection,
    session: &Session,
    transaction: u64,
    chunk: u32,
    data: Bytes,
) {
    const T: u16 = kind::UPLOAD_CHUNK_REQUEST;
    let ctx = conn.ctx.clone();
    let Some(slot) = session.transfers.upload(transaction) else {
        return conn.error(
            T,
            ErrorCode::UnknownTransaction,
            transaction,
            "no upload of this session has that transaction",
        );
    };
    let mut up = slot.lock().await;
    let (writes, last) = match up.accept(chunk, &data) {
        Err(text) => return conn.error(T, ErrorCode::BadChunk, transaction, text),
        Ok(Accepted::Repeat) => {
            return conn.reply(Packet::UploadChunkResponse { transaction, chunk })
        }
        Ok(Accepted::New { writes, last }) => (writes, last),
    };
    metrics::counter!(names::FILE_BYTES, "direction" => "up").increment(data.len() as u64);
    let (file, size) = (up.file, up.size);
    if !writes.is_empty() || last {
        let part = up.part.clone();
        let blobs = ctx.blobs.clone();
        let written = blocking(move || {
            for (offset, bytes) in &writes {
                part.write_all_at(bytes, *offset)?;
            }
            if last {
                blobs.commit(file, &part)?;
            }
            Ok(())
        })
        .await;
        let stored = match written {
            Ok(()) if last => ctx
                .store
                .complete_file(file)
                .await
                .map_err(|e| e.to_string()),
            Ok(()) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, file, "could not write an upload");
            drop(up);
            // Dropping the upload discards its body and returns its quota.
            session.transfers.remove(transaction);
            return conn.error(
                T,
                ErrorCode::ServerError,
                transaction,
                "the file could not be written; upload it again",
            );
        }
        if last {
            if let Some(r) = up.reservation.take() {
                r.keep();
            }
            drop(up);
            session.transfers.remove(transaction);
            tracing::info!(file, size, "file stored");
        }
    }
    conn.reply(Packet::UploadChunkResponse { transaction, chunk });
}

/// FILE DOWNLOAD REQUEST: opens a download transaction for a complete file.
pub(super) async fn download(conn: &Connection, session: &Session, file: u64) {
    const T: u16 = kind::FILE_DOWNLOAD_REQUEST;
    let ctx = conn.ctx.clone();
    let size = match ctx.store.file(file).await {
        Ok(Some(meta)) if meta.complete => meta.size,
        Ok(_) => {
            return conn.error(
                T,
                ErrorCode::UnknownFile,
                file,
                format!("no file has number {file}"),
            )
        }
        Err(e) => return super::session::server_error(conn, T, file, &e),
    };
    let Some(permit) = open_slot(conn, session, Kind::Download, T, file) else {
        return;
    };
    let blobs = ctx.blobs.clone();
    let body = match blocking(move || blobs.open_complete(file)).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, file, "a complete file's body is missing");
            return conn.error(
                T,
                ErrorCode::ServerError,
                file,
                "the file's body cannot be read",
            );
        }
    };
    let transaction = session
        .transfers
        .add_download(Download::new(size, body, permit));
    conn.reply(Packet::FileDownloadResponse { file, transaction });
}

/// DOWNLOAD CHUNK REQUEST: one 256-byte chunk, read ahead in 64 KiB
/// blocks. The download ends once every chunk has been sent.
pub(super) async fn download_chunk(
    conn: &Connection,
    session: &Session,
    transaction: u64,
    chunk: u32,
) {
    const T: u16 = kind::DOWNLOAD_CHUNK_REQUEST;
    let Some(slot) = session.transfers.download(transaction) else {
        return conn.error(
            T,
            ErrorCode::UnknownTransaction,
            transaction,
            "no download of this session has that transaction",
        );
    };
    let mut down = slot.lock().await;
    let (offset, len) = match down.locate(chunk) {
        Ok(at) => at,
        Err(text) => return conn.error(T, ErrorCode::BadChunk, transaction, text),
    };
    let data = match down.cached(offset, len) {
        Some(data) => data,
        None => {
            let (start, want) = down.block_for(offset);
            let body = down.body.clone();
            let read = blocking(move || {
                let mut buf = vec![0; want];
                body.read_exact_at(&mut buf, start)?;
                Ok(Bytes::from(buf))
            })
            .await;
            match read {
                Ok(block) => {
                    down.fill(start, block);
                    match down.cached(offset, len) {
                        Some(data) => data,
                        None => return,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not read a file body");
                    return conn.error(
                        T,
                        ErrorCode::ServerError,
                        transaction,
                        "the file's body cannot be read",
                    );
                }
            }
        }
    };
    let done = down.sent(chunk);
    drop(down);
    metrics::counter!(names::FILE_BYTES, "direction" => "down").increment(data.len() as u64);
    if done {
        session.transfers.remove(transaction);
    }
    conn.reply(Packet::DownloadChunkResponse {
        transaction,
        chunk,
        data,
    });
}
