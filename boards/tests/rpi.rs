//! Raspberry Pi parsers on the captured sample files, and the I2C drivers against embedded-hal-mock.

use chouette_boards::rpi::{
    parse_measure_temp, parse_thermal_zone, parse_throttled, parse_w1_slave, Bme280, Bme280Calibration, Lm75,
    Lm75Resolution, SensorError, Throttled, Tmp102, W1Error, W1ErrorCounts,
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
fn i2c_errors_and_garbled_reads_are_returned() {
    use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
    let nack = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
    let expectations = [
        Transaction::write_read(0x48, vec![0x00], vec![0, 0]).with_error(ErrorKind::Other),
        Transaction::write_read(0x48, vec![0x00], vec![0, 0]).with_error(nack),
        // A bus stuck high.
        Transaction::write_read(0x48, vec![0x00], vec![0xFF, 0xFF]),
    ];
    let mut dev = Tmp102::new(I2cMock::new(&expectations), 0x48);
    assert_eq!(dev.read_temperature(), Err(SensorError::I2c(ErrorKind::Other)));
    assert_eq!(dev.read_temperature(), Err(SensorError::I2c(nack)));
    assert_eq!(dev.read_temperature(), Err(SensorError::Implausible("temperature")));
    dev.release().done();
    // An LM75 reading beyond 125 C.
    let expectations = [Transaction::write_read(0x48, vec![0x00], vec![0x7F, 0x80])];
    let mut dev = Lm75::new(I2cMock::new(&expectations), 0x48, Lm75Resolution::Bits9);
    assert_eq!(dev.read_temperature(), Err(SensorError::Implausible("temperature")));
    dev.release().done();
}

/// The BMP280 datasheet's worked example (temperature and pressure words) with a BME280's typical
/// humidity words, as the chip's registers hold them: 0x88–0xA1 and 0xE1–0xE7.
fn bme280_calibration_registers() -> (Vec<u8>, Vec<u8>) {
    let words: [u16; 12] = [27504, 26435, 64536, 36477, 54851, 3024, 2855, 140, 65529, 15500, 50936, 6000];
    let mut tp: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    tp.extend([0x00, 75]); // 0xA0 (unused), dig_H1
    (tp, vec![0x6A, 0x01, 0x00, 0x14, 0x24, 0x03, 0x1E])
}

/// The setup [`Bme280::new`] sends after reading the id and the calibration.
fn bme280_setup(address: u8) -> [Transaction; 4] {
    [
        Transaction::write(address, vec![0xF4, 0x00]),
        Transaction::write(address, vec![0xF2, 0x01]),
        Transaction::write(address, vec![0xF5, 0xA0]),
        Transaction::write(address, vec![0xF4, 0x27]),
    ]
}

#[test]
fn bme280_datasheet_values_over_i2c() {
    let (tp, h) = bme280_calibration_registers();
    // adc_P = 415148 (0x655AC), adc_T = 519888 (0x7EED0), adc_H = 0x6B00.
    let data = vec![0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x6B, 0x00];
    let mut expectations = vec![
        Transaction::write_read(0x76, vec![0xD0], vec![0x60]),
        Transaction::write_read(0x76, vec![0x88], tp),
        Transaction::write_read(0x76, vec![0xE1], h),
    ];
    expectations.extend(bme280_setup(0x76));
    expectations.extend([
        Transaction::write_read(0x76, vec![0xF7], data),
        // The reset values: the chip is not measuring (it was reset, say).
        Transaction::write_read(0x76, vec![0xF7], vec![0x80, 0, 0, 0x80, 0, 0, 0x80, 0]),
    ]);
    let mut dev = Bme280::new(I2cMock::new(&expectations), 0x76).unwrap();
    let cal = dev.calibration();
    assert_eq!((cal.t1, cal.t2, cal.t3, cal.p1, cal.p[7]), (27504, 26435, -1000, 36477, 6000));
    assert_eq!((cal.h1, cal.h2, cal.h3, cal.h4, cal.h5, cal.h6), (75, 362, 0, 324, 50, 30));
    let reading = dev.read().unwrap();
    assert_eq!(reading.temperature, MilliCelsius(25080));
    assert_eq!((reading.pressure_pa_x256, reading.humidity_percent_x1024), (25_767_233, 37_404));
    assert_eq!(dev.read_temperature(), Err(SensorError::MeasurementSkipped));
    dev.release().done();
}

#[test]
fn bme280_with_a_kept_calibration_reads_without_setup() {
    let (tp, h) = bme280_calibration_registers();
    let cal = Bme280Calibration::from_registers(tp.try_into().unwrap(), h.try_into().unwrap());
    let data = vec![0x65, 0x5A, 0xC0, 0x7E, 0xED, 0x00, 0x6B, 0x00];
    let expectations = [Transaction::write_read(0x77, vec![0xF7], data)];
    let mut dev = Bme280::with_calibration(I2cMock::new(&expectations), 0x77, cal);
    assert_eq!(dev.read().unwrap().temperature, MilliCelsius(25080));
    dev.release().done();
}

#[test]
fn bme280_nack_in_the_middle_of_setup() {
    use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
    let nack = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data);
    let (tp, _) = bme280_calibration_registers();
    let expectations = [
        Transaction::write_read(0x76, vec![0xD0], vec![0x60]),
        Transaction::write_read(0x76, vec![0x88], tp),
        Transaction::write_read(0x76, vec![0xE1], vec![0; 7]).with_error(nack),
    ];
    let mut mock = I2cMock::new(&expectations);
    assert_eq!(Bme280::new(mock.clone(), 0x76).unwrap_err(), SensorError::I2c(nack));
    mock.done();
}

#[test]
fn bme280_rejects_a_bmp280() {
    let expectations = [Transaction::write_read(0x77, vec![0xD0], vec![0x58])];
    let mut mock = I2cMock::new(&expectations);
    let err = Bme280::new(mock.clone(), 0x77).unwrap_err();
    assert_eq!(err, SensorError::WrongChip(0x58));
    mock.done();
}

proptest::proptest! {
    /// Whatever a faulty bus returns as calibration and data, decoding neither panics nor
    /// overflows (tests check overflow), and what it accepts is within the operating ranges.
    #[test]
    fn bme280_decode_any_bytes(
        tp in proptest::array::uniform26(proptest::num::u8::ANY),
        h in proptest::array::uniform7(proptest::num::u8::ANY),
        data in proptest::array::uniform8(proptest::num::u8::ANY),
    ) {
        let cal = Bme280Calibration::from_registers(tp, h);
        if let Ok(r) = cal.decode::<()>(data) {
            proptest::prop_assert!((-40_000..=85_000).contains(&r.temperature.0));
            proptest::prop_assert!((300.0..=1100.0).contains(&r.pressure_hpa()));
            proptest::prop_assert!((0.0..=100.0).contains(&r.humidity_percent()));
        }
    }
}
