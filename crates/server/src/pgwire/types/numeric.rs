//! NUMERIC values on the wire: one Decimal128 cell (its unscaled `i128` and the column's Arrow
//! scale) in PostgreSQL's text and binary NUMERIC formats, byte for byte what PostgreSQL's
//! `numeric_out` and `numeric_send` produce for the same value and scale.
//!
//! In the flow (Arrow batch → `results` → DataRow), `results` encodes every Decimal128 column
//! with this instead of arrow-pg, whose conversion through `rust_decimal` fails above 28
//! significant digits (our NUMERIC columns go up to precision 38) and sends a zero with dscale
//! 0 in binary format (so `0.00` reads back as `0`). NaN and infinities do not occur in
//! Decimal128 and are not encoded.

use std::fmt;
use std::iter;

use bytes::{BufMut, BytesMut};

/// Sign word of a positive (or zero) and of a negative NUMERIC.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;

/// Decimal digits per base-10000 NUMERIC digit.
const DEC_DIGITS: usize = 4;

/// A Decimal128 value: `value * 10^-scale`, as PostgreSQL NUMERIC with dscale `max(scale, 0)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Numeric {
    value: i128,
    scale: i8,
}

impl Numeric {
    pub(crate) fn new(value: i128, scale: i8) -> Self {
        Numeric { value, scale }
    }

    /// Digits after the decimal point. A negative Arrow scale is an integer ending in zeros.
    fn dscale(self) -> usize {
        usize::try_from(self.scale).unwrap_or(0)
    }

    /// The decimal digits of the absolute value: the integer part without leading zeros (empty
    /// for 0) and the fraction part of exactly `dscale` digits.
    fn parts(self) -> (String, String) {
        let mut digits = self.value.unsigned_abs().to_string();
        let dscale = self.dscale();
        if self.scale < 0 {
            digits.extend(iter::repeat_n('0', usize::from(self.scale.unsigned_abs())));
        }
        let fraction = if digits.len() > dscale {
            digits.split_off(digits.len() - dscale)
        } else {
            let fraction = format!("{digits:0>dscale$}");
            digits.clear();
            fraction
        };
        let integer = digits.trim_start_matches('0').to_string();
        (integer, fraction)
    }

    /// Appends the binary NUMERIC: ndigits, weight, sign, dscale (each 16 bits), then ndigits
    /// base-10000 digits. The digits are grouped around the decimal point, leading and trailing
    /// zero digits are left out, and zero has no digits, weight 0 and a positive sign.
    pub(crate) fn write_binary(self, out: &mut BytesMut) {
        let (integer, fraction) = self.parts();
        let lead = (DEC_DIGITS - integer.len() % DEC_DIGITS) % DEC_DIGITS;
        let trail = (DEC_DIGITS - fraction.len() % DEC_DIGITS) % DEC_DIGITS;
        let padded: Vec<u8> = iter::repeat_n(b'0', lead)
            .chain(integer.bytes())
            .chain(fraction.bytes())
            .chain(iter::repeat_n(b'0', trail))
            .collect();
        let groups: Vec<i16> =
            padded.chunks(DEC_DIGITS).map(|g| g.iter().fold(0, |n, d| n * 10 + i16::from(d - b'0'))).collect();
        // The base-10000 digit just before the decimal point has weight 0.
        let mut weight = ((lead + integer.len()) / DEC_DIGITS) as i16 - 1;
        let digits = match groups.iter().position(|&g| g != 0) {
            None => {
                weight = 0;
                &[][..]
            }
            Some(first) => {
                let last = groups.iter().rposition(|&g| g != 0).unwrap_or(first);
                weight -= first as i16;
                &groups[first..=last]
            }
        };
        let sign = if self.value < 0 { NUMERIC_NEG } else { NUMERIC_POS };
        // At most 39 digits of an i128 plus 128 zeros of a negative scale: all fit in 16 bits.
        out.reserve(8 + 2 * digits.len());
        out.put_i16(digits.len() as i16);
        out.put_i16(weight);
        out.put_u16(sign);
        out.put_u16(self.dscale() as u16);
        for &digit in digits {
            out.put_i16(digit);
        }
    }
}

/// The text NUMERIC: `-12.50`, `0.00`, `12300` (a negative scale has dscale 0).
impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (integer, fraction) = self.parts();
        if self.value < 0 {
            f.write_str("-")?;
        }
        f.write_str(if integer.is_empty() { "0" } else { &integer })?;
        if !fraction.is_empty() {
            write!(f, ".{fraction}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded binary NUMERIC.
    #[derive(Debug, PartialEq, Eq)]
    struct Binary {
        weight: i16,
        sign: u16,
        dscale: u16,
        digits: Vec<i16>,
    }

    fn binary(value: i128, scale: i8) -> Binary {
        let mut out = BytesMut::new();
        Numeric::new(value, scale).write_binary(&mut out);
        let words: Vec<[u8; 2]> = out.chunks(2).map(|w| [w[0], w[1]]).collect();
        assert_eq!(out.len(), 2 * words.len());
        let ndigits = i16::from_be_bytes(words[0]);
        let decoded = Binary {
            weight: i16::from_be_bytes(words[1]),
            sign: u16::from_be_bytes(words[2]),
            dscale: u16::from_be_bytes(words[3]),
            digits: words[4..].iter().map(|w| i16::from_be_bytes(*w)).collect(),
        };
        assert_eq!(ndigits as usize, decoded.digits.len());
        decoded
    }

    fn b(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Binary {
        Binary { weight, sign, dscale, digits: digits.to_vec() }
    }

    fn text(value: i128, scale: i8) -> String {
        Numeric::new(value, scale).to_string()
    }

    /// The text of a binary NUMERIC, as PostgreSQL's numeric_out would print it.
    fn binary_to_text(n: &Binary) -> String {
        let digit = |i: i32| usize::try_from(i).ok().and_then(|i| n.digits.get(i)).copied().unwrap_or(0);
        let mut s = String::new();
        if n.sign == NUMERIC_NEG {
            s.push('-');
        }
        if n.weight < 0 {
            s.push('0');
        } else {
            s.push_str(&digit(0).to_string());
            for i in 1..=i32::from(n.weight) {
                s.push_str(&format!("{:04}", digit(i)));
            }
        }
        if n.dscale > 0 {
            let mut fraction = String::new();
            let mut i = i32::from(n.weight) + 1;
            while fraction.len() < usize::from(n.dscale) {
                fraction.push_str(&format!("{:04}", digit(i)));
                i += 1;
            }
            fraction.truncate(usize::from(n.dscale));
            s.push('.');
            s.push_str(&fraction);
        }
        s
    }

    fn assert_round_trip(value: i128, scale: i8) {
        assert_eq!(binary_to_text(&binary(value, scale)), text(value, scale), "{value} scale {scale}");
    }

    #[test]
    fn zero_keeps_its_scale() {
        assert_eq!(text(0, 2), "0.00");
        assert_eq!(binary(0, 2), b(0, NUMERIC_POS, 2, &[]));
        assert_eq!(text(0, 0), "0");
        assert_eq!(binary(0, 0), b(0, NUMERIC_POS, 0, &[]));
        assert_eq!(text(0, 5), "0.00000");
        assert_eq!(binary(0, 5), b(0, NUMERIC_POS, 5, &[]));
    }

    #[test]
    fn small_values() {
        assert_eq!(text(150, 2), "1.50");
        assert_eq!(binary(150, 2), b(0, NUMERIC_POS, 2, &[1, 5000]));
        assert_eq!(text(-1250, 2), "-12.50");
        assert_eq!(binary(-1250, 2), b(0, NUMERIC_NEG, 2, &[12, 5000]));
        assert_eq!(text(-9_999_999_999, 2), "-99999999.99");
        assert_eq!(binary(-9_999_999_999, 2), b(1, NUMERIC_NEG, 2, &[9999, 9999, 9900]));
        assert_eq!(text(5, 1), "0.5");
        assert_eq!(binary(5, 1), b(-1, NUMERIC_POS, 1, &[5000]));
        assert_eq!(text(-5, 2), "-0.05");
        assert_eq!(binary(-5, 2), b(-1, NUMERIC_NEG, 2, &[500]));
    }

    #[test]
    fn more_than_28_digits() {
        // 12345678901234567890.5 as NUMERIC(38, 6).
        assert_eq!(text(12_345_678_901_234_567_890_500_000, 6), "12345678901234567890.500000");
        assert_eq!(
            binary(12_345_678_901_234_567_890_500_000, 6),
            b(4, NUMERIC_POS, 6, &[1234, 5678, 9012, 3456, 7890, 5000])
        );
        // 38 significant digits, 9 of them after the point.
        let value = 12_345_678_901_234_567_890_123_456_789_123_456_789;
        assert_eq!(text(value, 9), "12345678901234567890123456789.123456789");
        assert_eq!(
            binary(value, 9),
            b(7, NUMERIC_POS, 9, &[1, 2345, 6789, 123, 4567, 8901, 2345, 6789, 1234, 5678, 9000])
        );
        assert_eq!(text(-value, 9), "-12345678901234567890123456789.123456789");
        // 38 nines, all of them after the point.
        let nines = 10_i128.pow(38) - 1;
        assert_eq!(text(-nines, 38), format!("-0.{}", "9".repeat(38)));
        let mut digits = vec![9999; 9];
        digits.push(9900);
        assert_eq!(binary(-nines, 38), b(-1, NUMERIC_NEG, 38, &digits));
        assert_eq!(text(nines, 0), "9".repeat(38));
        let mut digits = vec![99, 9999, 9999];
        digits.extend([9999; 7]);
        assert_eq!(binary(nines, 0), b(9, NUMERIC_POS, 0, &digits));
    }

    #[test]
    fn scales_not_a_multiple_of_four() {
        assert_eq!(text(1, 3), "0.001");
        assert_eq!(binary(1, 3), b(-1, NUMERIC_POS, 3, &[10]));
        assert_eq!(text(1, 5), "0.00001");
        assert_eq!(binary(1, 5), b(-2, NUMERIC_POS, 5, &[1000]));
        assert_eq!(text(12_345_678, 5), "123.45678");
        assert_eq!(binary(12_345_678, 5), b(0, NUMERIC_POS, 5, &[123, 4567, 8000]));
        assert_eq!(text(100_000, 1), "10000.0");
        assert_eq!(binary(100_000, 1), b(1, NUMERIC_POS, 1, &[1]));
        assert_eq!(text(-1_000_000_007, 7), "-100.0000007");
        assert_eq!(binary(-1_000_000_007, 7), b(0, NUMERIC_NEG, 7, &[100, 0, 70]));
    }

    #[test]
    fn negative_scale_is_an_integer() {
        assert_eq!(text(123, -2), "12300");
        assert_eq!(binary(123, -2), b(1, NUMERIC_POS, 0, &[1, 2300]));
        assert_eq!(text(0, -3), "0");
        assert_eq!(binary(0, -3), b(0, NUMERIC_POS, 0, &[]));
        assert_eq!(text(-1, -4), "-10000");
        assert_eq!(binary(-1, -4), b(1, NUMERIC_NEG, 0, &[1]));
    }

    #[test]
    fn binary_reads_back_as_the_text() {
        let values = [0, 1, -1, 7, 99, 100, 9999, 10_000, 123_456_789, -987_654_321_012, i128::MAX, i128::MIN];
        for value in values {
            for scale in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 17, 20, 37, 38, -1, -5] {
                assert_round_trip(value, scale);
            }
        }
    }
}
