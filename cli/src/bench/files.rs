//! File transfer: upload and download of one file per window size.

use bytes::Bytes;
use proto::Event;
use tokio::time::Instant;

use super::stats::Table;
use super::Bench;
use crate::session::{Session, SessionError};

async fn until_complete(s: &mut Session, id: u64) -> Result<u64, SessionError> {
    s.wait_for(|_, e| match e {
        Event::TransferComplete { transfer, file } if transfer == id => Some(Ok(file)),
        Event::TransferFailed {
            transfer,
            code,
            text,
        } if transfer == id => Some(Err(SessionError::Server { code, text })),
        _ => None,
    })
    .await
}

/// Runs the scenario.
pub async fn run(bench: &Bench, mib: usize, windows: &[u32]) -> Result<Table, SessionError> {
    let size = mib * 1024 * 1024;
    let data = Bytes::from(
        (0..size)
            .map(|i| (i * 31 + i / 4096) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut table = Table::new(format!("file transfer: {mib} MiB"));
    for (i, &window) in windows.iter().enumerate() {
        let mut s = bench.session("files", i, window).await?;
        let start = Instant::now();
        let id = s
            .core
            .upload(&format!("bench-{mib}MiB-w{window}"), data.clone())?;
        let file = until_complete(&mut s, id).await?;
        let up = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let id = s.core.download(file);
        let mut received = 0usize;
        loop {
            match s.expect_event().await? {
                Event::DownloadData { transfer, data, .. } if transfer == id => {
                    received += data.len()
                }
                Event::TransferComplete { transfer, .. } if transfer == id => break,
                Event::TransferFailed {
                    transfer,
                    code,
                    text,
                } if transfer == id => return Err(SessionError::Server { code, text }),
                _ => {}
            }
        }
        let down = start.elapsed().as_secs_f64();
        if received != size {
            return Err(SessionError::Closed);
        }
        let rate = |secs: f64| format!("{:.1} MB/s", size as f64 / secs / 1e6);
        table.row(&format!("upload, window {window}"), rate(up));
        table.row(&format!("download, window {window}"), rate(down));
    }
    Ok(table)
}
