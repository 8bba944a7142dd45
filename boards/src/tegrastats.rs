//! NVIDIA Jetson `tegrastats` lines: one parser for every JetPack format.
//!
//! [`parse_line`] turns one line into a [`Tegrastats`] view that borrows names (zones, rails, engines)
//! from the line and keeps every list in a fixed-capacity `heapless::Vec`: no heap, no copy of the text.
//! Items past a capacity are dropped and counted in [`Tegrastats::overflowed`]; tokens the grammar does
//! not know are skipped and counted in [`Tegrastats::skipped`], so a future field never loses the rest.
//!
//! Accepted grammar (see the fixtures' README): optional `MM-DD-YYYY HH:MM:SS` timestamp; fields
//! separated by one or more spaces; `RAM u/tMB (lfb NxSIZE)`, `SWAP u/tMB (cached NMB)`,
//! `IRAM u/tkB(lfb NkB)`; `CPU [e,...]` with `e` = `load%@MHz`, `load%` or `off`, optionally followed
//! by a shared `@MHz`; engines `NAME x%@MHz`, `NAME x%`, `NAME x%@[a,b]`, `NAME @[a,b]`, `NAME @MHz`,
//! `NAME MHz`, `NAME off`; `MTS fg x% bg y%`; temperatures `zone@valueC` and `zone@cur C/avg C`
//! (negative values, `-256` flags an absent sensor); power rails `NAME cur/avg`, `NAME curmW/avgmW` and
//! `NAME a mW/b mW/c mW`. A rail may share its name with a temperature zone (`GPU 0/0` and `GPU@45C`):
//! temperatures are the names followed directly by `@`.
//!
//! The metric helpers [`Tegrastats::chouette_ram_metrics`], [`Tegrastats::chouette_temperature_metrics`]
//! and [`Tegrastats::datadog_metrics`] hand out [`Metric`]s through a closure, without allocating.

use core::fmt;

use heapless::Vec;

use crate::number::{parse_milli, parse_u32};
use crate::{MilliCelsius, ParseError};

/// Most CPU cores one line may list (12 on AGX Orin; 14 on Thor).
pub const MAX_CPUS: usize = 16;
/// Most engines (`EMC_FREQ`, `GR3D_FREQ`, `APE`, `NVDEC`, ...) one line may list.
pub const MAX_ENGINES: usize = 16;
/// Most frequencies in one `@[a,b,...]` array (one per GPC).
pub const MAX_FREQS: usize = 8;
/// Most temperature zones one line may list.
pub const MAX_TEMPS: usize = 24;
/// Most power rails one line may list.
pub const MAX_RAILS: usize = 16;
/// Most values of one power rail (`cur/avg`, or three on JetPack 7).
pub const MAX_RAIL_VALUES: usize = 3;
/// The reading tegrastats prints for an absent sensor (`CV0@-256C`).
pub const ABSENT_SENSOR: MilliCelsius = MilliCelsius(-256_000);

/// `RAM used/totalMB (lfb NxSIZE)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ram {
    /// Used memory in MiB.
    pub used_mb: u32,
    /// Total memory in MiB.
    pub total_mb: u32,
    /// Largest free block description, when printed.
    pub lfb: Option<Lfb>,
}

/// `(lfb NxSIZE)`: `blocks` free blocks of `block_kb` KiB each (the largest free block size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lfb {
    /// Number of free blocks of the largest size.
    pub blocks: u32,
    /// Size of one block in KiB (`4MB` → 4096, `512kB` → 512).
    pub block_kb: u32,
}

/// `SWAP used/totalMB (cached NMB)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swap {
    /// Used swap in MiB.
    pub used_mb: u32,
    /// Total swap in MiB.
    pub total_mb: u32,
    /// Swap cache in MiB, when printed.
    pub cached_mb: Option<u32>,
}

/// `IRAM used/totalkB(lfb NkB)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iram {
    /// Used IRAM in KiB.
    pub used_kb: u32,
    /// Total IRAM in KiB.
    pub total_kb: u32,
    /// Largest free block in KiB, when printed.
    pub lfb_kb: Option<u32>,
}

/// One entry of `CPU [...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cpu {
    /// The core is offline (`off`).
    Off,
    /// The core is online.
    Online {
        /// Load in percent.
        load_pct: u16,
        /// Frequency in MHz, when printed (per core, or shared after the bracket).
        freq_mhz: Option<u32>,
    },
}

/// An engine field: `EMC_FREQ 4%@1600`, `GR3D_FREQ 63%@[621]`, `APE 150`, `NVDEC off`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine<'a> {
    /// The name as printed (`EMC_FREQ`, `GR3D_FREQ`, `GR3D2_FREQ`, `VIC_FREQ`, `APE`, `NVJPG1`, ...).
    pub name: &'a str,
    /// `true` when printed as `NAME off`.
    pub off: bool,
    /// Utilisation in percent, when printed.
    pub usage_pct: Option<u16>,
    /// Frequencies in MHz: none, one, or one per GPC with the `@[a,b]` form.
    pub freqs_mhz: Vec<u32, MAX_FREQS>,
    /// `true` when the frequencies came as an `@[...]` array.
    pub freq_is_array: bool,
}

impl Engine<'_> {
    /// The first (or only) frequency in MHz.
    pub fn freq_mhz(&self) -> Option<u32> {
        self.freqs_mhz.first().copied()
    }
}

/// `MTS fg x% bg y%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mts {
    /// Foreground percentage.
    pub fg_pct: u16,
    /// Background percentage.
    pub bg_pct: u16,
}

/// A temperature zone: `GPU@36.5C`, `tj@-5C`, or `cpu@45 C/44 C` (JetPack 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Temp<'a> {
    /// The zone name as printed (case kept: `GPU`, `gpu`, `tj`).
    pub zone: &'a str,
    /// The (current) reading.
    pub current: MilliCelsius,
    /// The second reading of the two-value form.
    pub average: Option<MilliCelsius>,
}

impl Temp<'_> {
    /// `true` when the sensor is absent (tegrastats prints `-256C`).
    pub fn is_absent(&self) -> bool {
        self.current == ABSENT_SENSOR
    }
}

/// A power rail: `VDD_IN 5299mW/5299mW`, `POM_5V_IN 1022/1022`, `GPU 0/0`, `NC 0mW/0mW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rail<'a> {
    /// The rail name as printed.
    pub name: &'a str,
    /// The values in mW, in printed order (instant, average, and a third one on JetPack 7).
    pub values_mw: Vec<u32, MAX_RAIL_VALUES>,
}

impl Rail<'_> {
    /// The instant power in mW.
    pub fn current_mw(&self) -> u32 {
        self.values_mw.first().copied().unwrap_or(0)
    }

    /// The average power in mW, when printed.
    pub fn average_mw(&self) -> Option<u32> {
        self.values_mw.get(1).copied()
    }
}

/// One parsed `tegrastats` line, borrowing names from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tegrastats<'a> {
    /// The leading `MM-DD-YYYY HH:MM:SS` timestamp (JetPack 5+), as printed.
    pub timestamp: Option<&'a str>,
    /// `RAM ...`.
    pub ram: Option<Ram>,
    /// `SWAP ...`.
    pub swap: Option<Swap>,
    /// `IRAM ...`.
    pub iram: Option<Iram>,
    /// `CPU [...]`, one entry per core in order.
    pub cpus: Vec<Cpu, MAX_CPUS>,
    /// Engines in printed order.
    pub engines: Vec<Engine<'a>, MAX_ENGINES>,
    /// `MTS fg x% bg y%`.
    pub mts: Option<Mts>,
    /// Temperature zones in printed order.
    pub temps: Vec<Temp<'a>, MAX_TEMPS>,
    /// Power rails in printed order.
    pub rails: Vec<Rail<'a>, MAX_RAILS>,
    /// Tokens that matched no field of the grammar and were skipped.
    pub skipped: u16,
    /// Items dropped because a fixed capacity was full (cores, engines, zones, rails, frequencies).
    pub overflowed: u16,
}

impl<'a> Tegrastats<'a> {
    /// The engine with this exact name.
    pub fn engine(&self, name: &str) -> Option<&Engine<'a>> {
        self.engines.iter().find(|e| e.name == name)
    }

    /// The temperature zone with this exact name.
    pub fn temp(&self, zone: &str) -> Option<&Temp<'a>> {
        self.temps.iter().find(|t| t.zone == zone)
    }

    /// The power rail with this exact name (the first one, for names printed twice like `NC`).
    pub fn rail(&self, name: &str) -> Option<&Rail<'a>> {
        self.rails.iter().find(|r| r.name == name)
    }

    /// Number of `off` cores.
    pub fn inactive_cpus(&self) -> usize {
        self.cpus.iter().filter(|c| matches!(c, Cpu::Off)).count()
    }

    /// The original plugin's `ram` metrics: `Chouette.tegrastats.ram.used` and `.ram.free`
    /// (free = total − used, as the original computes it), in bytes (MB·1024·1024), untagged.
    /// As in the original, a value of 0 is not emitted.
    pub fn chouette_ram_metrics(&self, mut emit: impl FnMut(Metric<'a>)) {
        let Some(ram) = self.ram else { return };
        let used = f64::from(ram.used_mb) * MIB;
        let free = (f64::from(ram.total_mb) - f64::from(ram.used_mb)) * MIB;
        if used != 0.0 {
            emit(Metric::new("Chouette.tegrastats.ram.used", None, used, Unit::Bytes));
        }
        if free != 0.0 {
            emit(Metric::new("Chouette.tegrastats.ram.free", None, free, Unit::Bytes));
        }
    }

    /// The original plugin's `temp` metrics: `Chouette.tegrastats.temperature` in °C tagged
    /// `zone:<name as printed>`, in printed order. `PMIC` zones are excluded case-insensitively (the
    /// original only skipped the exact `PMIC`, so newer L4T's `pmic` leaked). Unlike the original, negative
    /// and zero readings are kept; absent sensors (`-256`) are skipped.
    pub fn chouette_temperature_metrics(&self, mut emit: impl FnMut(Metric<'a>)) {
        for t in &self.temps {
            if t.zone.eq_ignore_ascii_case("PMIC") || t.is_absent() {
                continue;
            }
            emit(Metric::new(
                "Chouette.tegrastats.temperature",
                Some(Tag::new("zone", TagValue::Str(t.zone))),
                t.current.as_celsius(),
                Unit::Celsius,
            ));
        }
    }

    /// Datadog's Jetson check metric set (`nvidia.jetson.*`), all gauges, in Datadog's units:
    /// memory in bytes, frequencies in MHz, usage in percent, temperatures in °C, power in mW.
    ///
    /// `mem.used/.total/.n_lfb/.lfb`, `swap.used/.total/.cached`, `iram.used/.total/.lfb`,
    /// `cpu.usage`/`cpu.freq` tagged `cpu:N` (an `off` core reports 0 and 0), `cpu.inactive_count`,
    /// `cpu.total_count`, `emc.usage`/`emc.freq`, `gpu.usage`/`gpu.freq` (one `gpu.freq` per GPC tagged
    /// `gpc:N` with the `@[a,b]` form), `temp` tagged `zone:NAME` (every zone as printed, `PMIC`
    /// included; absent `-256` sensors skipped, which Datadog's regex also never matches, but other
    /// negative readings kept), `power.instant`/`power.average` tagged `probe:RAIL`.
    pub fn datadog_metrics(&self, mut emit: impl FnMut(Metric<'a>)) {
        let mut g = |name: &'static str, tag: Option<Tag<'a>>, value: f64, unit: Unit| {
            emit(Metric::new(name, tag, value, unit));
        };
        if let Some(ram) = self.ram {
            g("nvidia.jetson.mem.used", None, f64::from(ram.used_mb) * MIB, Unit::Bytes);
            g("nvidia.jetson.mem.total", None, f64::from(ram.total_mb) * MIB, Unit::Bytes);
            if let Some(lfb) = ram.lfb {
                g("nvidia.jetson.mem.n_lfb", None, f64::from(lfb.blocks), Unit::Count);
                g("nvidia.jetson.mem.lfb", None, f64::from(lfb.block_kb) * KIB, Unit::Bytes);
            }
        }
        if let Some(swap) = self.swap {
            g("nvidia.jetson.swap.used", None, f64::from(swap.used_mb) * MIB, Unit::Bytes);
            g("nvidia.jetson.swap.total", None, f64::from(swap.total_mb) * MIB, Unit::Bytes);
            if let Some(cached) = swap.cached_mb {
                g("nvidia.jetson.swap.cached", None, f64::from(cached) * MIB, Unit::Bytes);
            }
        }
        if let Some(iram) = self.iram {
            g("nvidia.jetson.iram.used", None, f64::from(iram.used_kb) * KIB, Unit::Bytes);
            g("nvidia.jetson.iram.total", None, f64::from(iram.total_kb) * KIB, Unit::Bytes);
            if let Some(lfb) = iram.lfb_kb {
                g("nvidia.jetson.iram.lfb", None, f64::from(lfb) * KIB, Unit::Bytes);
            }
        }
        if !self.cpus.is_empty() {
            for (i, cpu) in self.cpus.iter().enumerate() {
                let (load, freq) = match *cpu {
                    Cpu::Off => (0, 0),
                    Cpu::Online { load_pct, freq_mhz } => (load_pct, freq_mhz.unwrap_or(0)),
                };
                let tag = || Some(Tag::new("cpu", TagValue::Index(i)));
                g("nvidia.jetson.cpu.usage", tag(), f64::from(load), Unit::Percent);
                g("nvidia.jetson.cpu.freq", tag(), f64::from(freq), Unit::MegaHertz);
            }
            g("nvidia.jetson.cpu.inactive_count", None, self.inactive_cpus() as f64, Unit::Count);
            g("nvidia.jetson.cpu.total_count", None, self.cpus.len() as f64, Unit::Count);
        }
        for e in &self.engines {
            let (usage, freq) = match e.name {
                "EMC_FREQ" | "EMC" => ("nvidia.jetson.emc.usage", "nvidia.jetson.emc.freq"),
                "GR3D_FREQ" | "GR3D" => ("nvidia.jetson.gpu.usage", "nvidia.jetson.gpu.freq"),
                _ => continue,
            };
            if let Some(u) = e.usage_pct {
                g(usage, None, f64::from(u), Unit::Percent);
            }
            if e.freq_is_array {
                for (i, f) in e.freqs_mhz.iter().enumerate() {
                    g(freq, Some(Tag::new("gpc", TagValue::Index(i))), f64::from(*f), Unit::MegaHertz);
                }
            } else if let Some(f) = e.freq_mhz() {
                g(freq, None, f64::from(f), Unit::MegaHertz);
            }
        }
        for t in &self.temps {
            if !t.is_absent() {
                let tag = Some(Tag::new("zone", TagValue::Str(t.zone)));
                g("nvidia.jetson.temp", tag, t.current.as_celsius(), Unit::Celsius);
            }
        }
        for r in &self.rails {
            let tag = || Some(Tag::new("probe", TagValue::Str(r.name)));
            g("nvidia.jetson.power.instant", tag(), f64::from(r.current_mw()), Unit::MilliWatts);
            if let Some(avg) = r.average_mw() {
                g("nvidia.jetson.power.average", tag(), f64::from(avg), Unit::MilliWatts);
            }
        }
    }
}

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// The unit of a [`Metric`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes.
    Bytes,
    /// A plain count.
    Count,
    /// Percent (0–100).
    Percent,
    /// Megahertz.
    MegaHertz,
    /// Degrees Celsius.
    Celsius,
    /// Milliwatts.
    MilliWatts,
}

/// The value of a [`Tag`]: a name borrowed from the line, or an index (`cpu:3`, `gpc:0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagValue<'a> {
    /// A name from the line.
    Str(&'a str),
    /// An index.
    Index(usize),
}

/// A `key:value` tag; `Display` writes `key:value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The key (`zone`, `cpu`, `gpc`, `probe`).
    pub key: &'static str,
    /// The value.
    pub value: TagValue<'a>,
}

impl<'a> Tag<'a> {
    /// A tag.
    pub const fn new(key: &'static str, value: TagValue<'a>) -> Self {
        Self { key, value }
    }
}

impl fmt::Display for Tag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            TagValue::Str(s) => write!(f, "{}:{}", self.key, s),
            TagValue::Index(i) => write!(f, "{}:{}", self.key, i),
        }
    }
}

/// One gauge produced by the metric helpers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric<'a> {
    /// The metric name.
    pub name: &'static str,
    /// Its single tag, if any.
    pub tag: Option<Tag<'a>>,
    /// The value, in `unit`.
    pub value: f64,
    /// The unit of `value`.
    pub unit: Unit,
}

impl<'a> Metric<'a> {
    fn new(name: &'static str, tag: Option<Tag<'a>>, value: f64, unit: Unit) -> Self {
        Self { name, tag, value, unit }
    }
}

/// Parses one `tegrastats` line (a trailing `\n`/`\r\n` is allowed).
///
/// Errors: [`ParseError::Empty`] for a blank line, [`ParseError::Unrecognised`] when no field of the
/// grammar was found. Anything else unknown is skipped and counted in [`Tegrastats::skipped`].
pub fn parse_line(line: &str) -> Result<Tegrastats<'_>, ParseError> {
    let line = line.trim_end_matches(['\n', '\r']);
    let mut out = Tegrastats::default();
    let mut c = Cursor { s: line, pos: 0 };
    c.skip_spaces();
    if c.at_end() {
        return Err(ParseError::Empty);
    }
    if let Some(ts) = timestamp(&c.s[c.pos..]) {
        out.timestamp = Some(ts);
        c.pos += ts.len();
    }
    let mut recognised = 0u32;
    loop {
        c.skip_spaces();
        if c.at_end() {
            break;
        }
        let start = c.pos;
        if field(&mut c, &mut out).is_some() {
            recognised += 1;
        } else {
            c.pos = start;
            c.take_while(|b| b != b' ');
            out.skipped = out.skipped.saturating_add(1);
        }
    }
    if recognised == 0 {
        return Err(ParseError::Unrecognised);
    }
    Ok(out)
}

/// `MM-DD-YYYY HH:MM:SS` at the start of `s`.
fn timestamp(s: &str) -> Option<&str> {
    const SHAPE: &[u8; 19] = b"00-00-0000 00:00:00";
    let b = s.as_bytes();
    if b.len() < SHAPE.len() || b.get(SHAPE.len()).is_some_and(|&x| x != b' ') {
        return None;
    }
    for (x, p) in b.iter().zip(SHAPE) {
        let ok = if *p == b'0' { x.is_ascii_digit() } else { x == p };
        if !ok {
            return None;
        }
    }
    Some(&s[..SHAPE.len()])
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    /// At the end or before a space: where every field must stop.
    fn at_delim(&self) -> bool {
        matches!(self.peek(), None | Some(b' '))
    }

    fn skip_spaces(&mut self) -> usize {
        let n = self.s.as_bytes()[self.pos..].iter().take_while(|&&b| b == b' ').count();
        self.pos += n;
        n
    }

    /// Returns the (ASCII-delimited) run of bytes satisfying `pred`. Stops only on ASCII bytes, so the
    /// slice always falls on char boundaries.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let bytes = self.s.as_bytes();
        while self.pos < bytes.len() && (!bytes[self.pos].is_ascii() || pred(bytes[self.pos])) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.pos += 1)
    }

    fn eat_str(&mut self, t: &str) -> Option<()> {
        self.s[self.pos..].starts_with(t).then(|| self.pos += t.len())
    }

    fn u32(&mut self) -> Option<u32> {
        let start = self.pos;
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() || !self.s.is_char_boundary(self.pos) || !d.bytes().all(|b| b.is_ascii_digit()) {
            self.pos = start;
            return None;
        }
        parse_u32(d)
    }

    /// Tries `f`; on failure, rewinds.
    fn attempt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.pos;
        let r = f(self);
        if r.is_none() {
            self.pos = start;
        }
        r
    }
}

fn push<T, const N: usize>(v: &mut Vec<T, N>, item: T, overflowed: &mut u16) {
    if v.push(item).is_err() {
        *overflowed = overflowed.saturating_add(1);
    }
}

/// One field at the cursor; `None` when it does not match the grammar (the caller rewinds and skips).
fn field<'a>(c: &mut Cursor<'a>, out: &mut Tegrastats<'a>) -> Option<()> {
    let name = c.take_while(|b| !matches!(b, b' ' | b'@' | b'(' | b'[' | b'/' | b','));
    if name.is_empty() {
        return None;
    }
    if c.eat(b'@').is_some() {
        return temperature(c, name, out);
    }
    if c.skip_spaces() == 0 || c.at_end() {
        return None;
    }
    match name {
        "RAM" => ram(c, out),
        "SWAP" => swap(c, out),
        "IRAM" => iram(c, out),
        "MTS" => mts(c, out),
        "CPU" | "cpu" if c.peek() == Some(b'[') => cpus(c, out),
        _ => engine_or_rail(c, name, out),
    }
}

fn used_total(c: &mut Cursor<'_>, unit: &str) -> Option<(u32, u32)> {
    let used = c.u32()?;
    c.eat(b'/')?;
    let total = c.u32()?;
    c.eat_str(unit)?;
    Some((used, total))
}

fn ram(c: &mut Cursor<'_>, out: &mut Tegrastats<'_>) -> Option<()> {
    let (used_mb, total_mb) = used_total(c, "MB")?;
    c.at_delim().then_some(())?;
    let lfb = c.attempt(|c| {
        c.skip_spaces();
        c.eat_str("(lfb ")?;
        let blocks = c.u32()?;
        c.eat(b'x')?;
        let size = c.u32()?;
        let block_kb = if c.eat_str("MB").is_some() {
            size.checked_mul(1024)?
        } else {
            c.eat_str("kB")?;
            size
        };
        c.eat(b')')?;
        c.at_delim().then_some(Lfb { blocks, block_kb })
    });
    out.ram = Some(Ram { used_mb, total_mb, lfb });
    Some(())
}

fn swap(c: &mut Cursor<'_>, out: &mut Tegrastats<'_>) -> Option<()> {
    let (used_mb, total_mb) = used_total(c, "MB")?;
    c.at_delim().then_some(())?;
    let cached_mb = c.attempt(|c| {
        c.skip_spaces();
        c.eat_str("(cached ")?;
        let v = c.u32()?;
        c.eat_str("MB)")?;
        c.at_delim().then_some(v)
    });
    out.swap = Some(Swap { used_mb, total_mb, cached_mb });
    Some(())
}

fn iram(c: &mut Cursor<'_>, out: &mut Tegrastats<'_>) -> Option<()> {
    let (used_kb, total_kb) = used_total(c, "kB")?;
    let lfb_kb = c.attempt(|c| {
        c.skip_spaces();
        c.eat_str("(lfb ")?;
        let v = c.u32()?;
        c.eat_str("kB)")?;
        c.at_delim().then_some(v)
    });
    c.at_delim().then_some(())?;
    out.iram = Some(Iram { used_kb, total_kb, lfb_kb });
    Some(())
}

fn pct(c: &mut Cursor<'_>) -> Option<u16> {
    let v = c.u32()?;
    c.eat(b'%')?;
    u16::try_from(v).ok()
}

fn mts(c: &mut Cursor<'_>, out: &mut Tegrastats<'_>) -> Option<()> {
    c.eat_str("fg")?;
    (c.skip_spaces() > 0).then_some(())?;
    let fg_pct = pct(c)?;
    (c.skip_spaces() > 0).then_some(())?;
    c.eat_str("bg")?;
    (c.skip_spaces() > 0).then_some(())?;
    let bg_pct = pct(c)?;
    c.at_delim().then_some(())?;
    out.mts = Some(Mts { fg_pct, bg_pct });
    Some(())
}

fn cpus(c: &mut Cursor<'_>, out: &mut Tegrastats<'_>) -> Option<()> {
    c.eat(b'[')?;
    let mut list: Vec<Cpu, MAX_CPUS> = Vec::new();
    let mut overflowed = 0u16;
    loop {
        let cpu = if c.eat_str("off").is_some() {
            Cpu::Off
        } else {
            let load_pct = pct(c)?;
            let freq_mhz = if c.eat(b'@').is_some() { Some(c.u32()?) } else { None };
            Cpu::Online { load_pct, freq_mhz }
        };
        push(&mut list, cpu, &mut overflowed);
        if c.eat(b',').is_none() {
            break;
        }
    }
    c.eat(b']')?;
    if c.eat(b'@').is_some() {
        let shared = c.u32()?;
        for cpu in list.iter_mut() {
            if let Cpu::Online { freq_mhz: f @ None, .. } = cpu {
                *f = Some(shared);
            }
        }
    }
    c.at_delim().then_some(())?;
    out.cpus = list;
    out.overflowed = out.overflowed.saturating_add(overflowed);
    Some(())
}

/// `@MHz` or `@[MHz,...]` (after the `@`).
fn freqs(c: &mut Cursor<'_>, overflowed: &mut u16) -> Option<(Vec<u32, MAX_FREQS>, bool)> {
    let mut v = Vec::new();
    if c.eat(b'[').is_some() {
        loop {
            push(&mut v, c.u32()?, overflowed);
            if c.eat(b',').is_none() {
                break;
            }
        }
        c.eat(b']')?;
        Some((v, true))
    } else {
        push(&mut v, c.u32()?, overflowed);
        Some((v, false))
    }
}

/// An optional `mW` unit, with or without a space before it.
fn milliwatt_unit(c: &mut Cursor<'_>) -> bool {
    c.attempt(|c| {
        c.skip_spaces();
        c.eat_str("mW")
    })
    .is_some()
}

fn engine_or_rail<'a>(c: &mut Cursor<'a>, name: &'a str, out: &mut Tegrastats<'a>) -> Option<()> {
    let mut engine =
        Engine { name, off: false, usage_pct: None, freqs_mhz: Vec::new(), freq_is_array: false };
    let mut overflowed = 0u16;
    if c.eat_str("off").is_some() {
        engine.off = true;
    } else if c.eat(b'@').is_some() {
        (engine.freqs_mhz, engine.freq_is_array) = freqs(c, &mut overflowed)?;
    } else {
        let first = c.u32()?;
        if c.eat(b'%').is_some() {
            engine.usage_pct = Some(u16::try_from(first).ok()?);
            if c.eat(b'@').is_some() {
                (engine.freqs_mhz, engine.freq_is_array) = freqs(c, &mut overflowed)?;
            }
        } else {
            let unit = milliwatt_unit(c);
            if unit || c.peek() == Some(b'/') {
                let mut values = Vec::new();
                push(&mut values, first, &mut overflowed);
                while c.eat(b'/').is_some() {
                    c.skip_spaces();
                    push(&mut values, c.u32()?, &mut overflowed);
                    milliwatt_unit(c);
                }
                c.at_delim().then_some(())?;
                push(&mut out.rails, Rail { name, values_mw: values }, &mut out.overflowed);
                out.overflowed = out.overflowed.saturating_add(overflowed);
                return Some(());
            }
            // `NAME MHz`: a frequency only (`APE 150`, `VIC_FREQ 729`).
            push(&mut engine.freqs_mhz, first, &mut overflowed);
        }
    }
    c.at_delim().then_some(())?;
    push(&mut out.engines, engine, &mut out.overflowed);
    out.overflowed = out.overflowed.saturating_add(overflowed);
    Some(())
}

/// A reading: `-?[0-9.]+`, optional spaces, `C`.
fn celsius(c: &mut Cursor<'_>) -> Option<MilliCelsius> {
    let num = c.take_while(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    let v = parse_milli(num)?;
    c.attempt(|c| {
        c.skip_spaces();
        c.eat(b'C')
    })?;
    Some(MilliCelsius(v))
}

fn temperature<'a>(c: &mut Cursor<'a>, zone: &'a str, out: &mut Tegrastats<'a>) -> Option<()> {
    let current = celsius(c)?;
    let average = if c.eat(b'/').is_some() {
        c.skip_spaces();
        Some(celsius(c)?)
    } else {
        None
    };
    c.at_delim().then_some(())?;
    push(&mut out.temps, Temp { zone, current, average }, &mut out.overflowed);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(load_pct: u16, freq: u32) -> Cpu {
        Cpu::Online { load_pct, freq_mhz: Some(freq) }
    }

    #[test]
    fn engines_every_form() {
        let t = parse_line(
            "EMC_FREQ 4%@1600 GR3D_FREQ 0% GR3D2_FREQ 12%@[306,306] X @[1000,1000,1000] \
             EMC_FREQ2 @2133 APE 150 VIC_FREQ 729 NVDEC off NVENC 1164",
        )
        .unwrap();
        assert_eq!(t.skipped, 0);
        let e = t.engine("EMC_FREQ").unwrap();
        assert_eq!((e.usage_pct, e.freq_mhz(), e.freq_is_array, e.off), (Some(4), Some(1600), false, false));
        let e = t.engine("GR3D_FREQ").unwrap();
        assert_eq!((e.usage_pct, e.freq_mhz()), (Some(0), None));
        let e = t.engine("GR3D2_FREQ").unwrap();
        assert_eq!((e.usage_pct, &e.freqs_mhz[..], e.freq_is_array), (Some(12), &[306, 306][..], true));
        let e = t.engine("X").unwrap();
        assert_eq!((e.usage_pct, &e.freqs_mhz[..]), (None, &[1000, 1000, 1000][..]));
        assert_eq!(t.engine("EMC_FREQ2").unwrap().freq_mhz(), Some(2133));
        assert_eq!(t.engine("APE").unwrap().freq_mhz(), Some(150));
        assert_eq!(t.engine("VIC_FREQ").unwrap().freq_mhz(), Some(729));
        assert!(t.engine("NVDEC").unwrap().off);
        assert_eq!(t.engine("NVENC").unwrap().freq_mhz(), Some(1164));
        assert!(t.rails.is_empty());
    }

    #[test]
    fn temperatures_negative_absent_two_values() {
        let t = parse_line("CV0@-256C GPU@-256C tj@-5.5C cpu@45.5 C/44.25 C soc@40C/39C").unwrap();
        assert_eq!(t.skipped, 0);
        assert_eq!(t.temps.len(), 5);
        assert!(t.temp("CV0").unwrap().is_absent());
        assert_eq!(t.temp("tj").unwrap().current, MilliCelsius(-5500));
        assert!(!t.temp("tj").unwrap().is_absent());
        let cpu = t.temp("cpu").unwrap();
        assert_eq!((cpu.current, cpu.average), (MilliCelsius(45500), Some(MilliCelsius(44250))));
        assert_eq!(t.temp("soc").unwrap().average, Some(MilliCelsius(39000)));
        let mut zones = std::vec::Vec::new();
        t.datadog_metrics(|m| zones.push(std::format!("{}", m.tag.unwrap())));
        assert_eq!(zones, ["zone:tj", "zone:cpu", "zone:soc"]);
    }

    #[test]
    fn rails_every_form() {
        let t = parse_line(
            "VDD_IN 5299mW/5299mW POM_5V_IN 1022/1022 VDD_GPU 1200 mW/1100 mW/1500 mW NC 0mW/0mW NC 0mW/0mW \
             GPU 0/0 GPU@45C",
        )
        .unwrap();
        assert_eq!(t.skipped, 0);
        assert_eq!(&t.rail("VDD_IN").unwrap().values_mw[..], &[5299, 5299]);
        assert_eq!(&t.rail("POM_5V_IN").unwrap().values_mw[..], &[1022, 1022]);
        assert_eq!(&t.rail("VDD_GPU").unwrap().values_mw[..], &[1200, 1100, 1500]);
        assert_eq!(t.rails.iter().filter(|r| r.name == "NC").count(), 2);
        assert_eq!(t.rail("GPU").unwrap().current_mw(), 0);
        assert_eq!(t.temp("GPU").unwrap().current, MilliCelsius(45000));
        assert!(t.engines.is_empty());
    }

    #[test]
    fn memory_forms_and_spacing() {
        let t = parse_line(
            "  RAM 4722/7844MB   (lfb 1x512kB)  SWAP 0/3922MB (cached 0MB) IRAM 0/252kB (lfb 252kB)  CPU \
             [17%,13%,off,5%]@408  MTS fg 1% bg 2%\r\n",
        )
        .unwrap();
        assert_eq!(t.skipped, 0);
        assert_eq!(
            t.ram,
            Some(Ram { used_mb: 4722, total_mb: 7844, lfb: Some(Lfb { blocks: 1, block_kb: 512 }) })
        );
        assert_eq!(t.swap, Some(Swap { used_mb: 0, total_mb: 3922, cached_mb: Some(0) }));
        assert_eq!(t.iram, Some(Iram { used_kb: 0, total_kb: 252, lfb_kb: Some(252) }));
        assert_eq!(&t.cpus[..], &[cpu(17, 408), cpu(13, 408), Cpu::Off, cpu(5, 408)]);
        assert_eq!(t.mts, Some(Mts { fg_pct: 1, bg_pct: 2 }));
    }

    #[test]
    fn cores_without_freq_and_capacity() {
        let t = parse_line("CPU [1%,2%]").unwrap();
        assert_eq!(
            &t.cpus[..],
            &[Cpu::Online { load_pct: 1, freq_mhz: None }, Cpu::Online { load_pct: 2, freq_mhz: None }]
        );
        let mut line: heapless::String<512> = heapless::String::new();
        line.push_str("CPU [").unwrap();
        for i in 0..20 {
            if i > 0 {
                line.push(',').unwrap();
            }
            line.push_str("1%@100").unwrap();
        }
        line.push(']').unwrap();
        let t = parse_line(&line).unwrap();
        assert_eq!((t.cpus.len(), t.overflowed), (MAX_CPUS, 4));
    }

    #[test]
    fn unknown_tokens_are_skipped_and_errors() {
        assert_eq!(parse_line(""), Err(ParseError::Empty));
        assert_eq!(parse_line("  \n"), Err(ParseError::Empty));
        assert_eq!(parse_line("Hello world!"), Err(ParseError::Unrecognised));
        let t = parse_line("VRAM 6266/7860MB CPU [20%@345]").unwrap();
        assert_eq!(t.ram, None);
        assert_eq!(t.skipped, 2);
        assert_eq!(&t.cpus[..], &[cpu(20, 345)]);
        let t = parse_line("RAM 1/2MB FOO@bar GPU@45.5.5C").unwrap();
        assert_eq!(t.skipped, 2);
        assert!(parse_line("é@1C ÿ 1é/2 RAM é").is_ok());
        assert_eq!(t.ram.unwrap().used_mb, 1);
    }

    #[test]
    fn old_l4t_shared_cpu_freq_and_short_engine_names() {
        // L4T 28 (TX1): lower-case `cpu`, one frequency after the bracket, `EMC`/`GR3D` names.
        let t = parse_line(
            "RAM 3468/3983MB (lfb 48x4MB) SWAP 873/8192MB (cached 295MB) cpu [17%,13%,29%,5%]@408 EMC 1%@408 \
             APE 25 GR3D 3%@76",
        )
        .unwrap();
        assert_eq!(t.skipped, 0);
        assert_eq!(&t.cpus[..], &[cpu(17, 408), cpu(13, 408), cpu(29, 408), cpu(5, 408)]);
        let mut dd = std::vec::Vec::new();
        t.datadog_metrics(|m| dd.push((m.name, m.value)));
        assert!(dd.contains(&("nvidia.jetson.emc.freq", 408.0)));
        assert!(dd.contains(&("nvidia.jetson.gpu.usage", 3.0)));
    }

    #[test]
    fn gpu_frequency_array_without_usage_is_tagged_per_gpc() {
        let t = parse_line("GR3D_FREQ @[1000,1001] EMC_FREQ @2133").unwrap();
        let mut dd = std::vec::Vec::new();
        t.datadog_metrics(|m| dd.push((m.name, m.tag.map(|t| std::format!("{t}")), m.value)));
        assert_eq!(
            dd,
            [
                ("nvidia.jetson.gpu.freq", Some("gpc:0".into()), 1000.0),
                ("nvidia.jetson.gpu.freq", Some("gpc:1".into()), 1001.0),
                ("nvidia.jetson.emc.freq", None, 2133.0),
            ]
        );
    }

    #[test]
    fn memory_budget() {
        // Lives on the stack of the caller, once per line (2736 bytes on 64-bit): small enough for a
        // firmware task.
        assert!(
            core::mem::size_of::<Tegrastats<'_>>() <= 3 * 1024,
            "{}",
            core::mem::size_of::<Tegrastats<'_>>()
        );
    }

    #[test]
    fn timestamp_prefix() {
        let t = parse_line("11-15-2024 08:38:09 RAM 1/2MB").unwrap();
        assert_eq!(t.timestamp, Some("11-15-2024 08:38:09"));
        assert_eq!(parse_line("11-15-2024 RAM 1/2MB").unwrap().skipped, 1);
    }
}
