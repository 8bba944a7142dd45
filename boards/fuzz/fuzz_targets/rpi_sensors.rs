#![no_main]
//! Arbitrary bytes into the Raspberry Pi parsers (thermal zone, `vcgencmd measure_temp` and
//! `get_throttled`, DS18B20 `w1_slave`) and the I2C conversions (TMP102, LM75, BME280 with any
//! calibration and any data registers, as a faulty bus could return): none panics or overflows, and
//! what the checked decoders accept is within the sensors' ranges.

use chouette_boards::rpi::{
    decode_tmp102, lm75_millicelsius, parse_measure_temp, parse_thermal_zone, parse_throttled,
    parse_w1_slave, tmp102_millicelsius, Bme280Calibration, Lm75Resolution, W1ErrorCounts,
    BME280_PRESSURE_RANGE_PA_X256, BME280_TEMPERATURE_RANGE, TMP102_RANGE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(b) = data.get(..9) {
        let _ = tmp102_millicelsius([b[0], b[1]]);
        if let Some(t) = decode_tmp102([b[0], b[1]]) {
            assert!(TMP102_RANGE.contains(&t));
        }
        let _ = lm75_millicelsius([b[0], b[1]], Lm75Resolution::Bits9);
        let _ = lm75_millicelsius([b[0], b[1]], Lm75Resolution::Bits11);
        let cal = Bme280Calibration {
            t1: u16::from_le_bytes([b[0], b[1]]),
            t2: i16::from_le_bytes([b[2], b[3]]),
            t3: i16::from_le_bytes([b[4], b[5]]),
            ..Bme280Calibration::default()
        };
        let adc_t = (i32::from(b[6]) << 12) | (i32::from(b[7]) << 4) | (i32::from(b[8]) >> 4);
        let (_, centi) = cal.compensate_temperature(adc_t);
        let _ = centi.checked_mul(10).expect("a compensated temperature fits in millicelsius");
    }
    // 26 + 7 calibration bytes and 8 data bytes.
    if let Some(b) = data.get(..41) {
        let tp: [u8; 26] = b[..26].try_into().expect("26 bytes");
        let h: [u8; 7] = b[26..33].try_into().expect("7 bytes");
        let cal = Bme280Calibration::from_registers(tp, h);
        if let Ok(r) = cal.decode::<()>(b[33..41].try_into().expect("8 bytes")) {
            assert!(BME280_TEMPERATURE_RANGE.contains(&r.temperature));
            assert!(BME280_PRESSURE_RANGE_PA_X256.contains(&r.pressure_pa_x256));
            assert!(r.humidity_percent_x1024 <= 102_400);
        }
    }
    let Ok(text) = core::str::from_utf8(data) else { return };
    let _ = parse_thermal_zone(text);
    let _ = parse_measure_temp(text);
    if let Ok(t) = parse_throttled(text) {
        assert_eq!(
            t.flags().iter().filter(|(_, on)| *on).count(),
            (t.raw & 0x000F_000F).count_ones() as usize
        );
    }
    let mut counts = W1ErrorCounts::default();
    if let Err(e) = parse_w1_slave(text) {
        counts.record(e);
        assert_eq!(counts.reasons().iter().map(|(_, n)| n).sum::<u64>(), 1);
    }
});
