//! The file packets: listing, metadata, uploads and downloads.
//!
//! Uploads are written to a temporary body and only become visible once
//! every chunk is on disk, synced and renamed. Transactions belong to the
//! session that opened them.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use proto::limits::{chunk_count, chunk_len, validate_file_name, CHUNK_SIZE};
use proto::{kind, ErrorCode, Packet};

use crate::blobs::Blobs;
use crate::connection::Connection;
use crate::hub::{Download, Session, Upload};

/// Transfers one session may have open at once; each holds a file open.
const MAX_TRANSFERS: usize = 64;
/// Bytes read from disk at a time for downloads.
const READ_AHEAD: usize = 64 * 1024;
/// The format's list length is 16 bits: at most this many files are listed.
const MAX_LISTED: usize = u16::MAX as usize;

fn transaction_number() -> u64 {
    loop {
        let n: u64 = rand::random();
        if n != 0 {
            return n;
        }
    }
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

fn too_many_transfers(conn: &Connection, session: &Session, t: u16, subject: u64) -> bool {
    let st = session.state();
    let open = st.uploads.len() + st.downloads.len();
    drop(st);
    if open >= MAX_TRANSFERS {
        conn.error(
            t,
            ErrorCode::RateLimited,
            subject,
            format!("at most {MAX_TRANSFERS} transfers may be open at once"),
        );
        return true;
    }
    false
}

/// FILE UPLOAD REQUEST: checks name, size and quota, opens a transaction.
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
    if too_many_transfers(conn, session, T, 0) {
        return;
    }
    if !ctx.reserve_storage(u64::from(size)) {
        return conn.error(
            T,
            ErrorCode::TooLarge,
            0,
            "the server's storage quota is used up",
        );
    }
    let file = match ctx.store.create_file(&name, size, session.user).await {
        Ok(file) => file,
        Err(e) => {
            ctx.release_storage(u64::from(size));
            return super::session::server_error(conn, T, 0, &e);
        }
    };
    let blobs = ctx.blobs.clone();
    let created = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let part = blobs.create_part(file, size)?;
        if size == 0 {
            blobs.commit(file, &part)?;
        }
        Ok(part)
    })
    .await;
    let part = match created {
        Ok(Ok(part)) => part,
        failed => {
            tracing::error!(?failed, file, "could not create an upload body");
            ctx.blobs.discard(file);
            ctx.release_storage(u64::from(size));
            let _ = ctx.store.discard_file(file).await;
            return conn.error(
                T,
                ErrorCode::ServerError,
                0,
                "the server could not store the file; try again",
            );
        }
    };
    let transaction = transaction_number();
    if size == 0 {
        if let Err(e) = ctx.store.complete_file(file).await {
            return super::session::server_error(conn, T, 0, &e);
        }
        tracing::info!(file, %name, "empty file stored");
    } else {
        let chunks = chunk_count(size);
        let mut st = session.state();
        if st.ended {
            drop(st);
            ctx.blobs.discard(file);
            ctx.release_storage(u64::from(size));
            return;
        }
        st.uploads.insert(
            transaction,
            Upload {
                file,
                size,
                part: Arc::new(part),
                received: vec![0; chunks.div_ceil(64) as usize],
                remaining: chunks,
            },
        );
    }
    conn.reply(Packet::FileUploadResponse { file, transaction });
}

/// UPLOAD CHUNK REQUEST: writes one chunk; the last one commits the file.
pub(super) async fn upload_chunk(
    conn: &Connection,
    session: &Session,
    transaction: u64,
    chunk: u32,
    data: Bytes,
) {
    const T: u16 = kind::UPLOAD_CHUNK_REQUEST;
    let ctx = conn.ctx.clone();
    let (part, file, size, complete) = {
        let mut st = session.state();
        let Some(up) = st.uploads.get_mut(&transaction) else {
            drop(st);
            return conn.error(
                T,
                ErrorCode::UnknownTransaction,
                transaction,
                "no upload of this session has that transaction",
            );
        };
        if chunk_len(up.size, chunk) != Some(data.len()) {
            let text = format!(
                "chunk {chunk} of a {}-byte file must hold {} bytes, not {}",
                up.size,
                chunk_len(up.size, chunk).map_or_else(|| "no".to_string(), |n| n.to_string()),
                data.len()
            );
            drop(st);
            return conn.error(T, ErrorCode::BadChunk, transaction, text);
        }
        let (word, bit) = ((chunk / 64) as usize, 1u64 << (chunk % 64));
        let fresh = up.received.get(word).is_some_and(|w| w & bit == 0);
        if fresh {
            let offset = u64::from(chunk) * CHUNK_SIZE as u64;
            if let Err(e) = Blobs::write_at(&up.part, offset, &data) {
                tracing::error!(error = %e, file = up.file, "could not write a chunk");
                drop(st);
                return conn.error(
                    T,
                    ErrorCode::ServerError,
                    transaction,
                    "the chunk could not be written; send it again",
                );
            }
            if let Some(w) = up.received.get_mut(word) {
                *w |= bit;
            }
            up.remaining -= 1;
        }
        let complete = fresh && up.remaining == 0;
        let (part, file, size) = (up.part.clone(), up.file, up.size);
        if complete {
            st.uploads.remove(&transaction);
        }
        (part, file, size, complete)
    };
    if complete {
        let blobs = ctx.blobs.clone();
        let committed = tokio::task::spawn_blocking(move || blobs.commit(file, &part)).await;
        let stored = match committed {
            Ok(Ok(())) => ctx
                .store
                .complete_file(file)
                .await
                .map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = stored {
            tracing::error!(error = %e, file, "could not commit an upload");
            ctx.blobs.discard(file);
            ctx.release_storage(u64::from(size));
            let _ = ctx.store.discard_file(file).await;
            return conn.error(
                T,
                ErrorCode::ServerError,
                transaction,
                "the file could not be stored; upload it again",
            );
        }
        tracing::info!(file, size, "file stored");
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
    if too_many_transfers(conn, session, T, file) {
        return;
    }
    let body = match ctx.blobs.open_complete(file) {
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
    let transaction = transaction_number();
    session.state().downloads.insert(
        transaction,
        Download {
            size,
            body,
            cache: (0, Bytes::new()),
        },
    );
    conn.reply(Packet::FileDownloadResponse { file, transaction });
}

/// DOWNLOAD CHUNK REQUEST: one 256-byte chunk, read ahead in 64 KiB blocks.
pub(super) async fn download_chunk(
    conn: &Connection,
    session: &Session,
    transaction: u64,
    chunk: u32,
) {
    const T: u16 = kind::DOWNLOAD_CHUNK_REQUEST;
    let mut st = session.state();
    let Some(down) = st.downloads.get_mut(&transaction) else {
        drop(st);
        return conn.error(
            T,
            ErrorCode::UnknownTransaction,
            transaction,
            "no download of this session has that transaction",
        );
    };
    let Some(len) = chunk_len(down.size, chunk) else {
        let text = format!(
            "a {}-byte file has {} chunks; there is no chunk {chunk}",
            down.size,
            chunk_count(down.size)
        );
        drop(st);
        return conn.error(T, ErrorCode::BadChunk, transaction, text);
    };
    let offset = u64::from(chunk) * CHUNK_SIZE as u64;
    let (start, cached) = &down.cache;
    let hit = offset >= *start && offset + len as u64 <= start + cached.len() as u64;
    if !hit {
        let block = (offset / READ_AHEAD as u64) * READ_AHEAD as u64;
        let want = (u64::from(down.size) - block).min(READ_AHEAD as u64) as usize;
        let mut buf = vec![0; want];
        if let Err(e) = down.body.read_exact_at(&mut buf, block) {
            tracing::error!(error = %e, "could not read a file body");
            drop(st);
            return conn.error(
                T,
                ErrorCode::ServerError,
                transaction,
                "the file's body cannot be read",
            );
        }
        down.cache = (block, Bytes::from(buf));
    }
    let from = (offset - down.cache.0) as usize;
    let data = down.cache.1.slice(from..from + len);
    drop(st);
    conn.reply(Packet::DownloadChunkResponse {
        transaction,
        chunk,
        data,
    });
}
