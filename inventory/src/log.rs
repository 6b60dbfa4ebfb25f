//! The request log: the newest requests under `/v1`, each found again by its sequence
//! number to record its answer.

use std::collections::VecDeque;

use crate::server::Logged;

/// The newest `cap` requests, oldest first. Appending is O(1) when full (the oldest entry
/// goes), and an entry keeps its sequence number however many are dropped before it, so an
/// answer is recorded on its own request, or nowhere once that request has been dropped.
#[derive(Debug)]
pub(crate) struct RequestLog {
    entries: VecDeque<Logged>,
    /// Entries dropped so far: the sequence number of `entries[0]`.
    dropped: u64,
    cap: usize,
}

impl RequestLog {
    /// An empty log keeping at most `cap` entries (at least one).
    pub(crate) fn new(cap: usize) -> RequestLog {
        RequestLog {
            entries: VecDeque::new(),
            dropped: 0,
            cap: cap.max(1),
        }
    }

    /// Appends `entry`, dropping the oldest when full; its sequence number.
    pub(crate) fn push(&mut self, entry: Logged) -> u64 {
        if self.entries.len() >= self.cap {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(entry);
        self.dropped + self.entries.len() as u64 - 1
    }

    /// Records the status answered to request `seq`, if it is still kept.
    pub(crate) fn set_status(&mut self, seq: u64, status: u16) {
        let Some(at) = seq.checked_sub(self.dropped) else {
            return;
        };
        if let Some(entry) = usize::try_from(at)
            .ok()
            .and_then(|at| self.entries.get_mut(at))
        {
            entry.status = status;
        }
    }

    /// The entries kept, oldest first.
    pub(crate) fn to_vec(&self) -> Vec<Logged> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Logged {
        Logged {
            method: "GET".into(),
            path: path.into(),
            status: 0,
            authorization: None,
        }
    }

    #[test]
    fn a_full_log_drops_its_oldest_and_answers_reach_their_own_requests() {
        let mut log = RequestLog::new(3);
        let seqs: Vec<u64> = ["/a", "/b", "/c", "/d", "/e"]
            .into_iter()
            .map(|p| log.push(get(p)))
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        // "/a" and "/b" are gone: their answers are recorded nowhere.
        log.set_status(seqs[0], 500);
        log.set_status(seqs[1], 500);
        // Answers arrive out of order and land on their own request.
        log.set_status(seqs[4], 204);
        log.set_status(seqs[2], 201);
        let kept: Vec<(String, u16)> = log
            .to_vec()
            .into_iter()
            .map(|e| (e.path, e.status))
            .collect();
        assert_eq!(
            kept,
            [("/c".into(), 201), ("/d".into(), 0), ("/e".into(), 204)]
        );
        // A number never handed out changes nothing.
        log.set_status(99, 200);
        assert!(log.to_vec().iter().all(|e| e.status != 200));
    }
}
