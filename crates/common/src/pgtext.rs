//! PostgreSQL's text output of values whose Rust formatting differs from it, shared by the
//! pgwire front end (text-format results) and the test tools that render binary results as
//! PostgreSQL's text (sql-tests). Pure formatting, no I/O.

/// A float8 as PostgreSQL (12+, `extra_float_digits = 1`) prints it: shortest round-trip digits,
/// fixed notation for decimal exponents -4..15, otherwise `d.ddde+XX`.
pub fn format_float8(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    format_shortest(&format!("{v:e}"), 15)
}

/// A float4 as PostgreSQL prints it: like [`format_float8`], with fixed notation for decimal
/// exponents -4..6.
pub fn format_float4(v: f32) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    format_shortest(&format!("{v:e}"), 6)
}

/// Reformats Rust's shortest `{:e}` output (`-1.2345e-7`) in PostgreSQL's (printf `%g`-like) style.
fn format_shortest(sci: &str, fixed_below: i32) -> String {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::from(sign);
    if (-4..fixed_below).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.push_str(&"0".repeat((-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.push_str(&"0".repeat(int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_formatting() {
        for (v, s) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456789012345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1.5e15, "1.5e+15"),
            (1e300, "1e+300"),
            (-1.7976931348623157e308, "-1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(format_float8(v), s, "{v:e}");
        }
    }

    #[test]
    fn float4_formatting() {
        for (v, s) in [
            (2.75f32, "2.75"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.00012, "0.00012"),
            (1.0e-5, "1e-05"),
            (3.4028235e38, "3.4028235e+38"),
            (f32::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(format_float4(v), s, "{v:e}");
        }
    }
}
