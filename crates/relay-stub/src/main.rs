//! Runs the OpenAI-compatible relay stub for the offline demo:
//! `cargo run -p relay-stub -- 127.0.0.1:9999`, then
//! `RELAY_URL=http://127.0.0.1:9999/v1 cargo run --release`.

use std::net::SocketAddr;

use relay_stub::RelayStub;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("STUB_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:9999".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let stub = RelayStub::start_on(addr).await?;
    println!(
        "relay stub listening on {} (RELAY_URL={})",
        stub.addr(),
        stub.url()
    );
    // As a container's PID 1 no default handler ends the process on SIGTERM: without
    // this, `docker stop` waits its 10 s and kills it.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    stub.stop().await;
    Ok(())
}
