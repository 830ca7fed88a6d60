//! One table from error kind to gRPC code: the server over a fake core that fails every call
//! with one kind, for each kind. Internal details never reach the client.

use std::sync::Arc;

use arrow_flight::sql::client::FlightSqlServiceClient;
use assay_engine::ErrorKind;
use assay_testkit::{FAKE_TOKEN, Failing, KINDS};
use tonic::Code;
use tonic::transport::Channel;

fn expected(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Invalid => Code::InvalidArgument,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::TooLarge | ErrorKind::Busy => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
    }
}

#[tokio::test]
async fn every_error_kind_maps_to_one_grpc_code() {
    for kind in KINDS {
        let service = assay_flight::AssayFlightSql::new(Arc::new(Failing { kind }), false).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(assay_flight::serve(
            listener,
            service,
            Default::default(),
            None,
            std::future::pending(),
        ));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut c = FlightSqlServiceClient::new(channel);
        c.set_token(FAKE_TOKEN.into());
        let err = c.execute("SELECT 1".into(), None).await.unwrap_err();
        let arrow_flight::error::FlightError::Tonic(status) = err else {
            panic!("{kind:?}: {err}");
        };
        assert_eq!(status.code(), expected(kind), "{kind:?}: {status}");
        assert!(!status.message().contains("secret"), "{kind:?}: {status}");
        server.abort();
    }
}
