//! Splitting and bisection, pure: which records of a group to deliver, dead-letter or keep,
//! given a `send` closure that posts a subset and says how it went.
//!
//! - [`Verdict::Delivered`]: the whole subset is delivered. It also proves that the endpoint
//!   works (the *evidence* of this [`Settler`], kept across the chunks of one call).
//! - [`Verdict::TooLarge`] (413, or a payload over the compressed limit before any request):
//!   split in halves and send each; a single record still too large is dead (`http_413`, or the
//!   reason the closure gives).
//! - [`Verdict::Rejected`] (400, 422 and other content refusals): a record is poison only when
//!   the endpoint accepts other records in the same call. A refusal of everything is an endpoint
//!   problem (a typo in the URL: VictoriaMetrics answers 400 to an unknown path), never poison.
//!   - With evidence: bisect. When a group fails and its left half then succeeds, the right
//!     half is known to hold an offender and is split without being sent whole; a single known
//!     offender is dead without another request. `k` offenders among `n` records cost at most
//!     about `2·k·log2(n)` requests.
//!   - Without evidence: follow the left halves down to a single refused record (about
//!     `log2(n)` requests), then send the right halves left behind on the way, nearest first
//!     (about `log2(n)` more): they must be sent anyway. The first one accepted is the evidence,
//!     and bisection goes on as above (the lone record is dead, each refused half holds an
//!     offender). If none is accepted, one record of each refused half is sent alone (at most
//!     `log2(n)` more: with many offenders a single record is the likeliest to pass). If still
//!     none is accepted, the call ends with [`Outcome::Refused`] after at most
//!     `3·ceil(log2(n)) + 1` requests: everything kept, nothing dead.
//! - [`Verdict::Stop`] (401/403, 404, 408, 429, 5xx, network errors): keep this subset and every
//!   record not yet settled; send nothing more in this call ([`Outcome::Stopped`]).
//! - [`Verdict::Deferred`] (the call's time budget is spent, nothing was sent): keep this
//!   subset and every record not yet settled ([`Outcome::OutOfTime`]); not a failure.

/// What the caller does with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The backend accepted it: delete it from the queue.
    Delivered,
    /// The backend (or the agent) will never accept it: move it to the dead-letter queue.
    Dead {
        /// Why (`not_json`, `missing_field:points`, `http_400`, `http_413`...).
        reason: String,
    },
    /// Not settled: leave it queued and offer it again later.
    Kept,
}

/// How one attempt at a subset went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted (200/202).
    Delivered,
    /// Too large (413, or over a local limit): split. `reason` is used for a single record.
    TooLarge {
        /// Dead-letter reason for a single record (`http_413`).
        reason: String,
    },
    /// The content is refused (400, 422...): poison if the endpoint accepts others, else an
    /// endpoint problem. `reason` is used for an offender.
    Rejected {
        /// Dead-letter reason for an offender (`http_400`).
        reason: String,
    },
    /// Part of the subset was stored and part refused, and the answer says which (InfluxDB's
    /// `partial write`, OpenTSDB's `?details`): the records in `dead` are dead with `reason`,
    /// the rest of the subset is delivered. Never resent.
    Partial {
        /// The refused records (indices, a subset of the group sent).
        dead: Vec<usize>,
        /// Dead-letter reason for them (`influxdb_unable_to_parse`, `opentsdb_refused`...).
        reason: String,
    },
    /// Retry later (or fix the configuration): keep everything not yet settled.
    Stop,
    /// Not sent: the time budget is spent. Keep everything not yet settled; not a failure.
    Deferred,
}

/// How a call ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Outcome {
    /// Every record is delivered or dead.
    #[default]
    Settled,
    /// A [`Verdict::Stop`]: the records not settled are kept.
    Stopped,
    /// Only refusals and nothing accepted: the endpoint refuses everything (or at least every
    /// record tried); everything not settled is kept. `reason` is the refusal (`http_400`).
    Refused {
        /// The refusal's reason (`http_400`).
        reason: String,
    },
    /// The time budget ran out: the records not settled are kept (not a failure).
    OutOfTime,
}

/// Settles the chunks of one call, carrying the evidence that the endpoint works (a delivery)
/// from one chunk to the next. Call [`Settler::settle`] per chunk while it returns
/// [`Outcome::Settled`]; on any other outcome, the remaining chunks are kept.
#[derive(Debug, Default)]
pub struct Settler {
    accepted: bool,
    halt: Option<Outcome>,
    requests: u32,
}

impl Settler {
    /// A settler with no evidence yet.
    pub fn new() -> Self {
        Settler::default()
    }

    /// Whether something was delivered in this call (the endpoint works).
    pub fn accepted(&self) -> bool {
        self.accepted
    }

    /// Calls made to `send` so far.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// Settles every index in `group` into `out[index]` by calling `send` on subsets.
    pub fn settle<F>(&mut self, group: &[usize], send: &mut F, out: &mut [Option<Disposition>]) -> Outcome
    where
        F: FnMut(&[usize]) -> Verdict,
    {
        self.run(group, send, out);
        self.halt.clone().unwrap_or_default()
    }

    fn send<F>(&mut self, group: &[usize], send: &mut F) -> Verdict
    where
        F: FnMut(&[usize]) -> Verdict,
    {
        let verdict = send(group);
        if verdict != Verdict::Deferred {
            self.requests += 1;
        }
        match &verdict {
            Verdict::Delivered => self.accepted = true,
            Verdict::Partial { dead, .. } if group.iter().any(|i| !dead.contains(i)) => self.accepted = true,
            _ => {}
        }
        verdict
    }

    /// Sends `group` whole, then settles it by its verdict.
    fn run<F>(&mut self, group: &[usize], send: &mut F, out: &mut [Option<Disposition>])
    where
        F: FnMut(&[usize]) -> Verdict,
    {
        if group.is_empty() {
            return;
        }
        if self.halt.is_some() {
            mark(group, Disposition::Kept, out);
            return;
        }
        let verdict = self.send(group, send);
        self.handle(group, verdict, send, out);
    }

    /// Settles `group`, which got `verdict`.
    fn handle<F>(&mut self, group: &[usize], verdict: Verdict, send: &mut F, out: &mut [Option<Disposition>])
    where
        F: FnMut(&[usize]) -> Verdict,
    {
        match verdict {
            Verdict::Delivered => mark(group, Disposition::Delivered, out),
            Verdict::Partial { dead, reason } => {
                for &i in group {
                    out[i] = Some(if dead.contains(&i) {
                        Disposition::Dead { reason: reason.clone() }
                    } else {
                        Disposition::Delivered
                    });
                }
            }
            Verdict::Stop => self.halt_with(Outcome::Stopped, group, out),
            Verdict::Deferred => self.halt_with(Outcome::OutOfTime, group, out),
            Verdict::TooLarge { reason } if group.len() == 1 => {
                mark(group, Disposition::Dead { reason }, out)
            }
            Verdict::TooLarge { .. } => {
                let (left, right) = group.split_at(group.len() / 2);
                self.run(left, send, out);
                self.run(right, send, out);
            }
            Verdict::Rejected { reason } if self.accepted => self.bisect(group, reason, send, out),
            Verdict::Rejected { reason } => self.explore(group, reason, send, out),
        }
    }

    fn halt_with(&mut self, outcome: Outcome, group: &[usize], out: &mut [Option<Disposition>]) {
        self.halt.get_or_insert(outcome);
        mark(group, Disposition::Kept, out);
    }

    /// `group` was refused whole and the endpoint is known to work: it holds an offender.
    fn bisect<F>(&mut self, group: &[usize], reason: String, send: &mut F, out: &mut [Option<Disposition>])
    where
        F: FnMut(&[usize]) -> Verdict,
    {
        if self.halt.is_some() {
            mark(group, Disposition::Kept, out);
            return;
        }
        if group.len() == 1 {
            mark(group, Disposition::Dead { reason }, out);
            return;
        }
        let (left, right) = group.split_at(group.len() / 2);
        self.run(left, send, out);
        if left.iter().all(|&i| out[i] == Some(Disposition::Delivered)) {
            // The whole failed and the left half went through: the offender is on the right.
            self.bisect(right, reason, send, out);
        } else {
            self.run(right, send, out);
        }
    }

    /// `group` was refused whole and nothing was accepted yet in this call: find evidence in
    /// O(log n) requests, or conclude that the endpoint refuses everything.
    fn explore<F>(&mut self, group: &[usize], reason: String, send: &mut F, out: &mut [Option<Disposition>])
    where
        F: FnMut(&[usize]) -> Verdict,
    {
        // Down the left halves to a single refused record; the right halves wait in `pending`.
        let mut pending: Vec<&[usize]> = Vec::new();
        let mut current = group;
        while current.len() > 1 {
            let (left, right) = current.split_at(current.len() / 2);
            pending.push(right);
            match self.send(left, send) {
                Verdict::Rejected { .. } => current = left,
                Verdict::Delivered => {
                    mark(left, Disposition::Delivered, out);
                    // `current` was refused, its left half accepted: the right half holds an offender.
                    pending.pop();
                    self.bisect(right, reason, send, out);
                    while let Some(rest) = pending.pop() {
                        self.run(rest, send, out);
                    }
                    return;
                }
                other => {
                    self.handle(left, other, send, out);
                    while let Some(rest) = pending.pop() {
                        self.run(rest, send, out);
                    }
                    return;
                }
            }
        }
        // `current` is one record refused alone: a suspect until something is accepted.
        let mut suspects: Vec<&[usize]> = vec![current];
        // Parts refused whole: each holds an offender once the endpoint is known to work.
        let mut refused: Vec<&[usize]> = Vec::new();
        while !self.accepted && self.halt.is_none() {
            let Some(next) = pending.pop() else { break };
            match self.send(next, send) {
                Verdict::Rejected { .. } => refused.push(next),
                other => self.handle(next, other, send, out),
            }
        }
        // Still nothing accepted (a broken endpoint, or offenders in every half): one record of
        // each refused part, nearest first. With many offenders a single record is the likeliest
        // to be accepted; one request per part keeps this O(log n).
        let mut unknown: Vec<&[usize]> = Vec::new();
        if !self.accepted && self.halt.is_none() {
            for part in std::mem::take(&mut refused) {
                if self.accepted || self.halt.is_some() || part.len() == 1 {
                    refused.push(part);
                    continue;
                }
                let (head, last) = part.split_at(part.len() - 1);
                match self.send(last, send) {
                    Verdict::Delivered => {
                        mark(last, Disposition::Delivered, out);
                        refused.push(head); // the part was refused, its last record accepted
                    }
                    Verdict::Rejected { .. } => {
                        suspects.push(last);
                        unknown.push(head);
                    }
                    other => {
                        self.handle(last, other, send, out);
                        unknown.push(head);
                    }
                }
            }
        }
        if self.halt.is_some() || !self.accepted {
            self.halt.get_or_insert(Outcome::Refused { reason });
            for part in suspects.into_iter().chain(refused).chain(unknown).chain(pending) {
                mark(part, Disposition::Kept, out);
            }
            return;
        }
        // The endpoint works: the suspects are poison, each refused part holds an offender.
        for suspect in suspects {
            mark(suspect, Disposition::Dead { reason: reason.clone() }, out);
        }
        for part in refused {
            self.bisect(part, reason.clone(), send, out);
        }
        for part in unknown {
            self.run(part, send, out);
        }
        while let Some(rest) = pending.pop() {
            self.run(rest, send, out);
        }
    }
}

/// Settles every index in `group` into `out[index]` by calling `send` on subsets (in order), in
/// a call of its own (no evidence from earlier chunks).
pub fn settle<F>(group: &[usize], send: &mut F, out: &mut [Option<Disposition>]) -> Outcome
where
    F: FnMut(&[usize]) -> Verdict,
{
    Settler::new().settle(group, send, out)
}

fn mark(group: &[usize], d: Disposition, out: &mut [Option<Disposition>]) {
    for &i in group {
        out[i] = Some(d.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that refuses (400) any subset holding a poison index, else accepts; counts
    /// requests and how often each index was delivered.
    struct Backend {
        poison: Vec<usize>,
        refuse_all: bool,
        requests: u32,
        delivered: Vec<u32>,
    }

    impl Backend {
        fn new(n: usize, poison: &[usize]) -> Self {
            Backend { poison: poison.to_vec(), refuse_all: false, requests: 0, delivered: vec![0; n] }
        }

        fn answer(&mut self, group: &[usize]) -> Verdict {
            self.requests += 1;
            if self.refuse_all || group.iter().any(|i| self.poison.contains(i)) {
                return Verdict::Rejected { reason: "http_400".into() };
            }
            for &i in group {
                self.delivered[i] += 1;
            }
            Verdict::Delivered
        }
    }

    fn run(backend: &mut Backend, n: usize) -> (Outcome, Vec<Disposition>) {
        let group: Vec<usize> = (0..n).collect();
        let mut out = vec![None; n];
        let outcome = settle(&group, &mut |g: &[usize]| backend.answer(g), &mut out);
        let out: Vec<Disposition> = out.into_iter().map(|d| d.expect("every record settled")).collect();
        (outcome, out)
    }

    fn log2_ceil(n: usize) -> u32 {
        usize::BITS - (n - 1).leading_zeros()
    }

    /// Poison dead, everything else delivered exactly once.
    fn assert_isolated(backend: &Backend, out: &[Disposition]) {
        for (i, d) in out.iter().enumerate() {
            if backend.poison.contains(&i) {
                assert_eq!(*d, Disposition::Dead { reason: "http_400".into() }, "record {i}");
                assert_eq!(backend.delivered[i], 0);
            } else {
                assert_eq!(*d, Disposition::Delivered, "record {i}");
                assert_eq!(backend.delivered[i], 1, "record {i} delivered once");
            }
        }
    }

    #[test]
    fn an_endpoint_refusing_everything_keeps_everything_in_log_n_requests() {
        for n in [1, 2, 3, 7, 100, 1000, 10_000] {
            let mut backend = Backend::new(n, &[]);
            backend.refuse_all = true;
            let (outcome, out) = run(&mut backend, n);
            assert_eq!(outcome, Outcome::Refused { reason: "http_400".into() }, "n={n}");
            assert!(out.iter().all(|d| *d == Disposition::Kept), "n={n}");
            let bound = 3 * log2_ceil(n.max(2)) + 1;
            assert!(backend.requests <= bound, "n={n}: {} requests > {bound}", backend.requests);
        }
        let mut backend = Backend::new(10_000, &[]);
        backend.refuse_all = true;
        let _ = run(&mut backend, 10_000);
        // 1 whole + 13 left halves (5000, 2500 ... 2, 1) + the 13 right halves left behind + the
        // last record of each of those 12 that hold more than one.
        assert_eq!(backend.requests, 39);
    }

    #[test]
    fn one_poison_among_ten_thousand_is_the_only_dead_record() {
        let n = 10_000;
        let bound = 2 * log2_ceil(n) + 3;
        for p in [0, 1, 4_999, 5_000, 7_777, 9_999] {
            let mut backend = Backend::new(n, &[p]);
            let (outcome, out) = run(&mut backend, n);
            assert_eq!(outcome, Outcome::Settled, "p={p}");
            assert_isolated(&backend, &out);
            assert!(backend.requests <= bound, "p={p}: {} requests > {bound}", backend.requests);
        }
    }

    #[test]
    fn k_poisons_cost_about_2_k_log_n_requests() {
        let n = 10_000;
        for poison in [vec![3, 4_000, 9_998], vec![10, 11, 12, 13, 5_000], (0..20).map(|i| i * 499).collect()]
        {
            let mut backend = Backend::new(n, &poison);
            let (outcome, out) = run(&mut backend, n);
            assert_eq!(outcome, Outcome::Settled);
            assert_isolated(&backend, &out);
            let bound = 2 * poison.len() as u32 * log2_ceil(n) + 3;
            assert!(backend.requests <= bound, "{poison:?}: {} requests > {bound}", backend.requests);
        }
    }

    #[test]
    fn two_adjacent_poisons_at_the_head_do_not_block_the_rest() {
        for n in [2, 3, 4, 5, 1000, 10_000] {
            let mut backend = Backend::new(n, &[0, 1]);
            let (outcome, out) = run(&mut backend, n);
            if n == 2 {
                // Nothing but poison: nothing accepted, so nothing is known to be poison yet;
                // kept until newer records join the batch.
                assert_eq!(outcome, Outcome::Refused { reason: "http_400".into() });
                assert_eq!(out, vec![Disposition::Kept; n]);
                continue;
            }
            assert_eq!(outcome, Outcome::Settled, "n={n}");
            assert_isolated(&backend, &out);
        }
    }

    #[test]
    fn evidence_from_an_earlier_chunk_makes_a_refused_chunk_poison() {
        // Chunk [0..4) accepted; chunk [4..8) is all poison: dead, as its neighbours were accepted.
        let mut backend = Backend::new(8, &[4, 5, 6, 7]);
        let mut settler = Settler::new();
        let mut out = vec![None; 8];
        let mut send = |g: &[usize]| backend.answer(g);
        assert_eq!(settler.settle(&[0, 1, 2, 3], &mut send, &mut out), Outcome::Settled);
        assert_eq!(settler.settle(&[4, 5, 6, 7], &mut send, &mut out), Outcome::Settled);
        let out: Vec<_> = out.into_iter().map(Option::unwrap).collect();
        assert_isolated(&backend, &out);
        // Without the first chunk, the same refused chunk is an endpoint problem.
        let mut backend = Backend::new(8, &[4, 5, 6, 7]);
        let mut out = vec![None; 8];
        let outcome = settle(&[4, 5, 6, 7], &mut |g: &[usize]| backend.answer(g), &mut out);
        assert_eq!(outcome, Outcome::Refused { reason: "http_400".into() });
        assert!(out[4..].iter().all(|d| *d == Some(Disposition::Kept)));
    }

    #[test]
    fn stop_keeps_the_rest_and_deferral_is_out_of_time() {
        // 16 records, 400 when record 9 is in the group, then Stop (or Deferred) on the 4th call.
        for (last, expected) in [(Verdict::Stop, Outcome::Stopped), (Verdict::Deferred, Outcome::OutOfTime)] {
            let mut calls = 0;
            let mut out = vec![None; 16];
            let group: Vec<usize> = (0..16).collect();
            let outcome = settle(
                &group,
                &mut |g: &[usize]| {
                    calls += 1;
                    if calls == 4 {
                        last.clone()
                    } else if g.contains(&9) {
                        Verdict::Rejected { reason: "http_400".into() }
                    } else {
                        Verdict::Delivered
                    }
                },
                &mut out,
            );
            assert_eq!(outcome, expected);
            // [0..16) refused, [0..8) delivered, [8..12) refused, then the 4th call: the rest kept.
            let out: Vec<_> = out.into_iter().map(Option::unwrap).collect();
            assert_eq!(out[..8], vec![Disposition::Delivered; 8][..]);
            assert_eq!(out[8..], vec![Disposition::Kept; 8][..]);
        }
    }

    #[test]
    fn a_deferral_while_exploring_keeps_everything_unsettled() {
        // Everything refused, and the budget runs out on the 5th call: nothing dead, all kept.
        let mut calls = 0;
        let mut out = vec![None; 64];
        let group: Vec<usize> = (0..64).collect();
        let outcome = settle(
            &group,
            &mut |_: &[usize]| {
                calls += 1;
                if calls >= 5 {
                    Verdict::Deferred
                } else {
                    Verdict::Rejected { reason: "http_400".into() }
                }
            },
            &mut out,
        );
        assert_eq!(outcome, Outcome::OutOfTime);
        assert!(out.iter().all(|d| *d == Some(Disposition::Kept)));
    }

    #[test]
    fn too_large_splits_and_a_single_one_is_dead() {
        let mut out = vec![None; 8];
        let group: Vec<usize> = (0..8).collect();
        let mut requests = 0;
        let outcome = settle(
            &group,
            &mut |g: &[usize]| {
                requests += 1;
                if g.contains(&5) || g.len() > 2 {
                    Verdict::TooLarge { reason: "http_413".into() }
                } else {
                    Verdict::Delivered
                }
            },
            &mut out,
        );
        assert_eq!(outcome, Outcome::Settled);
        for (i, d) in out.iter().enumerate() {
            let expected =
                if i == 5 { Disposition::Dead { reason: "http_413".into() } } else { Disposition::Delivered };
            assert_eq!(d.as_ref(), Some(&expected), "record {i}");
        }
        // 8 → 4 + 4 → 2+2 + 2+2 → 4 and 5 alone.
        assert_eq!(requests, 9);
    }

    #[test]
    fn exhaustively_no_good_record_is_ever_dead() {
        // Every poison set of every batch of up to 12 records.
        for n in 1..=12usize {
            for mask in 0u32..(1 << n) {
                let poison: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
                let mut backend = Backend::new(n, &poison);
                let (outcome, out) = run(&mut backend, n);
                let k = poison.len() as u32;
                let log = log2_ceil(n.max(2));
                for (i, d) in out.iter().enumerate() {
                    if !poison.contains(&i) {
                        assert!(!matches!(d, Disposition::Dead { .. }), "n={n} {poison:?}: good {i} dead");
                    }
                    assert!(backend.delivered[i] <= 1, "n={n} {poison:?}: {i} delivered twice");
                }
                match outcome {
                    Outcome::Settled => assert_isolated(&backend, &out),
                    Outcome::Refused { .. } => {
                        assert!(out.iter().all(|d| *d == Disposition::Kept), "n={n} {poison:?}: {out:?}");
                        assert!(backend.requests <= 3 * log + 1, "n={n} {poison:?}: {}", backend.requests);
                    }
                    other => panic!("n={n} {poison:?}: {other:?}"),
                }
                assert!(backend.requests <= 2 * (k + 1) * log + 1, "n={n} {poison:?}: {}", backend.requests);
            }
        }
    }
}
