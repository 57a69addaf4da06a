//! SQLite on mimalloc (`commands::sqlite_on_mimalloc`, called first thing in `main`): its
//! own test binary, since the switch must happen before any connection in the process.

use rusqlite::Connection;

#[test]
fn sqlite_runs_on_mimalloc_when_switched_before_its_first_connection() {
    // SAFETY: this binary's only test; nothing has touched SQLite yet.
    assert!(unsafe { edge_gateway::commands::sqlite_on_mimalloc() });
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
        .unwrap();
    // Allocations of every size SQLite makes, grown in place (realloc) and freed.
    for i in 0..2_000usize {
        let text = "x".repeat(i % 700);
        let blob = vec![(i % 251) as u8; (i * 37) % 70_000];
        conn.execute("INSERT INTO t (v, b) VALUES (?1, ?2)", (&text, &blob))
            .unwrap();
    }
    let (rows, bytes): (i64, i64) = conn
        .query_row("SELECT count(*), sum(length(b)) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(rows, 2_000);
    let expected: usize = (0..2_000usize).map(|i| (i * 37) % 70_000).sum();
    assert_eq!(bytes as usize, expected);
    let grown: String = conn
        .query_row(
            "SELECT group_concat(v, '') FROM t WHERE id <= 200",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(grown.len(), (0..200usize).sum::<usize>());
    // A second switch after SQLite started is refused, not applied half-way.
    // SAFETY: single-threaded, as above; SQLite refuses the call while initialized.
    assert!(!unsafe { edge_gateway::commands::sqlite_on_mimalloc() });
}
