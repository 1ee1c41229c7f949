//! PostgreSQL's binary COPY format, which the import writes cost records in: Postgres then reads
//! each value as it is stored (a numeric's base-10000 digits, a time's microseconds) instead of
//! parsing text, which took a third of the server's time for a load.
//! <https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4>

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The signature, the flags (no OIDs) and an empty header extension.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end of the data: a tuple of -1 fields.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds from the Unix epoch to Postgres's (2000-01-01 00:00:00 UTC).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Tuples in binary COPY format, appended to a buffer.
#[derive(Default)]
pub struct Tuples {
    pub buf: Vec<u8>,
}

impl Tuples {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
        }
    }

    pub fn start(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn value(&mut self, bytes: &[u8]) {
        // A value is never near 2 GiB: it comes from one CSV field.
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    pub fn text(&mut self, text: &str) {
        self.value(text.as_bytes());
    }

    pub fn uuid(&mut self, id: &Uuid) {
        self.value(id.as_bytes());
    }

    pub fn timestamptz(&mut self, time: &DateTime<Utc>) {
        // Postgres keeps microseconds, rounding finer fractions to the nearest.
        let micros = time.timestamp() * 1_000_000
            + i64::from((time.timestamp_subsec_nanos() + 500) / 1000)
            - POSTGRES_EPOCH_MICROS;
        self.value(&micros.to_be_bytes());
    }

    /// A jsonb value (version 1: the JSON text).
    pub fn jsonb(&mut self, json: &str) {
        self.buf
            .extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
    }

    /// A numeric from a decimal as written (`-12.50`, `1.5e-7`), with the scale Postgres would
    /// give the same text. `false`, writing nothing, if it is not such a number or is beyond
    /// what Postgres reads as text (an exponent over 1000).
    pub fn numeric(&mut self, decimal: &str) -> bool {
        let Some(numeric) = Numeric::parse(decimal) else {
            return false;
        };
        let groups = numeric.groups();
        self.buf
            .extend_from_slice(&(8 + 2 * groups as i32).to_be_bytes());
        self.buf.extend_from_slice(&(groups as i16).to_be_bytes());
        self.buf.extend_from_slice(&numeric.weight.to_be_bytes());
        self.buf
            .extend_from_slice(&if numeric.negative { 0x4000u16 } else { 0 }.to_be_bytes());
        self.buf.extend_from_slice(&numeric.scale.to_be_bytes());
        numeric.for_each_group(|group| self.buf.extend_from_slice(&group.to_be_bytes()));
        true
    }
}

/// A decimal read for Postgres's numeric: its significant digits (no leading or trailing
/// zeros), where the point falls in them, the sign and the display scale (digits after the
/// point as written). Postgres keeps it as base-10000 digits, the first with `weight` (its
/// power of 10000).
#[derive(Debug, PartialEq)]
struct Numeric<'a> {
    whole: &'a [u8],
    fraction: &'a [u8],
    /// How many of the significant digits come before the point (negative: zeros between).
    point: i32,
    /// Leading zeros put before the digits so that the point falls between groups of four.
    pad: usize,
    weight: i16,
    negative: bool,
    scale: u16,
}

impl<'a> Numeric<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        // numeric_in's own limit on the exponent.
        if exponent.abs() > 1000 {
            return None;
        }
        let (negative, unsigned) = match mantissa.as_bytes().first()? {
            b'-' => (true, &mantissa[1..]),
            b'+' => (false, &mantissa[1..]),
            _ => (false, mantissa),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let (whole, fraction) = (whole.as_bytes(), fraction.as_bytes());
        if whole.is_empty() && fraction.is_empty()
            || !whole.iter().chain(fraction).all(u8::is_ascii_digit)
        {
            return None;
        }
        // Postgres's largest display scale.
        let scale = u16::try_from((fraction.len() as i32 - exponent).max(0))
            .ok()
            .filter(|&s| s <= 0x3fff)?;
        // The significant digits: leading zeros go (each moving the point), trailing zeros too.
        let mut point = whole.len() as i32 + exponent;
        let leading_whole = whole.iter().take_while(|&&d| d == b'0').count();
        let whole = &whole[leading_whole..];
        point -= leading_whole as i32;
        let (whole, fraction) = if whole.is_empty() {
            let leading = fraction.iter().take_while(|&&d| d == b'0').count();
            point -= leading as i32;
            (whole, &fraction[leading..])
        } else {
            (whole, fraction)
        };
        let trailing = |digits: &[u8]| digits.iter().rev().take_while(|&&d| d == b'0').count();
        let (whole, fraction) = if trailing(fraction) == fraction.len() {
            (&whole[..whole.len() - trailing(whole)], &fraction[..0])
        } else {
            (whole, &fraction[..fraction.len() - trailing(fraction)])
        };
        if whole.is_empty() && fraction.is_empty() {
            // Zero: no digits, positive, whatever was written.
            return Some(Self {
                whole,
                fraction,
                point: 0,
                pad: 0,
                weight: 0,
                negative: false,
                scale,
            });
        }
        let pad = (4 - point.rem_euclid(4)) % 4;
        Some(Self {
            whole,
            fraction,
            point,
            pad: pad as usize,
            weight: i16::try_from((point + pad) / 4 - 1).ok()?,
            negative,
            scale,
        })
    }

    /// How many base-10000 digits.
    fn groups(&self) -> usize {
        let digits = self.whole.len() + self.fraction.len();
        if digits == 0 {
            0
        } else {
            (self.pad + digits).div_ceil(4)
        }
    }

    fn for_each_group(&self, mut emit: impl FnMut(i16)) {
        let (mut group, mut in_group) = (0i16, self.pad);
        if self.groups() == 0 {
            return;
        }
        for &d in self.whole.iter().chain(self.fraction) {
            group = group * 10 + i16::from(d - b'0');
            in_group += 1;
            if in_group == 4 {
                emit(group);
                (group, in_group) = (0, 0);
            }
        }
        if in_group > 0 {
            emit(group * 10i16.pow(4 - in_group as u32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Numeric;

    /// (base-10000 digits, weight, negative, scale)
    fn numeric(text: &str) -> Option<(Vec<i16>, i16, bool, u16)> {
        let numeric = Numeric::parse(text)?;
        let mut digits = Vec::new();
        numeric.for_each_group(|g| digits.push(g));
        assert_eq!(digits.len(), numeric.groups(), "{text}");
        Some((digits, numeric.weight, numeric.negative, numeric.scale))
    }

    #[test]
    fn decimals_become_base_10000_digits_with_postgres_scale() {
        let expect = |digits: &[i16], weight, negative, scale| {
            Some((digits.to_vec(), weight, negative, scale))
        };
        assert_eq!(numeric("0"), expect(&[], 0, false, 0));
        assert_eq!(numeric("-0.00"), expect(&[], 0, false, 2));
        assert_eq!(numeric("000.000e5"), expect(&[], 0, false, 0));
        assert_eq!(numeric("1"), expect(&[1], 0, false, 0));
        assert_eq!(numeric("0010"), expect(&[10], 0, false, 0));
        assert_eq!(numeric("12345"), expect(&[1, 2345], 1, false, 0));
        assert_eq!(numeric("10000"), expect(&[1], 1, false, 0));
        assert_eq!(numeric("1.50"), expect(&[1, 5000], 0, false, 2));
        assert_eq!(numeric("-.5"), expect(&[5000], -1, true, 1));
        assert_eq!(numeric("0.0015"), expect(&[15], -1, false, 4));
        assert_eq!(numeric("1.5e-7"), expect(&[15], -2, false, 8));
        assert_eq!(numeric("1.5E3"), expect(&[1500], 0, false, 0));
        assert_eq!(numeric("+2e4"), expect(&[2], 1, false, 0));
        assert_eq!(numeric("100.001"), expect(&[100, 10], 0, false, 3));
        assert_eq!(
            numeric("123456789.123456789"),
            expect(&[1, 2345, 6789, 1234, 5678, 9000], 2, false, 9)
        );
        assert_eq!(numeric("0.000000000001"), expect(&[1], -3, false, 12));
        for bad in [
            "", "-", ".", "1.2.3", "1e", "e5", "1e2000", "12a", "NaN", " 1",
        ] {
            assert_eq!(numeric(bad), None, "{bad}");
        }
    }
}
