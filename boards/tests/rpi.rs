//! Raspberry Pi parsers on the captured sample files, and the I2C drivers against embedded-hal-mock.

use chouette_boards::rpi::{
    parse_measure_temp, parse_thermal_zone, parse_throttled, parse_w1_slave, Bme280, Bme280Error, Lm75,
    Lm75Resolution, Throttled, Tmp102, W1Error, W1ErrorCounts,
};
use chouette_boards::MilliCelsius;
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/rpi/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn thermal_zone_and_w1_temperature_attr() {
    assert_eq!(parse_thermal_zone(&fixture("thermal_zone0_temp.txt")), Ok(MilliCelsius(49768)));
    assert_eq!(parse_thermal_zone(&fixture("w1_temperature_attr.txt")), Ok(MilliCelsius(23125)));
    assert_eq!(MilliCelsius(49768).as_celsius(), 49.768);
    assert_eq!(MilliCelsius(-5250).to_string(), "-5.250 C");
}

#[test]
fn vcgencmd_measure_temp() {
    assert_eq!(parse_measure_temp(&fixture("vcgencmd_measure_temp.txt")), Ok(MilliCelsius(44400)));
}

#[test]
fn vcgencmd_get_throttled() {
    assert_eq!(parse_throttled(&fixture("vcgencmd_get_throttled_ok.txt")), Ok(Throttled::default()));
    let t = parse_throttled(&fixture("vcgencmd_get_throttled_0x50005.txt")).unwrap();
    assert_eq!(t.raw, 0x50005);
    assert_eq!(
        t.flags(),
        [
            ("under_voltage", true),
            ("freq_capped", false),
            ("throttled", true),
            ("soft_temp_limit", false),
            ("under_voltage_occurred", true),
            ("freq_capped_occurred", false),
            ("throttled_occurred", true),
            ("soft_temp_limit_occurred", false),
        ]
    );
}

#[test]
fn w1_slave_samples() {
    assert_eq!(parse_w1_slave(&fixture("w1_slave_ok.txt")), Ok(MilliCelsius(23125)));
    assert_eq!(parse_w1_slave(&fixture("w1_slave_negative_constructed.txt")), Ok(MilliCelsius(-5250)));
    let mut counts = W1ErrorCounts::default();
    for (file, reason) in [
        ("w1_slave_crc_no.txt", W1Error::CrcMismatch),
        ("w1_slave_85000_power_on_reset.txt", W1Error::PowerOnReset),
        ("w1_slave_all_zero_unplugged.txt", W1Error::AllZero),
        ("w1_slave_empty_read_error.txt", W1Error::Empty),
    ] {
        let e = parse_w1_slave(&fixture(file)).unwrap_err();
        assert_eq!(e, reason, "{file}");
        counts.record(e);
    }
    counts.record(W1Error::CrcMismatch);
    assert_eq!(
        counts.reasons(),
        [("empty", 1), ("crc_mismatch", 2), ("power_on_reset", 1), ("all_zero", 1), ("malformed", 0)]
    );
    // A real 85.000 C (byte 6 is not 0x0C) is accepted.
    let real = "50 05 4b 46 7f ff 10 10 e6 : crc=e6 YES\n50 05 4b 46 7f ff 10 10 e6 t=85000\n";
    assert_eq!(parse_w1_slave(real), Ok(MilliCelsius(85000)));
    assert_eq!(parse_w1_slave("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n"), Err(W1Error::Malformed));
    assert_eq!(parse_w1_slave("garbage\nt=1\n"), Err(W1Error::Malformed));
}

#[test]
fn tmp102_over_i2c() {
    let expectations = [
        Transaction::write_read(0x48, vec![0x00], vec![0x19, 0x00]),
        Transaction::write_read(0x48, vec![0x00], vec![0xE7, 0x00]),
    ];
    let mut dev = Tmp102::new(I2cMock::new(&expectations), 0x48);
    assert_eq!(dev.read_temperature(), Ok(MilliCelsius(25000)));
    assert_eq!(dev.read_temperature(), Ok(MilliCelsius(-25000)));
    dev.release().done();
}

#[test]
fn lm75_over_i2c() {
    let expectations = [
        Transaction::write_read(0x4F, vec![0x00], vec![0x19, 0x80]),
        Transaction::write_read(0x4F, vec![0x00], vec![0xFF, 0xE0]),
    ];
    let mut dev = Lm75::new(I2cMock::new(&expectations), 0x4F, Lm75Resolution::Bits11);
    assert_eq!(dev.read_temperature(), Ok(MilliCelsius(25500)));
    assert_eq!(dev.read_temperature(), Ok(MilliCelsius(-125)));
    dev.release().done();
}

#[test]
fn i2c_errors_are_returned() {
    use embedded_hal::i2c::ErrorKind;
    let expectations = [Transaction::write_read(0x48, vec![0x00], vec![0, 0]).with_error(ErrorKind::Other)];
    let mut dev = Tmp102::new(I2cMock::new(&expectations), 0x48);
    assert_eq!(dev.read_temperature(), Err(ErrorKind::Other));
    dev.release().done();
}

#[test]
fn bme280_datasheet_values_over_i2c() {
    // dig_T1 = 27504 (0x6B70), dig_T2 = 26435 (0x6743), dig_T3 = -1000 (0xFC18), little endian.
    let calib = vec![0x70, 0x6B, 0x43, 0x67, 0x18, 0xFC];
    // adc_T = 519888 = 0x7EED0 → msb 0x7E, lsb 0xED, xlsb 0x00.
    let expectations = [
        Transaction::write_read(0x76, vec![0xD0], vec![0x60]),
        Transaction::write_read(0x76, vec![0x88], calib),
        Transaction::write(0x76, vec![0xF4, 0x23]),
        Transaction::write_read(0x76, vec![0xFA], vec![0x7E, 0xED, 0x00]),
        Transaction::write_read(0x76, vec![0xFA], vec![0x80, 0x00, 0x00]),
    ];
    let mut dev = Bme280::new(I2cMock::new(&expectations), 0x76).unwrap();
    assert_eq!((dev.calibration().t1, dev.calibration().t2, dev.calibration().t3), (27504, 26435, -1000));
    assert_eq!(dev.read_temperature(), Ok(MilliCelsius(25080)));
    assert_eq!(dev.read_temperature(), Err(Bme280Error::MeasurementSkipped));
    dev.release().done();
}

#[test]
fn bme280_rejects_a_bmp280() {
    let expectations = [Transaction::write_read(0x77, vec![0xD0], vec![0x58])];
    let mut mock = I2cMock::new(&expectations);
    let err = Bme280::new(mock.clone(), 0x77).unwrap_err();
    assert_eq!(err, Bme280Error::WrongChip(0x58));
    mock.done();
}
