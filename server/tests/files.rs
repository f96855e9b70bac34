//! Uploads and downloads: pipelined, out of order, byte for byte.

mod common;

use bytes::Bytes;
use common::{pattern, TestServer};
use proto::{ErrorCode, Packet};

#[tokio::test]
async fn files_of_every_edge_size_round_trip_byte_for_byte() {
    let srv = TestServer::start().await;
    let mut up = srv.signed_in("uploader").await;
    let mut down = srv.signed_in("downloader").await;
    let mut numbers = Vec::new();
    for size in [0usize, 1, 255, 256, 257, 1 << 20] {
        let data = pattern(size);
        let file = up.upload(&format!("file-{size}.bin"), &data).await;
        assert_eq!(down.download(file).await, data, "size {size}");
        numbers.push(file);
    }
    assert_eq!(down.files().await, numbers);
}

#[tokio::test]
async fn chunks_may_arrive_out_of_order() {
    let srv = TestServer::start().await;
    let mut p = srv.signed_in("alice").await;
    let data = pattern(256 * 10 + 17);
    let order = [10, 3, 0, 9, 1, 2, 8, 4, 7, 5, 6];
    let file = p.upload_in_order("shuffled", &data, &order).await;
    assert_eq!(p.download(file).await, data);
}

#[tokio::test]
async fn file_data_gives_name_and_size() {
    let srv = TestServer::start().await;
    let mut p = srv.signed_in("alice").await;
    let file = p.upload("notes — été.txt", b"hello").await;
    let session = p.session;
    p.send(Packet::FileDataRequest { session, file }).await;
    assert_eq!(
        p.recv().await,
        Packet::FileDataResponse {
            file,
            size: 5,
            name: "notes — été.txt".into()
        }
    );
}

#[tokio::test]
async fn an_unfinished_upload_is_not_listed_and_is_discarded_with_its_session() {
    // Short, but long enough for the five round trips before the expiry
    // on a busy machine.
    let srv = TestServer::start_with(|c| c.session_timeout = 1.0).await;
    let mut p = srv.signed_in("alice").await;
    let session = p.session;
    p.send(Packet::FileUploadRequest {
        session,
        size: 600,
        name: "partial".into(),
    })
    .await;
    let Packet::FileUploadResponse { file, transaction } = p.recv().await else {
        panic!()
    };
    p.send(Packet::UploadChunkRequest {
        transaction,
        chunk: 0,
        data: Bytes::from(vec![1; 256]),
    })
    .await;
    assert!(matches!(
        p.recv().await,
        Packet::UploadChunkResponse { chunk: 0, .. }
    ));
    assert!(p.files().await.is_empty());
    p.send(Packet::FileDataRequest { session, file }).await;
    assert_eq!(p.recv_error().await.0, ErrorCode::UnknownFile);
    // Let the session expire; its temporary body goes with it.
    assert_eq!(p.recv_error().await.0, ErrorCode::BadSession);
    let part = srv.dir.path().join("files").join(format!("{file}.part"));
    common::eventually("the partial body is removed", || !part.exists()).await;
}

#[tokio::test]
async fn bad_chunks_are_refused_and_the_upload_goes_on() {
    let srv = TestServer::start().await;
    let mut p = srv.signed_in("alice").await;
    let session = p.session;
    p.send(Packet::FileUploadRequest {
        session,
        size: 300,
        name: "f".into(),
    })
    .await;
    let Packet::FileUploadResponse { file, transaction } = p.recv().await else {
        panic!()
    };
    let cases: [(u32, usize); 4] = [(0, 255), (1, 256), (1, 43), (2, 1)];
    for (chunk, len) in cases {
        p.send(Packet::UploadChunkRequest {
            transaction,
            chunk,
            data: Bytes::from(vec![0; len]),
        })
        .await;
        let (code, t, subject, _) = p.recv_error().await;
        assert_eq!(
            (code, t, subject),
            (ErrorCode::BadChunk, 25, transaction),
            "chunk {chunk} len {len}"
        );
    }
    p.send(Packet::UploadChunkRequest {
        transaction: transaction ^ 1,
        chunk: 0,
        data: Bytes::from(vec![0; 256]),
    })
    .await;
    assert_eq!(p.recv_error().await.0, ErrorCode::UnknownTransaction);
    for (chunk, len) in [(0, 256), (1, 44)] {
        p.send(Packet::UploadChunkRequest {
            transaction,
            chunk,
            data: Bytes::from(vec![9; len]),
        })
        .await;
        assert_eq!(
            p.recv().await,
            Packet::UploadChunkResponse { transaction, chunk }
        );
    }
    assert_eq!(p.download(file).await, vec![9; 300]);
}

#[tokio::test]
async fn transactions_belong_to_the_session_that_opened_them() {
    let srv = TestServer::start().await;
    let mut a = srv.signed_in("alice").await;
    let mut b = srv.signed_in("bob").await;
    let session = a.session;
    a.send(Packet::FileUploadRequest {
        session,
        size: 10,
        name: "mine".into(),
    })
    .await;
    let Packet::FileUploadResponse { transaction, .. } = a.recv().await else {
        panic!()
    };
    b.send(Packet::UploadChunkRequest {
        transaction,
        chunk: 0,
        data: Bytes::from(vec![0; 10]),
    })
    .await;
    let (code, _, subject, _) = b.recv_error().await;
    assert_eq!(
        (code, subject),
        (ErrorCode::UnknownTransaction, transaction)
    );
    b.send(Packet::DownloadChunkRequest {
        transaction,
        chunk: 0,
    })
    .await;
    assert_eq!(b.recv_error().await.0, ErrorCode::UnknownTransaction);
}

#[tokio::test]
async fn limits_on_size_name_and_quota_are_enforced() {
    let srv = TestServer::start_with(|c| {
        c.max_file_size = 1000;
        c.storage_quota = 1500;
        c.min_file_charge = 0;
    })
    .await;
    let mut p = srv.signed_in("alice").await;
    let session = p.session;
    p.send(Packet::FileUploadRequest {
        session,
        size: 1001,
        name: "big".into(),
    })
    .await;
    assert_eq!(p.recv_error().await.0, ErrorCode::TooLarge);
    p.send(Packet::FileUploadRequest {
        session,
        size: 1,
        name: "".into(),
    })
    .await;
    assert_eq!(p.recv_error().await.0, ErrorCode::InvalidName);
    p.send(Packet::FileUploadRequest {
        session,
        size: 1,
        name: "a/../../etc\u{7}".into(),
    })
    .await;
    assert_eq!(p.recv_error().await.0, ErrorCode::InvalidName);
    p.upload("first", &pattern(1000)).await;
    p.send(Packet::FileUploadRequest {
        session,
        size: 501,
        name: "over".into(),
    })
    .await;
    let (code, _, _, text) = p.recv_error().await;
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(text.contains("quota"), "{text}");
    p.upload("fits", &pattern(500)).await;
}

#[tokio::test]
async fn a_path_like_name_is_only_a_label() {
    let srv = TestServer::start().await;
    let mut p = srv.signed_in("alice").await;
    let file = p.upload("../../escape.txt", b"contained").await;
    assert!(!srv.dir.path().join("../escape.txt").exists());
    assert!(srv.dir.path().join("files").join(file.to_string()).exists());
}

#[tokio::test]
async fn downloads_refuse_unknown_files_and_chunks_out_of_range() {
    let srv = TestServer::start().await;
    let mut p = srv.signed_in("alice").await;
    let session = p.session;
    p.send(Packet::FileDownloadRequest { session, file: 77 })
        .await;
    let (code, t, subject, _) = p.recv_error().await;
    assert_eq!((code, t, subject), (ErrorCode::UnknownFile, 15, 77));
    let file = p.upload("small", &pattern(300)).await;
    p.send(Packet::FileDownloadRequest { session, file }).await;
    let Packet::FileDownloadResponse { transaction, .. } = p.recv().await else {
        panic!()
    };
    p.send(Packet::DownloadChunkRequest {
        transaction,
        chunk: 2,
    })
    .await;
    let (code, t, subject, _) = p.recv_error().await;
    assert_eq!((code, t, subject), (ErrorCode::BadChunk, 17, transaction));
    p.send(Packet::DownloadChunkRequest {
        transaction,
        chunk: 1,
    })
    .await;
    let Packet::DownloadChunkResponse { data, .. } = p.recv().await else {
        panic!()
    };
    assert_eq!(&data[..], &pattern(300)[256..]);
}
