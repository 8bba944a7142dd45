//! Raspberry Pi sensors: thermal zone sysfs, `vcgencmd`, DS18B20 `w1_slave`, and I2C drivers.
//!
//! The text parsers take what the agent read (under its injectable root) and return values; the I2C
//! drivers ([`Tmp102`], [`Lm75`], [`Bme280`]) are generic over `embedded_hal::i2c::I2c`, so the same code
//! runs on Linux (`linux-embedded-hal`'s `I2cdev`) and on a microcontroller.

use core::fmt;
use core::ops::RangeInclusive;

use embedded_hal::i2c::I2c;

use crate::number::{parse_i64, parse_milli, parse_u32};
use crate::{MilliCelsius, ParseError};

/// Parses a thermal zone's `temp` (`/sys/class/thermal/thermal_zoneN/temp`): integer millidegrees.
/// The same format serves the DS18B20 `temperature` attribute.
pub fn parse_thermal_zone(text: &str) -> Result<MilliCelsius, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ParseError::Empty);
    }
    let v = parse_i64(t).ok_or(ParseError::InvalidNumber("temp"))?;
    i32::try_from(v).map(MilliCelsius).map_err(|_| ParseError::InvalidNumber("temp"))
}

/// Parses `vcgencmd measure_temp` output: `temp=48.3'C`.
pub fn parse_measure_temp(text: &str) -> Result<MilliCelsius, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ParseError::Empty);
    }
    let v = t.strip_prefix("temp=").ok_or(ParseError::Missing("temp="))?;
    let v = v.strip_suffix("'C").or_else(|| v.strip_suffix('C')).ok_or(ParseError::Missing("'C"))?;
    parse_milli(v).map(MilliCelsius).ok_or(ParseError::InvalidNumber("temp"))
}

/// `vcgencmd get_throttled`, each bit as its own flag (Raspberry Pi documentation, "get_throttled").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttled {
    /// The raw bit field.
    pub raw: u32,
    /// Bit 0: under-voltage detected now.
    pub under_voltage: bool,
    /// Bit 1: ARM frequency capped now.
    pub freq_capped: bool,
    /// Bit 2: currently throttled.
    pub throttled: bool,
    /// Bit 3: soft temperature limit active now.
    pub soft_temp_limit: bool,
    /// Bit 16: under-voltage has occurred since boot.
    pub under_voltage_occurred: bool,
    /// Bit 17: ARM frequency capping has occurred.
    pub freq_capped_occurred: bool,
    /// Bit 18: throttling has occurred.
    pub throttled_occurred: bool,
    /// Bit 19: soft temperature limit has occurred.
    pub soft_temp_limit_occurred: bool,
}

impl Throttled {
    /// Decodes the bit field.
    pub fn from_bits(raw: u32) -> Self {
        let bit = |n: u32| raw & (1 << n) != 0;
        Self {
            raw,
            under_voltage: bit(0),
            freq_capped: bit(1),
            throttled: bit(2),
            soft_temp_limit: bit(3),
            under_voltage_occurred: bit(16),
            freq_capped_occurred: bit(17),
            throttled_occurred: bit(18),
            soft_temp_limit_occurred: bit(19),
        }
    }

    /// Every flag with a stable snake_case name, for one metric (or tag) per flag.
    pub const fn flags(&self) -> [(&'static str, bool); 8] {
        [
            ("under_voltage", self.under_voltage),
            ("freq_capped", self.freq_capped),
            ("throttled", self.throttled),
            ("soft_temp_limit", self.soft_temp_limit),
            ("under_voltage_occurred", self.under_voltage_occurred),
            ("freq_capped_occurred", self.freq_capped_occurred),
            ("throttled_occurred", self.throttled_occurred),
            ("soft_temp_limit_occurred", self.soft_temp_limit_occurred),
        ]
    }
}

/// Parses `vcgencmd get_throttled` output: `throttled=0x50005` (hex; a plain decimal is accepted too).
pub fn parse_throttled(text: &str) -> Result<Throttled, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ParseError::Empty);
    }
    let v = t.strip_prefix("throttled=").ok_or(ParseError::Missing("throttled="))?;
    let raw = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None => parse_u32(v),
    };
    raw.map(Throttled::from_bits).ok_or(ParseError::InvalidNumber("throttled"))
}

/// Why a DS18B20 `w1_slave` read was rejected; each reason is counted apart ([`W1ErrorCounts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum W1Error {
    /// The read was empty: the kernel's conversion failed (an I/O error).
    Empty,
    /// The scratchpad CRC did not match (`crc=.. NO`).
    CrcMismatch,
    /// `t=85000` with scratchpad byte 6 = `0x0C`: the power-on reset value, the conversion never ran.
    PowerOnReset,
    /// An all-zero scratchpad: data line stuck low or the sensor partly unplugged.
    AllZero,
    /// The text does not have the two-line `w1_slave` shape.
    Malformed,
}

impl fmt::Display for W1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            W1Error::Empty => "empty read (conversion failed)",
            W1Error::CrcMismatch => "scratchpad CRC mismatch",
            W1Error::PowerOnReset => "power-on reset value 85000 (conversion did not run)",
            W1Error::AllZero => "all-zero scratchpad (sensor unplugged?)",
            W1Error::Malformed => "malformed w1_slave text",
        })
    }
}

impl core::error::Error for W1Error {}

/// Counts of rejected `w1_slave` reads, one counter per [`W1Error`] reason (reported as self-metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct W1ErrorCounts {
    /// [`W1Error::Empty`] count.
    pub empty: u64,
    /// [`W1Error::CrcMismatch`] count.
    pub crc_mismatch: u64,
    /// [`W1Error::PowerOnReset`] count.
    pub power_on_reset: u64,
    /// [`W1Error::AllZero`] count.
    pub all_zero: u64,
    /// [`W1Error::Malformed`] count.
    pub malformed: u64,
}

impl W1ErrorCounts {
    /// Counts one rejection.
    pub fn record(&mut self, e: W1Error) {
        let c = match e {
            W1Error::Empty => &mut self.empty,
            W1Error::CrcMismatch => &mut self.crc_mismatch,
            W1Error::PowerOnReset => &mut self.power_on_reset,
            W1Error::AllZero => &mut self.all_zero,
            W1Error::Malformed => &mut self.malformed,
        };
        *c = c.saturating_add(1);
    }

    /// Every counter with a stable snake_case reason name.
    pub const fn reasons(&self) -> [(&'static str, u64); 5] {
        [
            ("empty", self.empty),
            ("crc_mismatch", self.crc_mismatch),
            ("power_on_reset", self.power_on_reset),
            ("all_zero", self.all_zero),
            ("malformed", self.malformed),
        ]
    }
}

/// Parses the 9 hex scratchpad bytes at the start of a `w1_slave` line.
fn scratchpad(line: &str) -> Option<[u8; 9]> {
    let mut out = [0u8; 9];
    let mut words = line.split_ascii_whitespace();
    for b in out.iter_mut() {
        let w = words.next()?;
        if w.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(w, 16).ok()?;
    }
    Some(out)
}

/// Parses a DS18B20 `w1_slave` read (`/sys/bus/w1/devices/28-*/w1_slave`).
///
/// Line 1 is the scratchpad just read with `: crc=XX YES|NO`; line 2 holds `t=<millidegrees>`.
/// Rejects, each with its own reason: an empty read, CRC `NO`, the 85000 power-on value (scratchpad byte
/// 6 = `0x0C`; a real 85.000 °C with another byte 6 is accepted) and an all-zero scratchpad. Negative
/// temperatures are accepted.
pub fn parse_w1_slave(text: &str) -> Result<MilliCelsius, W1Error> {
    if text.trim().is_empty() {
        return Err(W1Error::Empty);
    }
    let mut lines = text.lines();
    let first = lines.next().ok_or(W1Error::Malformed)?;
    let second = lines.next().ok_or(W1Error::Malformed)?;
    let (bytes, crc) = first.split_once(": crc=").ok_or(W1Error::Malformed)?;
    match crc.split_ascii_whitespace().nth(1) {
        Some("YES") => {}
        Some("NO") => return Err(W1Error::CrcMismatch),
        _ => return Err(W1Error::Malformed),
    }
    let pad = scratchpad(bytes).ok_or(W1Error::Malformed)?;
    let t = second.rsplit_once("t=").ok_or(W1Error::Malformed)?.1.trim();
    let t = parse_i64(t).and_then(|v| i32::try_from(v).ok()).ok_or(W1Error::Malformed)?;
    if pad == [0; 9] {
        return Err(W1Error::AllZero);
    }
    if t == 85_000 && pad[6] == 0x0C {
        return Err(W1Error::PowerOnReset);
    }
    Ok(MilliCelsius(t))
}

/// Default TMP102 address (ADD0 to GND).
pub const TMP102_ADDRESS: u8 = 0x48;
/// Default LM75 address (A2..A0 to GND).
pub const LM75_ADDRESS: u8 = 0x48;
/// BME280 address with SDO to GND (0x77 with SDO to VDDIO).
pub const BME280_ADDRESS: u8 = 0x76;

/// What a TMP102 can measure (datasheet: −55 °C to 150 °C, the top in extended mode); a reading
/// outside is a garbled transfer.
pub const TMP102_RANGE: RangeInclusive<MilliCelsius> = MilliCelsius(-55_000)..=MilliCelsius(150_000);
/// What an LM75 (and the LM75A/B) can measure: −55 °C to 125 °C.
pub const LM75_RANGE: RangeInclusive<MilliCelsius> = MilliCelsius(-55_000)..=MilliCelsius(125_000);
/// The BME280's operating range for temperature: −40 °C to 85 °C.
pub const BME280_TEMPERATURE_RANGE: RangeInclusive<MilliCelsius> =
    MilliCelsius(-40_000)..=MilliCelsius(85_000);
/// The BME280's operating range for pressure, 300 hPa to 1100 hPa, in pascals × 256 (the
/// compensation's Q24.8).
pub const BME280_PRESSURE_RANGE_PA_X256: RangeInclusive<u32> = 30_000 * 256..=110_000 * 256;

/// Why an I2C sensor read gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SensorError<E> {
    /// The bus failed: no acknowledge (nothing at the address), arbitration lost, an OS error.
    I2c(E),
    /// The chip id register did not hold the expected id (BME280: 0xD0 reads 0x60; a BMP280
    /// answers 0x58).
    WrongChip(u8),
    /// The chip reported a skipped measurement (BME280: 0x80000 or 0x8000 in its data registers,
    /// as after a reset: it is not measuring).
    MeasurementSkipped,
    /// A value that is outside what the sensor measures, or bits the chip never sets were set: a
    /// garbled transfer or a garbage calibration. Names the quantity.
    Implausible(&'static str),
}

impl<E: fmt::Debug> fmt::Display for SensorError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SensorError::I2c(e) => write!(f, "I2C error: {e:?}"),
            SensorError::WrongChip(id) => write!(f, "chip id {id:#04x}, expected 0x60"),
            SensorError::MeasurementSkipped => f.write_str("measurement skipped (the chip is not measuring)"),
            SensorError::Implausible(what) => write!(f, "implausible {what} (garbled read?)"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for SensorError<E> {}

const REG_TEMP: u8 = 0x00;

/// TI TMP102 driver: temperature register 0x00, 12-bit (or 13-bit extended mode), 0.0625 °C per LSB.
#[derive(Debug)]
pub struct Tmp102<I> {
    i2c: I,
    address: u8,
}

impl<I: I2c> Tmp102<I> {
    /// A driver for the sensor at `address` (0x48–0x4B).
    pub fn new(i2c: I, address: u8) -> Self {
        Self { i2c, address }
    }

    /// Reads the temperature (truncated to whole millidegrees). Extended mode (the LSB's bit 0 set) is
    /// detected from the reading itself; a garbled reading is refused ([`decode_tmp102`]).
    pub fn read_temperature(&mut self) -> Result<MilliCelsius, SensorError<I::Error>> {
        let mut b = [0u8; 2];
        self.i2c.write_read(self.address, &[REG_TEMP], &mut b).map_err(SensorError::I2c)?;
        decode_tmp102(b).ok_or(SensorError::Implausible("temperature"))
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }
}

/// Converts the two TMP102 temperature bytes (MSB first) to millidegrees, without checks.
pub fn tmp102_millicelsius(b: [u8; 2]) -> MilliCelsius {
    let raw = i16::from_be_bytes(b);
    let counts = if b[1] & 1 == 1 { raw >> 3 } else { raw >> 4 };
    MilliCelsius(i32::from(counts) * 625 / 10)
}

/// The two TMP102 temperature bytes as millidegrees, or `None` for bytes the chip never sends: the
/// bits under the reading are 0 (`0000` in normal mode, `001` in extended mode, datasheet 7.5.4),
/// and the value is within [`TMP102_RANGE`]. A bus stuck high (`FF FF`) is refused.
pub fn decode_tmp102(b: [u8; 2]) -> Option<MilliCelsius> {
    let extended = b[1] & 1 == 1;
    let well_formed = if extended { b[1] & 0b111 == 0b001 } else { b[1] & 0b1111 == 0 };
    let t = tmp102_millicelsius(b);
    (well_formed && TMP102_RANGE.contains(&t)).then_some(t)
}

/// LM75 resolution: the original 9-bit part or the 11-bit LM75A/LM75B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lm75Resolution {
    /// Original LM75: 9 bits, 0.5 °C per LSB.
    Bits9,
    /// NXP LM75A/LM75B: 11 bits, 0.125 °C per LSB.
    Bits11,
}

/// LM75 / LM75A / LM75B driver: temperature register 0x00, two's complement, left-justified.
#[derive(Debug)]
pub struct Lm75<I> {
    i2c: I,
    address: u8,
    resolution: Lm75Resolution,
}

impl<I: I2c> Lm75<I> {
    /// A driver for the sensor at `address` (0x48–0x4F).
    pub fn new(i2c: I, address: u8, resolution: Lm75Resolution) -> Self {
        Self { i2c, address, resolution }
    }

    /// Reads the temperature; a value outside [`LM75_RANGE`] is refused as garbled.
    pub fn read_temperature(&mut self) -> Result<MilliCelsius, SensorError<I::Error>> {
        let mut b = [0u8; 2];
        self.i2c.write_read(self.address, &[REG_TEMP], &mut b).map_err(SensorError::I2c)?;
        let t = lm75_millicelsius(b, self.resolution);
        if LM75_RANGE.contains(&t) {
            Ok(t)
        } else {
            Err(SensorError::Implausible("temperature"))
        }
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }
}

/// Converts the two LM75 temperature bytes (MSB first) to millidegrees.
pub fn lm75_millicelsius(b: [u8; 2], resolution: Lm75Resolution) -> MilliCelsius {
    let raw = i16::from_be_bytes(b);
    MilliCelsius(match resolution {
        Lm75Resolution::Bits9 => i32::from(raw >> 7) * 500,
        Lm75Resolution::Bits11 => i32::from(raw >> 5) * 125,
    })
}

/// BME280 calibration (the chip's trimming words, datasheet 4.2.2): `dig_T1..3` and `dig_P1..9`
/// (registers 0x88–0x9F, little endian), `dig_H1` (0xA1) and `dig_H2..6` (0xE1–0xE7, two of them
/// 12-bit words sharing 0xE5). Read once per sensor ([`Bme280::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bme280Calibration {
    /// `dig_T1` (u16).
    pub t1: u16,
    /// `dig_T2` (i16).
    pub t2: i16,
    /// `dig_T3` (i16).
    pub t3: i16,
    /// `dig_P1` (u16).
    pub p1: u16,
    /// `dig_P2..9` (i16), `p[0]` is `dig_P2`.
    pub p: [i16; 8],
    /// `dig_H1` (u8).
    pub h1: u8,
    /// `dig_H2` (i16).
    pub h2: i16,
    /// `dig_H3` (u8).
    pub h3: u8,
    /// `dig_H4` (12-bit signed: 0xE4 is its top 8 bits, 0xE5's low nibble the rest).
    pub h4: i16,
    /// `dig_H5` (12-bit signed: 0xE6 is its top 8 bits, 0xE5's high nibble the rest).
    pub h5: i16,
    /// `dig_H6` (i8).
    pub h6: i8,
}

/// The temperature and pressure calibration block, 0x88–0xA1 (`dig_H1` is its last byte).
pub const BME280_CALIBRATION_TP_BYTES: usize = 26;
/// The humidity calibration block, 0xE1–0xE7.
pub const BME280_CALIBRATION_H_BYTES: usize = 7;

impl Bme280Calibration {
    /// Decodes the 26 bytes read from 0x88 and the 7 read from 0xE1.
    pub fn from_registers(
        tp: [u8; BME280_CALIBRATION_TP_BYTES],
        h: [u8; BME280_CALIBRATION_H_BYTES],
    ) -> Self {
        let word = |i: usize| [tp[i], tp[i + 1]];
        let mut p = [0i16; 8];
        for (k, v) in p.iter_mut().enumerate() {
            *v = i16::from_le_bytes(word(8 + 2 * k));
        }
        let top = |b: u8| i16::from(i8::from_le_bytes([b])) << 4;
        Self {
            t1: u16::from_le_bytes(word(0)),
            t2: i16::from_le_bytes(word(2)),
            t3: i16::from_le_bytes(word(4)),
            p1: u16::from_le_bytes(word(6)),
            p,
            h1: tp[25],
            h2: i16::from_le_bytes([h[0], h[1]]),
            h3: h[2],
            h4: top(h[3]) | i16::from(h[4] & 0x0F),
            h5: top(h[5]) | i16::from(h[4] >> 4),
            h6: i8::from_le_bytes([h[6]]),
        }
    }

    /// The datasheet's integer temperature compensation: returns `(t_fine, temperature in 0.01 °C)`
    /// (`t_fine` is what pressure and humidity compensation need).
    ///
    /// Computed in `i64`: the datasheet's `i32` arithmetic overflows for calibration words a real
    /// chip does not hold (a bad bus read), and gives the same results for real ones. Results
    /// outside `i32` saturate.
    pub fn compensate_temperature(&self, adc_t: i32) -> (i32, i32) {
        let t1 = i64::from(self.t1);
        let t2 = i64::from(self.t2);
        let t3 = i64::from(self.t3);
        let adc_t = i64::from(adc_t);
        let var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11;
        let d = (adc_t >> 4) - t1;
        let var2 = (((d * d) >> 12) * t3) >> 14;
        let t_fine = var1 + var2;
        (saturate_i32(t_fine.into()), saturate_i32(((t_fine * 5 + 128) >> 8).into()))
    }

    /// The datasheet's 64-bit integer pressure compensation (`BME280_compensate_P_int64`):
    /// pascals × 256 (Q24.8). 0 when the calibration would divide by zero or is garbage.
    ///
    /// Computed in `i128`: for a real chip's words every intermediate fits the datasheet's `i64`,
    /// so the results are the same; garbage words cannot overflow. The result saturates to `u32`.
    pub fn compensate_pressure(&self, adc_p: i32, t_fine: i32) -> u32 {
        let [p2, p3, p4, p5, p6, p7, p8, p9] = self.p.map(i128::from);
        let mut var1 = i128::from(t_fine) - 128_000;
        let mut var2 = var1 * var1 * p6;
        var2 += (var1 * p5) << 17;
        var2 += p4 << 35;
        var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12);
        var1 = (((1i128 << 47) + var1) * i128::from(self.p1)) >> 33;
        if var1 == 0 {
            return 0;
        }
        let mut p = 1_048_576 - i128::from(adc_p);
        p = (((p << 31) - var2) * 3125) / var1;
        if p.unsigned_abs() > 1 << 40 {
            // A real chip's is about 2^33 here; only garbage words get this far (and would
            // overflow even i128 below).
            return 0;
        }
        let var1 = (p9 * (p >> 13) * (p >> 13)) >> 25;
        let var2 = (p8 * p) >> 19;
        p = ((p + var1 + var2) >> 8) + (p7 << 4);
        u32::try_from(p.max(0)).unwrap_or(u32::MAX)
    }

    /// The datasheet's integer humidity compensation (`bme280_compensate_H_int32`): % RH × 1024
    /// (Q22.10), clamped to 0–100 % as the datasheet does. Computed in `i128` (garbage words
    /// cannot overflow; real ones give the datasheet's results). `adc_h` is the 16-bit reading.
    pub fn compensate_humidity(&self, adc_h: u16, t_fine: i32) -> u32 {
        let (h1, h2, h3) = (i128::from(self.h1), i128::from(self.h2), i128::from(self.h3));
        let (h4, h5, h6) = (i128::from(self.h4), i128::from(self.h5), i128::from(self.h6));
        let adc_h = i128::from(adc_h);
        let x = i128::from(t_fine) - 76_800;
        let first = ((adc_h << 14) - (h4 << 20) - (h5 * x) + 16_384) >> 15;
        let a = (x * h6) >> 10;
        let b = ((x * h3) >> 11) + 32_768;
        let second = (((((a * b) >> 10) + 2_097_152) * h2) + 8192) >> 14;
        let mut v = first * second;
        v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4;
        let v = v.clamp(0, 419_430_400);
        // In 0..=419_430_400 >> 12 = 102_400: fits.
        u32::try_from(v >> 12).unwrap_or(0)
    }

    /// Compensates the 8 data bytes read from 0xF7 (pressure, temperature, humidity, MSB first)
    /// into a reading, refusing skipped measurements and values outside the operating ranges
    /// ([`BME280_TEMPERATURE_RANGE`], [`BME280_PRESSURE_RANGE_PA_X256`]).
    pub fn decode<E>(&self, data: [u8; 8]) -> Result<Bme280Reading, SensorError<E>> {
        let twenty = |b: &[u8]| (i32::from(b[0]) << 12) | (i32::from(b[1]) << 4) | (i32::from(b[2]) >> 4);
        let adc_p = twenty(&data[0..3]);
        let adc_t = twenty(&data[3..6]);
        let adc_h = u16::from_be_bytes([data[6], data[7]]);
        if adc_t == 0x80000 || adc_p == 0x80000 || adc_h == 0x8000 {
            return Err(SensorError::MeasurementSkipped);
        }
        let (t_fine, centi) = self.compensate_temperature(adc_t);
        let temperature = MilliCelsius(centi.saturating_mul(10));
        if !BME280_TEMPERATURE_RANGE.contains(&temperature) {
            return Err(SensorError::Implausible("temperature"));
        }
        let pressure_pa_x256 = self.compensate_pressure(adc_p, t_fine);
        if !BME280_PRESSURE_RANGE_PA_X256.contains(&pressure_pa_x256) {
            return Err(SensorError::Implausible("pressure"));
        }
        let humidity_percent_x1024 = self.compensate_humidity(adc_h, t_fine);
        Ok(Bme280Reading { temperature, pressure_pa_x256, humidity_percent_x1024 })
    }
}

fn saturate_i32(v: i128) -> i32 {
    i32::try_from(v.clamp(i128::from(i32::MIN), i128::from(i32::MAX))).unwrap_or_default()
}

/// One BME280 measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bme280Reading {
    /// Temperature (0.01 °C resolution).
    pub temperature: MilliCelsius,
    /// Pressure in pascals × 256 (the datasheet's Q24.8).
    pub pressure_pa_x256: u32,
    /// Relative humidity in percent × 1024 (the datasheet's Q22.10), 0 to 102,400.
    pub humidity_percent_x1024: u32,
}

impl Bme280Reading {
    /// The pressure in hectopascals.
    pub fn pressure_hpa(&self) -> f64 {
        f64::from(self.pressure_pa_x256) / 25_600.0
    }

    /// The relative humidity in percent.
    pub fn humidity_percent(&self) -> f64 {
        f64::from(self.humidity_percent_x1024) / 1024.0
    }
}

const BME280_CHIP_ID: u8 = 0x60;
const BME280_REG_ID: u8 = 0xD0;
const BME280_REG_CALIB_TP: u8 = 0x88;
const BME280_REG_CALIB_H: u8 = 0xE1;
const BME280_REG_CTRL_HUM: u8 = 0xF2;
const BME280_REG_CTRL_MEAS: u8 = 0xF4;
const BME280_REG_CONFIG: u8 = 0xF5;
const BME280_REG_DATA: u8 = 0xF7;
/// ctrl_hum: osrs_h ×1.
const BME280_CTRL_HUM_X1: u8 = 0b001;
/// ctrl_meas: sleep mode (config is only written reliably in sleep mode).
const BME280_CTRL_MEAS_SLEEP: u8 = 0;
/// ctrl_meas: osrs_t ×1 (bits 7:5), osrs_p ×1 (bits 4:2), normal mode (11).
const BME280_CTRL_MEAS_X1_NORMAL: u8 = (0b001 << 5) | (0b001 << 2) | 0b11;
/// config: standby 1000 ms between measurements (t_sb 101), IIR filter off: one measurement a
/// second, the datasheet's weather-monitoring settings in normal mode (no self-heating to speak of).
const BME280_CONFIG_STANDBY_1000_MS: u8 = 0b101 << 5;

/// The longest a measurement takes with every oversampling ×1 (datasheet 9.1:
/// 1.25 + 2.3 + 2.875 + 2.875 ms): after [`Bme280::new`], wait this long before the first
/// [`Bme280::read`], or it reads the reset values (a skipped measurement).
pub const BME280_MEASUREMENT_MAX_US: u32 = 9_300;

/// Bosch BME280 driver: temperature, pressure and humidity, oversampling ×1, normal mode with a
/// measurement every second.
#[derive(Debug)]
pub struct Bme280<I> {
    i2c: I,
    address: u8,
    calibration: Bme280Calibration,
}

impl<I: I2c> Bme280<I> {
    /// Checks the chip id, reads the calibration registers and starts normal mode: sleep mode,
    /// ctrl_hum 0xF2 = 0x01, config 0xF5 = 0xA0, ctrl_meas 0xF4 = 0x27. The first measurement is
    /// ready [`BME280_MEASUREMENT_MAX_US`] later.
    pub fn new(mut i2c: I, address: u8) -> Result<Self, SensorError<I::Error>> {
        let mut id = [0u8; 1];
        i2c.write_read(address, &[BME280_REG_ID], &mut id).map_err(SensorError::I2c)?;
        if id[0] != BME280_CHIP_ID {
            return Err(SensorError::WrongChip(id[0]));
        }
        let mut tp = [0u8; BME280_CALIBRATION_TP_BYTES];
        i2c.write_read(address, &[BME280_REG_CALIB_TP], &mut tp).map_err(SensorError::I2c)?;
        let mut h = [0u8; BME280_CALIBRATION_H_BYTES];
        i2c.write_read(address, &[BME280_REG_CALIB_H], &mut h).map_err(SensorError::I2c)?;
        for write in [
            [BME280_REG_CTRL_MEAS, BME280_CTRL_MEAS_SLEEP],
            [BME280_REG_CTRL_HUM, BME280_CTRL_HUM_X1],
            [BME280_REG_CONFIG, BME280_CONFIG_STANDBY_1000_MS],
            [BME280_REG_CTRL_MEAS, BME280_CTRL_MEAS_X1_NORMAL],
        ] {
            i2c.write(address, &write).map_err(SensorError::I2c)?;
        }
        Ok(Self { i2c, address, calibration: Bme280Calibration::from_registers(tp, h) })
    }

    /// A driver for a chip already set up by [`Bme280::new`], with the calibration it read: no
    /// I/O. (A shell keeps the calibration and lends the bus for each read.)
    pub fn with_calibration(i2c: I, address: u8, calibration: Bme280Calibration) -> Self {
        Self { i2c, address, calibration }
    }

    /// The calibration read at start.
    pub fn calibration(&self) -> Bme280Calibration {
        self.calibration
    }

    /// Reads the data registers 0xF7–0xFE in one burst (one measurement's values, as the datasheet
    /// requires) and compensates them ([`Bme280Calibration::decode`]).
    pub fn read(&mut self) -> Result<Bme280Reading, SensorError<I::Error>> {
        let mut data = [0u8; 8];
        self.i2c.write_read(self.address, &[BME280_REG_DATA], &mut data).map_err(SensorError::I2c)?;
        self.calibration.decode(data)
    }

    /// Reads the temperature only ([`Bme280::read`]'s).
    pub fn read_temperature(&mut self) -> Result<MilliCelsius, SensorError<I::Error>> {
        self.read().map(|r| r.temperature)
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parsers() {
        assert_eq!(parse_thermal_zone("49768\n"), Ok(MilliCelsius(49768)));
        assert_eq!(parse_thermal_zone("-1500"), Ok(MilliCelsius(-1500)));
        assert_eq!(parse_thermal_zone(""), Err(ParseError::Empty));
        assert_eq!(parse_thermal_zone("4x"), Err(ParseError::InvalidNumber("temp")));
        assert_eq!(parse_measure_temp("temp=48.3'C\n"), Ok(MilliCelsius(48300)));
        assert_eq!(parse_measure_temp("temp=-2.0'C"), Ok(MilliCelsius(-2000)));
        assert_eq!(parse_measure_temp("t=1'C"), Err(ParseError::Missing("temp=")));
        assert_eq!(parse_throttled("throttled=12").unwrap().raw, 12);
        assert!(parse_throttled("throttled=0x").is_err());
        assert!(parse_throttled("throttled=0x+1").is_err());
    }

    #[test]
    fn throttled_bits() {
        let t = Throttled::from_bits(0xF000F);
        assert!(t.flags().iter().all(|(_, v)| *v));
        let t = Throttled::from_bits(0x20002);
        assert_eq!(t.flags().iter().filter(|(_, v)| *v).count(), 2);
        assert!(t.freq_capped && t.freq_capped_occurred);
    }

    #[test]
    fn tmp102_conversions() {
        assert_eq!(tmp102_millicelsius([0x19, 0x00]), MilliCelsius(25_000));
        assert_eq!(tmp102_millicelsius([0xE7, 0x00]), MilliCelsius(-25_000));
        assert_eq!(tmp102_millicelsius([0xFF, 0xF0]), MilliCelsius(-62));
        // Extended mode: 13 bits, 150 C = 0x4B0 << 3 | EM bit.
        assert_eq!(tmp102_millicelsius([0x4B, 0x01]), MilliCelsius(150_000));
    }

    #[test]
    fn lm75_conversions() {
        assert_eq!(lm75_millicelsius([0x19, 0x80], Lm75Resolution::Bits9), MilliCelsius(25_500));
        assert_eq!(lm75_millicelsius([0xE7, 0x00], Lm75Resolution::Bits9), MilliCelsius(-25_000));
        assert_eq!(lm75_millicelsius([0x19, 0x20], Lm75Resolution::Bits11), MilliCelsius(25_125));
        assert_eq!(lm75_millicelsius([0xFF, 0xE0], Lm75Resolution::Bits11), MilliCelsius(-125));
    }

    #[test]
    fn tmp102_refuses_bytes_the_chip_never_sends() {
        assert_eq!(decode_tmp102([0x19, 0x00]), Some(MilliCelsius(25_000)));
        assert_eq!(decode_tmp102([0x4B, 0x01]), Some(MilliCelsius(150_000)));
        // A bus stuck high, reserved bits set in either mode, beyond 150 C in extended mode.
        assert_eq!(decode_tmp102([0xFF, 0xFF]), None);
        assert_eq!(decode_tmp102([0x19, 0x08]), None);
        assert_eq!(decode_tmp102([0x19, 0x03]), None);
        assert_eq!(decode_tmp102([0x7F, 0xF9]), None);
        // Within range, well formed: -55 C is the floor.
        assert_eq!(decode_tmp102([0xC9, 0x00]), Some(MilliCelsius(-55_000)));
        assert_eq!(decode_tmp102([0xC8, 0x00]), None);
    }

    /// The BMP280 datasheet's worked example (section 3.12): its temperature and pressure words are
    /// the BME280's (same registers, same compensation).
    fn datasheet_calibration() -> Bme280Calibration {
        Bme280Calibration {
            t1: 27504,
            t2: 26435,
            t3: -1000,
            p1: 36477,
            p: [-10685, 3024, 2855, 140, -7, 15500, -14600, 6000],
            // A BME280's humidity words as read from a chip (typical values).
            h1: 75,
            h2: 362,
            h3: 0,
            h4: 324,
            h5: 50,
            h6: 30,
        }
    }

    #[test]
    fn bme280_datasheet_example() {
        let cal = datasheet_calibration();
        assert_eq!(cal.compensate_temperature(519888), (128422, 2508));
        // 100653.27 Pa in the datasheet (floating point); the 64-bit integer version's Q24.8.
        // The datasheet's own C code (the 64-bit pressure and 32-bit humidity functions, compiled
        // with gcc) gives these for the same words: 25767233 / 256 = 100653.25 Pa.
        assert_eq!(cal.compensate_pressure(415148, 128422), 25_767_233);
        let humidity = |t_fine| {
            [20_000, 24_000, 28_000, 32_000, 36_000, 0x6B00].map(|adc| cal.compensate_humidity(adc, t_fine))
        };
        assert_eq!(humidity(128422), [0, 17928, 40884, 63690, 86347, 37404]);
        assert_eq!(humidity(50000)[..5], [0, 18649, 40816, 62844, 84732]);
    }

    /// The datasheet's floating-point compensation (BME280 section 8.1), the reference the integer
    /// version is checked against.
    fn float_pressure_humidity(cal: &Bme280Calibration, adc_p: i32, adc_h: u16, t_fine: i32) -> (f64, f64) {
        let [p2, p3, p4, p5, p6, p7, p8, p9] = cal.p.map(f64::from);
        let t_fine = f64::from(t_fine);
        let mut var1 = t_fine / 2.0 - 64000.0;
        let mut var2 = var1 * var1 * p6 / 32768.0;
        var2 += var1 * p5 * 2.0;
        var2 = var2 / 4.0 + p4 * 65536.0;
        var1 = (p3 * var1 * var1 / 524288.0 + p2 * var1) / 524288.0;
        var1 = (1.0 + var1 / 32768.0) * f64::from(cal.p1);
        let mut p = 1048576.0 - f64::from(adc_p);
        p = (p - var2 / 4096.0) * 6250.0 / var1;
        let var1 = p9 * p * p / 2147483648.0;
        let var2 = p * p8 / 32768.0;
        p += (var1 + var2 + p7) / 16.0;
        let h = t_fine - 76800.0;
        let (h1, h2, h3) = (f64::from(cal.h1), f64::from(cal.h2), f64::from(cal.h3));
        let (h4, h5, h6) = (f64::from(cal.h4), f64::from(cal.h5), f64::from(cal.h6));
        let mut rh = (f64::from(adc_h) - (h4 * 64.0 + h5 / 16384.0 * h))
            * (h2 / 65536.0 * (1.0 + h6 / 67108864.0 * h * (1.0 + h3 / 67108864.0 * h)));
        rh *= 1.0 - h1 * rh / 524288.0;
        (p, rh.clamp(0.0, 100.0))
    }

    #[test]
    fn bme280_integer_compensation_matches_the_datasheets_floating_point() {
        let cal = datasheet_calibration();
        let mut checked = 0;
        for adc_t in (400_000..600_000).step_by(20_000) {
            let (t_fine, _) = cal.compensate_temperature(adc_t);
            for adc_p in (250_000..500_000).step_by(25_000) {
                for adc_h in (20_000..40_000u16).step_by(2_000) {
                    let (p, rh) = float_pressure_humidity(&cal, adc_p, adc_h, t_fine);
                    let int_p = f64::from(cal.compensate_pressure(adc_p, t_fine)) / 256.0;
                    let int_rh = f64::from(cal.compensate_humidity(adc_h, t_fine)) / 1024.0;
                    assert!((int_p - p).abs() < 1.0, "{adc_t} {adc_p}: {int_p} Pa vs {p}");
                    assert!((int_rh - rh).abs() < 0.05, "{adc_t} {adc_h}: {int_rh} % vs {rh}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 1000);
    }

    #[test]
    fn bme280_decode_checks_skips_and_ranges() {
        let cal = datasheet_calibration();
        // adc_P 415148 = 0x655AC, adc_T 519888 = 0x7EED0, adc_H 0x6B00.
        let good = [0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x6B, 0x00];
        let r = cal.decode::<()>(good).expect("a good reading");
        assert_eq!((r.temperature, r.pressure_pa_x256), (MilliCelsius(25_080), 25_767_233));
        assert!((r.pressure_hpa() - 1006.5325).abs() < 1e-4, "{}", r.pressure_hpa());
        assert_eq!(r.humidity_percent_x1024, 37404);
        assert!((r.humidity_percent() - 36.527).abs() < 1e-3, "{}", r.humidity_percent());
        // The reset values: skipped.
        let reset = [0x80, 0, 0, 0x80, 0, 0, 0x80, 0];
        assert_eq!(cal.decode::<()>(reset), Err(SensorError::MeasurementSkipped));
        let mut no_humidity = good;
        no_humidity[6..].copy_from_slice(&[0x80, 0x00]);
        assert_eq!(cal.decode::<()>(no_humidity), Err(SensorError::MeasurementSkipped));
        // All ones (a bus stuck high): outside the operating range.
        assert_eq!(cal.decode::<()>([0xFF; 8]), Err(SensorError::Implausible("temperature")));
        // A calibration read as zeros divides by zero: pressure 0, refused.
        let zeros = Bme280Calibration { t1: 27504, t2: 26435, ..Bme280Calibration::default() };
        assert_eq!(zeros.decode::<()>(good), Err(SensorError::Implausible("pressure")));
    }

    #[test]
    fn bme280_calibration_registers() {
        let mut tp = [0u8; BME280_CALIBRATION_TP_BYTES];
        let words: [u16; 12] =
            [27504, 26435, 64536, 36477, 54851, 3024, 2855, 140, 65529, 15500, 50936, 6000];
        for (i, w) in words.iter().enumerate() {
            tp[2 * i..2 * i + 2].copy_from_slice(&w.to_le_bytes());
        }
        tp[25] = 75;
        // dig_H2 = 362, dig_H3 = 0, dig_H4 = 324 = 0x144 (0x14, low nibble 4), dig_H5 = 50 = 0x032
        // (0x03, high nibble 2 of 0xE5), dig_H6 = 30.
        let h = [0x6A, 0x01, 0x00, 0x14, 0x24, 0x03, 0x1E];
        assert_eq!(Bme280Calibration::from_registers(tp, h), datasheet_calibration());
        // The 12-bit words are signed: 0xE4 = 0xFF with 0xE5's nibble 0xF is -1.
        let negative = Bme280Calibration::from_registers(tp, [0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!((negative.h4, negative.h5, negative.h6), (-1, -1, -1));
    }

    #[test]
    fn bme280_any_calibration_compensates_without_overflow() {
        // Found by the rpi_sensors fuzz target: the datasheet's i32 arithmetic overflowed on these
        // calibration bytes (t1 = 27764, t2 = 27762, t3 = 25701) and a reading of 0.
        let cal = Bme280Calibration { t1: 27764, t2: 27762, t3: 25701, ..Bme280Calibration::default() };
        assert_eq!(cal.compensate_temperature(0), (-457_508, -8936));
        // The extremes of a 20-bit reading and of the calibration words fit in i32.
        let worst =
            Bme280Calibration { t1: u16::MAX, t2: i16::MIN, t3: i16::MAX, ..Bme280Calibration::default() };
        assert_eq!(worst.compensate_temperature(0), (4_194_144, 81_917));
        assert_eq!(worst.compensate_temperature(0xF_FFFF), (-16, 0));
        // Beyond 20 bits, t_fine saturates.
        let cal = Bme280Calibration { t1: 0, t2: i16::MAX, t3: 0, ..Bme280Calibration::default() };
        assert_eq!(cal.compensate_temperature(i32::MAX), (i32::MAX, 83_883_520));
        // Pressure and humidity with extreme words and inputs: no overflow (tests check overflow).
        for words in [i16::MIN, -1, 0, 1, i16::MAX] {
            let cal = Bme280Calibration {
                p1: 1,
                p: [words; 8],
                h1: u8::MAX,
                h2: words,
                h3: u8::MAX,
                h4: words,
                h5: words,
                h6: i8::MIN,
                ..Bme280Calibration::default()
            };
            for t_fine in [i32::MIN, -1, 0, 1, i32::MAX] {
                for adc in [i32::MIN, 0, 0xF_FFFF, i32::MAX] {
                    let _ = cal.compensate_pressure(adc, t_fine);
                }
                for adc in [0, 1, 0x7FFF, u16::MAX] {
                    assert!(cal.compensate_humidity(adc, t_fine) <= 102_400);
                }
            }
        }
    }
}
