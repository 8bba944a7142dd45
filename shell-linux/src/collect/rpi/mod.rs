//! `rpi` (new): Raspberry Pi temperatures and throttling, under `CHOUETTE_PROC_ROOT`.
//!
//! | source | metric | tags | unit |
//! |---|---|---|---|
//! | `/sys/class/thermal/thermal_zone*/temp` | `Chouette.rpi.temperature` | `zone:<content of the zone's type file>` | °C |
//! | `vcgencmd measure_temp` (if `VCGENCMD_PATH` exists) | `Chouette.rpi.vcgencmd.temperature` | | °C |
//! | `vcgencmd get_throttled` | `Chouette.rpi.throttled`, 0 or 1 per flag | `flag:` one of `under_voltage`, `freq_capped`, `throttled`, `soft_temp_limit` and the four `*_occurred` | |
//! | `/sys/bus/w1/devices/28-*/w1_slave` (DS18B20) | `Chouette.rpi.w1.temperature` | `sensor:<28-...>` | °C |
//! | refused DS18B20 reads, cumulative | `Chouette.rpi.w1.rejected` | `sensor:`, `reason:crc/power_on_reset/all_zero/empty/malformed` | reads |
//! | TMP102, LM75, BME280 on `/dev/i2c-*` (`RPI_I2C_SENSORS`) | `Chouette.rpi.i2c.temperature` | `model:tmp102/lm75/lm75a/bme280`, `bus:<device file name, i2c-1>`, `address:<0x48>` | °C |
//! | BME280 | `Chouette.rpi.i2c.pressure`, `Chouette.rpi.i2c.humidity` | the same | hPa, % |
//! | failed I2C reads, cumulative | `Chouette.rpi.i2c.errors` | the same, `reason:open/nack/busy/bus/wrong_chip/skipped/implausible` | reads |
//!
//! The parsers are `chouette_boards::rpi`'s. The `flag:` values are `Throttled::flags()`' names (the ARM
//! frequency cap is `freq_capped`, `freq_capped_occurred`). The `reason:` values are this collector's:
//! `crc` is `W1Error::CrcMismatch` (boards' `W1ErrorCounts` calls it `crc_mismatch`), the others are
//! the boards names. The I2C sensors are [`i2c`]'s: read only when `RPI_I2C_SENSORS` lists them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chouette_boards::rpi::{self as boards, W1Error};

use super::{under, CollectError, Collector, PluginConfigError, PluginVars, Point};
use crate::config::vars;

pub mod i2c;

use i2c::{I2cSensors, LinuxBuses, SensorSpec};

/// Longest a `vcgencmd` call may take.
pub const VCGENCMD_TIMEOUT: Duration = Duration::from_secs(2);

/// The `reason:` tag of a refused DS18B20 read.
pub fn w1_reason(e: W1Error) -> &'static str {
    match e {
        W1Error::Empty => "empty",
        W1Error::CrcMismatch => "crc",
        W1Error::PowerOnReset => "power_on_reset",
        W1Error::AllZero => "all_zero",
        _ => "malformed",
    }
}

/// The `rpi` collector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `CHOUETTE_PROC_ROOT`.
    pub root: PathBuf,
    /// `VCGENCMD_PATH`.
    pub vcgencmd: PathBuf,
    /// `RPI_I2C_SENSORS`, each entry checked ([`i2c::parse_sensors`]).
    pub i2c_sensors: Vec<SensorSpec>,
}

impl Settings {
    /// From the plugin variables, through their table entries. A bad `RPI_I2C_SENSORS` entry is
    /// an error naming it.
    pub fn from_vars(vars: &PluginVars) -> Result<Settings, PluginConfigError> {
        let var = &vars::RPI_I2C_SENSORS;
        let i2c_sensors = i2c::parse_sensors(&var.list(vars)?).map_err(|detail| match var.read(vars) {
            Some(raw) => PluginConfigError::from(var.error(raw, &detail)),
            None => PluginConfigError::new(var.name, "", detail),
        })?;
        Ok(Settings {
            root: super::root(vars)?,
            vcgencmd: PathBuf::from(vars::VCGENCMD_PATH.string(vars)?),
            i2c_sensors,
        })
    }
}

/// The `rpi` collector.
pub struct Rpi {
    root: PathBuf,
    vcgencmd: PathBuf,
    rejected: BTreeMap<(String, &'static str), u64>,
    i2c: I2cSensors<LinuxBuses>,
}

impl Rpi {
    /// From its [`Settings`].
    pub fn from_vars(vars: &PluginVars) -> Result<Rpi, PluginConfigError> {
        let settings = Settings::from_vars(vars)?;
        if !settings.i2c_sensors.is_empty() {
            let names: Vec<String> = settings.i2c_sensors.iter().map(ToString::to_string).collect();
            log::info!("plugin=rpi sensors={names:?}: reading I2C sensors");
        }
        Ok(Rpi::new(settings.root, settings.vcgencmd).with_i2c_sensors(settings.i2c_sensors))
    }

    /// A collector reading sysfs under `root` and running `vcgencmd` when it exists (no I2C
    /// sensor).
    pub fn new(root: PathBuf, vcgencmd: PathBuf) -> Rpi {
        Rpi { root, vcgencmd, rejected: BTreeMap::new(), i2c: I2cSensors::new(LinuxBuses, Vec::new()) }
    }

    /// Reads these I2C sensors too, on `/dev/i2c-*`.
    pub fn with_i2c_sensors(mut self, sensors: Vec<SensorSpec>) -> Rpi {
        self.i2c = I2cSensors::new(LinuxBuses, sensors);
        self
    }

    /// Refused DS18B20 reads so far, per (sensor, reason).
    pub fn rejected(&self) -> &BTreeMap<(String, &'static str), u64> {
        &self.rejected
    }

    fn dirs(&self, absolute: &str, prefix: &str) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(under(&self.root, absolute)) else { return Vec::new() };
        let mut out: Vec<_> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(prefix).then(|| (name, e.path()))
            })
            .collect();
        out.sort();
        out
    }

    fn vcgencmd(&self, arg: &str) -> Option<String> {
        let mut child = Command::new(&self.vcgencmd)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| log::warn!("plugin=rpi path={}: cannot run vcgencmd: {e}", self.vcgencmd.display()))
            .ok()?;
        let deadline = Instant::now() + VCGENCMD_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    log::warn!("plugin=rpi: vcgencmd {arg} took over {VCGENCMD_TIMEOUT:?}: killed");
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
        let mut text = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        Some(text)
    }
}

impl Collector for Rpi {
    fn name(&self) -> &str {
        "rpi"
    }

    fn collect(&mut self, _now: f64) -> Result<Vec<Point>, CollectError> {
        let mut out = Vec::new();
        for (name, dir) in self.dirs("/sys/class/thermal", "thermal_zone") {
            let Ok(text) = std::fs::read_to_string(dir.join("temp")) else { continue };
            let celsius = match boards::parse_thermal_zone(&text) {
                Ok(t) => t.as_celsius(),
                Err(e) => {
                    log::warn!("plugin=rpi zone={name}: unreadable temp {text:?} ({e})");
                    continue;
                }
            };
            let zone = std::fs::read_to_string(dir.join("type")).map(|t| t.trim().to_owned()).unwrap_or(name);
            out.push(Point::new("Chouette.rpi.temperature", celsius).tag("zone", zone));
        }
        if self.vcgencmd.exists() {
            if let Some(t) = self.vcgencmd("measure_temp").and_then(|t| boards::parse_measure_temp(&t).ok()) {
                out.push(Point::new("Chouette.rpi.vcgencmd.temperature", t.as_celsius()));
            }
            if let Some(throttled) =
                self.vcgencmd("get_throttled").and_then(|t| boards::parse_throttled(&t).ok())
            {
                for (flag, set) in throttled.flags() {
                    out.push(
                        Point::new("Chouette.rpi.throttled", f64::from(u8::from(set))).tag("flag", flag),
                    );
                }
            }
        }
        for (sensor, dir) in self.dirs("/sys/bus/w1/devices", "28-") {
            let read = std::fs::read_to_string(dir.join("w1_slave"));
            let result = match &read {
                Ok(text) => boards::parse_w1_slave(text),
                Err(_) => Err(W1Error::Empty),
            };
            match result {
                Ok(t) => out
                    .push(Point::new("Chouette.rpi.w1.temperature", t.as_celsius()).tag("sensor", &*sensor)),
                Err(e) => {
                    let reason = w1_reason(e);
                    log::warn!("plugin=rpi sensor={sensor} reason={reason}: DS18B20 read refused ({e})");
                    *self.rejected.entry((sensor, reason)).or_default() += 1;
                }
            }
        }
        for ((sensor, reason), count) in &self.rejected {
            out.push(
                Point::new("Chouette.rpi.w1.rejected", *count as f64)
                    .tag("sensor", &**sensor)
                    .tag("reason", *reason),
            );
        }
        self.i2c.collect(&mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RPI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../boards/tests/data/rpi/");

    fn fake_sysfs(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("chouette-rpi-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let zone = root.join("sys/class/thermal/thermal_zone0");
        std::fs::create_dir_all(&zone).expect("dir");
        std::fs::copy(format!("{RPI}thermal_zone0_temp.txt"), zone.join("temp")).expect("temp");
        std::fs::write(zone.join("type"), "cpu-thermal\n").expect("type");
        for (id, file) in [
            ("28-000000000001", "w1_slave_ok.txt"),
            ("28-000000000002", "w1_slave_crc_no.txt"),
            ("28-000000000003", "w1_slave_85000_power_on_reset.txt"),
            ("28-000000000004", "w1_slave_all_zero_unplugged.txt"),
            ("28-000000000005", "w1_slave_empty_read_error.txt"),
            ("28-000000000006", "w1_slave_negative_constructed.txt"),
        ] {
            let dir = root.join("sys/bus/w1/devices").join(id);
            std::fs::create_dir_all(&dir).expect("dir");
            std::fs::copy(format!("{RPI}{file}"), dir.join("w1_slave")).expect("w1");
        }
        let bin = root.join("vcgencmd");
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\ncase \"$1\" in measure_temp) cat {RPI}vcgencmd_measure_temp.txt;; get_throttled) cat {RPI}vcgencmd_get_throttled_0x50005.txt;; esac\n"
            ),
        )
        .expect("script");
        let _ = Command::new("chmod").arg("+x").arg(&bin).status();
        root
    }

    #[test]
    fn thermal_vcgencmd_and_w1_on_a_fake_tree() {
        let root = fake_sysfs("all");
        let mut rpi = Rpi::new(root.clone(), root.join("vcgencmd"));
        let points = rpi.collect(0.0).expect("collect");
        let find = |name: &str| points.iter().filter(|p| p.name == name).collect::<Vec<_>>();
        let zone = find("Chouette.rpi.temperature");
        assert_eq!((zone[0].value, zone[0].tags[0].1.as_str()), (49.768, "cpu-thermal"));
        assert_eq!(find("Chouette.rpi.vcgencmd.temperature")[0].value, 44.4);
        let set: Vec<_> = find("Chouette.rpi.throttled")
            .iter()
            .filter(|p| p.value == 1.0)
            .map(|p| p.tags[0].1.clone())
            .collect();
        assert_eq!(set, ["under_voltage", "throttled", "under_voltage_occurred", "throttled_occurred"]);
        let w1: Vec<_> =
            find("Chouette.rpi.w1.temperature").iter().map(|p| (p.tags[0].1.clone(), p.value)).collect();
        assert_eq!(w1, [("28-000000000001".to_owned(), 23.125), ("28-000000000006".to_owned(), -5.25)]);
        let reasons: Vec<_> = rpi.rejected().keys().map(|(_, r)| *r).collect();
        assert_eq!(reasons, ["crc", "power_on_reset", "all_zero", "empty"]);
        assert_eq!(find("Chouette.rpi.w1.rejected").len(), 4);
        // Counted again at the next capture.
        rpi.collect(1.0).expect("collect");
        assert!(rpi.rejected().values().all(|c| *c == 2));
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn no_sensors_no_points() {
        let mut rpi = Rpi::new(PathBuf::from("/nonexistent-root"), PathBuf::from("/nonexistent/vcgencmd"));
        assert!(rpi.collect(0.0).expect("ok").is_empty());
    }
}
