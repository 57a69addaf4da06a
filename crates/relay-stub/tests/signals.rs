//! The stub binary as a container runs it (PID 1 in the demo image): SIGTERM must end it
//! at once, or `docker stop` waits its full 10 s before killing it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_the_stub() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay_stub"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the stub starts");
    // It is serving once it says where.
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("a line");
    assert!(line.contains("listening"), "{line}");
    // At once, as `docker stop` may: a TERM that comes before the handler is installed
    // ends the stub by the default action (so a spawned `kill` was too slow to see it).
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill only sends a signal to the process we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "a clean exit, not a kill: {status:?}");
            return;
        }
        assert!(Instant::now() < deadline, "the stub ignored SIGTERM");
        std::thread::yield_now();
    }
}
