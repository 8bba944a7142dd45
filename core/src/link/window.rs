//! Reliable delivery: the device's send window ([`Sender`]) and the gateway's in-order receiver
//! ([`Receiver`]), sans-IO (the caller passes the clock in milliseconds and moves the bytes).
//!
//! Go-Back-N over a small window: the device keeps up to `W` sequenced frames (define, data)
//! until a cumulative ack covers them; the gateway accepts only the next frame in sequence,
//! acknowledges duplicates again, and drops frames after a gap (they come back with the
//! retransmission). A timeout (500 ms, doubling to 8 s while nothing is acknowledged) or a
//! [`Nack::Damaged`] resends every unacknowledged frame, oldest first.
//!
//! The gateway commits a frame's points and its [`LinkState`] in one atomic step *before* it
//! acknowledges, so a frame retransmitted after a lost ack or a gateway crash is recognised
//! as a duplicate and never counted twice.

use super::frame::{encode_frame, Header, Kind, MAX_PAYLOAD};
use super::message::Nack;

/// First retransmission timeout.
pub const RTO_MIN_MS: u64 = 500;
/// Longest retransmission timeout (the backoff doubles up to it).
pub const RTO_MAX_MS: u64 = 8_000;

/// Why [`Sender::send`] refused a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowError {
    /// `W` frames await their ack: send again once [`Sender::has_room`].
    Full,
    /// The payload is over [`MAX_PAYLOAD`].
    TooLarge,
}

/// What a [`Sender`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Frames queued (first transmissions).
    pub sent: u64,
    /// Frames transmitted again.
    pub retransmitted: u64,
    /// Frames acknowledged.
    pub acked: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    kind: Kind,
    seq: u16,
    len: u16,
    payload: [u8; MAX_PAYLOAD],
}

const EMPTY_SLOT: Slot = Slot { kind: Kind::Data, seq: 0, len: 0, payload: [0; MAX_PAYLOAD] };

/// The device's send window: up to `W` sequenced frames in flight.
pub struct Sender<const W: usize> {
    boot_id: u32,
    next_seq: u16,
    slots: [Slot; W],
    /// Index in `slots` of the oldest unacknowledged frame.
    head: usize,
    /// Frames held.
    len: usize,
    /// Frames of `len` transmitted since the last (re)start of the round: the next to transmit.
    transmitted: usize,
    /// The gateway's credit: frames it takes in flight.
    credit: usize,
    rto_ms: u64,
    deadline_ms: Option<u64>,
    stats: SenderStats,
}

impl<const W: usize> Sender<W> {
    /// An empty window for boot (session) `boot_id`, starting at seq 0.
    pub const fn new(boot_id: u32) -> Self {
        const { assert!(W >= 1 && W <= 64, "the window holds 1 to 64 frames") };
        Sender {
            boot_id,
            next_seq: 0,
            slots: [EMPTY_SLOT; W],
            head: 0,
            len: 0,
            transmitted: 0,
            credit: W,
            rto_ms: RTO_MIN_MS,
            deadline_ms: None,
            stats: SenderStats { sent: 0, retransmitted: 0, acked: 0, timeouts: 0 },
        }
    }

    /// The session's boot id (header of every frame).
    pub fn boot_id(&self) -> u32 {
        self.boot_id
    }

    /// Frames awaiting their ack.
    pub fn in_flight(&self) -> usize {
        self.len
    }

    /// Whether a frame can be queued.
    pub fn has_room(&self) -> bool {
        self.len < W
    }

    /// What it did.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// Queues a sequenced frame (define or data); it goes out through [`poll_transmit`].
    ///
    /// [`poll_transmit`]: Self::poll_transmit
    pub fn send(&mut self, kind: Kind, payload: &[u8]) -> Result<u16, WindowError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(WindowError::TooLarge);
        }
        if self.len == W {
            return Err(WindowError::Full);
        }
        let seq = self.next_seq;
        let slot = &mut self.slots[(self.head + self.len) % W];
        slot.kind = kind;
        slot.seq = seq;
        slot.len = payload.len() as u16;
        slot.payload[..payload.len()].copy_from_slice(payload);
        self.len += 1;
        self.next_seq = seq.wrapping_add(1);
        self.stats.sent += 1;
        Ok(seq)
    }

    /// The next frame to write, encoded into `out` (at least
    /// [`max_frame_bytes`](super::max_frame_bytes)`(MAX_PAYLOAD)` bytes): a new frame within the
    /// gateway's credit, or a retransmission once the timer expired at `now_ms`.
    pub fn poll_transmit(&mut self, now_ms: u64, out: &mut [u8]) -> Option<usize> {
        if let Some(deadline) = self.deadline_ms {
            if now_ms >= deadline && self.len > 0 {
                self.stats.timeouts += 1;
                self.rto_ms = (self.rto_ms * 2).min(RTO_MAX_MS);
                self.go_back(now_ms);
            }
        }
        if self.transmitted >= self.len.min(self.credit.max(1)) {
            return None;
        }
        let slot = &self.slots[(self.head + self.transmitted) % W];
        let header = Header { kind: slot.kind, boot_id: self.boot_id, seq: slot.seq };
        let written = encode_frame(header, &slot.payload[..usize::from(slot.len)], out).ok()?;
        if self.deadline_ms.is_none() {
            self.deadline_ms = Some(now_ms + self.rto_ms);
        }
        self.transmitted += 1;
        Some(written)
    }

    /// When [`poll_transmit`](Self::poll_transmit) has a retransmission due, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadline_ms.filter(|_| self.len > 0)
    }

    /// The gateway's ack for `boot_id` through `seq` with `window` credit: releases every frame
    /// up to `seq`. Acks of another session or outside the window change nothing. Returns the
    /// frames released.
    pub fn on_ack(&mut self, boot_id: u32, seq: u16, window: u8, now_ms: u64) -> usize {
        if boot_id != self.boot_id {
            return 0;
        }
        self.credit = usize::from(window).clamp(1, W);
        let released = self.release_through(seq);
        if released > 0 {
            self.rto_ms = RTO_MIN_MS;
            self.deadline_ms = (self.len > 0).then_some(now_ms + self.rto_ms);
        }
        released
    }

    /// The gateway saw a damaged frame: every unacknowledged frame goes out again now.
    pub fn on_damaged(&mut self, boot_id: u32, now_ms: u64) {
        if boot_id == self.boot_id && self.len > 0 {
            self.go_back(now_ms);
        }
    }

    /// The gateway asks for a new session ([`Nack::Resync`]): frames through `through` are
    /// released as acknowledged; each frame still unacknowledged is handed to `unsent` (kind and
    /// payload, oldest first) and forgotten; the window restarts at seq 0 under `new_boot_id`.
    /// Returns whether the nack was for this session (else nothing changed).
    pub fn on_resync(
        &mut self,
        boot_id: u32,
        through: Option<u16>,
        new_boot_id: u32,
        mut unsent: impl FnMut(Kind, &[u8]),
    ) -> bool {
        if boot_id != self.boot_id {
            return false;
        }
        if let Some(seq) = through {
            self.release_through(seq);
        }
        for i in 0..self.len {
            let slot = &self.slots[(self.head + i) % W];
            unsent(slot.kind, &slot.payload[..usize::from(slot.len)]);
        }
        *self = Sender { stats: self.stats, ..Sender::new(new_boot_id) };
        true
    }

    /// Handles a nack frame's header and payload.
    pub fn on_nack(
        &mut self,
        header: Header,
        nack: Nack,
        new_boot_id: u32,
        now_ms: u64,
        unsent: impl FnMut(Kind, &[u8]),
    ) -> bool {
        match nack {
            Nack::Damaged => {
                self.on_damaged(header.boot_id, now_ms);
                false
            }
            Nack::Resync { through } => self.on_resync(header.boot_id, through, new_boot_id, unsent),
        }
    }

    fn release_through(&mut self, seq: u16) -> usize {
        if self.len == 0 {
            return 0;
        }
        let oldest = self.slots[self.head].seq;
        let count = usize::from(seq.wrapping_sub(oldest)) + 1;
        if count > self.len {
            return 0;
        }
        self.head = (self.head + count) % W;
        self.len -= count;
        self.transmitted = self.transmitted.saturating_sub(count);
        self.stats.acked += count as u64;
        count
    }

    fn go_back(&mut self, now_ms: u64) {
        self.stats.retransmitted += self.transmitted as u64;
        self.transmitted = 0;
        self.deadline_ms = Some(now_ms + self.rto_ms);
    }
}

/// What the gateway has committed for one device: the session (boot id) and the last sequence
/// number whose frame is in the store. Persisted with the frame's points, atomically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// The session.
    pub boot_id: u32,
    /// The last committed frame.
    pub seq: u16,
    /// The sessions before it (most recent first, `0` = none): their frames are stale.
    pub retired: [u32; RETIRED_SESSIONS],
}

/// Sessions a [`LinkState`] remembers besides the current one.
pub const RETIRED_SESSIONS: usize = 3;

/// Bytes of an encoded [`LinkState`].
pub const LINK_STATE_BYTES: usize = 1 + 4 + 2 + 4 * RETIRED_SESSIONS;

impl LinkState {
    /// The state's bytes (version 1, little-endian), as stores keep it.
    pub fn to_bytes(&self) -> [u8; LINK_STATE_BYTES] {
        let mut out = [0u8; LINK_STATE_BYTES];
        out[0] = 1;
        out[1..5].copy_from_slice(&self.boot_id.to_le_bytes());
        out[5..7].copy_from_slice(&self.seq.to_le_bytes());
        for (i, boot) in self.retired.iter().enumerate() {
            out[7 + 4 * i..11 + 4 * i].copy_from_slice(&boot.to_le_bytes());
        }
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s output.
    pub fn from_bytes(bytes: &[u8]) -> Option<LinkState> {
        if bytes.len() != LINK_STATE_BYTES || bytes[0] != 1 {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let mut retired = [0u32; RETIRED_SESSIONS];
        for (i, boot) in retired.iter_mut().enumerate() {
            *boot = u32_at(7 + 4 * i);
        }
        Some(LinkState { boot_id: u32_at(1), seq: u16::from_le_bytes([bytes[5], bytes[6]]), retired })
    }
}

/// What the gateway does with a sequenced frame ([`Receiver::classify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The next frame: decode it, commit its points with [`Receiver::state_after`], then
    /// [`Receiver::committed`] and acknowledge.
    Next,
    /// Already committed: acknowledge again ([`Receiver::ack`]), change nothing.
    Duplicate,
    /// A frame after a gap (one before it was lost): drop it, acknowledge what was committed; the
    /// device's retransmission brings the missing frame and this one again.
    Gap,
    /// A frame of a session this gateway holds nothing for, not its first: answer
    /// [`Nack::Resync`] so the device starts a new session.
    Unknown,
    /// A frame of a session the device left: ignore it.
    Stale,
}

/// What a [`Receiver`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Frames committed.
    pub accepted: u64,
    /// Frames already committed, received again.
    pub duplicates: u64,
    /// Frames dropped after a gap.
    pub gaps: u64,
    /// Frames of unknown sessions (answered with a resync).
    pub unknown: u64,
    /// Frames of sessions the device left.
    pub stale: u64,
}

/// The gateway's side of one device's window: accepts sequenced frames in order, exactly once.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    state: Option<LinkState>,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver resuming from the state the store kept (`None`: nothing committed yet).
    pub fn new(state: Option<LinkState>) -> Self {
        Receiver { state, stats: ReceiverStats::default() }
    }

    /// The committed state.
    pub fn state(&self) -> Option<LinkState> {
        self.state
    }

    /// What it saw.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// What to do with a define or data frame with this header (counted).
    pub fn classify(&mut self, header: Header) -> Disposition {
        let disposition = self.peek(header);
        let stats = &mut self.stats;
        match disposition {
            Disposition::Next => {}
            Disposition::Duplicate => stats.duplicates += 1,
            Disposition::Gap => stats.gaps += 1,
            Disposition::Unknown => stats.unknown += 1,
            Disposition::Stale => stats.stale += 1,
        }
        disposition
    }

    /// [`classify`](Self::classify) without counting.
    pub fn peek(&self, header: Header) -> Disposition {
        match self.state {
            Some(state) if state.boot_id == header.boot_id => {
                let ahead = header.seq.wrapping_sub(state.seq) as i16;
                match ahead {
                    1 => Disposition::Next,
                    i16::MIN..=0 => Disposition::Duplicate,
                    _ => Disposition::Gap,
                }
            }
            Some(state) if state.retired.contains(&header.boot_id) => Disposition::Stale,
            _ if header.seq == 0 => Disposition::Next,
            _ => Disposition::Unknown,
        }
    }

    /// The state to commit with a [`Disposition::Next`] frame's points.
    pub fn state_after(&self, header: Header) -> LinkState {
        match self.state {
            Some(state) if state.boot_id == header.boot_id => LinkState { seq: header.seq, ..state },
            Some(state) => {
                let mut retired = [0u32; RETIRED_SESSIONS];
                retired[0] = state.boot_id;
                retired[1..].copy_from_slice(&state.retired[..RETIRED_SESSIONS - 1]);
                LinkState { boot_id: header.boot_id, seq: header.seq, retired }
            }
            None => LinkState { boot_id: header.boot_id, seq: header.seq, retired: [0; RETIRED_SESSIONS] },
        }
    }

    /// The store committed `state` (from [`state_after`](Self::state_after)).
    pub fn committed(&mut self, state: LinkState) {
        self.state = Some(state);
        self.stats.accepted += 1;
    }

    /// The acknowledgement to send for `boot_id`'s session: the last committed seq, if any.
    pub fn ack(&self, boot_id: u32) -> Option<u16> {
        self.state.filter(|state| state.boot_id == boot_id).map(|state| state.seq)
    }

    /// The resync nack for a frame of `boot_id`'s session (what was committed, if anything).
    pub fn resync(&self, boot_id: u32) -> Nack {
        Nack::Resync { through: self.ack(boot_id) }
    }
}
