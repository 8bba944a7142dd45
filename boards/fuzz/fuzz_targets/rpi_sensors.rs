#![no_main]
//! Arbitrary bytes into the Raspberry Pi parsers (thermal zone, `vcgencmd measure_temp` and
//! `get_throttled`, DS18B20 `w1_slave`) and the I2C conversions (TMP102, LM75, BME280 with any
//! calibration and any 20-bit reading, as a faulty bus could return): none panics or overflows.

use chouette_boards::rpi::{
    lm75_millicelsius, parse_measure_temp, parse_thermal_zone, parse_throttled, parse_w1_slave,
    tmp102_millicelsius, Bme280Calibration, Lm75Resolution, W1ErrorCounts,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(b) = data.get(..9) {
        let _ = tmp102_millicelsius([b[0], b[1]]);
        let _ = lm75_millicelsius([b[0], b[1]], Lm75Resolution::Bits9);
        let _ = lm75_millicelsius([b[0], b[1]], Lm75Resolution::Bits11);
        let cal = Bme280Calibration::from_bytes([b[0], b[1], b[2], b[3], b[4], b[5]]);
        let adc_t = (i32::from(b[6]) << 12) | (i32::from(b[7]) << 4) | (i32::from(b[8]) >> 4);
        let (_, centi) = cal.compensate(adc_t);
        let _ = centi.checked_mul(10).expect("a compensated temperature fits in millicelsius");
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
