//! Runs `tests/py/registry_client_test.py` (confluent-kafka's SchemaRegistryClient and Avro
//! serdes) against the embedded registry, with the interpreter named by `TEST_PYTHON`.
//! Run through `tests/run` (it builds the venv and sets `TEST_PYTHON`).

use std::process::Command;

use slate::registry::{CompatibilityLevel, MemoryStore, RegistryState, serve};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_python_client_works_against_the_registry() {
    let python = std::env::var("TEST_PYTHON")
        .expect("TEST_PYTHON is not set: run the suite through `tests/run` (it provides a venv with confluent-kafka)");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let state = RegistryState::new(MemoryStore::new(), CompatibilityLevel::Backward, None);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async { stopped.await.unwrap_or(()) }));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/registry_client_test.py");
    // std::process in a blocking thread: the crate's tokio has no `process` feature.
    let output = tokio::task::spawn_blocking(move || Command::new(&python).arg(script).arg(&url).output())
        .await
        .expect("python runner thread")
        .expect("start TEST_PYTHON");

    let _ = shutdown.send(());
    server.await.expect("server task").expect("server io");
    assert!(
        output.status.success(),
        "python client test failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
