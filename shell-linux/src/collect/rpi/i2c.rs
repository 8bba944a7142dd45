//! The `rpi` collector's I2C sensors (`RPI_I2C_SENSORS`): TMP102, LM75 and BME280 on `/dev/i2c-*`
//! through `linux-embedded-hal`'s `I2cdev`, read with `chouette_boards::rpi`'s drivers.
//!
//! The reading logic ([`I2cSensors`]) is generic over [`Buses`], which opens a bus device and
//! classifies its errors, so it is tested over embedded-hal-mock; [`LinuxBuses`] opens `/dev/i2c-N`.
//!
//! A fault never stops a capture nor the other readings: each failed read is counted per sensor and
//! reason ([`ERRORS_METRIC`], cumulative, like `Chouette.rpi.w1.rejected`) and logged as one WARN
//! when the sensor starts failing (or fails for another reason), at DEBUG while it keeps failing,
//! and at INFO when it reads again. Each sensor has its own handle on its bus device, opened when
//! first needed and again after a bus error (an adapter unplugged and plugged back, say). A BME280
//! is set up and its calibration read once, and again after any fault (a chip that was reset has
//! lost its settings; a garbled calibration would give implausible values).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chouette_boards::rpi::{
    Bme280, Bme280Calibration, Lm75, Lm75Resolution, SensorError, Tmp102, BME280_MEASUREMENT_MAX_US,
};
use embedded_hal::i2c::{Error as _, ErrorKind, ErrorType, I2c};

use crate::collect::Point;

/// Temperature of every I2C sensor, °C.
pub const TEMPERATURE_METRIC: &str = "Chouette.rpi.i2c.temperature";
/// A BME280's pressure, hPa.
pub const PRESSURE_METRIC: &str = "Chouette.rpi.i2c.pressure";
/// A BME280's relative humidity, %.
pub const HUMIDITY_METRIC: &str = "Chouette.rpi.i2c.humidity";
/// Failed reads so far, per sensor and `reason:` ([`Reason`]).
pub const ERRORS_METRIC: &str = "Chouette.rpi.i2c.errors";

/// A sensor model `RPI_I2C_SENSORS` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Model {
    /// TI TMP102 (0x48–0x4B).
    Tmp102,
    /// The original 9-bit LM75 (0.5 °C), and any LM75-compatible read at that resolution.
    Lm75,
    /// The 11-bit LM75A / LM75B (0.125 °C) and compatibles (PCT2075); `lm75b` is an alias.
    Lm75a,
    /// Bosch BME280 (0x76, 0x77): temperature, pressure, humidity.
    Bme280,
}

impl Model {
    /// Every model, in the order the docs list them.
    pub const ALL: [Model; 4] = [Model::Tmp102, Model::Lm75, Model::Lm75a, Model::Bme280];

    /// The name in `RPI_I2C_SENSORS` and in the `model:` tag.
    pub fn name(self) -> &'static str {
        match self {
            Model::Tmp102 => "tmp102",
            Model::Lm75 => "lm75",
            Model::Lm75a => "lm75a",
            Model::Bme280 => "bme280",
        }
    }

    /// A model by name, any case (`lm75b` is `lm75a`).
    pub fn parse(name: &str) -> Option<Model> {
        let name = name.to_ascii_lowercase();
        if name == "lm75b" {
            return Some(Model::Lm75a);
        }
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The addresses the chip can answer at (its address pins). LM75-compatible parts differ, so
    /// `lm75` and `lm75a` take any 7-bit address that is not reserved.
    pub fn addresses(self) -> RangeInclusive<u8> {
        match self {
            Model::Tmp102 => 0x48..=0x4B,
            Model::Lm75 | Model::Lm75a => USABLE_ADDRESSES,
            Model::Bme280 => 0x76..=0x77,
        }
    }
}

/// The 7-bit addresses a device may use (0x00–0x07 and 0x78–0x7F are reserved by the I2C
/// specification).
pub const USABLE_ADDRESSES: RangeInclusive<u8> = 0x08..=0x77;

/// One entry of `RPI_I2C_SENSORS`: `MODEL@DEVICE:ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorSpec {
    /// The chip.
    pub model: Model,
    /// The bus device, e.g. `/dev/i2c-1`.
    pub device: PathBuf,
    /// The 7-bit address.
    pub address: u8,
}

impl fmt::Display for SensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{:#04x}", self.model.name(), self.device.display(), self.address)
    }
}

/// The syntax of an entry, for error messages.
pub const ENTRY_SYNTAX: &str = "MODEL@DEVICE:ADDRESS, e.g. tmp102@/dev/i2c-1:0x48";

/// Parses one entry, `MODEL@DEVICE:ADDRESS` (`bme280@/dev/i2c-1:0x76`). Strict: the model is one
/// of [`Model`]'s names, the device an absolute path, the address hexadecimal as `i2cdetect` prints
/// it (`0x48`), among the model's [`Model::addresses`]. The error says what is wrong.
pub fn parse_sensor(entry: &str) -> Result<SensorSpec, String> {
    if entry.chars().any(char::is_whitespace) {
        return Err(format!("white space in the entry: write {ENTRY_SYNTAX}"));
    }
    let Some((model, rest)) = entry.split_once('@') else {
        return Err(format!("no `@`: write {ENTRY_SYNTAX}"));
    };
    let model = Model::parse(model).ok_or_else(|| {
        let names: Vec<&str> = Model::ALL.iter().map(|m| m.name()).collect();
        format!("unknown model {model:?}: one of {} (lm75b is lm75a)", names.join(", "))
    })?;
    let Some((device, address)) = rest.rsplit_once(':') else {
        return Err(format!("no `:ADDRESS` after the device: write {ENTRY_SYNTAX}"));
    };
    if !device.starts_with('/') || device.ends_with('/') {
        return Err(format!("device {device:?} is not the absolute path of a bus device, e.g. /dev/i2c-1"));
    }
    let hex = address.strip_prefix("0x").or_else(|| address.strip_prefix("0X"));
    let value = match hex {
        Some(digits) if (1..=2).contains(&digits.len()) => u8::from_str_radix(digits, 16).ok(),
        _ => None,
    };
    let Some(value) = value else {
        return Err(format!("address {address:?}: write it in hexadecimal as i2cdetect shows it, e.g. 0x48"));
    };
    if !USABLE_ADDRESSES.contains(&value) {
        return Err(format!("address {value:#04x} is reserved: a 7-bit address is 0x08 to 0x77"));
    }
    let range = model.addresses();
    if !range.contains(&value) {
        return Err(format!(
            "address {value:#04x}: a {} answers at {:#04x} to {:#04x}",
            model.name(),
            range.start(),
            range.end()
        ));
    }
    Ok(SensorSpec { model, device: PathBuf::from(device), address: value })
}

/// Parses every entry ([`parse_sensor`]); a sensor named twice (same device and address) is refused.
/// The error names the entry.
pub fn parse_sensors(entries: &[String]) -> Result<Vec<SensorSpec>, String> {
    let mut out: Vec<SensorSpec> = Vec::with_capacity(entries.len());
    for entry in entries {
        let spec = parse_sensor(entry).map_err(|why| format!("entry {entry:?}: {why}"))?;
        if let Some(same) = out.iter().find(|s| s.device == spec.device && s.address == spec.address) {
            return Err(format!("entry {entry:?}: {same} is at the same device and address"));
        }
        out.push(spec);
    }
    Ok(out)
}

/// Why a read failed: the `reason:` tag of [`ERRORS_METRIC`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The bus device could not be opened (absent, no permission).
    Open,
    /// Nothing acknowledged the address (or a byte): no sensor there, a loose wire.
    Nack,
    /// The address is held by a kernel driver, or the bus stayed busy (`EBUSY`).
    Busy,
    /// Any other bus error (arbitration lost, an I/O error, an adapter gone).
    Bus,
    /// Another chip answers at the address (a BME280's id register).
    WrongChip,
    /// The chip is not measuring (a BME280 that was reset): it is set up again.
    Skipped,
    /// A value the chip cannot produce: a garbled transfer or a garbage calibration.
    Implausible,
}

impl Reason {
    /// The `reason:` tag value.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Open => "open",
            Reason::Nack => "nack",
            Reason::Busy => "busy",
            Reason::Bus => "bus",
            Reason::WrongChip => "wrong_chip",
            Reason::Skipped => "skipped",
            Reason::Implausible => "implausible",
        }
    }

    /// Whether the handle on the bus device is closed (and opened again at the next read).
    fn reopens(self) -> bool {
        matches!(self, Reason::Nack | Reason::Busy | Reason::Bus)
    }
}

/// One failed read: why, the error as the OS or the driver said it, and what an operator may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The counted reason.
    pub reason: Reason,
    /// The error itself (`No such file or directory (os error 2)`, `implausible pressure`).
    pub detail: String,
    /// What to check, for the log line (may be empty).
    pub hint: &'static str,
}

impl Fault {
    /// A fault with the reason's usual hint.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Fault {
        let hint = match reason {
            Reason::Open => "",
            Reason::Nack => "nothing acknowledged: check the wiring and the address (i2cdetect -y N)",
            Reason::Busy => {
                "a kernel driver holds this address (see /sys/bus/i2c/devices/; unbind it or read the \
                 sensor through hwmon), or the bus stayed busy"
            }
            Reason::Bus => "check the wiring, the pull-ups and the cable length",
            Reason::WrongChip => {
                "another chip answers at this address (a BMP280 has id 0x58 and no humidity)"
            }
            Reason::Skipped => "the chip is not measuring (reset?): it is set up again at the next capture",
            Reason::Implausible => {
                "a garbled transfer (wiring, noise, pull-ups) or another chip at this address"
            }
        };
        Fault { reason, detail: detail.into(), hint }
    }
}

/// The error type of a bus.
pub type BusError<B> = <B as ErrorType>::Error;

/// Opens bus devices and classifies their errors: `/dev/i2c-N` ([`LinuxBuses`]) or a mock.
pub trait Buses {
    /// An open bus device.
    type Bus: I2c;

    /// Opens `device`; the fault's reason is [`Reason::Open`].
    fn open(&mut self, device: &Path) -> Result<Self::Bus, Fault>;

    /// The reason and detail of a transfer error; by default from its
    /// [`embedded_hal::i2c::ErrorKind`].
    fn fault(&self, error: &BusError<Self::Bus>) -> Fault {
        let reason = match error.kind() {
            ErrorKind::NoAcknowledge(_) => Reason::Nack,
            _ => Reason::Bus,
        };
        Fault::new(reason, format!("{error:?}"))
    }

    /// Waits `duration` (a BME280's first measurement after its setup).
    fn wait(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// `/dev/i2c-N` through `linux-embedded-hal`.
#[derive(Debug, Default)]
pub struct LinuxBuses;

impl Buses for LinuxBuses {
    type Bus = linux_embedded_hal::I2cdev;

    fn open(&mut self, device: &Path) -> Result<Self::Bus, Fault> {
        linux_embedded_hal::I2cdev::new(device).map_err(|e| {
            let error = std::io::Error::from(e);
            let hint = match error.kind() {
                std::io::ErrorKind::NotFound => {
                    "no such bus device: enable I2C (raspi-config, or dtparam=i2c_arm=on in \
                     config.txt) and check the bus number (ls /dev/i2c-*); under systemd, \
                     PrivateDevices=yes hides it (see the I2C lines of chouette.service)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "the agent's user needs read-write access: group i2c on Raspberry Pi OS \
                     (SupplementaryGroups=i2c and DeviceAllow=char-i2c rw in chouette.service)"
                }
                _ => "",
            };
            Fault { reason: Reason::Open, detail: error.to_string(), hint }
        })
    }

    /// By errno (kernel `Documentation/i2c/fault-codes.rst`): `ENXIO` and `EREMOTEIO` (what the
    /// Raspberry Pi's bcm2835 driver returns) are a NACK, `EBUSY` a held address or a busy bus.
    fn fault(&self, error: &linux_embedded_hal::I2CError) -> Fault {
        use linux_embedded_hal::i2cdev::linux::LinuxI2CError;
        let errno = match error.inner() {
            LinuxI2CError::Errno(errno) => Some(*errno),
            LinuxI2CError::Io(e) => e.raw_os_error(),
        };
        let Some(errno) = errno else { return Fault::new(Reason::Bus, error.to_string()) };
        let reason = match errno {
            libc::ENXIO | libc::EREMOTEIO => Reason::Nack,
            libc::EBUSY => Reason::Busy,
            _ => Reason::Bus,
        };
        Fault::new(reason, std::io::Error::from_raw_os_error(errno).to_string())
    }
}

/// One configured sensor and what is kept between captures.
struct Sensor<B> {
    spec: SensorSpec,
    /// The `bus:` tag: the device's file name (`i2c-1`).
    bus_tag: String,
    /// The `address:` tag (`0x48`).
    address_tag: String,
    bus: Option<B>,
    /// A BME280's calibration, read at its setup; `None` until then and after any fault.
    calibration: Option<Bme280Calibration>,
    /// The reason of the current run of failures (logged once), if failing.
    failing: Option<Reason>,
    /// Failed reads in the current run.
    failed_in_a_row: u64,
    errors: BTreeMap<Reason, u64>,
}

impl<B> Sensor<B> {
    fn new(spec: SensorSpec) -> Sensor<B> {
        let bus_tag = spec
            .device
            .file_name()
            .map_or_else(|| spec.device.display().to_string(), |name| name.to_string_lossy().into_owned());
        let address_tag = format!("{:#04x}", spec.address);
        Sensor {
            spec,
            bus_tag,
            address_tag,
            bus: None,
            calibration: None,
            failing: None,
            failed_in_a_row: 0,
            errors: BTreeMap::new(),
        }
    }

    fn point(&self, name: &str, value: f64) -> Point {
        Point::new(name, value)
            .tag("model", self.spec.model.name())
            .tag("bus", self.bus_tag.as_str())
            .tag("address", self.address_tag.as_str())
    }

    /// Counts a failed read; returns whether it starts a run of failures (or another reason's):
    /// the one that is logged as a WARN.
    fn record_failure(&mut self, reason: Reason) -> bool {
        *self.errors.entry(reason).or_default() += 1;
        self.failed_in_a_row += 1;
        self.failing.replace(reason) != Some(reason)
    }

    /// Ends a run of failures; returns how many reads failed in it (0: none was failing).
    fn record_success(&mut self) -> u64 {
        self.failing = None;
        std::mem::take(&mut self.failed_in_a_row)
    }
}

/// The configured I2C sensors, read at each capture; see the module docs.
pub struct I2cSensors<O: Buses> {
    buses: O,
    sensors: Vec<Sensor<O::Bus>>,
}

impl<O: Buses> I2cSensors<O> {
    /// The sensors of `specs`, their bus devices opened through `buses` when first read.
    pub fn new(buses: O, specs: Vec<SensorSpec>) -> I2cSensors<O> {
        I2cSensors { buses, sensors: specs.into_iter().map(Sensor::new).collect() }
    }

    /// Failed reads so far, per (sensor, reason).
    pub fn errors(&self) -> BTreeMap<(String, Reason), u64> {
        let mut out = BTreeMap::new();
        for sensor in &self.sensors {
            for (reason, count) in &sensor.errors {
                out.insert((sensor.spec.to_string(), *reason), *count);
            }
        }
        out
    }

    /// Reads every sensor and appends its values, then every sensor's error counts, to `out`.
    pub fn collect(&mut self, out: &mut Vec<Point>) {
        for sensor in &mut self.sensors {
            match read(&mut self.buses, sensor) {
                Ok(values) => {
                    let failed = sensor.record_success();
                    if failed > 0 {
                        log::info!(
                            "plugin=rpi sensor={} failed_reads={failed}: I2C sensor reads again",
                            sensor.spec
                        );
                    }
                    out.extend(values.into_iter().map(|(name, value)| sensor.point(name, value)));
                }
                Err(fault) => {
                    if fault.reason.reopens() {
                        sensor.bus = None;
                    }
                    sensor.calibration = None;
                    let reason = fault.reason.name();
                    if sensor.record_failure(fault.reason) {
                        let hint =
                            if fault.hint.is_empty() { String::new() } else { format!(" ({})", fault.hint) };
                        log::warn!(
                            "plugin=rpi sensor={} reason={reason} error={:?}: I2C sensor read failed{hint}; \
                             counted in {ERRORS_METRIC} and retried at every capture",
                            sensor.spec,
                            fault.detail
                        );
                    } else {
                        log::debug!(
                            "plugin=rpi sensor={} reason={reason} error={:?} failed_reads={}: I2C sensor still failing",
                            sensor.spec,
                            fault.detail,
                            sensor.failed_in_a_row
                        );
                    }
                }
            }
        }
        for sensor in &self.sensors {
            for (reason, count) in &sensor.errors {
                out.push(sensor.point(ERRORS_METRIC, *count as f64).tag("reason", reason.name()));
            }
        }
    }
}

/// The fault of a driver's error.
fn fault<O: Buses>(buses: &O, error: SensorError<BusError<O::Bus>>) -> Fault {
    match error {
        SensorError::I2c(e) => buses.fault(&e),
        SensorError::WrongChip(_) => Fault::new(Reason::WrongChip, error.to_string()),
        SensorError::MeasurementSkipped => Fault::new(Reason::Skipped, error.to_string()),
        SensorError::Implausible(_) => Fault::new(Reason::Implausible, error.to_string()),
        _ => Fault::new(Reason::Bus, error.to_string()),
    }
}

/// One sensor's values (metric name, value), or why not.
fn read<O: Buses>(buses: &mut O, sensor: &mut Sensor<O::Bus>) -> Result<Vec<(&'static str, f64)>, Fault> {
    let bus = match &mut sensor.bus {
        Some(bus) => bus,
        None => sensor.bus.insert(buses.open(&sensor.spec.device)?),
    };
    let address = sensor.spec.address;
    let celsius = |t: chouette_boards::MilliCelsius| vec![(TEMPERATURE_METRIC, t.as_celsius())];
    match sensor.spec.model {
        Model::Tmp102 => Tmp102::new(bus, address).read_temperature().map(celsius),
        Model::Lm75 => Lm75::new(bus, address, Lm75Resolution::Bits9).read_temperature().map(celsius),
        Model::Lm75a => Lm75::new(bus, address, Lm75Resolution::Bits11).read_temperature().map(celsius),
        Model::Bme280 => {
            let device = match sensor.calibration {
                Some(calibration) => Ok(Bme280::with_calibration(bus, address, calibration)),
                None => Bme280::new(bus, address).inspect(|device| {
                    sensor.calibration = Some(device.calibration());
                    buses.wait(Duration::from_micros(u64::from(BME280_MEASUREMENT_MAX_US) + 700));
                }),
            };
            device.and_then(|mut device| device.read()).map(|r| {
                vec![
                    (TEMPERATURE_METRIC, r.temperature.as_celsius()),
                    (PRESSURE_METRIC, r.pressure_hpa()),
                    (HUMIDITY_METRIC, r.humidity_percent()),
                ]
            })
        }
    }
    .map_err(|e| fault(buses, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal::i2c::NoAcknowledgeSource;
    use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction};

    /// Bus devices backed by mocks (each sensor gets a clone of its device's mock: one sequence of
    /// expected transactions per device, in the sensors' order); any other device is absent.
    #[derive(Default)]
    struct MockBuses {
        mocks: BTreeMap<PathBuf, I2cMock>,
        opens: usize,
        waits: usize,
    }

    impl MockBuses {
        fn with(device: &str, expectations: &[Transaction]) -> MockBuses {
            let mut buses = MockBuses::default();
            buses.mocks.insert(PathBuf::from(device), I2cMock::new(expectations));
            buses
        }
    }

    impl Buses for MockBuses {
        type Bus = I2cMock;

        fn open(&mut self, device: &Path) -> Result<I2cMock, Fault> {
            self.opens += 1;
            self.mocks
                .get(device)
                .cloned()
                .ok_or_else(|| Fault::new(Reason::Open, "No such file or directory (os error 2)"))
        }

        fn wait(&mut self, _: Duration) {
            self.waits += 1;
        }
    }

    impl I2cSensors<MockBuses> {
        /// Checks every expected transaction happened.
        fn done(mut self) {
            self.buses.mocks.values_mut().for_each(I2cMock::done);
        }
    }

    fn specs(entries: &[&str]) -> Vec<SensorSpec> {
        parse_sensors(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).expect("good entries")
    }

    fn flat(points: &[Point]) -> Vec<(String, Vec<String>, f64)> {
        crate::collect::tests::flat(points)
    }

    fn tags(model: &str, address: &str) -> Vec<String> {
        vec![format!("address:{address}"), "bus:i2c-1".to_owned(), format!("model:{model}")]
    }

    fn errors(model: &str, address: &str, reason: &str, count: f64) -> (String, Vec<String>, f64) {
        let mut t = tags(model, address);
        t.push(format!("reason:{reason}"));
        (ERRORS_METRIC.to_owned(), t, count)
    }

    const NACK: ErrorKind = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);

    /// A BME280's id, calibration (the BMP280 datasheet's example words, typical humidity words)
    /// and setup, as `Bme280::new` reads and writes them.
    fn bme280_setup(address: u8) -> Vec<Transaction> {
        let words: [u16; 12] =
            [27504, 26435, 64536, 36477, 54851, 3024, 2855, 140, 65529, 15500, 50936, 6000];
        let mut tp: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        tp.extend([0x00, 75]);
        vec![
            Transaction::write_read(address, vec![0xD0], vec![0x60]),
            Transaction::write_read(address, vec![0x88], tp),
            Transaction::write_read(address, vec![0xE1], vec![0x6A, 0x01, 0x00, 0x14, 0x24, 0x03, 0x1E]),
            Transaction::write(address, vec![0xF4, 0x00]),
            Transaction::write(address, vec![0xF2, 0x01]),
            Transaction::write(address, vec![0xF5, 0xA0]),
            Transaction::write(address, vec![0xF4, 0x27]),
        ]
    }

    /// One BME280 data read: 25.08 °C, 1006.5325 hPa, 36.527 % (37404 / 1024).
    fn bme280_data(address: u8) -> Transaction {
        Transaction::write_read(address, vec![0xF7], vec![0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x6B, 0x00])
    }

    fn bme280_points(address: &str) -> Vec<(String, Vec<String>, f64)> {
        vec![
            (TEMPERATURE_METRIC.to_owned(), tags("bme280", address), 25.08),
            (PRESSURE_METRIC.to_owned(), tags("bme280", address), 25_767_233.0 / 25_600.0),
            (HUMIDITY_METRIC.to_owned(), tags("bme280", address), 37_404.0 / 1024.0),
        ]
    }

    fn capture(sensors: &mut I2cSensors<MockBuses>) -> Vec<(String, Vec<String>, f64)> {
        let mut out = Vec::new();
        sensors.collect(&mut out);
        flat(&out)
    }

    #[test]
    fn parses_good_entries() {
        let got = specs(&[
            "tmp102@/dev/i2c-1:0x48",
            "LM75@/dev/i2c-1:0x4f",
            "lm75b@/dev/i2c-0:0X2C",
            "bme280@/dev/i2c-1:0x77",
            "bme280@/dev/i2c-1:0x76",
        ]);
        let shown: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "tmp102@/dev/i2c-1:0x48",
                "lm75@/dev/i2c-1:0x4f",
                "lm75a@/dev/i2c-0:0x2c",
                "bme280@/dev/i2c-1:0x77",
                "bme280@/dev/i2c-1:0x76"
            ]
        );
        assert_eq!(got[3], SensorSpec { model: Model::Bme280, device: "/dev/i2c-1".into(), address: 0x77 });
        assert_eq!(parse_sensors(&[]), Ok(Vec::new()));
    }

    #[test]
    fn refuses_bad_entries_naming_them() {
        let cases: &[(&[&str], &str)] = &[
            (&["tmp102"], "entry \"tmp102\": no `@`"),
            (&["tmp102:/dev/i2c-1@0x48"], "unknown model \"tmp102:/dev/i2c-1\""),
            (&["ds18b20@/dev/i2c-1:0x48"], "unknown model \"ds18b20\": one of tmp102, lm75, lm75a, bme280"),
            (&["@/dev/i2c-1:0x48"], "unknown model \"\""),
            (&["tmp102@/dev/i2c-1"], "no `:ADDRESS`"),
            (&["tmp102@i2c-1:0x48"], "device \"i2c-1\" is not the absolute path"),
            (&["tmp102@1:0x48"], "device \"1\" is not the absolute path"),
            (&["tmp102@:0x48"], "device \"\""),
            (&["tmp102@/dev/i2c-1:48"], "address \"48\": write it in hexadecimal"),
            (&["tmp102@/dev/i2c-1:0x"], "address \"0x\""),
            (&["tmp102@/dev/i2c-1:0x148"], "address \"0x148\""),
            (&["tmp102@/dev/i2c-1:0xg8"], "address \"0xg8\""),
            (&["tmp102@/dev/i2c-1:0x48 "], "white space"),
            (&["tmp102 @/dev/i2c-1:0x48"], "white space"),
            (&["lm75@/dev/i2c-1:0x78"], "address 0x78 is reserved"),
            (&["lm75@/dev/i2c-1:0x03"], "address 0x03 is reserved"),
            (&["tmp102@/dev/i2c-1:0x4c"], "address 0x4c: a tmp102 answers at 0x48 to 0x4b"),
            (&["bme280@/dev/i2c-1:0x48"], "address 0x48: a bme280 answers at 0x76 to 0x77"),
            (
                &["tmp102@/dev/i2c-1:0x48", "lm75@/dev/i2c-1:0x48"],
                "entry \"lm75@/dev/i2c-1:0x48\": tmp102@/dev/i2c-1:0x48 is at the same device and address",
            ),
        ];
        for (entries, expected) in cases {
            let list: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
            let error = parse_sensors(&list).expect_err(&format!("{entries:?} is refused"));
            assert!(error.contains(expected), "{entries:?}: {error}");
            assert!(error.starts_with("entry \""), "{error}");
        }
        // The same address on two buses is two sensors.
        specs(&["tmp102@/dev/i2c-0:0x48", "tmp102@/dev/i2c-1:0x48"]);
    }

    #[test]
    fn reads_every_model_with_its_tags() {
        let mut expectations = vec![
            Transaction::write_read(0x48, vec![0x00], vec![0x19, 0x00]),
            Transaction::write_read(0x49, vec![0x00], vec![0x19, 0x80]),
            Transaction::write_read(0x4F, vec![0x00], vec![0x19, 0x20]),
        ];
        expectations.extend(bme280_setup(0x76));
        expectations.push(bme280_data(0x76));
        let buses = MockBuses::with("/dev/i2c-1", &expectations);
        let mut sensors = I2cSensors::new(
            buses,
            specs(&[
                "tmp102@/dev/i2c-1:0x48",
                "lm75@/dev/i2c-1:0x49",
                "lm75a@/dev/i2c-1:0x4f",
                "bme280@/dev/i2c-1:0x76",
            ]),
        );
        let mut want = vec![
            (TEMPERATURE_METRIC.to_owned(), tags("tmp102", "0x48"), 25.0),
            (TEMPERATURE_METRIC.to_owned(), tags("lm75", "0x49"), 25.5),
            (TEMPERATURE_METRIC.to_owned(), tags("lm75a", "0x4f"), 25.125),
        ];
        want.extend(bme280_points("0x76"));
        assert_eq!(capture(&mut sensors), want);
        assert_eq!((sensors.buses.opens, sensors.buses.waits), (4, 1), "one handle per sensor");
        assert!(sensors.errors().is_empty());
        sensors.done();
    }

    #[test]
    fn bme280_calibration_is_read_once_and_again_after_an_error() {
        let mut expectations = bme280_setup(0x77);
        expectations.push(bme280_data(0x77));
        // The next capture only reads the data registers.
        expectations.push(bme280_data(0x77));
        // Then a NACK in the middle of a read.
        expectations.push(Transaction::write_read(0x77, vec![0xF7], vec![0; 8]).with_error(NACK));
        // After the error: the setup and the calibration again.
        expectations.extend(bme280_setup(0x77));
        expectations.push(bme280_data(0x77));
        let mut sensors =
            I2cSensors::new(MockBuses::with("/dev/i2c-1", &expectations), specs(&["bme280@/dev/i2c-1:0x77"]));
        assert_eq!(capture(&mut sensors), bme280_points("0x77"));
        assert_eq!(capture(&mut sensors), bme280_points("0x77"));
        assert_eq!(capture(&mut sensors), [errors("bme280", "0x77", "nack", 1.0)]);
        let mut want = bme280_points("0x77");
        want.push(errors("bme280", "0x77", "nack", 1.0));
        assert_eq!(capture(&mut sensors), want);
        // The handle was reopened after the NACK; the first measurement waited for twice.
        assert_eq!((sensors.buses.opens, sensors.buses.waits), (2, 2));
        sensors.done();
    }

    #[test]
    fn a_nack_mid_read_is_counted_and_the_other_sensors_go_on() {
        let expectations = [
            Transaction::write_read(0x48, vec![0x00], vec![0, 0]).with_error(NACK),
            Transaction::write_read(0x49, vec![0x00], vec![0x19, 0x00]),
            Transaction::write_read(0x48, vec![0x00], vec![0, 0]).with_error(ErrorKind::ArbitrationLoss),
            Transaction::write_read(0x49, vec![0x00], vec![0x19, 0x00]),
            Transaction::write_read(0x48, vec![0x00], vec![0x19, 0x00]),
            Transaction::write_read(0x49, vec![0x00], vec![0x19, 0x00]),
        ];
        let mut sensors = I2cSensors::new(
            MockBuses::with("/dev/i2c-1", &expectations),
            specs(&["tmp102@/dev/i2c-1:0x48", "lm75@/dev/i2c-1:0x49"]),
        );
        let lm75 = (TEMPERATURE_METRIC.to_owned(), tags("lm75", "0x49"), 25.0);
        let tmp102 = (TEMPERATURE_METRIC.to_owned(), tags("tmp102", "0x48"), 25.0);
        assert_eq!(capture(&mut sensors), [lm75.clone(), errors("tmp102", "0x48", "nack", 1.0)]);
        assert_eq!(
            capture(&mut sensors),
            [lm75.clone(), errors("tmp102", "0x48", "nack", 1.0), errors("tmp102", "0x48", "bus", 1.0)]
        );
        // Back: its counts stay (cumulative).
        assert_eq!(
            capture(&mut sensors),
            [tmp102, lm75, errors("tmp102", "0x48", "nack", 1.0), errors("tmp102", "0x48", "bus", 1.0)]
        );
        let errors: Vec<_> = sensors.errors().into_iter().collect();
        assert_eq!(
            errors,
            [
                (("tmp102@/dev/i2c-1:0x48".to_owned(), Reason::Nack), 1),
                (("tmp102@/dev/i2c-1:0x48".to_owned(), Reason::Bus), 1)
            ]
        );
        sensors.done();
    }

    #[test]
    fn a_run_of_failures_is_logged_once_per_reason() {
        let mut sensor = Sensor::<I2cMock>::new(specs(&["tmp102@/dev/i2c-1:0x48"]).remove(0));
        assert!(sensor.record_failure(Reason::Nack), "the first failure is logged");
        assert!(!sensor.record_failure(Reason::Nack), "the same again is not");
        assert!(!sensor.record_failure(Reason::Nack));
        assert!(sensor.record_failure(Reason::Open), "another reason is");
        assert_eq!(sensor.record_success(), 4, "the recovery says how many failed");
        assert_eq!(sensor.record_success(), 0, "a read after a good one says nothing");
        assert!(sensor.record_failure(Reason::Nack), "a new run is logged again");
        assert_eq!(sensor.errors, BTreeMap::from([(Reason::Nack, 4), (Reason::Open, 1)]));
    }

    #[test]
    fn an_absent_bus_device_is_counted_per_sensor_and_retried() {
        let expectations = [
            Transaction::write_read(0x48, vec![0x00], vec![0x19, 0x00]),
            Transaction::write_read(0x48, vec![0x00], vec![0x19, 0x00]),
        ];
        let mut sensors = I2cSensors::new(
            MockBuses::with("/dev/i2c-1", &expectations),
            specs(&["bme280@/dev/i2c-7:0x76", "tmp102@/dev/i2c-1:0x48"]),
        );
        let tmp102 = (TEMPERATURE_METRIC.to_owned(), tags("tmp102", "0x48"), 25.0);
        let mut absent = errors("bme280", "0x76", "open", 1.0);
        absent.1[1] = "bus:i2c-7".to_owned();
        assert_eq!(capture(&mut sensors), [tmp102.clone(), absent.clone()]);
        absent.2 = 2.0;
        assert_eq!(capture(&mut sensors), [tmp102, absent]);
        // Opened again at each capture (it may appear); the good sensor's handle is kept.
        assert_eq!(sensors.buses.opens, 3);
        sensors.done();
    }

    #[test]
    fn garbage_a_wrong_chip_and_a_reset_bme280_are_counted() {
        let mut expectations = vec![
            // A bus stuck high.
            Transaction::write_read(0x48, vec![0x00], vec![0xFF, 0xFF]),
            // A BMP280 at a BME280's address.
            Transaction::write_read(0x76, vec![0xD0], vec![0x58]),
        ];
        expectations.extend(bme280_setup(0x77));
        // A BME280 whose data registers hold the reset values (it was reset after its setup).
        expectations.push(Transaction::write_read(0x77, vec![0xF7], vec![0x80, 0, 0, 0x80, 0, 0, 0x80, 0]));
        // The next capture sets it up again and reads it.
        expectations.push(Transaction::write_read(0x48, vec![0x00], vec![0x19, 0x00]));
        expectations.push(Transaction::write_read(0x76, vec![0xD0], vec![0x58]));
        expectations.extend(bme280_setup(0x77));
        expectations.push(bme280_data(0x77));
        let mut sensors = I2cSensors::new(
            MockBuses::with("/dev/i2c-1", &expectations),
            specs(&["tmp102@/dev/i2c-1:0x48", "bme280@/dev/i2c-1:0x76", "bme280@/dev/i2c-1:0x77"]),
        );
        assert_eq!(
            capture(&mut sensors),
            [
                errors("tmp102", "0x48", "implausible", 1.0),
                errors("bme280", "0x76", "wrong_chip", 1.0),
                errors("bme280", "0x77", "skipped", 1.0),
            ]
        );
        let mut want = vec![(TEMPERATURE_METRIC.to_owned(), tags("tmp102", "0x48"), 25.0)];
        want.extend(bme280_points("0x77"));
        want.extend([
            errors("tmp102", "0x48", "implausible", 1.0),
            errors("bme280", "0x76", "wrong_chip", 2.0),
            errors("bme280", "0x77", "skipped", 1.0),
        ]);
        assert_eq!(capture(&mut sensors), want);
        // Garbage and a wrong chip keep the handle: one open per sensor.
        assert_eq!(sensors.buses.opens, 3);
        sensors.done();
    }

    #[test]
    fn linux_a_missing_or_wrong_bus_device_is_an_open_fault() {
        let fault = LinuxBuses.open(Path::new("/dev/i2c-nonexistent-99")).err().expect("no such device");
        assert_eq!(fault.reason, Reason::Open);
        assert!(fault.detail.contains("No such file or directory"), "{}", fault.detail);
        assert!(fault.hint.contains("no such bus device") && fault.hint.contains("PrivateDevices"));
        // A character device that is not an I2C bus: the I2C_SLAVE ioctl fails.
        let fault = LinuxBuses.open(Path::new("/dev/null")).err().expect("not a bus");
        assert_eq!(fault.reason, Reason::Open);
        assert!(fault.detail.contains("ioctl"), "{}", fault.detail);
    }

    #[test]
    fn linux_errors_are_classified_by_errno() {
        use linux_embedded_hal::i2cdev::linux::LinuxI2CError;
        let classify = |e: LinuxI2CError| LinuxBuses.fault(&linux_embedded_hal::I2CError::from(e));
        // The Raspberry Pi's NACK (bcm2835: EREMOTEIO), which embedded-hal's mapping calls Other.
        let remote = classify(LinuxI2CError::Errno(libc::EREMOTEIO));
        assert_eq!(
            (remote.reason, remote.detail.as_str()),
            (Reason::Nack, "Remote I/O error (os error 121)")
        );
        assert_eq!(classify(LinuxI2CError::Errno(libc::ENXIO)).reason, Reason::Nack);
        assert_eq!(classify(LinuxI2CError::Errno(libc::EBUSY)).reason, Reason::Busy);
        assert_eq!(classify(LinuxI2CError::Errno(libc::ETIMEDOUT)).reason, Reason::Bus);
        let io = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(classify(LinuxI2CError::Io(io)).reason, Reason::Bus);
    }
}
