//! Splitting and bisection, pure: which records of a group to deliver, dead-letter or keep,
//! given a `send` closure that posts a subset and says how it went.
//!
//! - [`Verdict::Delivered`]: the whole subset is delivered.
//! - [`Verdict::TooLarge`] (413, or a payload over the compressed limit before any request):
//!   split in halves and send each; a single record still too large is dead (`http_413`, or the
//!   reason the closure gives).
//! - [`Verdict::Rejected`] (400 and other 4xx): bisect. When a group fails and its left half
//!   then succeeds, the right half is known to hold the offender and is split without being
//!   sent whole; a single known offender is dead without another request. `k` offenders among
//!   `n` records cost about `2·k·log2(n)` requests.
//! - [`Verdict::Stop`] (401/403, 408, 429, 5xx, network errors): keep this subset and every
//!   record not yet settled; send nothing more in this call.

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
    /// The content is refused (400 or another 4xx): bisect. `reason` is used for an offender.
    Rejected {
        /// Dead-letter reason for an offender (`http_400`).
        reason: String,
    },
    /// Retry later (or fix the configuration): keep everything not yet settled.
    Stop,
}

/// Settles every index in `group` into `out[index]` by calling `send` on subsets (in order).
/// Returns `true` if a [`Verdict::Stop`] ended the call early (the rest is `Kept`).
pub fn settle<F>(group: &[usize], send: &mut F, out: &mut [Option<Disposition>]) -> bool
where
    F: FnMut(&[usize]) -> Verdict,
{
    let mut stopped = false;
    settle_rec(group, None, send, out, &mut stopped);
    stopped
}

fn settle_rec<F>(
    group: &[usize],
    known_bad: Option<String>,
    send: &mut F,
    out: &mut [Option<Disposition>],
    stopped: &mut bool,
) where
    F: FnMut(&[usize]) -> Verdict,
{
    if group.is_empty() {
        return;
    }
    if *stopped {
        mark(group, Disposition::Kept, out);
        return;
    }
    let verdict = match known_bad {
        Some(reason) => Verdict::Rejected { reason },
        None => send(group),
    };
    match verdict {
        Verdict::Delivered => mark(group, Disposition::Delivered, out),
        Verdict::Stop => {
            *stopped = true;
            mark(group, Disposition::Kept, out);
        }
        Verdict::TooLarge { reason } | Verdict::Rejected { reason } if group.len() == 1 => {
            mark(group, Disposition::Dead { reason }, out)
        }
        Verdict::TooLarge { .. } => {
            let (left, right) = group.split_at(group.len() / 2);
            settle_rec(left, None, send, out, stopped);
            settle_rec(right, None, send, out, stopped);
        }
        Verdict::Rejected { reason } => {
            let (left, right) = group.split_at(group.len() / 2);
            settle_rec(left, None, send, out, stopped);
            let left_clean = left.iter().all(|&i| out[i] == Some(Disposition::Delivered));
            // The whole failed and the left half went through: the offender is on the right.
            let hint = left_clean.then_some(reason);
            settle_rec(right, hint, send, out, stopped);
        }
    }
}

fn mark(group: &[usize], d: Disposition, out: &mut [Option<Disposition>]) {
    for &i in group {
        out[i] = Some(d.clone());
    }
}
