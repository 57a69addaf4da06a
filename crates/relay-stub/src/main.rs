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
    // As a container's PID 1 no default handler ends the process on SIGTERM: without
    // this, `docker stop` waits its 10 s and kills it. Installed before the stub says it
    // is listening, so a SIGTERM sent as soon as it says so is handled (a TERM that
    // came first used to kill it by the default action).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let stub = RelayStub::start_on(addr).await?;
    println!(
        "relay stub listening on {} (RELAY_URL={})",
        stub.addr(),
        stub.url()
    );
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = term.recv() => {}
    }
    stub.stop().await;
    Ok(())
}
