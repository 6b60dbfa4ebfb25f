use super::*;

fn entry(i: u64) -> Vec<u8> {
    format!("ENTRY-{i:05}-MARKER").into_bytes()
}

fn fill(path: &Path, n: u64) {
    let (log, rec) = SqliteLog::open(path).unwrap();
    assert_eq!(rec.last_seq(), 0);
    for i in 1..=n {
        assert_eq!(log.append_wait(entry(i)).unwrap(), i);
    }
}

#[test]
fn entries_come_back_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    fill(&path, 50);
    let (log, rec) = SqliteLog::open(&path).unwrap();
    assert!(rec.snapshot.is_none());
    assert_eq!(rec.dropped_torn, None);
    let want: Vec<_> = (1..=50).map(|i| (i, entry(i))).collect();
    assert_eq!(rec.tail, want);
    assert_eq!(log.append_wait(b"next".to_vec()).unwrap(), 51);
    assert_eq!(log.durable(), 51);
}

#[test]
fn group_commit_shares_commits_between_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let (log, _) = SqliteLog::open(&path).unwrap();
    let log = Arc::new(log);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    log.append_wait(entry(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.appended, 1600);
    assert!(
        stats.commits < stats.appended,
        "{} commits for {} appends",
        stats.commits,
        stats.appended
    );
    assert_eq!(stats.fsync_buckets.iter().sum::<u64>(), stats.commits);
    drop(log);
    let (_, rec) = SqliteLog::open(&path).unwrap();
    let seqs: Vec<_> = rec.tail.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=1600).collect::<Vec<_>>());
}

#[test]
fn recovery_is_latest_snapshot_plus_tail_and_old_entries_are_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    {
        let (log, _) = SqliteLog::open(&path).unwrap();
        for i in 1..=10 {
            log.append_wait(entry(i)).unwrap();
        }
        log.snapshot_wait(10, b"state@10".to_vec()).unwrap();
        for i in 11..=20 {
            log.append_wait(entry(i)).unwrap();
        }
        log.snapshot_wait(20, b"state@20".to_vec()).unwrap();
        for i in 21..=25 {
            log.append_wait(entry(i)).unwrap();
        }
        // Entries up to the older kept snapshot (10) are gone.
        assert_eq!(log.stats().entries, 15);
    }
    let (_, rec) = SqliteLog::open(&path).unwrap();
    assert_eq!(rec.snapshot, Some((20, b"state@20".to_vec())));
    let want: Vec<_> = (21..=25).map(|i| (i, entry(i))).collect();
    assert_eq!(rec.tail, want);
}

#[test]
fn a_corrupt_latest_snapshot_falls_back_to_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    {
        let (log, _) = SqliteLog::open(&path).unwrap();
        for i in 1..=4 {
            log.append_wait(entry(i)).unwrap();
        }
        log.snapshot_wait(2, b"state@2".to_vec()).unwrap();
        log.snapshot_wait(4, b"state@4".to_vec()).unwrap();
    }
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE snapshots SET bytes = substr(bytes, 1, 3) WHERE seq = 4",
        [],
    )
    .unwrap();
    drop(conn);
    let (_, rec) = SqliteLog::open(&path).unwrap();
    assert_eq!(rec.snapshot, Some((2, b"state@2".to_vec())));
    assert_eq!(rec.tail, vec![(3, entry(3)), (4, entry(4))]);
}

#[test]
fn a_torn_last_entry_is_detected_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    fill(&path, 30);
    // A crash in the middle of writing entry 30: its bytes are cut short.
    let conn = Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE log SET entry = substr(entry, 1, length(entry) - 5) WHERE seq = 30",
        [],
    )
    .unwrap();
    drop(conn);
    let (log, rec) = SqliteLog::open(&path).unwrap();
    assert_eq!(rec.dropped_torn, Some(30));
    assert_eq!(rec.tail.len(), 29);
    assert_eq!(rec.tail.last(), Some(&(29, entry(29))));
    // The position is reused by the next append, and the log reads back clean.
    assert_eq!(log.append_wait(b"again".to_vec()).unwrap(), 30);
    drop(log);
    let (_, rec) = SqliteLog::open(&path).unwrap();
    assert_eq!(rec.dropped_torn, None);
    assert_eq!(rec.tail.last(), Some(&(30, b"again".to_vec())));
}

#[test]
fn a_flipped_byte_in_the_middle_stops_the_start_naming_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    fill(&path, 100);
    // Closing checkpointed the WAL into the main file; flip one byte of entry 42 there.
    let mut bytes = std::fs::read(&path).unwrap();
    let marker = entry(42);
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_slice())
        .expect("entry 42 is in the database file");
    bytes[at + 3] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteLog::open(&path).unwrap_err();
    assert_eq!(
        err,
        LogError::Corrupt {
            seq: 42,
            last: 100,
            what: "checksum mismatch".into()
        }
    );
    assert!(
        err.to_string().contains("log entry 42 of 100 is corrupt"),
        "{err}"
    );
}

#[test]
fn an_entry_stored_under_another_position_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    fill(&path, 5);
    let conn = Connection::open(&path).unwrap();
    // Entries 2 and 3 swapped: each fails the checksum of its new position.
    conn.execute_batch(
        "UPDATE log SET seq = 100 WHERE seq = 2; UPDATE log SET seq = 2 WHERE seq = 3;
         UPDATE log SET seq = 3 WHERE seq = 100;",
    )
    .unwrap();
    drop(conn);
    let err = SqliteLog::open(&path).unwrap_err();
    assert!(matches!(err, LogError::Corrupt { seq: 2, .. }), "{err}");
}

#[test]
fn appends_after_close_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = SqliteLog::open(&dir.path().join("log.db")).unwrap();
    log.close();
    assert_eq!(log.append_wait(b"x".to_vec()), Err(LogError::Closed));
}
